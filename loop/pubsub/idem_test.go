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
