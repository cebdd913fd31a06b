package natsbroker_test

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop/natsbroker"
)

// startNATSOn runs an embedded nats-server on 127.0.0.1:port, so that a
// test can stop it and start another where clients reconnect.
func startNATSOn(t *testing.T, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats-server on port %d not ready", port)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 20s: %s", what)
		}
	}
}

// outageNode is one node's broker on its own connection, with what its
// subscription to "t" receives.
type outageNode struct {
	nc  *nats.Conn
	b   *natsbroker.Broker
	got chan string
}

func newOutageNode(t *testing.T, url string) *outageNode {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	n := &outageNode{nc: nc, b: natsbroker.New(nc, "outage."), got: make(chan string, 100)}
	t.Cleanup(func() { n.b.Close(); nc.Close() })
	if _, err := n.b.Subscribe("t", func(d []byte) { n.got <- string(d) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the server has the subscription
		t.Fatal(err)
	}
	return n
}

func (n *outageNode) expect(t *testing.T, name, want string) {
	t.Helper()
	select {
	case m := <-n.got:
		if m != want {
			t.Fatalf("%s got %q, want %q", name, m, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no %q within 20s", name, want)
	}
}

// TestOutage: while NATS is down Publish fails at once with ErrUnavailable
// (the demo answers 503) instead of nats.go buffering silently; when a
// server is back on the same address, the connections reconnect, the
// subscriptions are made again by themselves, and a publication reaches
// the publisher's node and the other one. Nothing refused during the
// outage is delivered later.
func TestOutage(t *testing.T) {
	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	s1 := startNATSOn(t, port)
	pub, other := newOutageNode(t, url), newOutageNode(t, url)
	if !pub.b.Connected() {
		t.Fatal("Connected false on a connected nc")
	}
	if err := pub.b.Publish("t", []byte("before")); err != nil {
		t.Fatal(err)
	}
	pub.expect(t, "publisher", "before")
	other.expect(t, "other node", "before")

	s1.Shutdown()
	waitFor(t, "broker still reports NATS connected after the server's shutdown", func() bool {
		return !pub.b.Connected() && !other.b.Connected()
	})
	if st := pub.nc.Status(); st == nats.CONNECTED {
		t.Fatalf("Connected false while nc's status is %v", st)
	}
	for i := range 3 {
		err := pub.b.Publish("t", []byte("during"))
		if !errors.Is(err, natsbroker.ErrUnavailable) {
			t.Fatalf("Publish %d during the outage: %v, want ErrUnavailable", i, err)
		}
	}

	startNATSOn(t, port)
	waitFor(t, "no reconnect to the new server", func() bool {
		return pub.b.Connected() && other.b.Connected()
	})
	// nats.go sends the subscriptions again before it reports CONNECTED;
	// the flush's PONG says the server has processed them.
	for _, n := range []*outageNode{pub, other} {
		if err := n.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.b.Publish("t", []byte("after")); err != nil {
		t.Fatalf("Publish after the reconnect: %v", err)
	}
	pub.expect(t, "publisher", "after") // not "during": refused, never sent
	other.expect(t, "other node", "after")
	if f := pub.b.Failed(); f != 0 {
		t.Errorf("%d accepted publications failed", f)
	}
}

// TestPublishAfterClose: Close wins over an outage: ErrClosed, whatever the
// connection's state.
func TestPublishAfterClose(t *testing.T) {
	s := startNATSOn(t, freePort(t))
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	b := natsbroker.New(nc, "closed.")
	b.Close()
	nc.Close()
	if err := b.Publish("t", []byte("x")); !errors.Is(err, natsbroker.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
	b.Close() // a second Close returns
}
