package main

// The long-poll chat's log: one order of messages for every loop of the
// process (memoryChatLog) or of every process on one NATS server
// (jetStreamChatLog, chatlog_jetstream.go). Each loop keeps a replica of
// it (messageBuffer, longpoll.go) and answers polls from the replica alone,
// without locks; the log only tells a replica that it has news, and the
// replica copies what it lacks on its own loop.

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop"
)

// chatLog orders the long-poll chat's messages. Goroutine-safe.
type chatLog interface {
	// append orders body after the log's messages. When it returns nil,
	// done runs once on l, later, with the message's id or with the error
	// that kept the log from taking it. An error returned at once (not
	// connected, backlog, closed) means done never runs. It never blocks.
	append(l *loop.Loop, body string, done func(id int64, err error)) error
	// subscribe runs notify on l (coalesced: at most one run queued per
	// subscriber) whenever the log has messages or a new epoch; notify
	// then reads them with since. A first run is queued at once.
	subscribe(l *loop.Loop, notify func())
	// since appends to dst the kept messages with ids >= next when epoch
	// is the log's, else all of them with reset true; it returns the log's
	// epoch. The messages' js is shared and must not be modified.
	since(epoch, next int64, dst []storedMessage) (logEpoch int64, msgs []storedMessage, reset bool)
	// close stops the log (JetStream: waits for posts in flight, at most
	// the publish timeout). Call it after the loops have stopped, before
	// closing the NATS connection.
	close()
}

// newChatLog returns the process's long-poll log: over JetStream on nc, or
// in memory when nc is nil. When the NATS server has no JetStream it logs a
// warning and returns a memory log: the chat then works, but cursors are
// valid on this process only. Call it once per process, off the loops.
func newChatLog(nc *nats.Conn, o longPollOptions, log *slog.Logger) (chatLog, error) {
	if log == nil {
		log = slog.Default()
	}
	if nc == nil {
		return newMemoryChatLog(o), nil
	}
	l, err := newJetStreamChatLog(nc, o, log)
	if err == errNoJetStream {
		log.Warn("long-poll chat: the NATS server has no JetStream; messages and cursors stay on this process", "url", nc.ConnectedUrlRedacted())
		return newMemoryChatLog(o), nil
	}
	if err != nil {
		return nil, fmt.Errorf("long-poll chat log: %w", err)
	}
	return l, nil
}

// chatRing keeps the newest messages, oldest first, within MaxMessages and
// MaxBytes, with contiguous ids so a cursor maps to an index. Not
// goroutine-safe: the feed holds it under its lock, a replica on its loop.
type chatRing struct {
	msgs  []storedMessage // msgs[head:] are kept
	head  int
	bytes int   // len of the kept messages' js
	next  int64 // the id the next message must have
}

func newChatRing() chatRing { return chatRing{next: 1} }

// first is the id of the oldest kept message (next when none is).
func (g *chatRing) first() int64 {
	if g.head < len(g.msgs) {
		return g.msgs[g.head].id
	}
	return g.next
}

func (g *chatRing) kept() []storedMessage { return g.msgs[g.head:] }

// clear drops every message; the next may have any id >= next.
func (g *chatRing) clear() {
	clear(g.msgs) // let the bytes go now
	g.msgs, g.head, g.bytes = g.msgs[:0], 0, 0
}

// add stores m as the newest message, dropping the oldest over the caps.
// An id already passed is ignored (false). An id beyond next drops every
// kept message: whoever skipped ids dropped the older ones too, and ids
// must stay contiguous.
func (g *chatRing) add(m storedMessage, o longPollOptions) bool {
	if m.id < g.next {
		return false
	}
	if m.id > g.next {
		g.clear()
	}
	g.msgs = append(g.msgs, m)
	g.bytes += len(m.js)
	g.next = m.id + 1
	// The newest stays even when its escapes make it larger than MaxBytes
	// alone: it was accepted, so pollers get it.
	for n := len(g.msgs) - g.head; n > 1 && (n > o.MaxMessages || g.bytes > o.MaxBytes); n-- {
		g.bytes -= len(g.msgs[g.head].js)
		g.msgs[g.head] = storedMessage{}
		g.head++
	}
	// Compact once half the slice is dropped: amortized O(1) per message.
	if g.head > 0 && g.head >= len(g.msgs)/2 {
		n := copy(g.msgs, g.msgs[g.head:])
		clear(g.msgs[n:])
		g.msgs = g.msgs[:n]
		g.head = 0
	}
	return true
}

