package loop

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
)

// ErrHubClosed is returned by a Hub's methods once Close ran.
var ErrHubClosed = errors.New("loop: hub closed")

// Hub fans messages out to the WebSockets subscribed to a topic (a chat
// room, a ticker symbol): each message is framed once and the same bytes
// are written to every subscriber. A subscriber that closes is dropped from
// all its topics at once (after its OnClose), so OnClose need not
// unsubscribe; a topic left without subscribers is dropped and its broker
// subscription cancelled. A slow subscriber is closed by the
// MaxUnsentPerConn rule of its route and never delays the others. A hub
// that is no longer needed (a room's) is released with Close.
//
// The hub never calls a broker method that may block on the loop (see
// pubsub.Broker): it subscribes, cancels and keeps history on a goroutine
// of its own, one call after the other in the order the loop asked for
// them, and the results come back through the loop's queue. A topic's
// first subscriber therefore gets messages from the broker once the
// broker subscription is made; a Publish on the loop to a topic whose
// broker calls are still under way waits behind them, so that this hub's
// subscribers get their own messages.
//
// Its methods are loop-only (off the loop they return ErrNotOnLoop), but
// for NewHub, Dropped and PublishAsync, the door for other goroutines.
// Messages that reach the hub from other goroutines (PublishAsync, and
// every broker delivery) wait for the loop in its queue of data from other
// goroutines, bounded by Options.MaxAsyncBytes: beyond it PublishAsync
// returns ErrLoopBacklog and a broker delivery is dropped and counted in
// Dropped.
type Hub struct {
	l      *Loop
	broker pubsub.Broker
	typ    MessageType
	topics map[string]*hubTopic
	// byWS holds each subscriber's topics, so that a close costs
	// O(its topics), not a scan of every subscriber.
	byWS    map[*WebSocket][]*hubTopic
	unwatch func() // removes forget from the loop's close observers; nil while not registered
	// byStream holds each event stream's history topics (SubscribeStream).
	byStream       map[*EventStream][]*hubTopic
	unwatchStreams func()                  // removes forgetStream; nil while not registered
	keeping        map[string]*pendingKeep // KeepHistory calls waiting for the broker
	ops            brokerOps               // broker calls, off the loop, in order
	closed         atomic.Bool             // Close ran
	failed         []*WebSocket            // fanOut's scratch: subscribers whose write failed
	frame          []byte                  // SubscribeSince's scratch: one replayed frame
	frameFn        FrameFunc               // SetFrame's; nil: "E-N\n" + data
	dropped        atomic.Int64            // broker deliveries dropped for the loop's backlog
}

type hubTopic struct {
	name string
	subs map[*WebSocket]struct{}
	// sub is the topic's broker subscription (plain, or SubscribeHistory's
	// once the topic keeps history), nil without a broker. Deliveries of
	// any other subscription (one being replaced or cancelled) are
	// ignored.
	sub *brokerSub
	// inflight counts the broker calls queued for this topic whose result
	// has not reached the loop yet; a Publish on the loop waits behind
	// them while it is not 0.
	inflight int
	hist     *topicHistory // nil when the topic keeps no history
	// followers get every message's data on the loop (Follow); each
	// counts as a subscriber.
	followers map[*hubFollower]struct{}
}

type hubFollower struct{ fn func(data []byte) }

// brokerSub is one broker subscription of a hub. cancel is written and
// read only by the hub's broker goroutine (brokerOps), in order.
type brokerSub struct{ cancel func() }

// brokerOps runs a hub's broker calls off the loop, one at a time in the
// order they were queued, on a goroutine that lives while there is work:
// a broker may block (nats.go's Subscribe takes the connection's lock,
// which a stalled publish holds), and the order keeps a topic's subscribe
// before its cancel.
type brokerOps struct {
	mu      sync.Mutex
	queue   []func()
	running bool
	log     *slog.Logger
}

// run queues op. Goroutine-safe.
func (q *brokerOps) run(op func()) {
	q.mu.Lock()
	q.queue = append(q.queue, op)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.drain()
	}
}

func (q *brokerOps) drain() {
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.queue, q.running = nil, false
			q.mu.Unlock()
			return
		}
		op := q.queue[0]
		q.queue[0] = nil
		q.queue = q.queue[1:]
		q.mu.Unlock()
		q.call(op)
	}
}

// call runs op; a panicking broker is logged, not fatal to the process.
func (q *brokerOps) call(op func()) {
	defer func() {
		if r := recover(); r != nil {
			q.log.Error("hub: broker call panicked", "panic", r)
		}
	}()
	op()
}

