package loop

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
)

// blockLoop runs a callback that holds the loop until the returned
// function is called (or 10 s pass), and returns once it holds it.
func blockLoop(t *testing.T, l *Loop) (release func()) {
	t.Helper()
	held, unblock := make(chan struct{}), make(chan struct{})
	l.AddCallback(func() {
		close(held)
		select {
		case <-unblock:
		case <-time.After(10 * time.Second):
		}
	})
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("loop did not run the blocking callback")
	}
	var done bool
	release = func() {
		if !done {
			done = true
			close(unblock)
		}
	}
	t.Cleanup(release)
	return release
}

// TestDataCallbackBudget: data queued towards a loop that is not taking it
// is bounded by MaxAsyncBytes; the bytes come back when the callbacks run.
func TestDataCallbackBudget(t *testing.T) {
	l, stop := startBareLoop(t, Options{MaxAsyncBytes: 10000})
	release := blockLoop(t, l)
	ran := make(chan int, 8)
	add := func(n int) error { return l.addDataCallback(n, func() { ran <- n }) }
	for i, c := range []struct {
		n    int
		want error
	}{{4000, nil}, {4000, nil}, {4000, ErrLoopBacklog}, {2000, nil}, {1, ErrLoopBacklog}, {0, nil}} {
		if err := add(c.n); !errors.Is(err, c.want) {
			t.Fatalf("call %d (%d bytes, %d queued): got %v, want %v", i, c.n, l.queuedBytes.Load()-int64(c.n), err, c.want)
		}
	}
	if q := l.queuedBytes.Load(); q != 10000 {
		t.Fatalf("%d bytes counted, want 10000", q)
	}
	release()
	sum := 0
	for range 4 {
		select {
		case n := <-ran:
			sum += n
		case <-time.After(5 * time.Second):
			t.Fatal("queued data callbacks did not run")
		}
	}
	if sum != 10000 {
		t.Fatalf("ran callbacks for %d bytes, want 10000", sum)
	}
	onLoop(l, func() int { return 0 }) // the counter drops before each fn runs
	if q := l.queuedBytes.Load(); q != 0 {
		t.Fatalf("%d bytes still counted after the callbacks ran", q)
	}
	if err := add(10000); err != nil {
		t.Fatalf("the whole budget again: %v", err)
	}
	onLoop(l, func() int { return 0 })
	<-ran
	if err := stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := add(1); !errors.Is(err, ErrStopped) {
		t.Fatalf("after Stop: %v, want ErrStopped", err)
	}
	if q := l.queuedBytes.Load(); q != 0 {
		t.Fatalf("%d bytes counted on a stopped loop", q)
	}
}

// TestHubBrokerDeliveriesBounded: while the loop is held, broker
// deliveries queue up to MaxAsyncBytes; the rest are dropped and
// counted, and the subscriber later gets the accepted ones in order.
func TestHubBrokerDeliveriesBounded(t *testing.T) {
	const budget, size, sent = 64 << 10, 1 << 10, 200
	var broker pubsub.MemoryBroker
	var hub *Hub
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, addr := startTestLoopWith(t, Options{TimeoutResolution: 10 * time.Millisecond, Logger: logger, MaxAsyncBytes: budget}, func(l *Loop) *Application {
		app := NewApplication(AppOptions{})
		hub = NewHub(l, Text, &broker)
		app.HandleWebSocket(`/room/(\w+)`, func(*Request) WebSocketHandler { return &roomHandler{hub: hub} }, WSOptions{})
		return app
	})
	c := gorillaDial(t, addr, "/room/q", nil)
	for deadline := time.Now().Add(5 * time.Second); onLoop(l, func() int { n, _ := hub.Subscribers("q"); return n }) != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not subscribed")
		}
	}
	release := blockLoop(t, l)
	msg := func(i int) []byte {
		b := make([]byte, size)
		copy(b, fmt.Sprintf("%08d", i))
		return b
	}
	for i := range sent {
		broker.Publish("q", msg(i))
	}
	accepted := sent - int(hub.Dropped())
	if accepted != budget/size {
		t.Errorf("%d of %d deliveries queued while the loop was held, want %d (MaxAsyncBytes %d)", accepted, sent, budget/size, budget)
	}
	l.mu.Lock()
	queued := len(l.queue)
	l.mu.Unlock()
	if q := l.queuedBytes.Load(); q > budget || queued > budget/size+1 {
		t.Errorf("%d callbacks holding %d bytes queued, budget %d", queued, q, budget)
	}
	release()
	for i := range accepted {
		if m := readText(t, c); m[:8] != fmt.Sprintf("%08d", i) {
			t.Fatalf("message %d: got %q", i, m[:8])
		}
	}
	broker.Publish("q", []byte("last"))
	if m := readText(t, c); m != "last" {
		t.Fatalf("after the accepted ones got %q..., want last", m[:min(len(m), 8)])
	}
}
