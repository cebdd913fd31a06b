package natsbroker

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tornago/tornago/loop/pubsub"
)

// Positions for publishers (pubsub.AckPublisher). A history publication
// whose publisher wants its position carries a done function: once the
// publishing goroutine has handed it to JetStream (PublishAsync), it
// passes the ack future to the ack waiter, one goroutine per broker
// through a channel bounded by Options.MaxPending, which waits for the
// acks in publication order (each wait bounded) and calls done with the
// stream's sequence, in the epoch of the topic's replica. Neither the
// caller of PublishAck nor the publishing goroutine waits for NATS.

// ackGrace is how long past ackTimeout the waiter waits for an ack:
// nats.go's own timer (WithPublishAsyncTimeout) ends the wait first and
// says why; this only bounds the wait if it did not.
const ackGrace = time.Second

// pendingAck is a history publication waiting for its stream's ack.
type pendingAck struct {
	f    jetstream.PubAckFuture
	t    *histTopic
	done func(pubsub.Position, error)
	by   time.Time // give up then
	// The topic's state when it was published: the ack's sequence is of
	// the replica's epoch only if the topic stayed settled since (the
	// same gen) in that epoch.
	epoch   int64
	gen     uint64
	settled bool
}

var _ pubsub.AckPublisher = (*Broker)(nil)

// Goroutine-safe, non-blocking (a loop may call it).
// PublishAck implements pubsub.AckPublisher: PublishWithID (id may be
// empty), and done gets where the message was stored. On a topic that
// keeps history that is the position every subscriber sees (the stream's
// sequence in the stream's epoch), once the stream acknowledged it; for
// an id the stream already stored within its duplicate window (from any
// process) the stream stores nothing and acknowledges with the first
// publication's sequence, which done gets. A refusal, or no ack within 5
// s, gives done an error (the message may still have been stored: a
// retry with the same id is safe); so does an ack that comes while the
// topic's stream may have been replaced (after a reconnect or a consumer
// error, until the supervisor checked it): the sequence's epoch is not
// known, and done gets an error wrapping ErrUnavailable (a retry with the
// same id is then acknowledged with the position). done runs on the broker's ack-waiter
// goroutine, in publication order, shared by every publication (or on
// the publishing goroutine when nats.go refuses the publication at once):
// it must not block nor call the broker. On a topic without history done gets the
// zero position at once, inside PublishAck (core NATS acknowledges
// nothing). When PublishAck returns an error (as Publish's), done is not
// called.
func (b *Broker) PublishAck(topic string, data []byte, id string, done func(pubsub.Position, error)) error {
	return b.publish(topic, data, id, done)
}

// waitAcks is the ack waiter: it calls each pending publication's done
// with its ack, in order, until the publishing goroutine closes acks.
func (b *Broker) waitAcks() {
	defer close(b.acked)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for p := range b.acks {
		timer.Reset(time.Until(p.by))
		var pos pubsub.Position
		var err error
		select {
		case a := <-p.f.Ok():
			p.t.mu.Lock()
			epoch := p.t.buf.Head().Epoch // the replica's: what subscribers see
			p.t.mu.Unlock()
			if p.settled && p.t.settled.Load() && p.t.gen.Load() == p.gen && epoch == p.epoch {
				pos = pubsub.Position{Epoch: epoch, Offset: int64(a.Sequence)}
			} else {
				// The stream may have been lost and made again around
				// the publication: the sequence may be of a new epoch
				// this process has not read yet. A retry with the same
				// id gets it (JetStream's dedup) once the check is done.
				err = fmt.Errorf("natsbroker: publish %q: stored at sequence %d of stream %s while the stream was being checked; its epoch is not known: %w", p.t.topic, a.Sequence, p.t.stream, ErrUnavailable)
			}
		case e := <-p.f.Err():
			err = fmt.Errorf("natsbroker: publish %q: stream %s did not store it: %w", p.t.topic, p.t.stream, e)
		case <-timer.C:
			err = fmt.Errorf("natsbroker: publish %q: no ack from stream %s within %v", p.t.topic, p.t.stream, ackTimeout+ackGrace)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		p.done(pos, err)
	}
}
