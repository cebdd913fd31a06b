package loop

import (
	"fmt"

	"github.com/tornago/tornago/loop/pubsub"
)

// Loop-only.
// PublishWithID is Publish with an id: when the hub's broker is a
// pubsub.IDPublisher and id is not empty, a message with an id the broker
// already published on topic within its window is dropped (a retried
// publish reaches subscribers once across loops and processes). Without
// such a broker it is Publish (the caller keeps its own window).
func (h *Hub) PublishWithID(topic string, data []byte, id string) error {
	if !h.onLoop() {
		return fmt.Errorf("loop: hub publish %q: %w", topic, ErrNotOnLoop)
	}
	ib, ok := h.broker.(pubsub.IDPublisher)
	if !ok || id == "" {
		return h.publish(topic, data, false)
	}
	if h.closed.Load() {
		return fmt.Errorf("loop: hub publish %q: %w", topic, ErrHubClosed)
	}
	if t := h.topics[topic]; t != nil && t.inflight > 0 {
		// As publish: behind the topic's broker subscription under way.
		data = append([]byte(nil), data...)
		h.queueTopic(t, func() error { return ib.PublishWithID(topic, data, id) }, func(err error) {
			if err != nil {
				h.l.log.Warn("hub: publish after the broker subscription failed", "topic", topic, "err", err)
			}
		})
		return nil
	}
	if err := ib.PublishWithID(topic, data, id); err != nil {
		return fmt.Errorf("loop: hub publish %q: %w", topic, err)
	}
	return nil
}
