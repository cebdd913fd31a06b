package pubsub

// Topic history: positions, bounds, and the broker side of it. A Hub topic
// that keeps history gives every message a Position; a subscriber that
// comes back with the last position it saw gets what came after it, then
// the live messages, with nothing lost or repeated in between (Centrifugo's
// recovery), or learns with ErrHistoryGone that the history no longer
// reaches back.

import (
	"errors"
	"fmt"
	"time"
)

// HistoryOptions bounds what a topic keeps for subscribers that come back.
// A message is dropped, oldest first, once any bound is passed; the newest
// message is always kept. The zero value keeps nothing.
type HistoryOptions struct {
	// MaxMessages bounds the messages kept. 0: no bound by count (then
	// MaxBytes or MaxAge must be set, or nothing is kept).
	MaxMessages int
	// MaxBytes bounds the kept messages' data bytes. Each kept message
	// also costs about 85 bytes (BenchmarkHistoryCost; more through NATS
	// JetStream: see loop/natsbroker). 0: no bound by size.
	MaxBytes int
	// MaxAge drops messages older than this. 0: no bound by age.
	MaxAge time.Duration
}

// Goroutine-safe.
// Keeps reports whether o sets a bound, that is whether a topic given o
// keeps anything.
func (o HistoryOptions) Keeps() bool { return o.MaxMessages > 0 || o.MaxBytes > 0 || o.MaxAge > 0 }

// Message is one message of a topic that keeps history.
type Message struct {
	Pos  Position
	Data []byte
	// Time is when the message was ordered (for MaxAge).
	Time time.Time
}

// ErrHistoryGone says that a topic's history no longer reaches back to the
// position asked for: messages after it were dropped (by the bounds), or
// the position is of another epoch. The subscriber cannot be resumed
// exactly; a client should reload its state.
var ErrHistoryGone = errors.New("pubsub: the topic's history no longer reaches back to that position")

// ErrNoHistory is returned for a topic that keeps no history, or by a hub
// whose broker cannot keep any.
var ErrNoHistory = errors.New("pubsub: the topic keeps no history")

// ErrHistoryOptionsDiffer is returned (wrapped, with both options) by
// KeepHistory for a topic that already keeps history with other options:
// the same options again are a no-op, other ones are refused rather than
// silently ignored or applied.
var ErrHistoryOptionsDiffer = errors.New("pubsub: the topic already keeps history with other options")

// HistoryBroker is a Broker that orders each history topic's messages and
// keeps a bounded history of them, with positions that are the same for
// every subscriber on every node: MemoryBroker in one process, natsbroker
// (over JetStream) across processes. Goroutine-safe.
type HistoryBroker interface {
	Broker
	// KeepHistory makes topic keep history within o, from now on, whether
	// or not anyone subscribes. Calling it again with the same options is
	// a no-op; with other options it returns an error wrapping
	// ErrHistoryOptionsDiffer that names both. Messages Publish sends on
	// topic get positions.
	KeepHistory(topic string, o HistoryOptions) error
	// SubscribeHistory is Subscribe for a history topic: deliver gets,
	// in order and once each, every message ordered after head, the
	// position of the last message ordered before the subscription
	// (Offset 0: none yet). deliver may keep m.Data.
	SubscribeHistory(topic string, deliver func(m Message)) (head Position, cancel func(), err error)
	// History appends to dst the kept messages of topic with offsets
	// after after.Offset up to upTo included, oldest first. When after is
	// of another epoch, or the history no longer holds after.Offset+1, it
	// returns dst unchanged and an error wrapping ErrHistoryGone. An
	// after.Offset of -1 asks for every kept message of after's epoch.
	// HistoryBuffer.After implements these rules. The messages' Data must
	// not be modified.
	History(topic string, after Position, upTo int64, dst []Message) ([]Message, error)
}

// HistoryBuffer keeps a topic's newest messages within HistoryOptions, with
// contiguous offsets, for a HistoryBroker (or a Hub without a broker) to
// answer History from. Not goroutine-safe: its owner holds it under a lock
// or on one loop. Each kept message costs its data plus about 85 bytes
// (BenchmarkHistoryCost: the Message, the slice's growth, the allocator's rounding).
type HistoryBuffer struct {
	o     HistoryOptions
	epoch int64
	msgs  []Message // msgs[head:] are kept, oldest first
	head  int
	bytes int
	last  int64 // offset of the newest message ordered (kept or not)
}

// Goroutine-safe. NewHistoryBuffer returns an empty buffer in epoch.
func NewHistoryBuffer(o HistoryOptions, epoch int64) *HistoryBuffer {
	return &HistoryBuffer{o: o, epoch: epoch}
}