// Goroutine-safe.
// NewHub returns a hub on l sending messages of type typ (Text or
// Binary). broker may be nil: topics are then local to this loop.
func NewHub(l *Loop, typ MessageType, broker pubsub.Broker) *Hub {
	return &Hub{l: l, broker: broker, typ: typ, topics: map[string]*hubTopic{}, byWS: map[*WebSocket][]*hubTopic{},
		byStream: map[*EventStream][]*hubTopic{}, keeping: map[string]*pendingKeep{}, ops: brokerOps{log: l.log}}
}

// onLoop reports whether the caller may use the hub's loop-only state: on
// the loop, or before the loop started (while setting it up).
func (h *Hub) onLoop() bool { return h.l.InLoop() || h.l.state.Load() == stateNew }

// watch registers forget as a close observer once.
func (h *Hub) watch() {
	if h.unwatch == nil {
		h.unwatch = h.l.onWebSocketClose(h.forget)
	}
}

// Loop-only (off the loop: ErrNotOnLoop).
// Subscribe adds w, a WebSocket of the hub's loop, to topic; subscribing
// twice is a no-op. A closed or closing w gets
// ErrWebSocketClosed, a closed hub ErrHubClosed. With a broker, the first
// local subscriber of a topic subscribes the hub to the broker, off the
// loop: if the broker refuses, the error is logged and the topic's
// subscribers are closed with CloseInternalError (their clients reconnect
// and subscribe again).
func (h *Hub) Subscribe(topic string, w *WebSocket) error {
	switch {
	case !h.onLoop():
		return fmt.Errorf("loop: hub subscribe %q: %w", topic, ErrNotOnLoop)
	case h.closed.Load():
		return fmt.Errorf("loop: hub subscribe %q: %w", topic, ErrHubClosed)
	case !w.writable():
		return fmt.Errorf("loop: hub subscribe %q: %w", topic, ErrWebSocketClosed)
	}
	h.watch()
	t := h.plainTopic(topic)
	if t.has(w) {
		return nil
	}
	t.subs[w] = struct{}{}
	h.byWS[w] = append(h.byWS[w], t)
	return nil
}

// plainTopic returns topic, made (and subscribed to the broker) if
// needed. Loop-only.
func (h *Hub) plainTopic(topic string) *hubTopic {
	t := h.topics[topic]
	if t == nil {
		t = &hubTopic{name: topic, subs: map[*WebSocket]struct{}{}}
		h.topics[topic] = t
		if b := h.broker; b != nil {
			bs := &brokerSub{}
			t.sub = bs
			h.queueTopic(t, func() error {
				cancel, err := b.Subscribe(topic, func(data []byte) { h.deliver(topic, bs, data) })
				bs.cancel = cancel
				return err
			}, func(err error) { h.subscribeFailed(t, bs, err) })
		}
	}
	return t
}

// Loop-only (off the loop: ErrNotOnLoop).
// Follow calls fn on the loop with the data of every message published
// on topic after this call, until cancel (loop-only) is called: an
// application with its own subscribers (other transports, its own framing
// per message) follows a topic once per loop and fans out itself. A
// follower counts as a subscriber: the topic and its broker subscription
// stay while it follows. On a history topic fn gets the data without the
// position (use Watch for those). fn must treat data as read-only and not
// keep it past its return; a panic in fn is recovered and logged. If the
// broker refuses the topic's subscription, the error is logged and fn gets
// nothing more.
func (h *Hub) Follow(topic string, fn func(data []byte)) (cancel func(), err error) {
	if !h.onLoop() {
		return nil, fmt.Errorf("loop: hub follow %q: %w", topic, ErrNotOnLoop)
	}
	if h.closed.Load() {
		return nil, fmt.Errorf("loop: hub follow %q: %w", topic, ErrHubClosed)
	}
	t := h.plainTopic(topic)
	if t.followers == nil {
		t.followers = map[*hubFollower]struct{}{}
	}
	f := &hubFollower{fn: fn}
	t.followers[f] = struct{}{}
	return func() {
		if _, ok := t.followers[f]; !ok {
			return
		}
		delete(t.followers, f)
		h.dropIfEmpty(t)
	}, nil
}

// tellFollowers gives data to t's followers. Loop-only.
func (h *Hub) tellFollowers(t *hubTopic, data []byte) {
	for f := range t.followers {
		h.l.safeCall(func() { f.fn(data) })
	}
}

// queueTopic runs work off the loop (after every broker call queued
// before), then after with its result on the loop. Loop-only.
func (h *Hub) queueTopic(t *hubTopic, work func() error, after func(error)) {
	t.inflight++
	h.ops.run(func() {
		err := work()
		h.l.AddCallback(func() {
			t.inflight--
			if after != nil {
				after(err)
			}
		})
	})
}

// cancelSub cancels bs off the loop, after the call that made it.
func (h *Hub) cancelSub(bs *brokerSub) {
	h.ops.run(func() {
		if bs.cancel != nil {
			bs.cancel()
			bs.cancel = nil
		}
	})
}

