// Package natsbroker lets Tornago hubs on several processes or machines
// share topics through NATS, instead of a cluster protocol of our own.
//
// A Hub given a Broker publishes every message to NATS and fans out what
// NATS delivers back, so each subscriber gets each message once whichever
// node published it. Topics map to NATS subjects as Prefix + topic: a
// topic must be a valid subject token sequence (no spaces, no '*' or '>').
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
// subscriber: what other nodes publish during its outage it never gets.
package natsbroker

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop"
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
}

// Broker is a loop.Broker over one NATS connection. Goroutine-safe.
type Broker struct {
	nc       *nats.Conn
	prefix   string
	maxBytes int64
	bytes    atomic.Int64 // payload bytes queued or being handed to NATS
	failed   atomic.Int64

	mu     sync.RWMutex // a send holds it shared, Close alone
	closed bool
	queue  chan publication
	done   chan struct{} // the publishing goroutine has ended

	// up mirrors nc.Status() == CONNECTED, kept by watchStatus: Publish
	// must not ask nc, whose lock a Publish blocked on a stalled socket
	// holds.
	up      atomic.Bool
	status  chan nats.Status // nc's status events, for watchStatus
	watched chan struct{}    // watchStatus has ended
}

type publication struct {
	topic string
	data  []byte
}

var _ loop.Broker = (*Broker)(nil)

// New returns a broker publishing and subscribing on nc under subjects
// prefix+topic (for example prefix "tornago." and topic "room.go"), with
// default Options. The caller keeps ownership of nc: call Close, then close
// nc, after the hubs are done.
func New(nc *nats.Conn, prefix string) *Broker {
	return NewWithOptions(nc, prefix, Options{})
}

// NewWithOptions is New with opts. It starts the broker's publishing
// goroutine, which Close ends.
func NewWithOptions(nc *nats.Conn, prefix string, opts Options) *Broker {
	if opts.MaxPending <= 0 {
		opts.MaxPending = 4096
	}
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = 8 << 20
	}
	b := &Broker{
		nc:       nc,
		prefix:   prefix,
		maxBytes: int64(opts.MaxPendingBytes),
		queue:    make(chan publication, opts.MaxPending),
		done:     make(chan struct{}),
		watched:  make(chan struct{}),
	}
	// Listening before reading the status leaves no gap for a change.
	b.status = nc.StatusChanged(nats.CONNECTED, nats.CONNECTING, nats.DISCONNECTED,
		nats.RECONNECTING, nats.DRAINING_SUBS, nats.DRAINING_PUBS, nats.CLOSED)
	b.up.Store(nc.Status() == nats.CONNECTED)
	go b.watchStatus()
	go b.publishLoop()
	return b
}

// watchStatus keeps up current. nats.go drops events while the channel is
// full, so each event only says "look again": the status read after the
// last event received is the current one.
func (b *Broker) watchStatus() {
	defer close(b.watched)
	for range b.status {
		b.up.Store(b.nc.Status() == nats.CONNECTED)
	}
}

// Connected reports whether the connection to NATS is up, that is whether
// Publish accepts messages (queue permitting). It follows nats.go's status
// events, a moment behind them. Goroutine-safe.
func (b *Broker) Connected() bool { return b.up.Load() }

func (b *Broker) publishLoop() {
	defer close(b.done)
	for p := range b.queue {
		// nats.go copies data into its buffer (or writes it) before it
		// returns; this goroutine may wait here, the loop does not.
		if err := b.nc.Publish(b.prefix+p.topic, p.data); err != nil {
			b.failed.Add(1)
		}
		b.bytes.Add(-int64(len(p.data)))
	}
}

// Publish implements loop.Broker: it copies data and queues it for the
// broker's goroutine, which publishes in the order of the Publish calls.
// It never waits for NATS: after Close it returns ErrClosed, while NATS is
// not connected ErrUnavailable, when the queue is full ErrBacklog. A
// publication accepted just before an outage was noticed is kept by
// nats.go until it reconnects (its ReconnectBufSize); one NATS refuses
// (connection closed, reconnect buffer full) is counted in Failed. The
// caller may reuse data at once. Goroutine-safe.
func (b *Broker) Publish(topic string, data []byte) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	switch {
	case b.closed:
		return fmt.Errorf("natsbroker: publish %q: %w", b.prefix+topic, ErrClosed)
	case !b.up.Load():
		return fmt.Errorf("natsbroker: publish %q: %w", b.prefix+topic, ErrUnavailable)
	}
	n := int64(len(data))
	if b.bytes.Add(n) > b.maxBytes {
		b.bytes.Add(-n)
		return fmt.Errorf("natsbroker: publish %q: %w", b.prefix+topic, ErrBacklog)
	}
	p := publication{topic: topic, data: append([]byte(nil), data...)}
	select {
	case b.queue <- p:
		return nil
	default:
		b.bytes.Add(-n)
		return fmt.Errorf("natsbroker: publish %q: %w", b.prefix+topic, ErrBacklog)
	}
}

// Failed returns how many accepted publications NATS refused.
// Goroutine-safe.
func (b *Broker) Failed() int64 { return b.failed.Load() }

// Close refuses further publications, waits until the queued ones are
// handed to NATS (each write bounded by nc's FlusherTimeout; quick when nc
// is already closed) and ends the broker's goroutines. Subscriptions stay
// until their cancel or nc's close. Goroutine-safe; later calls return
// once the first has.
func (b *Broker) Close() {
	b.mu.Lock()
	first := !b.closed
	if first {
		b.closed = true
		close(b.queue)
	}
	b.mu.Unlock()
	<-b.done
	if first {
		b.nc.RemoveStatusListener(b.status) // closes it: watchStatus ends
	}
	<-b.watched
}

// Subscribe implements loop.Broker. deliver runs on the NATS client's
// goroutine for the subscription; the Hub moves it onto its loop. It works
// while NATS is down too (nats.go sends the subscription on reconnect),
// and a subscription outlives outages; only a closed nc refuses it.
func (b *Broker) Subscribe(topic string, deliver func([]byte)) (func(), error) {
	sub, err := b.nc.Subscribe(b.prefix+topic, func(m *nats.Msg) { deliver(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("natsbroker: subscribe %q: %w", b.prefix+topic, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
