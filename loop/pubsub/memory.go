package pubsub

import (
	"fmt"
	"sync"
	"time"
)

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
	ids  *IDWindow    // PublishWithID's keys, under pub (idem.go)
}

type memorySub struct {
	deliver func([]byte)
	msg     func(Message) // a SubscribeHistory subscriber's, instead of deliver
}

// Goroutine-safe.
// Publish implements Broker. Each subscriber gets its own copy of data;
// on a history topic the subscribers share the one the history keeps.
func (b *MemoryBroker) Publish(topic string, data []byte) error {
	b.pub.Lock()
	defer b.pub.Unlock()
	b.publishLocked(topic, data)
	return nil
}

// publishLocked is Publish under pub; it returns the message's position
// (zero on a topic without history).
func (b *MemoryBroker) publishLocked(topic string, data []byte) Position {
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
	return m.Pos
}

// Goroutine-safe.
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

// Goroutine-safe.
// KeepHistory implements HistoryBroker. Calling it again for the topic
// with the same options is a no-op; with other options it returns an
// error wrapping ErrHistoryOptionsDiffer and the topic keeps the first
// ones.
func (b *MemoryBroker) KeepHistory(topic string, o HistoryOptions) error {
	if !o.Keeps() {
		return fmt.Errorf("pubsub: memory broker keep history %q: %w: no bound set", topic, ErrNoHistory)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hist == nil {
		b.hist = map[string]*HistoryBuffer{}
	}
	if h := b.hist[topic]; h != nil {
		if h.o != o {
			return fmt.Errorf("pubsub: memory broker keep history %q with %+v: %w (%+v)", topic, o, ErrHistoryOptionsDiffer, h.o)
		}
		return nil
	}
	b.hist[topic] = NewHistoryBuffer(o, time.Now().UnixMicro())
	return nil
}

// Goroutine-safe.
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
		return Position{}, nil, fmt.Errorf("pubsub: memory broker subscribe %q: %w", topic, ErrNoHistory)
	}
	return head, b.subscribe(topic, &memorySub{msg: deliver}), nil
}

// Goroutine-safe.
// History implements HistoryBroker.
func (b *MemoryBroker) History(topic string, after Position, upTo int64, dst []Message) ([]Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	hist := b.hist[topic]
	if hist == nil {
		return dst, fmt.Errorf("pubsub: memory broker history %q: %w", topic, ErrNoHistory)
	}
	return hist.After(after, upTo, time.Now(), dst)
}
