package natsbroker_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tornago/tornago/loop/natsbroker"
	"github.com/tornago/tornago/loop/pubsub"
)

// ackResult is one done call of PublishAck.
type ackResult struct {
	pos pubsub.Position
	err error
}

// publishAck is PublishAck, retried for 20 s while the broker says
// ErrUnavailable or ErrBacklog; it returns done's result.
func (n *histNode) publishAck(t *testing.T, topic, data, id string) ackResult {
	t.Helper()
	got := make(chan ackResult, 2)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		err := n.b.PublishAck(topic, []byte(data), id, func(p pubsub.Position, err error) { got <- ackResult{p, err} })
		if err == nil {
			break
		}
		if !errors.Is(err, natsbroker.ErrUnavailable) && !errors.Is(err, natsbroker.ErrBacklog) || time.Now().After(deadline) {
			t.Fatalf("publish %q: %v", data, err)
		}
	}
	select {
	case r := <-got:
		select {
		case r2 := <-got:
			t.Fatalf("done called twice: %v then %v", r, r2)
		case <-time.After(20 * time.Millisecond):
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("no ack for %q", data)
		return ackResult{}
	}
}

// PublishAck on a history topic reports the position the subscribers
// see; the same id again, from another process (a broker on its own
// connection), is stored once and acknowledged with the first's position
// (nats-server acks a duplicate with the stored message's sequence). A
// topic without history is acknowledged with the zero position.
func TestPublishAckTwoProcesses(t *testing.T) {
	s := startJetStream(t, -1, t.TempDir())
	a, b := newHistNode(t, s.ClientURL()), newHistNode(t, s.ClientURL())
	o := pubsub.HistoryOptions{MaxMessages: 100}
	a.keep(t, "room", o)
	b.keep(t, "room", o)
	var mu sync.Mutex
	var seen []pubsub.Message
	_, cancel, err := b.b.SubscribeHistory("room", func(m pubsub.Message) {
		mu.Lock()
		seen = append(seen, m)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()

	a.publish(t, "room", "m0")
	first := a.publishAck(t, "room", "m1", "id1")
	retry := b.publishAck(t, "room", "m1", "id1")
	again := a.publishAck(t, "room", "m1", "id1")
	plain := a.publishAck(t, "room", "m2", "")
	for _, r := range []ackResult{first, retry, again, plain} {
		if r.err != nil {
			t.Fatalf("ack error: %v", r.err)
		}
	}
	if retry.pos != first.pos || again.pos != first.pos {
		t.Fatalf("the retries got %v and %v, the first %v", retry.pos, again.pos, first.pos)
	}
	if first.pos.Epoch != a.epoch(t, "room") || first.pos.Offset != 2 || plain.pos.Offset != 3 {
		t.Fatalf("acks %v, %v in epoch %d; want offsets 2 and 3", first.pos, plain.pos, a.epoch(t, "room"))
	}
	got := b.waitHistory(t, "room", 3)
	time.Sleep(200 * time.Millisecond) // a duplicate stored would show by now
	got = b.waitHistory(t, "room", 3)
	if len(got) != 3 || string(got[1].Data) != "m1" || got[1].Pos != first.pos || got[2].Pos != plain.pos {
		t.Fatalf("stored %v; acks %v %v", got, first.pos, plain.pos)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 || seen[1].Pos != first.pos || string(seen[1].Data) != "m1" {
		t.Fatalf("the subscriber saw %v; ack %v", seen, first.pos)
	}

	if r := a.publishAck(t, "plain", "x", "id1"); r.err != nil || r.pos != (pubsub.Position{}) {
		t.Fatalf("a topic without history acked %v, %v", r.pos, r.err)
	}
}

// Many acks in flight come back in order, each with its own position.
func TestPublishAckMany(t *testing.T) {
	s := startJetStream(t, -1, t.TempDir())
	a := newHistNode(t, s.ClientURL())
	a.keep(t, "room", pubsub.HistoryOptions{MaxMessages: 1000})
	const n = 500
	got := make(chan ackResult, n)
	for i := 0; i < n; {
		err := a.b.PublishAck("room", []byte("m"), "", func(p pubsub.Position, err error) { got <- ackResult{p, err} })
		if errors.Is(err, natsbroker.ErrBacklog) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		i++
	}
	for i := 1; i <= n; i++ {
		select {
		case r := <-got:
			if r.err != nil || r.pos.Offset != int64(i) {
				t.Fatalf("ack %d: %v, %v", i, r.pos, r.err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("ack %d missing", i)
		}
	}
}

// A publication to a stream deleted under the broker gives done an
// error, not a position: nothing stores it (no responders), or the
// supervisor made the stream again, in a new epoch this process has not
// checked yet, and the sequence's epoch is not known (ErrUnavailable: a
// retry with the same id gets it).
func TestPublishAckStreamLost(t *testing.T) {
	s := startJetStream(t, -1, t.TempDir())
	a := newHistNode(t, s.ClientURL())
	a.keep(t, "room", pubsub.HistoryOptions{MaxMessages: 10})
	js, err := a.nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(natsbroker.StreamName("hist.", "room")); err != nil {
		t.Fatal(err)
	}
	r := a.publishAck(t, "room", "x", "k")
	if r.err == nil {
		t.Fatalf("a publication nothing stored acked %v", r.pos)
	}
	t.Logf("done got: %v", r.err)
}
