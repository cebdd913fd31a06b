package loop

import (
	"sync"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop/pubsub"
)

// roomHandler subscribes to the room named in the path and publishes every
// message it receives to that room.
type roomHandler struct {
	WebSocketBase
	hub  *Hub
	room string
}

func (h *roomHandler) Open(w *WebSocket) {
	h.room = w.Request().PathArgs[0]
	h.hub.Subscribe(h.room, w)
}

func (h *roomHandler) OnMessage(w *WebSocket, _ MessageType, data []byte) {
	h.hub.Publish(h.room, data)
}

func startHubLoop(t *testing.T, broker pubsub.Broker) (*Loop, *Hub, string) {
	var hub *Hub
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, broker)
		app.HandleWebSocket(`/room/(\w+)`, func(*Request) WebSocketHandler { return &roomHandler{hub: hub} }, WSOptions{})
	})
	return l, hub, addr
}

func readText(t *testing.T, c *gws.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, m, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(m)
}

func onLoop[T any](l *Loop, fn func() T) T {
	ch := make(chan T, 1)
	l.AddCallback(func() { ch <- fn() })
	return <-ch
}

func TestHubRooms(t *testing.T) {
	l, hub, addr := startHubLoop(t, nil)
	a := []*gws.Conn{gorillaDial(t, addr, "/room/a", nil), gorillaDial(t, addr, "/room/a", nil), gorillaDial(t, addr, "/room/a", nil)}
	b := gorillaDial(t, addr, "/room/b", nil)

	a[0].WriteMessage(gws.TextMessage, []byte("hello a"))
	for i, c := range a {
		if m := readText(t, c); m != "hello a" {
			t.Fatalf("a[%d] got %q", i, m)
		}
	}
	// From another goroutine: copied and fanned out on the loop.
	if err := hub.PublishAsync("b", []byte("to b"), nil); err != nil {
		t.Fatal(err)
	}
	if m := readText(t, b); m != "to b" { // and not "hello a"
		t.Fatalf("b got %q", m)
	}

	a[2].Close()
	deadline := time.Now().Add(3 * time.Second)
	for onLoop(l, func() int { n, _ := hub.Subscribers("a"); return n }) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("closed subscriber still counted: %d", onLoop(l, func() int { n, _ := hub.Subscribers("a"); return n }))
		}
		time.Sleep(10 * time.Millisecond)
	}
	a[1].WriteMessage(gws.TextMessage, []byte("two left"))
	for i, c := range a[:2] {
		if m := readText(t, c); m != "two left" {
			t.Fatalf("a[%d] got %q", i, m)
		}
	}
	if n := onLoop(l, func() int { return len(hub.topics["a"].subs) }); n != 2 {
		t.Fatalf("closed subscriber kept after a publication: %d entries", n)
	}
}

// TestHubMemoryBroker checks that hubs on two loops share a topic through
// a broker and that each subscriber gets each message exactly once.
func TestHubMemoryBroker(t *testing.T) {
	var broker pubsub.MemoryBroker
	_, _, addr1 := startHubLoop(t, &broker)
	_, _, addr2 := startHubLoop(t, &broker)
	c1 := gorillaDial(t, addr1, "/room/x", nil)
	c2 := gorillaDial(t, addr2, "/room/x", nil)
	other := gorillaDial(t, addr2, "/room/y", nil)

	for i, msg := range []string{"first", "second"} {
		src := c1
		if i == 1 {
			src = c2
		}
		src.WriteMessage(gws.TextMessage, []byte(msg))
		for j, c := range []*gws.Conn{c1, c2} {
			if m := readText(t, c); m != msg { // a duplicate would show here
				t.Fatalf("message %d, conn %d: got %q, want %q", i, j, m, msg)
			}
		}
	}
	other.WriteMessage(gws.TextMessage, []byte("only y"))
	if m := readText(t, other); m != "only y" {
		t.Fatalf("y got %q", m)
	}
}

