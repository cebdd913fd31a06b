package loop

import (
	"fmt"
	"sync"
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
// are written to every subscriber. Subscribers that were closed are
// dropped at the next publication, so OnClose need not unsubscribe;
// a slow subscriber is closed by the MaxBufferedBytes rule of its route
// and never delays the others.
type Hub struct {
	l      *Loop
	broker Broker
	typ    MessageType
	topics map[string]*hubTopic
}

type hubTopic struct {
	subs   map[*WebSocket]struct{}
	cancel func() // the broker subscription, nil without a broker
}

// NewHub returns a hub on l sending messages of type typ (Text or
// Binary). broker may be nil: topics are then local to this loop.
func NewHub(l *Loop, typ MessageType, broker Broker) *Hub {
	return &Hub{l: l, broker: broker, typ: typ, topics: map[string]*hubTopic{}}
}

// Subscribe adds w to topic. Loop-only. With a broker, the first local
// subscriber of a topic subscribes the hub to the broker.
func (h *Hub) Subscribe(topic string, w *WebSocket) error {
	t := h.topics[topic]
	if t == nil {
		t = &hubTopic{subs: map[*WebSocket]struct{}{}}
		if h.broker != nil {
			cancel, err := h.broker.Subscribe(topic, func(data []byte) {
				h.l.AddCallback(func() { h.fanOut(topic, data) })
			})
			if err != nil {
				return fmt.Errorf("loop: hub subscribe %q: %w", topic, err)
			}
			t.cancel = cancel
		}
		h.topics[topic] = t
	}
	t.subs[w] = struct{}{}
	return nil
}

// Unsubscribe removes w from topic. Loop-only.
func (h *Hub) Unsubscribe(topic string, w *WebSocket) {
	if t := h.topics[topic]; t != nil {
		delete(t.subs, w)
		h.dropIfEmpty(topic, t)
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
	}
	return n
}

// Publish sends data to every subscriber of topic. Goroutine-safe; data
// may be reused once Publish returns. Without a broker, a call on the
// loop writes to the subscribers before it returns.
func (h *Hub) Publish(topic string, data []byte) error {
	if h.broker != nil {
		if err := h.broker.Publish(topic, data); err != nil {
			return fmt.Errorf("loop: hub publish %q: %w", topic, err)
		}
		return nil
	}
	if h.l.InLoop() {
		h.fanOut(topic, data)
		return nil
	}
	cp := append([]byte(nil), data...)
	h.l.AddCallback(func() { h.fanOut(topic, cp) })
	return nil
}

func (h *Hub) fanOut(topic string, data []byte) {
	t := h.topics[topic]
	if t == nil {
		return
	}
	p := PrepareMessage(h.typ, data)
	for w := range t.subs {
		if w.WritePrepared(p) != nil {
			delete(t.subs, w) // closed, or just closed as a slow consumer
		}
	}
	h.dropIfEmpty(topic, t)
}

func (h *Hub) dropIfEmpty(topic string, t *hubTopic) {
	if len(t.subs) > 0 {
		return
	}
	delete(h.topics, topic)
	if t.cancel != nil {
		t.cancel()
	}
}

// MemoryBroker is a Broker inside one process: it lets hubs on several
// loops (one per core, say) share topics. Goroutine-safe.
type MemoryBroker struct {
	mu   sync.Mutex
	subs map[string]map[*memorySub]struct{}
}

type memorySub struct{ deliver func([]byte) }

// Publish implements Broker. Each subscriber gets its own copy of data.
func (b *MemoryBroker) Publish(topic string, data []byte) error {
	b.mu.Lock()
	subs := make([]*memorySub, 0, len(b.subs[topic]))
	for s := range b.subs[topic] {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.deliver(append([]byte(nil), data...))
	}
	return nil
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(topic string, deliver func([]byte)) (func(), error) {
	s := &memorySub{deliver: deliver}
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
	}, nil
}
