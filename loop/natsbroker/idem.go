package natsbroker

import "github.com/tornago/tornago/loop/pubsub"

var _ pubsub.IDPublisher = (*Broker)(nil)

// Goroutine-safe, non-blocking (a loop may call it).
// PublishWithID implements pubsub.IDPublisher: Publish, with id as the
// message's Nats-Msg-Id on a topic that keeps history, so that its stream
// stores a retry with the same id within its duplicate window once
// (JetStream's default: 2 min, or the topic's MaxAge when shorter), from
// whichever process publishes it. On a topic without history id is
// ignored: core NATS has no deduplication.
func (b *Broker) PublishWithID(topic string, data []byte, id string) error {
	return b.publish(topic, data, id, nil)
}