// TestHubDropsBrokerSubscription: when a topic's last local subscriber is
// gone, the hub cancels its broker subscription.
func TestHubDropsBrokerSubscription(t *testing.T) {
	broker := newCountingBroker()
	l, hub, addr := startHubLoop(t, broker)
	brokerTopics := broker.topics
	c := gorillaDial(t, addr, "/room/z", nil)
	c.WriteMessage(gws.TextMessage, []byte("hi"))
	if m := readText(t, c); m != "hi" {
		t.Fatalf("got %q", m)
	}
	if n := brokerTopics(); n != 1 {
		t.Fatalf("broker has %d topics, want 1", n)
	}
	c.Close()
	// Wait until the loop has seen the close, then publish: the closed
	// subscriber drops out and the topic with it.
	for deadline := time.Now().Add(3 * time.Second); onLoop(l, func() int { n, _ := hub.Subscribers("z"); return n }) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("close not seen")
		}
	}
	hub.PublishAsync("z", []byte("nobody"), nil)
	for deadline := time.Now().Add(3 * time.Second); brokerTopics() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("broker still has %d topics after the last subscriber left", brokerTopics())
		}
	}
}

// multiRoom subscribes each connection to its room and to "all".
type multiRoom struct {
	WebSocketBase
	hub *Hub
}

func (h *multiRoom) Open(w *WebSocket) {
	h.hub.Subscribe(w.Request().PathArgs[0], w)
	h.hub.Subscribe("all", w)
}

// TestHubForgetsClosedSubscriberAtOnce: when a subscribed WebSocket
// closes, the hub drops it from all its topics, drops the emptied topics
// and cancels their broker subscriptions at once, with no publication.
func TestHubForgetsClosedSubscriberAtOnce(t *testing.T) {
	broker := newCountingBroker()
	var hub *Hub
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, broker)
		app.HandleWebSocket(`/m/(\w+)`, func(*Request) WebSocketHandler { return &multiRoom{hub: hub} }, WSOptions{})
	})
	brokerTopics := broker.topics
	type state struct{ topics, all, watchers int }
	hubState := func() state {
		return onLoop(l, func() state {
			s := state{topics: len(hub.topics), watchers: len(hub.byWS)}
			if t := hub.topics["all"]; t != nil {
				s.all = len(t.subs)
			}
			return s
		})
	}
	a := gorillaDial(t, addr, "/m/a", nil)
	b := gorillaDial(t, addr, "/m/b", nil)
	for deadline := time.Now().Add(5 * time.Second); hubState() != (state{3, 2, 2}); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("hub state %+v, want 3 topics, 2 in all", hubState())
		}
	}
	a.Close()
	for deadline := time.Now().Add(5 * time.Second); hubState() != (state{2, 1, 1}) || brokerTopics() != 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after a closed: hub %+v (want 2 topics, 1 in all, 1 watched), broker %d topics (want 2)", hubState(), brokerTopics())
		}
	}
	b.Close()
	for deadline := time.Now().Add(5 * time.Second); hubState() != (state{}) || brokerTopics() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after both closed: hub %+v, broker %d topics; want nothing left", hubState(), brokerTopics())
		}
	}
}

// countingBroker is a MemoryBroker that counts its live subscriptions per
// topic (Subscribe and SubscribeHistory alike), for tests that check that a
// hub cancels what it subscribed.
type countingBroker struct {
	*pubsub.MemoryBroker
	mu   sync.Mutex
	subs map[string]int
}

func newCountingBroker() *countingBroker {
	return &countingBroker{MemoryBroker: &pubsub.MemoryBroker{}, subs: map[string]int{}}
}

func (b *countingBroker) count(topic string) func() {
	b.mu.Lock()
	b.subs[topic]++
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.subs[topic]--; b.subs[topic] == 0 {
				delete(b.subs, topic)
			}
		})
	}
}

func (b *countingBroker) Subscribe(topic string, deliver func([]byte)) (func(), error) {
	cancel, err := b.MemoryBroker.Subscribe(topic, deliver)
	if err != nil {
		return nil, err
	}
	done := b.count(topic)
	return func() { done(); cancel() }, nil
}

func (b *countingBroker) SubscribeHistory(topic string, deliver func(pubsub.Message)) (pubsub.Position, func(), error) {
	head, cancel, err := b.MemoryBroker.SubscribeHistory(topic, deliver)
	if err != nil {
		return head, nil, err
	}
	done := b.count(topic)
	return head, func() { done(); cancel() }, nil
}

// topics is how many topics have a live subscription.
func (b *countingBroker) topics() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// total is how many subscriptions are live, all topics together.
func (b *countingBroker) total() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.subs {
		n += c
	}
	return n
}
