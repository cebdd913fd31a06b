package loop

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Broker carries publications between hubs: several loops in one process
// (MemoryBroker), or several machines through a message broker such as
// NATS. A Hub publishes every message to its broker and fans out only what
// the broker delivers back, so a message reaches each subscriber once
// whichever node published it. Implementations must be goroutine-safe and
// must not block for long in Publish or Subscribe.
type Broker interface {
	// Publish sends data to every subscriber of topic, this node's
	// included. The broker may keep data only until Publish returns.
	Publish(topic string, data []byte) error
	// Subscribe arranges for deliver to be called, on any goroutine, with
	// each message published on topic, until cancel is called. deliver may
	// keep data.
	Subscribe(topic string, deliver func(data []byte)) (cancel func(), err error)
}

// Hub fans messages out to the WebSockets subscribed to a topic (a chat
// room, a ticker symbol): each message is framed once and the same bytes
// are written to every subscriber. A subscriber that closes is dropped from
// all its topics at once (after its OnClose), so OnClose need not
// unsubscribe; a topic left without subscribers is dropped and its broker
// subscription cancelled. A slow subscriber is closed by the
// MaxBufferedBytes rule of its route and never delays the others.
//
// Messages that reach the hub from other goroutines (Publish off the loop
// without a broker, and every broker delivery) wait for the loop in its
// queue of data from other goroutines, bounded by Options.MaxQueuedBytes:
// beyond it Publish returns ErrLoopBacklog and a broker delivery is
// dropped and counted in Dropped.
type Hub struct {
	l      *Loop
	broker Broker
	typ    MessageType
	topics map[string]*hubTopic
	// byWS holds each subscriber's topics, so that a close costs
	// O(its topics), not a scan of every subscriber.
	byWS     map[*WebSocket][]*hubTopic
	watching bool // forget is registered as a close observer
	// byStream holds each event stream's history topics (SubscribeStream).
	byStream        map[*EventStream][]*hubTopic
	watchingStreams bool         // forgetStream is registered
	failed          []*WebSocket // fanOut's scratch: subscribers whose write failed
	frame           []byte       // SubscribeSince's scratch: one replayed frame
	dropped         atomic.Int64 // broker deliveries dropped for the loop's backlog
}

type hubTopic struct {
	name   string
	subs   map[*WebSocket]struct{}
	cancel func()        // the broker subscription, nil without a broker
	hist   *topicHistory // nil when the topic keeps no history
}

// NewHub returns a hub on l sending messages of type typ (Text or
// Binary). broker may be nil: topics are then local to this loop.
// Goroutine-safe.
func NewHub(l *Loop, typ MessageType, broker Broker) *Hub {
	return &Hub{l: l, broker: broker, typ: typ, topics: map[string]*hubTopic{}, byWS: map[*WebSocket][]*hubTopic{},
		byStream: map[*EventStream][]*hubTopic{}}
}

// Subscribe adds w, a WebSocket of the hub's loop, to topic; subscribing
// twice is a no-op. A closed or closing w gets ErrWebSocketClosed.
// Loop-only. With a broker, the first local subscriber of a topic
// subscribes the hub to the broker.
func (h *Hub) Subscribe(topic string, w *WebSocket) error {
	if !w.writable() {
		return fmt.Errorf("loop: hub subscribe %q: %w", topic, ErrWebSocketClosed)
	}
	if !h.watching {
		h.watching = true
		h.l.onWebSocketClose(h.forget)
	}
	t := h.topics[topic]
	if t == nil {
		t = &hubTopic{name: topic, subs: map[*WebSocket]struct{}{}}
		if h.broker != nil {
			cancel, err := h.broker.Subscribe(topic, func(data []byte) { h.deliver(topic, data) })
			if err != nil {
				return fmt.Errorf("loop: hub subscribe %q: %w", topic, err)
			}
			t.cancel = cancel
		}
		h.topics[topic] = t
	}
	if t.has(w) {
		return nil
	}
	t.subs[w] = struct{}{}
	h.byWS[w] = append(h.byWS[w], t)
	return nil
}

// has reports whether w is subscribed to t, with positions or without.
func (t *hubTopic) has(w *WebSocket) bool {
	if _, ok := t.subs[w]; ok {
		return true
	}
	if t.hist != nil {
		_, ok := t.hist.pos[w]
		return ok
	}
	return false
}

// remove drops w from t's subscribers.
func (t *hubTopic) remove(w *WebSocket) {
	delete(t.subs, w)
	if t.hist != nil {
		delete(t.hist.pos, w)
	}
}

