package pubsub_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
)

// IDWindow forgets ids after its window and, past Max, the oldest first.
func TestIDWindow(t *testing.T) {
	w := &pubsub.IDWindow{Window: time.Minute, Max: 3}
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if w.Seen("a"+strconv.Itoa(i), t0) {
			t.Fatalf("a%d seen before it was added", i)
		}
	}
	if !w.Seen("a0", t0.Add(time.Second)) || !w.Seen("a2", t0) {
		t.Fatal("an id within the window not seen")
	}
	w.Seen("b", t0) // over Max: a0 forgotten
	if w.Len() != 3 || w.Seen("a1", t0) != true {
		t.Fatalf("len %d", w.Len())
	}
	if w.Seen("a0", t0) {
		t.Fatal("the oldest id kept past Max")
	}
	if w.Seen("b", t0.Add(time.Minute)) {
		t.Fatal("an id kept past its window")
	}
	if w.Len() != 1 {
		t.Fatalf("len %d after the window, want 1", w.Len())
	}
}

// MemoryBroker.PublishWithID delivers an id once per topic; the same id
// on another topic, and no id, publish.
func TestMemoryBrokerPublishWithID(t *testing.T) {
	b := &pubsub.MemoryBroker{}
	got := make(chan string, 10)
	for _, topic := range []string{"t", "u"} {
		cancel, err := b.Subscribe(topic, func(d []byte) { got <- topic + string(d) })
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
	}
	b.PublishWithID("t", []byte("1"), "k")
	b.PublishWithID("t", []byte("1"), "k")
	b.PublishWithID("u", []byte("2"), "k")
	b.PublishWithID("t", []byte("3"), "")
	b.PublishWithID("t", []byte("3"), "")
	close(got)
	var all []string
	for s := range got {
		all = append(all, s)
	}
	if len(all) != 4 || all[0] != "t1" || all[1] != "u2" || all[2] != "t3" || all[3] != "t3" {
		t.Fatalf("delivered %v", all)
	}
}

// MemoryBroker.PublishAck reports the position each publication got on a
// history topic, the same as the subscribers see; a publication again
// with an id already published gets the first's position and is not
// published; a topic without history reports the zero position.
func TestMemoryBrokerPublishAck(t *testing.T) {
	b := &pubsub.MemoryBroker{}
	if err := b.KeepHistory("h", pubsub.HistoryOptions{MaxMessages: 10}); err != nil {
		t.Fatal(err)
	}
	var seen []pubsub.Message
	_, cancel, err := b.SubscribeHistory("h", func(m pubsub.Message) { seen = append(seen, m) })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	ack := func(topic, data, id string) pubsub.Position {
		t.Helper()
		var got pubsub.Position
		calls := 0
		if err := b.PublishAck(topic, []byte(data), id, func(p pubsub.Position, err error) {
			if err != nil {
				t.Fatalf("done: %v", err)
			}
			got = p
			calls++
		}); err != nil {
			t.Fatal(err)
		}
		if calls != 1 {
			t.Fatalf("done called %d times before PublishAck returned, want 1", calls)
		}
		return got
	}
	p1 := ack("h", "a", "") // a broker that has seen no id yet
	p2 := ack("h", "b", "k1")
	if again := ack("h", "b", "k1"); again != p2 {
		t.Fatalf("the retry got %v, the first %v", again, p2)
	}
	p3 := ack("h", "c", "k2")
	if len(seen) != 3 || seen[0].Pos != p1 || seen[1].Pos != p2 || seen[2].Pos != p3 || p1.Offset != 1 || p3.Offset != 3 {
		t.Fatalf("acks %v %v %v, subscriber saw %v", p1, p2, p3, seen)
	}
	if p := ack("plain", "x", "k1"); p != (pubsub.Position{}) {
		t.Fatalf("a topic without history acked %v", p)
	}
	if p := ack("plain", "x", "k1"); p != (pubsub.Position{}) {
		t.Fatalf("a retry on a topic without history acked %v", p)
	}
}

// Concurrent retries of one id all get the position of the one
// publication.
func TestMemoryBrokerPublishAckConcurrent(t *testing.T) {
	b := &pubsub.MemoryBroker{}
	if err := b.KeepHistory("h", pubsub.HistoryOptions{MaxMessages: 100}); err != nil {
		t.Fatal(err)
	}
	b.Publish("h", []byte("before"))
	got := make(chan pubsub.Position, 8)
	for range 8 {
		go b.PublishAck("h", []byte("x"), "same", func(p pubsub.Position, _ error) { got <- p })
	}
	first := <-got
	for range 7 {
		if p := <-got; p != first {
			t.Fatalf("positions %v and %v for one id", first, p)
		}
	}
	msgs, err := b.History("h", pubsub.Position{Epoch: first.Epoch, Offset: -1}, -1, nil)
	if err != nil || len(msgs) != 2 || msgs[1].Pos != first {
		t.Fatalf("history %v (%v), ack %v", msgs, err, first)
	}
}
