package loop

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop/pubsub"
)

// TestHubZeroPositionIsFromNow: the zero Position (what ParsePosition("")
// gives a fresh client) means "from now" everywhere: History gives no old
// message and no error (it said ErrHistoryGone), SubscribeStream and
// SubscribeSince replay nothing, and what follows arrives.
func TestHubZeroPositionIsFromNow(t *testing.T) {
	var hub *Hub
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, nil)
		hub.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 10}, nil)
		app.HandleWebSocket("/h", func(*Request) WebSocketHandler { return historyRoute{hub: hub, topic: "t"} }, WSOptions{})
	})
	for i := 1; i <= 2; i++ {
		if err := onLoop(l, func() error { return hub.Publish("t", fmt.Appendf(nil, "old%d", i)) }); err != nil {
			t.Fatal(err)
		}
	}
	since, _ := pubsub.ParsePosition("")
	type answer struct {
		n    int
		head pubsub.Position
		err  error
	}
	got := onLoop(l, func() answer {
		msgs, head, err := hub.History("t", since, nil)
		return answer{len(msgs), head, err}
	})
	if got.err != nil || got.n != 0 || got.head.Offset != 2 {
		t.Fatalf("History(zero) = %d messages, head %v, err %v; want none, head at offset 2, no error", got.n, got.head, got.err)
	}
	// A fresh WebSocket subscriber gets nothing old, then the live one.
	c := gorillaDial(t, addr, "/h", nil)
	waitFor(t, "subscribed", func() bool { return onLoop(l, func() int { n, _ := hub.Subscribers("t"); return n }) == 1 })
	if err := onLoop(l, func() error { return hub.Publish("t", []byte("new")) }); err != nil {
		t.Fatal(err)
	}
	if p, d := readPositioned(t, c); d != "new" || p.Offset != 3 {
		t.Fatalf("fresh subscriber got %v %q, want the new message only", p, d)
	}
}

// failingBroker refuses every publication.
type failingBroker struct{ pubsub.Broker }

var errRefused = errors.New("test broker: refused")

func (failingBroker) Publish(string, []byte) error { return errRefused }

// TestHubPublishContract: Publish is loop-only (ErrNotOnLoop off the loop,
// nothing sent), PublishAsync is the goroutine-safe door whose done gets
// Publish's real result on the loop, and PublishAt is loop-only too.
func TestHubPublishContract(t *testing.T) {
	l, hub, addr := startHubLoop(t, nil)
	c := gorillaDial(t, addr, "/room/a", nil)
	waitFor(t, "subscribed", func() bool { return onLoop(l, func() int { n, _ := hub.Subscribers("a"); return n }) == 1 })
	if err := hub.Publish("a", []byte("off the loop")); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("Publish off the loop: %v, want ErrNotOnLoop", err)
	}
	if err := hub.PublishAt("a", pubsub.Position{Epoch: 1, Offset: 1}, nil); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("PublishAt off the loop: %v, want ErrNotOnLoop", err)
	}
	if _, err := hub.Subscribers("a"); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("Subscribers off the loop: %v, want ErrNotOnLoop", err)
	}
	data := []byte("async")
	done := make(chan error, 1)
	if err := hub.PublishAsync("a", data, func(err error) {
		if !l.InLoop() {
			err = errors.New("done called off the loop")
		}
		done <- err
	}); err != nil {
		t.Fatal(err)
	}
	copy(data, "XXXXX") // PublishAsync copied it
	if err := <-done; err != nil {
		t.Fatalf("PublishAsync done: %v", err)
	}
	if m := readText(t, c); m != "async" {
		t.Fatalf("got %q, want async (the off-loop Publish must have sent nothing)", m)
	}

	// The real error reaches done: a broker's refusal.
	_, bhub, _ := startHubLoop(t, failingBroker{})
	if err := bhub.PublishAsync("a", []byte("x"), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, errRefused) {
		t.Fatalf("PublishAsync with a refusing broker: done got %v, want errRefused", err)
	}
	// And a closed hub's.
	if err := onLoop(l, hub.Close); err != nil {
		t.Fatal(err)
	}
	if err := hub.PublishAsync("a", []byte("x"), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrHubClosed) {
		t.Fatalf("PublishAsync on a closed hub: done got %v, want ErrHubClosed", err)
	}
}

// envelope is a JSON chat application's own frame for positioned messages.
type envelope struct {
	Topic string `json:"topic"`
	Pos   string `json:"pos"`
	Data  string `json:"data"`
}