// deliver moves a broker delivery onto the loop; it runs on the broker's
// goroutine (or the publisher's, for MemoryBroker).
func (h *Hub) deliver(topic string, data []byte) {
	if err := h.l.addDataCallback(len(data), func() { h.fanOut(topic, data) }); errors.Is(err, ErrLoopBacklog) {
		h.dropped.Add(1)
	}
}

// Dropped returns how many broker deliveries the hub dropped because the
// loop's queue of data from other goroutines was over
// Options.MaxQueuedBytes (the loop was not keeping up). Goroutine-safe.
func (h *Hub) Dropped() int64 { return h.dropped.Load() }

// Unsubscribe removes w from topic. Loop-only.
func (h *Hub) Unsubscribe(topic string, w *WebSocket) {
	t := h.topics[topic]
	if t == nil {
		return
	}
	if !t.has(w) {
		return
	}
	t.remove(w)
	ts := h.byWS[w]
	for i, x := range ts {
		if x == t {
			ts[i] = ts[len(ts)-1]
			ts[len(ts)-1] = nil
			ts = ts[:len(ts)-1]
			break
		}
	}
	if len(ts) == 0 {
		delete(h.byWS, w)
	} else {
		h.byWS[w] = ts
	}
	h.dropIfEmpty(t)
}

// forget removes w from all its topics: it closed, or a write to it
// failed. Loop-only.
func (h *Hub) forget(w *WebSocket) {
	ts, ok := h.byWS[w]
	if !ok {
		return
	}
	delete(h.byWS, w)
	for _, t := range ts {
		t.remove(w)
		h.dropIfEmpty(t)
	}
}

// Subscribers returns how many open connections are subscribed to topic.
// Loop-only.
func (h *Hub) Subscribers(topic string) int {
	n := 0
	if t := h.topics[topic]; t != nil {
		for w := range t.subs {
			if w.state == wsOpen {
				n++
			}
		}
		if t.hist != nil {
			for w := range t.hist.pos {
				if w.state == wsOpen {
					n++
				}
			}
		}
	}
	return n
}

// Publish sends data to every subscriber of topic. Goroutine-safe; data
// may be reused once Publish returns. With a broker it returns the
// broker's error (natsbroker's ErrBacklog when its queue is full,
// ErrUnavailable while NATS is down).
// Without one, a call on the loop writes to the subscribers before it
// returns, and a call from another goroutine copies data for the loop or
// returns ErrLoopBacklog (see Options.MaxQueuedBytes).
//
// On a topic that keeps history without a broker, the message gets the
// topic's next position when it reaches the loop.
func (h *Hub) Publish(topic string, data []byte) error {
	if h.broker != nil {
		if err := h.broker.Publish(topic, data); err != nil {
			return fmt.Errorf("loop: hub publish %q: %w", topic, err)
		}
		return nil
	}
	if h.l.InLoop() {
		if t := h.topics[topic]; t != nil && t.hist != nil {
			data = append([]byte(nil), data...) // the history keeps it
		}
		h.fanOut(topic, data)
		return nil
	}
	cp := append([]byte(nil), data...)
	if err := h.l.addDataCallback(len(cp), func() { h.fanOut(topic, cp) }); err != nil {
		return fmt.Errorf("loop: hub publish %q: %w", topic, err)
	}
	return nil
}

func (h *Hub) fanOut(topic string, data []byte) {
	t := h.topics[topic]
	if t == nil {
		return
	}
	if t.hist != nil && t.hist.local != nil {
		// A history topic without a broker: the hub orders it.
		h.fanOutMessage(t, Message{Pos: t.hist.local.Next(), Data: data, Time: time.Now()})
		return
	}
	h.writeAll(t, prepareMessage(h.typ, data))
	h.dropIfEmpty(t)
}

// writeAll writes p to t's subscribers without positions and forgets the
// ones whose write failed.
func (h *Hub) writeAll(t *hubTopic, p *PreparedMessage) {
	failed := h.failed[:0]
	h.failed = nil // a nested fanOut (from an OnClose) gets its own
	for w := range t.subs {
		if w.WritePrepared(p) != nil {
			failed = append(failed, w) // closed, or just closed as a slow consumer
		}
	}
	h.forgetFailed(failed)
}

func (h *Hub) forgetFailed(failed []*WebSocket) {
	for i, w := range failed {
		h.forget(w)
		failed[i] = nil
	}
	h.failed = failed[:0]
}

