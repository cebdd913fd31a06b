// Package natsbroker lets Tornago hubs on several processes or machines
// share topics through NATS, instead of a cluster protocol of our own.
//
// A Hub given a Broker publishes every message to NATS and fans out what
// NATS delivers back, so each subscriber gets each message once whichever
// node published it. Topics map to NATS subjects as Prefix + topic (a
// history topic's as Prefix + "_h." + topic, so a plain topic may not
// start with the token "_h"): a topic must be a valid subject token
// sequence (no spaces, no '*' or '>').
//
// Publish never blocks its caller (the loop, when a handler publishes):
// nats.go's own Publish writes to the socket inline when its buffer fills,
// and then waits for the socket for up to its FlusherTimeout. The broker
// therefore queues publications, bounded, for one goroutine of its own that
// hands them to NATS in order; when the queue is full Publish returns
// ErrBacklog at once (an HTTP handler answers 503).
//
// Outages: while the connection to NATS is down (nats.go reconnecting),
// Publish returns ErrUnavailable at once rather than let nats.go buffer
// messages for a reconnect that may not come; subscriptions stay, and
// nats.go subscribes them again when it reconnects, so hubs receive again
// without doing anything. Core NATS keeps nothing for a disconnected
// subscriber: what other nodes publish during its outage it never gets;
// a topic that keeps history (below) gives it back.
//
// # History
//
// Broker is a pubsub.HistoryBroker over NATS JetStream. KeepHistory(topic, o)
// makes a JetStream stream for the topic (see KeepHistory for its name and
// subject), bounded by o and discarding its oldest messages; a message's
// position is the stream's sequence number, in the epoch of the stream's
// creation time (microseconds), so that every process on the NATS server
// gives a message the same position, and a client that comes back on
// another process resumes exactly where it left. Each process reads the
// stream with one ordered consumer per topic into a replica (a
// pubsub.HistoryBuffer under a mutex) that answers History and feeds
// SubscribeHistory without asking NATS.
//
// PublishAck (pubsub.AckPublisher) tells the publisher that position, from
// the stream's acknowledgement (a duplicate Nats-Msg-Id is acknowledged
// with the first publication's sequence), without blocking the caller:
// one goroutine per broker waits for the acks, in order.
//
// When the NATS server loses the stream (a restart with memory storage, a
// stream deleted by hand), the first process to notice makes it again,
// with a new creation time: every process's replica starts over in the new
// epoch (a position of the old one gets ErrHistoryGone) and its consumer
// reads the new stream from its start. Processes check after every
// reconnect and every Options.HistoryCheckEvery. Each history topic costs
// a process one JetStream consumer (one NATS subscription and its
// goroutine), whatever the number of subscribers.
//
// Memory per kept message: each process's replica holds the data plus
// about 70 to 100 bytes (a pubsub.Message, 64 bytes, the slice's spare
// capacity and the data allocation's rounding); the NATS server's memory
// store holds the data plus about 300 bytes (with a 15-byte subject: its
// message struct, index and per-subject state), although its own
// accounting, which the stream's MaxBytes limits, counts only subject +
// data + 16. TestHistoryMemoryCost measures both
// (go test -run MemoryCost -v), for 100-byte messages.
package natsbroker

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop/pubsub"
)

// ErrBacklog is returned by Publish when the broker's queue of publications
// waiting for NATS is over Options.MaxPending or Options.MaxPendingBytes:
// NATS (or the network to it) is not keeping up. The message is not sent.
var ErrBacklog = errors.New("natsbroker: publish queue full")

// ErrUnavailable is returned by Publish while the NATS connection is not
// connected (disconnected, reconnecting, draining or closed: see
// Broker.Connected). The message is not sent. It ends once nats.go has
// reconnected.
var ErrUnavailable = errors.New("natsbroker: NATS unavailable")

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("natsbroker: closed")

// Options configures a Broker. The zero value is ready to use.
type Options struct {
	// MaxPending bounds the publications queued for NATS. Default: 4096.
	MaxPending int
	// MaxPendingBytes bounds the payload bytes of the queued publications
	// (the broker copies each one). Default: 8 MiB.
	MaxPendingBytes int

	// FileStorage keeps history streams on the NATS server's disk rather
	// than in its memory: they then outlive a server restart, and their
	// positions with them. It applies to the streams this broker creates.
	FileStorage bool
	// HistoryCheckEvery is how often each history stream's identity is
	// checked besides after reconnects (one JetStream API request per
	// topic), to notice a stream deleted and made again. Default: 5 s.
	HistoryCheckEvery time.Duration
	// Logger receives history warnings (a stream lost, publications NATS
	// refused) and refused deliveries (Accept). Default: slog.Default().
	Logger *slog.Logger

	// Accept, when set, judges every message NATS delivers, on plain and
	// history topics alike, before any subscriber or replica sees it: the
	// NATS server is shared, and whatever can publish on it (another
	// program, a misconfigured node) must not reach clients with what a
	// client of the application could not send (invalid UTF-8 on a text
	// route, a message over the application's size bound). A message it
	// returns an error for is dropped and counted in Refused, and logged
	// (at most once a second). On a history topic the refused message keeps
	// its offset, so that positions stay the same on every process, but no
	// subscriber and no History answer ever gets it. It runs on the NATS
	// client's goroutines and must not block. Default: accept everything.
	Accept func(topic string, data []byte) error
}