// subscribeFailed handles a broker Subscribe's result on the loop: on an
// error it drops the topic, and closes its subscribers, which would
// otherwise wait for messages that never come.
func (h *Hub) subscribeFailed(t *hubTopic, bs *brokerSub, err error) {
	if err == nil || h.topics[t.name] != t || t.sub != bs {
		return
	}
	h.l.log.Error("hub: broker subscribe failed: closing the topic's subscribers", "topic", t.name, "err", err)
	delete(h.topics, t.name)
	t.sub = nil
	for w := range t.subs {
		t.remove(w)
		h.dropFromWS(w, t)
		w.Close(CloseInternalError, "broker unavailable")
	}
}

// has reports whether w is subscribed to t, with positions or without.
func (t *hubTopic) has(w *WebSocket) bool {
	if _, ok := t.subs[w]; ok {
		return true
	}
	if t.hist != nil {
		_, ok := t.hist.pos[w]
		return ok || t.hist.wsReplays[w] != nil
	}
	return false
}

// remove drops w from t's subscribers.
func (t *hubTopic) remove(w *WebSocket) {
	delete(t.subs, w)
	if t.hist != nil {
		delete(t.hist.pos, w)
		delete(t.hist.wsReplays, w)
	}
}

// deliver moves a delivery of broker subscription bs onto the loop; it
// runs on the broker's goroutine (or the publisher's, for MemoryBroker).
func (h *Hub) deliver(topic string, bs *brokerSub, data []byte) {
	if err := h.l.addDataCallback(len(data), func() {
		if t := h.topics[topic]; t != nil && t.sub == bs {
			h.fanOut(topic, data)
		}
	}); errors.Is(err, ErrLoopBacklog) {
		h.dropped.Add(1)
	}
}

// Goroutine-safe.
// Dropped returns how many broker deliveries the hub dropped because the
// loop's queue of data from other goroutines was over
// Options.MaxAsyncBytes (the loop was not keeping up).
func (h *Hub) Dropped() int64 { return h.dropped.Load() }

// Loop-only.
// Unsubscribe removes w from topic; a w not subscribed is a no-op.
func (h *Hub) Unsubscribe(topic string, w *WebSocket) error {
	if !h.onLoop() {
		return fmt.Errorf("loop: hub unsubscribe %q: %w", topic, ErrNotOnLoop)
	}
	t := h.topics[topic]
	if t == nil || !t.has(w) {
		return nil
	}
	t.remove(w)
	h.dropFromWS(w, t)
	h.dropIfEmpty(t)
	return nil
}

// dropFromWS removes t from w's topics.
func (h *Hub) dropFromWS(w *WebSocket, t *hubTopic) {
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
}

// forget removes w from all its topics: it closed, or a write to it
// failed. Loop-only.
func (h *Hub) forget(w *WebSocket) {
	forgetIn(h.byWS, w, func(t *hubTopic) {
		t.remove(w)
		h.dropIfEmpty(t)
	})
}

// forgetIn removes s, a WebSocket (byWS) or an event stream (byStream),
// from the index by and calls drop for each topic s was in, so that drop
// removes s from the topic's own subscriber set. Loop-only.
func forgetIn[S comparable](by map[S][]*hubTopic, s S, drop func(*hubTopic)) {
	ts, ok := by[s]
	if !ok {
		return
	}
	delete(by, s)
	for _, t := range ts {
		drop(t)
	}
}

// Loop-only.
// Subscribers returns how many open WebSockets are subscribed to topic
// (with Subscribe or SubscribeSince).
func (h *Hub) Subscribers(topic string) (int, error) {
	if !h.onLoop() {
		return 0, fmt.Errorf("loop: hub subscribers %q: %w", topic, ErrNotOnLoop)
	}
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
			for w := range t.hist.wsReplays {
				if w.state == wsOpen {
					n++
				}
			}
		}
	}
	return n, nil
}

// Loop-only.
// Publish sends data to every subscriber of topic; data may be reused once
// it returns (off the loop it returns ErrNotOnLoop and sends nothing: use
// PublishAsync). After Close it returns ErrHubClosed. Without a broker it
// writes to the subscribers before it returns. With one it returns the
// broker's error (natsbroker's ErrBacklog when its queue is full,
// ErrUnavailable while NATS is down), and the subscribers get the message
// when the broker delivers it back; to a topic whose broker subscription
// is still being made it copies data and publishes it after that call (a
// broker error is then logged).
//
// On a topic that keeps history without a broker, the message gets the
// topic's next position.
func (h *Hub) Publish(topic string, data []byte) error {
	if !h.onLoop() {
		return fmt.Errorf("loop: hub publish %q: %w", topic, ErrNotOnLoop)
	}
	return h.publish(topic, data, false)
}

