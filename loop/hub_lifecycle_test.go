package loop

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop/pubsub"
)

// blockingBroker is a MemoryBroker whose calls that may block (Subscribe,
// cancel, KeepHistory) wait until gate is closed, as natsbroker's do while
// a stalled publish holds the NATS connection's lock. entered gets the
// name of each call as it starts waiting.
type blockingBroker struct {
	*pubsub.MemoryBroker
	gate    chan struct{}
	entered chan string
	once    sync.Once
}

func newBlockingBroker() *blockingBroker {
	return &blockingBroker{MemoryBroker: &pubsub.MemoryBroker{}, gate: make(chan struct{}), entered: make(chan string, 16)}
}

func (b *blockingBroker) wait(call string) {
	b.entered <- call
	<-b.gate
}

func (b *blockingBroker) release() { b.once.Do(func() { close(b.gate) }) }

func (b *blockingBroker) Subscribe(topic string, deliver func([]byte)) (func(), error) {
	b.wait("subscribe " + topic)
	cancel, err := b.MemoryBroker.Subscribe(topic, deliver)
	if err != nil {
		return nil, err
	}
	return func() { b.wait("cancel " + topic); cancel() }, nil
}

func (b *blockingBroker) KeepHistory(topic string, o pubsub.HistoryOptions) error {
	b.wait("keep history " + topic)
	return b.MemoryBroker.KeepHistory(topic, o)
}

// echoRoundTrip sends one message on c and waits at most 1 s for its echo:
// the loop is not stalled.
func echoRoundTrip(t *testing.T, c *gws.Conn, msg string) {
	t.Helper()
	if err := c.WriteMessage(gws.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("echo write: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, got, err := c.ReadMessage()
	if err != nil || string(got) != msg {
		t.Fatalf("echo %q while the broker blocks: got %q, %v (the loop is stalled)", msg, got, err)
	}
}

// TestHubBrokerCallsLeaveTheLoop: a broker whose Subscribe, cancel and
// KeepHistory block (natsbroker's, behind a stalled publish) no longer
// stalls the loop: an /echo client keeps round-tripping while each of them
// blocks, and once the broker answers the hub goes on (the subscriber gets
// the room's messages, KeepHistory's done runs on the loop, the last
// unsubscribe cancels).
func TestHubBrokerCallsLeaveTheLoop(t *testing.T) {
	broker := newBlockingBroker()
	var hub *Hub
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, broker)
		app.HandleWebSocket(`/room/(\w+)`, func(*Request) WebSocketHandler { return &roomHandler{hub: hub} }, WSOptions{})
		app.HandleWebSocket("/echo", func(*Request) WebSocketHandler { return wsEchoHandler{} }, WSOptions{})
	})
	t.Cleanup(broker.release) // before the loop's Stop (cleanups run last first)
	echo := gorillaDial(t, addr, "/echo", nil)
	echoRoundTrip(t, echo, "before")

	// Subscribe: the first subscriber of a room subscribes the hub.
	room := gorillaDial(t, addr, "/room/a", nil)
	if call := wsRecv(t, broker.entered, "the broker's Subscribe"); call != "subscribe a" {
		t.Fatalf("broker call %q, want subscribe a", call)
	}
	echoRoundTrip(t, echo, "during subscribe")
	// A message the subscriber publishes meanwhile waits behind the
	// subscription, so that it comes back to it.
	room.WriteMessage(gws.TextMessage, []byte("mine"))
	echoRoundTrip(t, echo, "during subscribe, after a publish")

	// KeepHistory: the broker's wait (natsbroker: up to 10 s) is off the
	// loop too; done runs on the loop once it answered.
	kept := make(chan error, 1)
	l.AddCallback(func() {
		hub.KeepHistory("h", pubsub.HistoryOptions{MaxMessages: 10}, func(err error) {
			if !l.InLoop() {
				err = errors.New("done ran off the loop")
			}
			kept <- err
		})
	})
	echoRoundTrip(t, echo, "during keep history")

	broker.release()
	if m := readText(t, room); m != "mine" {
		t.Fatalf("the room got %q, want its own message", m)
	}
	if err := wsRecv(t, kept, "KeepHistory's done"); err != nil {
		t.Fatalf("KeepHistory: %v", err)
	}
	if call := wsRecv(t, broker.entered, "keep history"); call != "keep history h" {
		t.Fatalf("broker call %q", call)
	}
	// The last subscriber leaves: the cancel (which blocks until the gate,
	// open now) runs off the loop.
	room.Close()
	if call := wsRecv(t, broker.entered, "the broker's cancel"); call != "cancel a" {
		t.Fatalf("broker call %q, want cancel a", call)
	}
	echoRoundTrip(t, echo, "after")
}

