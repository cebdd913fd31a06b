// Package natsbroker lets Tornago hubs on several processes or machines
// share topics through NATS, instead of a cluster protocol of our own.
//
// A Hub given a Broker publishes every message to NATS and fans out what
// NATS delivers back, so each subscriber gets each message once whichever
// node published it. Topics map to NATS subjects as Prefix + topic: a
// topic must be a valid subject token sequence (no spaces, no '*' or '>').
package natsbroker

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop"
)

// Broker is a loop.Broker over one NATS connection. Goroutine-safe.
type Broker struct {
	nc     *nats.Conn
	prefix string
}

var _ loop.Broker = (*Broker)(nil)

// New returns a broker publishing and subscribing on nc under subjects
// prefix+topic (for example prefix "tornago." and topic "room.go"). The
// caller keeps ownership of nc and closes it after the hubs are done.
func New(nc *nats.Conn, prefix string) *Broker {
	return &Broker{nc: nc, prefix: prefix}
}

// Publish implements loop.Broker. NATS copies data into its write buffer
// before returning, so the caller may reuse data.
func (b *Broker) Publish(topic string, data []byte) error {
	if err := b.nc.Publish(b.prefix+topic, data); err != nil {
		return fmt.Errorf("natsbroker: publish %q: %w", b.prefix+topic, err)
	}
	return nil
}

// Subscribe implements loop.Broker. deliver runs on the NATS client's
// goroutine for the subscription; the Hub moves it onto its loop.
func (b *Broker) Subscribe(topic string, deliver func([]byte)) (func(), error) {
	sub, err := b.nc.Subscribe(b.prefix+topic, func(m *nats.Msg) { deliver(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("natsbroker: subscribe %q: %w", b.prefix+topic, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
