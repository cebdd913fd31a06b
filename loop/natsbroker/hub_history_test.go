// Hub over a history topic, end to end, with the hub's plain Subscribe
// (fed by the replica); cmd/tornago's tests resume clients across processes.

package natsbroker_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/natsbroker"
	"github.com/tornago/tornago/loop/pubsub"
)

// startHistoryNode is startNode with a broker keeping history of every
// room it is given, returned for inspection.
func startHistoryNode(t *testing.T, natsURL string, rooms ...string) (string, *natsbroker.Broker) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	broker := natsbroker.New(nc, "test.")
	for _, r := range rooms {
		if err := broker.KeepHistory(r, pubsub.HistoryOptions{MaxMessages: 100}); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := loop.New(loop.Options{})
	hub := loop.NewHub(l, loop.Text, broker)
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket(`/room/(\w+)`, func(*loop.Request) loop.WebSocketHandler { return &room{hub: hub} }, loop.WSOptions{})
	if err := l.Listen(addr, app); err != nil {
		t.Fatal(err)
	}
	go l.Start()
	<-l.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
		broker.Close()
		nc.Close()
	})
	return addr, broker
}

// TestHubOverHistoryTopic: two nodes' hubs share a history room: each
// client gets every message once, in one order, and both brokers' history
// holds them at the same positions.
func TestHubOverHistoryTopic(t *testing.T) {
	ns := startJetStream(t, -1, t.TempDir())
	n1, b1 := startHistoryNode(t, ns.ClientURL(), "a")
	n2, b2 := startHistoryNode(t, ns.ClientURL(), "a")
	c1, c2 := dial(t, n1, "/room/a"), dial(t, n2, "/room/a")
	// The hubs subscribe on their loops, a moment after the upgrade: probe
	// until node 2's client hears node 1's, then skip to a "sync" that
	// both must get (both hubs are in by then).
	// (A gorilla read that times out breaks the connection: c2 reads
	// once, with read's 5 s, while probes go out every 20 ms.)
	stop, probing := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(probing)
		for range 250 {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				c1.WriteMessage(gws.TextMessage, []byte("probe"))
			}
		}
	}()
	m := read(t, c2)
	close(stop)
	<-probing
	if m != "probe" {
		t.Fatalf("client 2 got %q, want a probe", m)
	}
	c1.WriteMessage(gws.TextMessage, []byte("sync"))
	for j, c := range []*gws.Conn{c1, c2} {
		for k := 0; read(t, c) != "sync"; k++ {
			if k > 1000 {
				t.Fatalf("client %d: no sync", j)
			}
		}
	}

	const n = 20
	for i := range n {
		src := c1
		if i%2 == 1 {
			src = c2
		}
		src.WriteMessage(gws.TextMessage, []byte("m"+strconv.Itoa(i)))
		for j, c := range []*gws.Conn{c1, c2} {
			if m := read(t, c); m != "m"+strconv.Itoa(i) {
				t.Fatalf("message %d, client %d: %q", i, j, m)
			}
		}
	}
	h1, cancel, _ := b1.SubscribeHistory("a", func(pubsub.Message) {})
	cancel()
	m1, err1 := b1.History("a", pubsub.Position{Epoch: h1.Epoch}, -1, nil)
	m2, err2 := b2.History("a", pubsub.Position{Epoch: h1.Epoch}, -1, nil)
	if err1 != nil || err2 != nil || len(m1) != len(m2) || len(m1) < n {
		t.Fatalf("histories: %d (%v) and %d (%v)", len(m1), err1, len(m2), err2)
	}
	for i := range m1 {
		if m1[i].Pos != m2[i].Pos || string(m1[i].Data) != string(m2[i].Data) {
			t.Fatalf("message %d: %v %q on node 1, %v %q on node 2", i, m1[i].Pos, m1[i].Data, m2[i].Pos, m2[i].Data)
		}
	}
}