// dropIfEmpty drops t once it has no subscriber; a no-op for a topic
// already dropped.
func (h *Hub) dropIfEmpty(t *hubTopic) {
	// A history topic stays: it must order (or follow) every message,
	// subscribers or not, for those that come back.
	if len(t.subs) > 0 || t.hist != nil || h.topics[t.name] != t {
		return
	}
	delete(h.topics, t.name)
	if t.cancel != nil {
		t.cancel()
	}
}

// MemoryBroker is a Broker inside one process: it lets hubs on several
// loops (a Group's, say) share topics. Publications are delivered in one
// order, the same for every subscriber, even from concurrent publishers:
// a topic's messages reach every loop in the same sequence. It is a
// HistoryBroker: a topic given KeepHistory gets positions and a history
// shared by every loop (in this process's memory; its epoch is the time
// KeepHistory first ran, so a restart starts a new one). Goroutine-safe;
// a deliver function must not call Publish (Hub's only queues the message
// for its loop).
type MemoryBroker struct {
	pub  sync.Mutex // serialises Publish, for one order of delivery
	mu   sync.Mutex
	subs map[string]map[*memorySub]struct{}
	hist map[string]*HistoryBuffer
	buf  []*memorySub // Publish's scratch, under pub
}

type memorySub struct {
	deliver func([]byte)
	msg     func(Message) // a SubscribeHistory subscriber's, instead of deliver
}

// Publish implements Broker. Each subscriber gets its own copy of data;
// on a history topic the subscribers share the one the history keeps.
func (b *MemoryBroker) Publish(topic string, data []byte) error {
	b.pub.Lock()
	defer b.pub.Unlock()
	b.mu.Lock()
	subs := b.buf[:0]
	for s := range b.subs[topic] {
		subs = append(subs, s)
	}
	var m Message
	hist := b.hist[topic]
	if hist != nil {
		m = Message{Pos: hist.Next(), Data: append([]byte(nil), data...), Time: time.Now()}
		hist.Add(m)
	}
	b.mu.Unlock()
	for i, s := range subs {
		switch {
		case s.msg != nil:
			s.msg(m)
		case hist != nil:
			s.deliver(m.Data)
		default:
			s.deliver(append([]byte(nil), data...))
		}
		subs[i] = nil
	}
	b.buf = subs[:0]
	return nil
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(topic string, deliver func([]byte)) (func(), error) {
	return b.subscribe(topic, &memorySub{deliver: deliver}), nil
}

func (b *MemoryBroker) subscribe(topic string, s *memorySub) func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs = map[string]map[*memorySub]struct{}{}
	}
	if b.subs[topic] == nil {
		b.subs[topic] = map[*memorySub]struct{}{}
	}
	b.subs[topic][s] = struct{}{}
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs[topic], s)
		if len(b.subs[topic]) == 0 {
			delete(b.subs, topic)
		}
	}
}

// KeepHistory implements HistoryBroker. A second call for the topic keeps
// the first call's options.
func (b *MemoryBroker) KeepHistory(topic string, o HistoryOptions) error {
	if !o.keeps() {
		return fmt.Errorf("loop: memory broker keep history %q: %w: no bound set", topic, ErrNoHistory)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hist == nil {
		b.hist = map[string]*HistoryBuffer{}
	}
	if b.hist[topic] == nil {
		b.hist[topic] = NewHistoryBuffer(o, time.Now().UnixMicro())
	}
	return nil
}

// SubscribeHistory implements HistoryBroker.
func (b *MemoryBroker) SubscribeHistory(topic string, deliver func(Message)) (Position, func(), error) {
	// Under pub no message is being ordered: every message after head
	// reaches the new subscriber, and none before.
	b.pub.Lock()
	defer b.pub.Unlock()
	b.mu.Lock()
	hist := b.hist[topic]
	var head Position
	if hist != nil {
		head = hist.Head()
	}
	b.mu.Unlock()
	if hist == nil {
		return Position{}, nil, fmt.Errorf("loop: memory broker subscribe %q: %w", topic, ErrNoHistory)
	}
	return head, b.subscribe(topic, &memorySub{msg: deliver}), nil
}

// History implements HistoryBroker.
func (b *MemoryBroker) History(topic string, after Position, upTo int64, dst []Message) ([]Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	hist := b.hist[topic]
	if hist == nil {
		return dst, fmt.Errorf("loop: memory broker history %q: %w", topic, ErrNoHistory)
	}
	return hist.After(after, upTo, time.Now(), dst)
}