// TestHubFrameJSONEnvelope: with SetFrame, positioned messages reach
// WebSocket clients (gorilla) as the application's own JSON envelope
// holding the position, SSE events carry the same envelope as their data
// (id stays the position), a client resumes from the envelope's pos, and
// the frame function runs once per loop per live message whatever the
// number of subscribers.
func TestHubFrameJSONEnvelope(t *testing.T) {
	var hub *Hub
	var calls atomic.Int64
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, nil)
		hub.KeepHistory("room", pubsub.HistoryOptions{MaxMessages: 100}, nil)
		if err := hub.SetFrame(func(dst []byte, topic string, pos pubsub.Position, data []byte) []byte {
			calls.Add(1)
			b, _ := json.Marshal(envelope{Topic: topic, Pos: pos.String(), Data: string(data)})
			return append(dst, b...)
		}); err != nil {
			t.Error(err)
		}
		app.HandleWebSocket("/h", func(*Request) WebSocketHandler { return historyRoute{hub: hub, topic: "room"} }, WSOptions{})
		app.Handle("/sse", Methods{Get: func(r *Request) {
			if es, err := r.EventStream(EventStreamOptions{}); err == nil {
				hub.SubscribeStream("room", es, pubsub.Position{})
			}
		}})
	})
	read := func(c *gws.Conn) envelope {
		t.Helper()
		var e envelope
		if m := readText(t, c); json.Unmarshal([]byte(m), &e) != nil {
			t.Fatalf("not a JSON envelope: %q", m)
		}
		return e
	}
	a, b := gorillaDial(t, addr, "/h", nil), gorillaDial(t, addr, "/h", nil)
	resp, err := http.Get("http://" + addr + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sse := bufio.NewReader(resp.Body)
	waitFor(t, "two WebSockets and a stream subscribed", func() bool {
		return onLoop(l, func() bool {
			n, _ := hub.Subscribers("room")
			return n == 2 && len(hub.topics["room"].hist.streams) == 1
		})
	})
	publish := func(s string) {
		t.Helper()
		if err := hub.PublishAsync("room", []byte(s), nil); err != nil {
			t.Fatal(err)
		}
	}
	calls.Store(0)
	for i := 1; i <= 3; i++ {
		publish("m" + strconv.Itoa(i))
	}
	var last envelope
	for i := 1; i <= 3; i++ {
		ea, eb := read(a), read(b)
		ev := readHubEvent(t, sse)
		want := fmt.Sprintf("m%d", i)
		p, err := pubsub.ParsePosition(ea.Pos)
		if err != nil || p.Offset != int64(i) || ea.Topic != "room" || ea.Data != want || eb != ea {
			t.Fatalf("message %d: a got %+v, b %+v", i, ea, eb)
		}
		var es envelope
		if json.Unmarshal([]byte(ev.data), &es) != nil || es != ea || ev.id != ea.Pos {
			t.Fatalf("message %d: SSE got %+v, want id %s and data %+v", i, ev, ea.Pos, ea)
		}
		last = ea
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("frame function called %d times for 3 messages to 3 subscribers, want 3 (once per loop per message)", n)
	}
	// Resume from the envelope's pos.
	a.Close()
	publish("m4")
	publish("m5")
	waitFor(t, "the history to hold m5", func() bool {
		return onLoop(l, func() int64 { p, _ := hub.Head("room"); return p.Offset }) == 5
	})
	c := gorillaDial(t, addr, "/h?since="+last.Pos, nil)
	for _, want := range []string{"m4", "m5"} {
		if e := read(c); e.Data != want || !strings.HasSuffix(e.Pos, "-"+want[1:]) {
			t.Fatalf("resumed with %+v, want %s", e, want)
		}
	}
	publish("m6")
	if e := read(c); e.Data != "m6" {
		t.Fatalf("live after resume: %+v", e)
	}
	// nil restores the default "E-N\n" framing.
	if err := onLoop(l, func() error { return hub.SetFrame(nil) }); err != nil {
		t.Fatal(err)
	}
	publish("m7")
	if p, d := readPositioned(t, c); d != "m7" || p.Offset != 7 {
		t.Fatalf("default framing: %v %q", p, d)
	}
	if err := hub.SetFrame(nil); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("SetFrame off the loop: %v, want ErrNotOnLoop", err)
	}
}

// publishWait publishes from a goroutine other than hub's loop and waits
// for Publish's result on the loop: once it returns, the message is with
// the broker (or fanned out), so that a publication through another hub
// comes after it.
func publishWait(hub *Hub, topic string, data []byte) error {
	done := make(chan error, 1)
	if err := hub.PublishAsync(topic, data, func(err error) { done <- err }); err != nil {
		return err
	}
	return <-done
}
