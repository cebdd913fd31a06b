package pubsub

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