// Not goroutine-safe (see HistoryBuffer).
// Head is the position of the newest message ordered, Offset 0 when none
// was in this epoch.
func (b *HistoryBuffer) Head() Position { return Position{b.epoch, b.last} }

// Not goroutine-safe (see HistoryBuffer).
// Len is how many messages are kept.
func (b *HistoryBuffer) Len() int { return len(b.msgs) - b.head }

// Not goroutine-safe (see HistoryBuffer).
// Bytes is the kept messages' data bytes.
func (b *HistoryBuffer) Bytes() int { return b.bytes }

// Not goroutine-safe (see HistoryBuffer).
// Reset drops every message and starts epoch, whose first offset is 1.
func (b *HistoryBuffer) Reset(epoch int64) {
	clear(b.msgs) // let the data go now
	b.msgs, b.head, b.bytes, b.epoch, b.last = b.msgs[:0], 0, 0, epoch, 0
}

// Not goroutine-safe (see HistoryBuffer).
// Next is the position the next message gets with Add.
func (b *HistoryBuffer) Next() Position { return Position{b.epoch, b.last + 1} }

// Not goroutine-safe (see HistoryBuffer).
// Add keeps m as the newest message and drops the oldest over the bounds.
// A message of another epoch resets the buffer to it first; one at or
// below the head is ignored (false); one past Next drops every kept
// message, since offsets must stay contiguous (whoever skipped offsets
// dropped the messages in between).
func (b *HistoryBuffer) Add(m Message) bool {
	if m.Pos.Epoch != b.epoch {
		b.Reset(m.Pos.Epoch)
	}
	if m.Pos.Offset <= b.last {
		return false
	}
	if m.Pos.Offset != b.last+1 {
		b.dropAll()
	}
	b.last = m.Pos.Offset
	b.msgs = append(b.msgs, m)
	b.bytes += len(m.Data)
	b.trim(m.Time)
	return true
}

func (b *HistoryBuffer) dropAll() {
	clear(b.msgs)
	b.msgs, b.head, b.bytes = b.msgs[:0], 0, 0
}

// trim drops the oldest messages over the bounds, as of now.
func (b *HistoryBuffer) trim(now time.Time) {
	o := b.o
	for n := len(b.msgs) - b.head; n > 0; n-- {
		m := &b.msgs[b.head]
		over := (o.MaxMessages > 0 && n > o.MaxMessages) || (o.MaxBytes > 0 && b.bytes > o.MaxBytes && n > 1) ||
			(o.MaxAge > 0 && !m.Time.IsZero() && now.Sub(m.Time) > o.MaxAge && n > 1)
		if !over {
			break
		}
		b.bytes -= len(m.Data)
		*m = Message{}
		b.head++
	}
	// Compact once half the slice is dropped: amortized O(1) per message.
	if b.head > 0 && b.head >= len(b.msgs)/2 {
		n := copy(b.msgs, b.msgs[b.head:])
		clear(b.msgs[n:])
		b.msgs, b.head = b.msgs[:n], 0
	}
}

// Not goroutine-safe (see HistoryBuffer).
// After appends to dst the kept messages with offsets in (after.Offset,
// upTo], oldest first (upTo < 0: up to the newest). It returns an error
// wrapping ErrHistoryGone when after is of another epoch or the messages
// right after it were dropped; an after at or past the head (a client that
// saw more on a node further along) gives nothing and no error. An
// after.Offset of -1 asks for every kept message (of after's epoch): a
// client that has none yet.
func (b *HistoryBuffer) After(after Position, upTo int64, now time.Time, dst []Message) ([]Message, error) {
	if after.Epoch != b.epoch {
		return dst, fmt.Errorf("%w: epoch %d is not the history's %d", ErrHistoryGone, after.Epoch, b.epoch)
	}
	if b.o.MaxAge > 0 {
		b.trim(now)
	}
	k := b.msgs[b.head:]
	first := b.last + 1 // of the kept messages
	if len(k) > 0 {
		first = k[0].Pos.Offset
	}
	if after.Offset < 0 {
		after.Offset = first - 1 // from the oldest kept
	}
	if after.Offset+1 < first {
		return dst, fmt.Errorf("%w: offsets %d to %d were dropped", ErrHistoryGone, after.Offset+1, first-1)
	}
	if upTo < 0 || upTo > b.last {
		upTo = b.last
	}
	for i := after.Offset + 1 - first; i >= 0 && i < int64(len(k)) && k[i].Pos.Offset <= upTo; i++ {
		dst = append(dst, k[i])
	}
	return dst, nil
}
