package realtime_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/tornago/tornago/loop/realtime"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// pubData reads a's frames until a publication of topic and returns its
// data.
func pubData(a *wsc, topic string) string {
	a.t.Helper()
	for {
		f := a.read()
		if f.Push != nil && f.Push.Topic == topic && f.Push.Pub != nil {
			return string(f.Push.Pub.Data)
		}
	}
}

// A publish sent again with the same idempotency key (same connection,
// another connection of the same user) is published once and gets the
// first's reply, position included; another user's same key, another key
// or no key publish. Checked on a topic with history and one without.
func TestIdempotentPublish(t *testing.T) {
	_, addr := start(t, realtime.Options{
		Authenticate: func(_ context.Context, c realtime.Credentials) (realtime.Identity, error) {
			return realtime.Identity{User: c.Token}, nil
		},
	}, nil)
	a, b, b2, c := dial(t, addr), dial(t, addr), dial(t, addr), dial(t, addr)
	a.connect("watcher")
	b.connect("bob")
	b2.connect("bob")
	c.connect("carol")
	for _, topic := range []string{"chat:idem", "open:idem"} {
		a.ok(a.cmd("subscribe", map[string]any{"topic": topic}), nil)
		pub := func(w *wsc, data, idem string) string {
			t.Helper()
			var pr cp.PublishResult
			if idem != "" {
				idem = topic + idem // keys are per user, not per topic
			}
			w.ok(w.cmd("publish", map[string]any{"topic": topic, "data": data, "idem": idem}), &pr)
			return pr.Pos
		}
		p1 := pub(b, "one", "k1")
		if again := pub(b, "one", "k1"); again != p1 {
			t.Fatalf("%s: retry on the same connection: pos %q, first %q", topic, again, p1)
		}
		if again := pub(b2, "one", "k1"); again != p1 {
			t.Fatalf("%s: retry on another connection: pos %q, first %q", topic, again, p1)
		}
		if topic == "chat:idem" && p1 == "" {
			t.Fatal("no position on a history topic")
		}
		pub(c, "carol's", "k1") // another user's key
		pub(b, "two", "k2")
		pub(b, "end", "")
		for _, want := range []string{`"one"`, `"carol's"`, `"two"`, `"end"`} {
			if got := pubData(a, topic); got != want {
				t.Fatalf("%s: publication %s, want %s", topic, got, want)
			}
		}
	}
	b.wantError(b.cmd("publish", map[string]any{"topic": "open:idem", "data": 1, "idem": strings.Repeat("k", 65)}), cp.ErrBadRequest)
	b.ok(b.cmd("publish", map[string]any{"topic": "open:idem", "data": 1, "idem": strings.Repeat("k", 64)}), nil)
}

// pubAt reads a's frames until a publication of topic and returns its
// data and position.
func pubAt(a *wsc, topic string) (data, pos string) {
	a.t.Helper()
	for {
		f := a.read()
		if f.Push != nil && f.Push.Topic == topic && f.Push.Pub != nil {
			return string(f.Push.Pub.Data), f.Push.Pub.Pos
		}
	}
}

// The retry reaches another loop of the process: the MemoryBroker the
// loops share drops it, so that it is published once, and both replies
// carry the position the subscriber (on a third connection) saw it at,
// on a history topic; a topic without history replies without one.
func TestIdempotentPublishAcrossLoops(t *testing.T) {
	addrs := startAPILoops(t, 2, "")
	a, b0, b1 := dial(t, addrs[0]), dial(t, addrs[0]), dial(t, addrs[1])
	a.connect("watcher")
	b0.connect("bob")
	b1.connect("bob")
	for _, topic := range []string{"chat:idem", "open:idem"} {
		a.ok(a.cmd("subscribe", map[string]any{"topic": topic}), nil)
		var r1, r2, r3 cp.PublishResult
		b0.ok(b0.cmd("publish", map[string]any{"topic": topic, "data": "one", "idem": topic + "k1"}), &r1)
		b1.ok(b1.cmd("publish", map[string]any{"topic": topic, "data": "one", "idem": topic + "k1"}), &r2)
		b1.ok(b1.cmd("publish", map[string]any{"topic": topic, "data": "two", "idem": topic + "k2"}), &r3)
		var pos []string
		for _, want := range []string{`"one"`, `"two"`} {
			got, p := pubAt(a, topic)
			if got != want {
				t.Fatalf("%s: publication %s, want %s", topic, got, want)
			}
			pos = append(pos, p)
		}
		if topic == "open:idem" {
			if r1.Pos != "" || r2.Pos != "" || r3.Pos != "" {
				t.Fatalf("%s: positions %q %q %q on a topic without history", topic, r1.Pos, r2.Pos, r3.Pos)
			}
			continue
		}
		if r1.Pos == "" || r1.Pos != pos[0] || r2.Pos != pos[0] || r3.Pos != pos[1] {
			t.Fatalf("%s: replies %q, retry %q, next %q; the subscriber saw %q", topic, r1.Pos, r2.Pos, r3.Pos, pos)
		}
	}
}

// A retry that arrives while the first is still under way (a topic's
// first use: its KeepHistory runs off the loop first) waits for the
// first's reply; the history holds one publication.
func TestIdempotentPublishWhileUnderWay(t *testing.T) {
	addrs := startAPILoops(t, 1, "")
	b, b2 := dial(t, addrs[0]), dial(t, addrs[0])
	b.connect("bob")
	b2.connect("bob")
	for i := range 5 {
		topic := "chat:new" + strconv.Itoa(i) // not kept yet
		id1 := b.cmd("publish", map[string]any{"topic": topic, "data": "one", "idem": topic})
		id2 := b2.cmd("publish", map[string]any{"topic": topic, "data": "one", "idem": topic})
		var r1, r2 cp.PublishResult
		b.ok(id1, &r1)
		b2.ok(id2, &r2)
		if r1 != r2 {
			t.Fatalf("replies %+v and %+v", r1, r2)
		}
		c := dial(t, addrs[0])
		c.connect("carol")
		var sr cp.SubscribeResult
		c.ok(c.cmd("subscribe", map[string]any{"topic": topic}), &sr)
		epoch, _, _ := strings.Cut(sr.Head, "-")
		d := dial(t, addrs[0])
		d.connect("dave")
		pushes := d.ok(d.cmd("subscribe", map[string]any{"topic": topic, "since": epoch + "-0"}), &sr)
		if sr.Recovered != 1 || len(pushes) != 1 || string(pushes[0].Push.Pub.Data) != `"one"` {
			t.Fatalf("%s: history %+v %+v, want one publication", topic, sr, pushes)
		}
	}
}