// Broker is a pubsub.Broker over one NATS connection. Goroutine-safe.
type Broker struct {
	nc       *nats.Conn
	prefix   string
	maxBytes int64
	bytes    atomic.Int64 // payload bytes queued or being handed to NATS
	failed   atomic.Int64
	accept   func(topic string, data []byte) error
	refused  atomic.Int64
	// lastRefusal is the UnixNano of the last refused-delivery warning.
	lastRefusal atomic.Int64

	mu     sync.RWMutex // a send holds it shared, Close alone
	closed bool
	queue  chan publication
	done   chan struct{} // the publishing goroutine has ended
	// acks feeds the ack waiter (ack.go) the history publications whose
	// publisher wants their position, in publication order; acked is
	// closed when the waiter has ended.
	acks  chan pendingAck
	acked chan struct{}

	// up mirrors nc.Status() == CONNECTED, kept by watchStatus: Publish
	// must not ask nc, whose lock a Publish blocked on a stalled socket
	// holds.
	up      atomic.Bool
	status  chan nats.Status // nc's status events, for watchStatus
	watched chan struct{}    // watchStatus has ended

	history // history.go
}

type publication struct {
	topic string
	data  []byte
	hist  *histTopic // non-nil: published to the topic's stream
	id    string     // PublishWithID's: the stream's Nats-Msg-Id
	// ack is PublishAck's done, for a history publication (nil: none).
	ack func(pubsub.Position, error)
}

var _ pubsub.HistoryBroker = (*Broker)(nil)

// Goroutine-safe. New returns a broker publishing and subscribing on nc under subjects
// prefix+topic (for example prefix "tornago." and topic "room.go"), with
// default Options. The caller keeps ownership of nc: call Close, then close
// nc, after the hubs are done.
func New(nc *nats.Conn, prefix string) *Broker {
	return NewWithOptions(nc, prefix, Options{})
}

// Goroutine-safe. NewWithOptions is New with opts. It starts the broker's publishing
// goroutine, which Close ends.
func NewWithOptions(nc *nats.Conn, prefix string, opts Options) *Broker {
	if opts.MaxPending <= 0 {
		opts.MaxPending = 4096
	}
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = 8 << 20
	}
	if opts.HistoryCheckEvery <= 0 {
		opts.HistoryCheckEvery = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &Broker{
		nc:       nc,
		prefix:   prefix,
		maxBytes: int64(opts.MaxPendingBytes),
		accept:   opts.Accept,
		queue:    make(chan publication, opts.MaxPending),
		done:     make(chan struct{}),
		acks:     make(chan pendingAck, opts.MaxPending),
		acked:    make(chan struct{}),
		watched:  make(chan struct{}),
	}
	b.initHistory(opts)
	// Listening before reading the status leaves no gap for a change.
	b.status = nc.StatusChanged(nats.CONNECTED, nats.CONNECTING, nats.DISCONNECTED,
		nats.RECONNECTING, nats.DRAINING_SUBS, nats.DRAINING_PUBS, nats.CLOSED)
	b.up.Store(nc.Status() == nats.CONNECTED)
	go b.watchStatus()
	go b.publishLoop()
	go b.waitAcks()
	return b
}

// watchStatus keeps up current. nats.go drops events while the channel is
// full, so each event only says "look again": the status read after the
// last event received is the current one.
func (b *Broker) watchStatus() {
	defer close(b.watched)
	for range b.status {
		b.historyStatusChanged() // before up: no publication to a stream not checked since
		b.up.Store(b.nc.Status() == nats.CONNECTED)
	}
}

// Goroutine-safe, non-blocking. Connected reports whether the connection to NATS is up, that is whether
// Publish accepts messages (queue permitting). It follows nats.go's status
// events, a moment behind them. Goroutine-safe.
func (b *Broker) Connected() bool { return b.up.Load() }

func (b *Broker) publishLoop() {
	defer close(b.done)
	defer close(b.acks) // after the last publication: the waiter ends
	for p := range b.queue {
		// nats.go copies data into its buffer (or writes it) before it
		// returns; this goroutine may wait here, the loop does not.
		if p.hist != nil {
			b.publishHistory(p)
		} else if err := b.nc.Publish(b.prefix+p.topic, p.data); err != nil {
			b.failed.Add(1)
		}
		b.bytes.Add(-int64(len(p.data)))
	}
}

