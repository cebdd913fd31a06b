package loop

import (
	"errors"
	"testing"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
)

// hubAck is one done call of Hub.PublishAck.
type hubAck struct {
	pos    pubsub.Position
	err    error
	inLoop bool
}

// publishAck runs hub.PublishAck on l and returns done's result.
func publishAck(t *testing.T, l *Loop, hub *Hub, topic, data, id string) hubAck {
	t.Helper()
	got := make(chan hubAck, 2)
	if err := onLoop(l, func() error {
		return hub.PublishAck(topic, []byte(data), id, func(p pubsub.Position, err error) { got <- hubAck{p, err, l.InLoop()} })
	}); err != nil {
		t.Fatalf("publish %q: %v", data, err)
	}
	r := wsRecv(t, got, "the publish's done")
	select {
	case r2 := <-got:
		t.Fatalf("done called twice: %+v then %+v", r, r2)
	case <-time.After(20 * time.Millisecond):
	}
	if !r.inLoop || r.err != nil {
		t.Fatalf("done: %+v", r)
	}
	return r
}

// Hub.PublishAck through a MemoryBroker shared by two loops: done runs
// on the loop with the position the other loop's watcher sees; the same
// id again, from the other loop, is not published and gets the first's
// position; a topic without history gets the zero position. Without a
// broker the hub's own ordering gives the position.
func TestHubPublishAckAcrossLoops(t *testing.T) {
	broker := &pubsub.MemoryBroker{}
	o := pubsub.HistoryOptions{MaxMessages: 10}
	var hubs [2]*Hub
	var loops [2]*Loop
	for i := range loops {
		loops[i], _ = wsStartLoop(t, func(l *Loop, app *Application) {
			hubs[i] = NewHub(l, Text, broker)
			hubs[i].KeepHistory("t", o, func(err error) {
				if err != nil {
					t.Error(err)
				}
			})
		})
	}
	seen := make(chan pubsub.Message, 10)
	if err := onLoop(loops[1], func() error {
		_, err := hubs[1].Watch("t", func(m pubsub.Message) { seen <- m })
		return err
	}); err != nil {
		t.Fatal(err)
	}
	first := publishAck(t, loops[0], hubs[0], "t", "one", "k1")
	retry := publishAck(t, loops[1], hubs[1], "t", "one", "k1")
	next := publishAck(t, loops[1], hubs[1], "t", "two", "")
	if first.pos.Offset != 1 || retry.pos != first.pos || next.pos.Offset != 2 {
		t.Fatalf("first %v, retry %v, next %v", first.pos, retry.pos, next.pos)
	}
	for _, want := range []pubsub.Message{{Pos: first.pos, Data: []byte("one")}, {Pos: next.pos, Data: []byte("two")}} {
		m := wsRecv(t, seen, "a watched message")
		if m.Pos != want.Pos || string(m.Data) != string(want.Data) {
			t.Fatalf("watched %v %q, want %v %q", m.Pos, m.Data, want.Pos, want.Data)
		}
	}
	select {
	case m := <-seen:
		t.Fatalf("the retry was published: %v %q", m.Pos, m.Data)
	case <-time.After(50 * time.Millisecond):
	}
	if r := publishAck(t, loops[0], hubs[0], "plain", "x", "k1"); r.pos != (pubsub.Position{}) {
		t.Fatalf("a topic without history: %v", r.pos)
	}

	var local *Hub
	l, _ := wsStartLoop(t, func(l *Loop, app *Application) {
		local = NewHub(l, Text, nil)
		local.KeepHistory("t", o, nil)
	})
	if a, b := publishAck(t, l, local, "t", "one", "k1"), publishAck(t, l, local, "t", "two", "k1"); a.pos.Offset != 1 || b.pos.Offset != 2 {
		t.Fatalf("without a broker: %v, %v (no broker: the caller's window drops retries)", a.pos, b.pos)
	}
	if err := onLoop(l, func() error { return local.Close() }); err != nil {
		t.Fatal(err)
	}
	if err := onLoop(l, func() error { return local.PublishAck("t", nil, "", func(pubsub.Position, error) {}) }); !errors.Is(err, ErrHubClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if err := hubs[0].PublishAck("t", nil, "", func(pubsub.Position, error) {}); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("off the loop: %v", err)
	}
}
