package natsbroker_test

import (
	"context"
	"net"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/natsbroker"
)

// startNATS runs an embedded nats-server on a free loopback port.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

type room struct {
	loop.WebSocketBase
	hub  *loop.Hub
	name string
}

func (r *room) Open(w *loop.WebSocket) {
	r.name = w.Request().PathArgs[0]
	if err := r.hub.Subscribe(r.name, w); err != nil {
		w.Close(loop.CloseInternalError, err.Error())
	}
}

func (r *room) OnMessage(w *loop.WebSocket, _ loop.MessageType, data []byte) {
	r.hub.Publish(r.name, data)
}

// startNode runs one Tornago node (a loop with a hub on its own NATS
// connection, as a separate machine would have) and returns its address.
func startNode(t *testing.T, natsURL string) string {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := loop.New(loop.Options{})
	hub := loop.NewHub(l, loop.Text, natsbroker.New(nc, "test."))
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
		nc.Close()
	})
	return addr
}

func dial(t *testing.T, addr, path string) *gws.Conn {
	t.Helper()
	c, _, err := gws.DefaultDialer.Dial("ws://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *gws.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, m, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(m)
}

// TestTwoNodesShareARoom: a message sent to node 1 reaches the clients of
// the same room on both nodes exactly once, and no other room.
func TestTwoNodesShareARoom(t *testing.T) {
	ns := startNATS(t)
	n1, n2 := startNode(t, ns.ClientURL()), startNode(t, ns.ClientURL())
	base := ns.NumSubscriptions() // the server's own system subscriptions
	a1, a2 := dial(t, n1, "/room/a"), dial(t, n2, "/room/a")
	b2 := dial(t, n2, "/room/b")
	// Hubs subscribe asynchronously (the loop never waits on NATS): wait
	// until the server has the three subscriptions (a on both nodes, b).
	for deadline := time.Now().Add(5 * time.Second); ns.NumSubscriptions() < base+3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("nats-server has %d subscriptions, want %d", ns.NumSubscriptions(), base+3)
		}
	}

	for i, msg := range []string{"from node 1", "from node 2"} {
		src := a1
		if i == 1 {
			src = a2
		}
		src.WriteMessage(gws.TextMessage, []byte(msg))
		for j, c := range []*gws.Conn{a1, a2} {
			if m := read(t, c); m != msg { // a duplicate or a loss shows here
				t.Fatalf("msg %d client %d: got %q, want %q", i, j, m, msg)
			}
		}
	}
	b2.WriteMessage(gws.TextMessage, []byte("only b"))
	if m := read(t, b2); m != "only b" {
		t.Fatalf("room b got %q", m)
	}
}
