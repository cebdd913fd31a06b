package pubsub

import (
	"fmt"
	"sync"
)

// Goroutine-safe. LocalHistory returns a HistoryBroker over b, a Broker that keeps no
// history (core NATS, Redis pub/sub): messages still travel through b, and
// this process gives the history topics' messages their positions in the
// order b delivers them here, kept in this process's memory. The positions
// are then valid in this process only (each process has its own epoch): a
// client that resumes on another process is told that the history is gone
// rather than being sent the wrong messages. Use it for one process with
// many loops, or as the fallback when the real broker cannot keep history.
// Goroutine-safe.
func LocalHistory(b Broker) HistoryBroker {
	return &localHistory{Broker: b, mem: &MemoryBroker{}, subs: map[string]func(){}}
}

type localHistory struct {
	Broker
	mem  *MemoryBroker
	mu   sync.Mutex
	subs map[string]func() // history topics' subscriptions to the broker
}

// KeepHistory implements HistoryBroker: it subscribes this process to
// topic on the broker for good, so that every message gets a position
// whether or not anyone here listens.
func (h *localHistory) KeepHistory(topic string, o HistoryOptions) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	// The memory broker applies the rule on options (same: a no-op,
	// others: ErrHistoryOptionsDiffer) for a topic kept already too.
	if err := h.mem.KeepHistory(topic, o); err != nil {
		return fmt.Errorf("pubsub: local history: %w", err)
	}
	if _, ok := h.subs[topic]; ok {
		return nil
	}
	cancel, err := h.Broker.Subscribe(topic, func(data []byte) { h.mem.Publish(topic, data) })
	if err != nil {
		return fmt.Errorf("pubsub: local history %q: %w", topic, err)
	}
	h.subs[topic] = cancel
	return nil
}

// Subscribe implements Broker: a history topic's messages come from this
// process's history, others straight from the broker.
func (h *localHistory) Subscribe(topic string, deliver func([]byte)) (func(), error) {
	h.mu.Lock()
	_, hist := h.subs[topic]
	h.mu.Unlock()
	if hist {
		return h.mem.Subscribe(topic, deliver)
	}
	return h.Broker.Subscribe(topic, deliver)
}

// SubscribeHistory implements HistoryBroker.
func (h *localHistory) SubscribeHistory(topic string, deliver func(Message)) (Position, func(), error) {
	return h.mem.SubscribeHistory(topic, deliver)
}

// History implements HistoryBroker.
func (h *localHistory) History(topic string, after Position, upTo int64, dst []Message) ([]Message, error) {
	return h.mem.History(topic, after, upTo, dst)
}
