package loop

import (
	"testing"

	"github.com/tornago/tornago/loop/pubsub"
)

// TestHubFollow: a follower gets every message of a plain topic (and the
// data of a history topic's), counts as a subscriber (the topic and its
// broker subscription stay while it follows: messages from another hub
// sharing the broker reach it), and cancel drops the topic.
func TestHubFollow(t *testing.T) {
	broker := &pubsub.MemoryBroker{}
	var a, b *Hub
	la, _ := wsStartLoop(t, func(l *Loop, app *Application) { a = NewHub(l, Text, broker) })
	lb, _ := wsStartLoop(t, func(l *Loop, app *Application) { b = NewHub(l, Text, broker) })
	got := make(chan string, 10)
	cancel := onLoop(la, func() func() {
		c, err := a.Follow("t", func(data []byte) { got <- string(data) })
		if err != nil {
			t.Error(err)
		}
		return c
	})
	// The broker subscription is made off the loop: publish until it is.
	waitFor(t, "a follower getting another hub's message", func() bool {
		onLoop(lb, func() error { return b.Publish("t", []byte("x")) })
		select {
		case <-got:
			return true
		default:
			return false
		}
	})
	onLoop(la, func() error { return a.Publish("t", []byte("own")) })
	for m := range got {
		if m == "own" {
			break
		}
	}
	onLoop(la, func() int { cancel(); cancel(); return 0 })
	if n := onLoop(la, func() int { return len(a.topics) }); n != 0 {
		t.Fatalf("%d topics left after the follower's cancel", n)
	}

	// A history topic's follower gets the data too.
	h := onLoop(la, func() []string {
		var seen []string
		hub := NewHub(la, Text, nil)
		hub.KeepHistory("h", pubsub.HistoryOptions{MaxMessages: 2}, nil)
		if _, err := hub.Follow("h", func(data []byte) { seen = append(seen, string(data)) }); err != nil {
			t.Error(err)
		}
		hub.Publish("h", []byte("1"))
		hub.Publish("h", []byte("2"))
		hub.Close()
		if _, err := hub.Follow("h", func([]byte) {}); err == nil {
			t.Error("Follow on a closed hub")
		}
		return seen
	})
	if len(h) != 2 || h[0] != "1" || h[1] != "2" {
		t.Fatalf("history topic follower got %q", h)
	}
}