// TestHubCloseReleasesEverything: a hub per room, created and closed 1,000
// times on one loop with a WebSocket, an event stream and a watcher
// subscribed, leaves the loop's close observers and the broker's
// subscriptions as they were (before Close existed, every hub stayed in
// the observer lists for good); a closed hub refuses Publish and
// Subscribe with ErrHubClosed.
func TestHubCloseReleasesEverything(t *testing.T) {
	broker := newCountingBroker()
	ws := make(chan *WebSocket, 1)
	streams := make(chan *EventStream, 1)
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		app.HandleWebSocket("/ws", func(*Request) WebSocketHandler { return &openSignal{ch: ws} }, WSOptions{})
		app.Handle("/sse", Methods{Get: func(r *Request) {
			es, err := r.EventStream(EventStreamOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			streams <- es
		}})
	})
	gorillaDial(t, addr, "/ws", nil)
	w := wsRecv(t, ws, "the WebSocket")
	resp, err := http.Get("http://" + addr + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	es := wsRecv(t, streams, "the event stream")

	type sizes struct{ wsObs, esObs, subs int }
	measure := func() sizes {
		return onLoop(l, func() sizes { return sizes{len(l.wsCloseObservers), len(l.esCloseObservers), broker.total()} })
	}
	before := measure()
	const hubs = 1000
	for i := 0; i < hubs; i++ {
		room := fmt.Sprintf("room.%d", i)
		errc := make(chan error, 1)
		l.AddCallback(func() {
			errc <- func() error {
				h := NewHub(l, Text, broker)
				if err := h.Subscribe(room, w); err != nil {
					return err
				}
				// With a broker, on the loop: the broker's calls are
				// still under way when Close comes, and are undone.
				h.KeepHistory(room+".h", pubsub.HistoryOptions{MaxMessages: 4}, nil)
				if _, err := h.Watch(room+".h", func(pubsub.Message) {}); err != nil && !errors.Is(err, pubsub.ErrNoHistory) {
					return err
				}
				if err := h.Close(); err != nil {
					return err
				}
				if err := h.Publish(room, []byte("x")); !errors.Is(err, ErrHubClosed) {
					return fmt.Errorf("publish after close: %v, want ErrHubClosed", err)
				}
				if err := h.Subscribe(room, w); !errors.Is(err, ErrHubClosed) {
					return fmt.Errorf("subscribe after close: %v, want ErrHubClosed", err)
				}
				return nil
			}()
		})
		if err := wsRecv(t, errc, "one hub"); err != nil {
			t.Fatal(err)
		}
	}
	// Hubs with a history topic and an event stream, without a broker
	// (the history is ready at once).
	for i := 0; i < hubs; i++ {
		errc := make(chan error, 1)
		l.AddCallback(func() {
			errc <- func() error {
				h := NewHub(l, Text, nil)
				h.KeepHistory("h", pubsub.HistoryOptions{MaxMessages: 4}, nil)
				if _, err := h.SubscribeSince("h", w, pubsub.Position{}); err != nil {
					return err
				}
				if _, err := h.SubscribeStream("h", es, pubsub.Position{}); err != nil {
					return err
				}
				if _, err := h.Watch("h", func(pubsub.Message) {}); err != nil {
					return err
				}
				return h.Close()
			}()
		})
		if err := wsRecv(t, errc, "one history hub"); err != nil {
			t.Fatal(err)
		}
	}
	// The broker calls finish off the loop.
	waitFor(t, "the observers and broker subscriptions back to their size", func() bool { return measure() == before })
}

// openSignal sends each opened WebSocket to ch.
type openSignal struct {
	WebSocketBase
	ch chan *WebSocket
}

func (o *openSignal) Open(w *WebSocket) { o.ch <- w }

// TestHubCloseOffTheLoop: Close is loop-only and says so off the loop.
func TestHubCloseOffTheLoop(t *testing.T) {
	l, _ := wsStartLoop(t, func(*Loop, *Application) {})
	h := NewHub(l, Text, nil)
	if err := h.Close(); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("Close off the loop: %v, want ErrNotOnLoop", err)
	}
}

// TestHubKeepHistoryOptionsRule: the hub applies pubsub's rule for a
// second KeepHistory, with and without a broker, and before and after
// Start: the same options are a no-op, other options an error wrapping
// ErrHistoryOptionsDiffer.
func TestHubKeepHistoryOptionsRule(t *testing.T) {
	first, other := pubsub.HistoryOptions{MaxMessages: 10}, pubsub.HistoryOptions{MaxMessages: 20}
	for _, broker := range []pubsub.Broker{nil, &pubsub.MemoryBroker{}} {
		var hub *Hub
		l, _ := wsStartLoop(t, func(l *Loop, app *Application) {
			hub = NewHub(l, Text, broker)
			// Before Start: done runs before KeepHistory returns.
			ran := false
			hub.KeepHistory("t", first, func(err error) {
				ran = true
				if err != nil {
					t.Error(err)
				}
			})
			if !ran {
				t.Error("before Start, done did not run before KeepHistory returned")
			}
		})
		keep := func(o pubsub.HistoryOptions) error {
			done := make(chan error, 1)
			l.AddCallback(func() { hub.KeepHistory("t", o, func(err error) { done <- err }) })
			return wsRecv(t, done, "KeepHistory's done")
		}
		if err := keep(first); err != nil {
			t.Fatalf("broker %T: the same options again: %v", broker, err)
		}
		if err := keep(other); !errors.Is(err, pubsub.ErrHistoryOptionsDiffer) {
			t.Fatalf("broker %T: other options: %v, want ErrHistoryOptionsDiffer", broker, err)
		}
	}
}
