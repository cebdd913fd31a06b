package natsbroker_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
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
	broker := natsbroker.New(nc, "test.")
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

// stallProxy forwards TCP between a client and addr and can stop reading
// from the client, as a NATS server (or network) that stopped taking data
// would. Real sockets both ways.
type stallProxy struct {
	ln      net.Listener
	mu      sync.Mutex
	stalled bool
	resume  chan struct{}
}

func newStallProxy(t *testing.T, addr string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, resume: make(chan struct{})}
	t.Cleanup(func() { ln.Close(); p.setStalled(false) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			// Small kernel buffers, so a stall backs up into the client
			// after some 100 KB rather than megabytes.
			c.(*net.TCPConn).SetReadBuffer(64 << 10)
			go func() { io.Copy(c, s); c.Close() }()
			go func() {
				defer s.Close()
				buf := make([]byte, 4<<10)
				for {
					p.waitRunning()
					n, err := c.Read(buf)
					if n > 0 {
						if _, werr := s.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *stallProxy) setStalled(v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == v {
		return
	}
	p.stalled = v
	if !v {
		close(p.resume)
		p.resume = make(chan struct{})
	}
}

func (p *stallProxy) waitRunning() {
	p.mu.Lock()
	for p.stalled {
		ch := p.resume
		p.mu.Unlock()
		<-ch
		p.mu.Lock()
	}
	p.mu.Unlock()
}

type smallBufDialer struct{}

func (smallBufDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err == nil {
		c.(*net.TCPConn).SetWriteBuffer(64 << 10)
	}
	return c, err
}

// TestPublishNeverBlocks: when NATS stops taking data, nats.go's Publish
// flushes inline and blocks (up to its FlusherTimeout, a minute); on the
// loop that would stall every connection. The broker's Publish only
// queues: it returns at once, ErrBacklog once the queue is full, and what
// it accepted is published in order once NATS reads again.
func TestPublishNeverBlocks(t *testing.T) {
	ns := startNATS(t)
	proxy := newStallProxy(t, ns.Addr().String())
	nc, err := nats.Connect("nats://"+proxy.ln.Addr().String(), nats.SetCustomDialer(smallBufDialer{}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := make(chan []byte, 1024)
	if _, err := sub.Subscribe("stall.t", func(m *nats.Msg) { got <- m.Data }); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	const size, maxBytes = 16 << 10, 1 << 20
	b := natsbroker.NewWithOptions(nc, "stall.", natsbroker.Options{MaxPendingBytes: maxBytes})
	defer b.Close()
	defer proxy.setStalled(false) // before Close, which waits for NATS

	proxy.setStalled(true)
	accepted := make(chan int, 1)
	go func() {
		for i := 0; ; i++ {
			msg := make([]byte, size)
			binary.BigEndian.PutUint32(msg, uint32(i))
			start := time.Now()
			err := b.Publish("t", msg)
			if d := time.Since(start); d > time.Second {
				t.Errorf("Publish %d blocked for %v", i, d)
			}
			if errors.Is(err, natsbroker.ErrBacklog) {
				accepted <- i
				return
			}
			if err != nil {
				t.Errorf("Publish %d: %v", i, err)
				accepted <- i
				return
			}
		}
	}()
	var n int
	select {
	case n = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked while NATS was not reading: no ErrBacklog within 10 s")
	}
	if n == 0 {
		t.Fatal("nothing accepted before ErrBacklog")
	}
	proxy.setStalled(false)
	for i := 0; i < n; i++ {
		select {
		case m := <-got:
			if len(m) != size || binary.BigEndian.Uint32(m) != uint32(i) {
				t.Fatalf("message %d: got %d bytes numbered %d", i, len(m), binary.BigEndian.Uint32(m))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d accepted messages arrived", i, n)
		}
	}
	if f := b.Failed(); f != 0 {
		t.Errorf("%d publications failed", f)
	}
}
