package pubsub

// Broker carries publications between hubs: several loops in one process
// (MemoryBroker), or several machines through a message broker such as
// NATS. A Hub publishes every message to its broker and fans out only what
// the broker delivers back, so a message reaches each subscriber once
// whichever node published it.
//
// Implementations must be goroutine-safe. Which goroutine calls what (a
// loop.Hub keeps to it, and a broker may rely on it):
//   - Publish may be called on a loop's goroutine: it must not block (copy
//     data and queue it, or fail with an error such as natsbroker's
//     ErrBacklog).
//   - Subscribe, the cancel functions it returns, and HistoryBroker's
//     KeepHistory and SubscribeHistory may block (a network round trip, a
//     lock a stalled connection holds): a Hub calls them off its loop, on
//     a goroutine of its own, one at a time in the order it needs them.
//   - HistoryBroker's History is called on the loop: it must answer from
//     memory, without I/O.
//   - deliver is called on any goroutine the broker chooses, never inside
//     the caller's Subscribe; it must not call back into the broker.
type Broker interface {
	// Publish sends data to every subscriber of topic, this node's
	// included. The broker may keep data only until Publish returns.
	Publish(topic string, data []byte) error
	// Subscribe arranges for deliver to be called, on any goroutine, with
	// each message published on topic, until cancel is called. deliver may
	// keep data.
	Subscribe(topic string, deliver func(data []byte)) (cancel func(), err error)
}