// from returns the kept messages with ids >= id.
func (g *chatRing) from(id int64) []storedMessage {
	k := g.kept()
	if i := id - g.first(); i > 0 {
		if i >= int64(len(k)) {
			return nil
		}
		return k[i:]
	}
	return k
}

// encodeBody is a message body as a JSON string, encoded once per process.
func encodeBody(body string) []byte {
	js, _ := json.Marshal(body) // a string always encodes
	return js
}

// encodeMessage is chatMessage{id, body} as json.Marshal writes it, from
// the body already encoded.
func encodeMessage(id int64, bodyJS []byte) []byte {
	js := make([]byte, 0, len(bodyJS)+32)
	js = append(js, `{"id":`...)
	js = strconv.AppendInt(js, id, 10)
	js = append(js, `,"body":`...)
	js = append(js, bodyJS...)
	return append(js, '}')
}

// chatFeed is the log's side that replicas read: the kept messages and the
// epoch, under a mutex, and the replicas to notify. Goroutine-safe.
type chatFeed struct {
	o     longPollOptions
	mu    sync.Mutex
	epoch int64
	ring  chatRing
	subs  []*feedSub
}

type feedSub struct {
	l       *loop.Loop
	notify  func()
	pending atomic.Bool // a run is queued on l
	run     func()
}

func newChatFeed(o longPollOptions, epoch int64) *chatFeed {
	return &chatFeed{o: o.withDefaults(), epoch: epoch, ring: newChatRing()}
}

// subscribe implements chatLog.
func (f *chatFeed) subscribe(l *loop.Loop, notify func()) {
	s := &feedSub{l: l, notify: notify}
	s.run = func() {
		// Cleared before reading: news arriving during the read queues
		// another run instead of being missed.
		s.pending.Store(false)
		s.notify()
	}
	f.mu.Lock()
	f.subs = append(f.subs, s)
	f.notifyLocked()
	f.mu.Unlock()
}

// notifyLocked queues a run on each replica's loop that has none queued,
// so the loops' queues hold at most one per replica however fast messages
// come. f.mu held.
func (f *chatFeed) notifyLocked() {
	for _, s := range f.subs {
		if !s.pending.Swap(true) {
			s.l.AddCallback(s.run)
		}
	}
}

// since implements chatLog.
func (f *chatFeed) since(epoch, next int64, dst []storedMessage) (int64, []storedMessage, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if epoch != f.epoch {
		return f.epoch, append(dst, f.ring.kept()...), true
	}
	return f.epoch, append(dst, f.ring.from(next)...), false
}

// put adds the message id of the log's epoch (a stale epoch or an id
// already passed is ignored) and notifies the replicas.
func (f *chatFeed) put(epoch, id int64, bodyJS []byte) {
	js := encodeMessage(id, bodyJS)
	f.mu.Lock()
	defer f.mu.Unlock()
	if epoch == f.epoch && f.ring.add(storedMessage{id, js}, f.o) {
		f.notifyLocked()
	}
}

// reset starts epoch with no messages; replicas drop theirs.
func (f *chatFeed) reset(epoch int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.epoch = epoch
	f.ring.clear()
	f.ring.next = 1
	f.notifyLocked()
}

// position returns the epoch and the id the next message must have.
func (f *chatFeed) position() (epoch, next int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.epoch, f.ring.next
}

// memoryChatLog orders messages with the feed's own counter: one process,
// any number of loops. Its epoch is the process's start, in microseconds
// (JavaScript numbers hold it exactly).
type memoryChatLog struct{ *chatFeed }

func newMemoryChatLog(o longPollOptions) *memoryChatLog {
	return &memoryChatLog{newChatFeed(o, time.Now().UnixMicro())}
}

// append implements chatLog: the message is in the feed, and every
// replica notified, before done is queued, so the posting loop's replica
// has it when done runs.
func (m *memoryChatLog) append(l *loop.Loop, body string, done func(int64, error)) error {
	bodyJS := encodeBody(body)
	m.mu.Lock()
	id := m.ring.next
	m.ring.add(storedMessage{id, encodeMessage(id, bodyJS)}, m.o)
	m.notifyLocked()
	m.mu.Unlock()
	l.AddCallback(func() { done(id, nil) })
	return nil
}

func (m *memoryChatLog) close() {}