// Goroutine-safe, non-blocking (a loop may call it). Publish implements pubsub.Broker: it copies data and queues it for the
// broker's goroutine, which publishes in the order of the Publish calls.
// On a topic that keeps history (KeepHistory) it publishes to the topic's
// stream and waits for the stream's acknowledgement off the caller's
// goroutine (a refusal or no ack within 5 s counts in Failed); right after
// a reconnect it returns ErrUnavailable until the stream is checked. A
// topic whose first token is "_h" is refused: those subjects are history
// streams'.
// It never waits for NATS: after Close it returns ErrClosed, while NATS is
// not connected ErrUnavailable, when the queue is full ErrBacklog. A
// publication accepted just before an outage was noticed is kept by
// nats.go until it reconnects (its ReconnectBufSize); one NATS refuses
// (connection closed, reconnect buffer full) is counted in Failed. The
// caller may reuse data at once. Goroutine-safe.
func (b *Broker) Publish(topic string, data []byte) error {
	return b.publish(topic, data, "", nil)
}

func (b *Broker) publish(topic string, data []byte, id string, ack func(pubsub.Position, error)) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	switch {
	case b.closed:
		return fmt.Errorf("natsbroker: publish %q: %w", b.prefix+topic, ErrClosed)
	case !b.up.Load():
		return fmt.Errorf("natsbroker: publish %q: %w", b.prefix+topic, ErrUnavailable)
	}
	t := b.histTopic(topic)
	if t == nil && reserved(topic) {
		return fmt.Errorf("natsbroker: publish %q: %w", topic, errReserved)
	}
	if t != nil && !t.ready.Load() {
		return fmt.Errorf("natsbroker: publish %q: %w (the stream is being checked after a reconnect)", t.subject, ErrUnavailable)
	}
	n := int64(len(data))
	if b.bytes.Add(n) > b.maxBytes {
		b.bytes.Add(-n)
		return fmt.Errorf("natsbroker: publish %q: %w", b.prefix+topic, ErrBacklog)
	}
	p := publication{topic: topic, data: append([]byte(nil), data...), hist: t}
	if t != nil {
		p.id, p.ack = id, ack
	}
	select {
	case b.queue <- p:
		if t == nil && ack != nil {
			ack(pubsub.Position{}, nil) // core NATS: no ack, no position
		}
		return nil
	default:
		b.bytes.Add(-n)
		return fmt.Errorf("natsbroker: publish %q: %w", b.prefix+topic, ErrBacklog)
	}
}

// Goroutine-safe.
// Refused returns how many messages NATS delivered that Options.Accept
// refused (dropped).
func (b *Broker) Refused() int64 { return b.refused.Load() }

// accepts reports whether Options.Accept lets data of topic through, and
// counts and logs a refusal. It runs on the NATS client's goroutines.
func (b *Broker) accepts(topic string, data []byte) bool {
	if b.accept == nil {
		return true
	}
	err := b.accept(topic, data)
	if err == nil {
		return true
	}
	b.refused.Add(1)
	now := time.Now().UnixNano()
	if last := b.lastRefusal.Load(); now-last >= int64(time.Second) && b.lastRefusal.CompareAndSwap(last, now) {
		b.log.Warn("natsbroker: refused a message from NATS", "topic", topic, "bytes", len(data), "err", err, "refused", b.refused.Load())
	}
	return false
}

// Goroutine-safe, non-blocking. Failed returns how many accepted publications NATS refused (for a
// history topic: that its stream did not acknowledge). Goroutine-safe.
func (b *Broker) Failed() int64 { return b.failed.Load() }

// Goroutine-safe; it blocks (never call it on a loop). Close refuses further publications, waits until the queued ones are
// handed to NATS (each write bounded by nc's FlusherTimeout; quick when nc
// is already closed) and the history ones acknowledged (at most 5 s), stops
// the history consumers (no deliver runs once Close returns) and ends the
// broker's goroutines. Plain subscriptions stay until their cancel or nc's
// close. Goroutine-safe; later calls return once the first has.
func (b *Broker) Close() {
	b.mu.Lock()
	first := !b.closed
	if first {
		b.closed = true
		close(b.queue)
	}
	b.mu.Unlock()
	<-b.done
	<-b.acked // each wait bounded: at most ackTimeout past Close
	if first {
		b.closeHistory()
		b.nc.RemoveStatusListener(b.status) // closes it: watchStatus ends
	}
	<-b.watched
}

// Goroutine-safe; it may block on the NATS connection (a Hub calls it off its loop). Subscribe implements pubsub.Broker. deliver runs on the NATS client's
// goroutine for the subscription; the Hub moves it onto its loop. It works
// while NATS is down too (nats.go sends the subscription on reconnect),
// and a subscription outlives outages; only a closed nc refuses it.
//
// On a topic that keeps history (KeepHistory called before), deliver gets
// the data of SubscribeHistory's messages instead, from the replica; the
// data is shared with the replica and must not be modified. A topic whose
// first token is "_h" is refused. Goroutine-safe.
func (b *Broker) Subscribe(topic string, deliver func([]byte)) (func(), error) {
	if t := b.histTopic(topic); t != nil {
		return t.subscribe(&histSub{data: deliver}), nil
	}
	if reserved(topic) {
		return nil, fmt.Errorf("natsbroker: subscribe %q: %w", topic, errReserved)
	}
	sub, err := b.nc.Subscribe(b.prefix+topic, func(m *nats.Msg) {
		if b.accepts(topic, m.Data) {
			deliver(m.Data)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("natsbroker: subscribe %q: %w", b.prefix+topic, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
