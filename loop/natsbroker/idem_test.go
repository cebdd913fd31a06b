package natsbroker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tornago/tornago/loop/natsbroker"
	"github.com/tornago/tornago/loop/pubsub"
)

// A publication sent again with the same id from another process (broker
// on its own connection) is stored once by the topic's stream; another id
// and a publication without one are stored.
func TestPublishWithIDTwoProcesses(t *testing.T) {
	s := startJetStream(t, -1, t.TempDir())
	a, b := newHistNode(t, s.ClientURL()), newHistNode(t, s.ClientURL())
	o := pubsub.HistoryOptions{MaxMessages: 100}
	a.keep(t, "room", o)
	b.keep(t, "room", o)
	pub := func(n *histNode, data, id string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			err := n.b.PublishWithID("room", []byte(data), id)
			if err == nil {
				return
			}
			if !errors.Is(err, natsbroker.ErrUnavailable) && !errors.Is(err, natsbroker.ErrBacklog) || time.Now().After(deadline) {
				t.Fatalf("publish %q: %v", data, err)
			}
		}
	}
	pub(a, "m1", "id1")
	pub(b, "m1", "id1") // the retry, on the other process
	pub(a, "m1", "id1")
	pub(b, "m2", "id2")
	pub(a, "m3", "")
	got := b.waitHistory(t, "room", 3)
	time.Sleep(200 * time.Millisecond) // a duplicate stored would show by now
	got = b.waitHistory(t, "room", 3)
	if len(got) != 3 {
		t.Fatalf("%d messages stored, want 3", len(got))
	}
	// Two processes publish concurrently: any order, each once.
	seen := map[string]bool{}
	for _, m := range got {
		seen[string(m.Data)] = true
	}
	if !seen["m1"] || !seen["m2"] || !seen["m3"] {
		t.Fatalf("stored %v", got)
	}
}
