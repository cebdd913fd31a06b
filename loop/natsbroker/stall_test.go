package natsbroker_test

import (
	"context"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/natsbroker"
	"github.com/tornago/tornago/loop/pubsub"
)

type echo struct{ loop.WebSocketBase }

func (echo) OnMessage(w *loop.WebSocket, typ loop.MessageType, data []byte) { w.WriteText(data) }

// TestHubKeepHistoryStalledNATS: Hub.KeepHistory over a NATS connection
// that stopped answering (natsbroker waits up to 10 s for JetStream) does
// not stall the loop: an /echo client keeps round-tripping, and done runs
// on the loop once NATS answers again.
func TestHubKeepHistoryStalledNATS(t *testing.T) {
	ns := startJetStream(t, -1, t.TempDir())
	proxy := newStallProxy(t, ns.Addr().String()) // stalls what the client sends
	nc, err := nats.Connect("nats://" + proxy.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	broker := natsbroker.New(nc, "stall.")
	l := loop.New(loop.Options{})
	hub := loop.NewHub(l, loop.Text, broker)
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/echo", func(*loop.Request) loop.WebSocketHandler { return echo{} }, loop.WSOptions{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		t.Fatal(err)
	}
	go l.Start()
	<-l.Ready()
	t.Cleanup(func() {
		proxy.setStalled(false)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
		broker.Close()
		nc.Close()
	})
	c := dial(t, l.Addrs()[0].String(), "/echo")
	roundTrip := func(msg string) {
		t.Helper()
		c.WriteMessage(gws.TextMessage, []byte(msg))
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != msg {
			t.Fatalf("echo %q: %q %v (the loop is stalled)", msg, got, err)
		}
	}
	roundTrip("before")

	proxy.setStalled(true)
	kept := make(chan error, 1)
	l.AddCallback(func() {
		hub.KeepHistory("room", pubsub.HistoryOptions{MaxMessages: 10}, func(err error) { kept <- err })
	})
	for _, m := range []string{"stalled 1", "stalled 2", "stalled 3"} {
		time.Sleep(200 * time.Millisecond)
		roundTrip(m)
	}
	select {
	case err := <-kept:
		t.Fatalf("KeepHistory done while NATS was stalled: %v", err)
	default:
	}
	proxy.setStalled(false)
	select {
	case err := <-kept:
		if err != nil {
			t.Fatalf("KeepHistory: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("KeepHistory's done did not run")
	}
	roundTrip("after")
}
