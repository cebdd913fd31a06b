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

// Loop-only.
// PublishAck is PublishWithID (id may be empty) that reports where the
// message was stored: done (not nil) gets, on the loop, the message's
// position on a topic that keeps history (zero on one that keeps none),
// or the error that kept it from being stored. When PublishAck returns an
// error nothing was published and done is not called; otherwise done is
// called once:
//   - with a broker that is a pubsub.AckPublisher (MemoryBroker,
//     natsbroker), in a later callback of the loop, once the broker
//     reports the position: the same every subscriber sees, on every loop
//     and process; for an id the broker already published on topic within
//     its window, the first publication's position (a retry gets the
//     first's reply). To a topic whose broker subscription is being made
//     the message is published after that call (as Publish), and a broker
//     error then goes to done.
//   - without a broker, before PublishAck returns: the hub orders the
//     message itself (the topic's new head).
//   - with another broker, before PublishAck returns, with the zero
//     position: the broker tells no position.
//
// If the loop stops before the broker answers, done is not called.
func (h *Hub) PublishAck(topic string, data []byte, id string, done func(pubsub.Position, error)) error {
	if !h.onLoop() {
		return fmt.Errorf("loop: hub publish %q: %w", topic, ErrNotOnLoop)
	}
	ab, ok := h.broker.(pubsub.AckPublisher)
	if !ok {
		var before pubsub.Position
		t := h.topics[topic]
		if t != nil && t.hist != nil {
			before = t.hist.last
		}
		if err := h.PublishWithID(topic, data, id); err != nil {
			return err
		}
		var pos pubsub.Position
		if h.broker == nil && t != nil && t.hist != nil && t.hist.last != before {
			pos = t.hist.last // fanOut ordered it
		}
		done(pos, nil)
		return nil
	}
	if h.closed.Load() {
		return fmt.Errorf("loop: hub publish %q: %w", topic, ErrHubClosed)
	}
	// The broker's goroutine (or this one, for MemoryBroker) reports; the
	// loop hears it in a later callback, after any delivery the broker
	// queued for this loop before it.
	onLoop := func(pos pubsub.Position, err error) {
		h.l.AddCallback(func() { done(pos, err) })
	}
	if t := h.topics[topic]; t != nil && t.inflight > 0 {
		// As publish: behind the topic's broker subscription under way.
		data = append([]byte(nil), data...)
		h.queueTopic(t, func() error { return ab.PublishAck(topic, data, id, onLoop) }, func(err error) {
			if err != nil {
				done(pubsub.Position{}, fmt.Errorf("loop: hub publish %q after the broker subscription: %w", topic, err))
			}
		})
		return nil
	}
	if err := ab.PublishAck(topic, data, id, onLoop); err != nil {
		return fmt.Errorf("loop: hub publish %q: %w", topic, err)
	}
	return nil
}