// Goroutine-safe.
// PublishAsync publishes data on topic as Publish does, from any
// goroutine: it copies data, runs Publish on the loop and calls done (may
// be nil) there with Publish's result. It returns at once, without
// queueing anything (done is then not called), an error wrapping
// ErrLoopBacklog when the loop's queue of data from other goroutines is
// over Options.MaxAsyncBytes (the loop is not keeping up), or ErrStopped
// once the loop stopped. Messages published with PublishAsync from one
// goroutine reach the hub in the order of the calls; through two hubs
// (two loops sharing a broker) they may reach the broker in either order,
// unless the caller waits for the first's done before the second.
func (h *Hub) PublishAsync(topic string, data []byte, done func(error)) error {
	cp := append([]byte(nil), data...)
	if err := h.l.addDataCallback(len(cp), func() {
		err := h.publish(topic, cp, true)
		if done != nil {
			done(err)
		}
	}); err != nil {
		return fmt.Errorf("loop: hub publish %q: %w", topic, err)
	}
	return nil
}

// publish is Publish on the loop; owned says that data is the hub's to
// keep (PublishAsync's copy), so that it is not copied again.
func (h *Hub) publish(topic string, data []byte, owned bool) error {
	if h.closed.Load() {
		return fmt.Errorf("loop: hub publish %q: %w", topic, ErrHubClosed)
	}
	t := h.topics[topic]
	if b := h.broker; b != nil {
		if t != nil && t.inflight > 0 {
			if !owned {
				data = append([]byte(nil), data...)
			}
			h.queueTopic(t, func() error { return b.Publish(topic, data) }, func(err error) {
				if err != nil {
					h.l.log.Warn("hub: publish after the broker subscription failed", "topic", topic, "err", err)
				}
			})
			return nil
		}
		if err := b.Publish(topic, data); err != nil {
			return fmt.Errorf("loop: hub publish %q: %w", topic, err)
		}
		return nil
	}
	if t != nil && t.hist != nil && !owned {
		data = append([]byte(nil), data...) // the history keeps it
	}
	h.fanOut(topic, data)
	return nil
}

func (h *Hub) fanOut(topic string, data []byte) {
	t := h.topics[topic]
	if t == nil {
		return
	}
	if t.hist != nil && t.hist.local != nil {
		// A history topic without a broker: the hub orders it.
		h.fanOutMessage(t, pubsub.Message{Pos: t.hist.local.Next(), Data: data, Time: time.Now()})
		return
	}
	if len(t.subs) > 0 {
		h.writeAll(t, prepareMessage(h.typ, data))
	}
	h.tellFollowers(t, data)
	h.dropIfEmpty(t)
}

// writeAll writes p to t's subscribers without positions and forgets the
// ones whose write failed.
func (h *Hub) writeAll(t *hubTopic, p *PreparedMessage) {
	failed := h.failed[:0]
	h.failed = nil // a nested fanOut (from an OnClose) gets its own
	for w := range t.subs {
		if w.writePrepared(p) != nil {
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
	if len(t.subs) > 0 || len(t.followers) > 0 || t.hist != nil || h.topics[t.name] != t {
		return
	}
	delete(h.topics, t.name)
	if t.sub != nil {
		h.cancelSub(t.sub)
		t.sub = nil
	}
}

// Loop-only (off the loop: ErrNotOnLoop).
// Close releases the hub (a room's that is over): it cancels its broker
// subscriptions (off the loop), drops its subscribers (WebSockets, event
// streams, watchers; they stay open) and its history topics (without a
// broker, their history is lost), and removes its close observers from the
// loop. Then Publish, Subscribe, SubscribeSince, SubscribeStream,
// KeepHistory and Watch return ErrHubClosed, and deliveries still queued
// are dropped. Closing twice is a no-op.
func (h *Hub) Close() error {
	if !h.onLoop() {
		return fmt.Errorf("loop: hub close: %w", ErrNotOnLoop)
	}
	if h.closed.Swap(true) {
		return nil
	}
	for _, t := range h.topics {
		if t.sub != nil {
			h.cancelSub(t.sub)
			t.sub = nil
		}
		if t.hist != nil {
			clear(t.hist.pos)
			clear(t.hist.streams)
			clear(t.hist.wsReplays)
			clear(t.hist.esReplays)
			clear(t.hist.watchers)
		}
		clear(t.subs)
		clear(t.followers)
	}
	clear(h.topics)
	clear(h.byWS)
	clear(h.byStream)
	if h.unwatch != nil {
		h.unwatch()
		h.unwatch = nil
	}
	if h.unwatchStreams != nil {
		h.unwatchStreams()
		h.unwatchStreams = nil
	}
	return nil
}
