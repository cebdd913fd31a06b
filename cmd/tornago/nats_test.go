package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop/natsbroker"
)

// TestReceiveAcrossNodes runs two demo servers sharing an embedded
// nats-server (as -nats does): /receive on one node reaches the /ws clients
// of both, each exactly once.
func TestReceiveAcrossNodes(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer ns.Shutdown()
	node := func() string {
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return startDemosWith(t, natsbroker.New(nc, "tornago."))
	}
	base := ns.NumSubscriptions()
	n1, n2 := node(), node()
	c1, c2 := dial(t, n1, "/ws"), dial(t, n2, "/ws")
	for _, c := range []*gws.Conn{c1, c2} {
		if _, m := read(t, c); m != "Welcome" {
			t.Fatalf("first message %q", m)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ns.NumSubscriptions() < base+2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the nodes did not subscribe to the chat topic")
		}
	}

	for _, msg := range []string{"one", "two"} {
		resp, err := http.Get("http://" + n1 + "/receive?msg=" + msg)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Delivered int }
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if out.Delivered != 1 { // this node's own clients
			t.Fatalf("delivered %d on node 1, want 1", out.Delivered)
		}
		for i, c := range []*gws.Conn{c1, c2} {
			if _, m := read(t, c); m != msg { // a duplicate would show here
				t.Fatalf("client %d got %q, want %q", i, m, msg)
			}
		}
	}
}

// TestReceiveDuringNATSOutage: while NATS is down /receive answers 503 (the
// broker refuses at once instead of buffering), and once a server is back
// on the same address the node's subscription is too: a /receive reaches
// the /ws client again.
func TestReceiveDuringNATSOutage(t *testing.T) {
	port := freePort(t)
	start := func() *server.Server {
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(5 * time.Second) {
			t.Fatal("nats-server not ready")
		}
		return ns
	}
	ns := start()
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	nb := natsbroker.New(nc, "tornago.")
	t.Cleanup(func() { nb.Close() })
	addr := startDemosWith(t, nb)
	c := dial(t, addr, "/ws")
	if _, m := read(t, c); m != "Welcome" {
		t.Fatalf("first message %q", m)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := httpGet(t, "http://"+addr+"/receive?msg=lost"); code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/receive did not answer 503 during the outage")
		}
	}
	ns = start()
	defer ns.Shutdown()
	got := make(chan string, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		for {
			_, m, err := c.ReadMessage()
			if err != nil {
				m = []byte(err.Error())
			}
			// A "lost" accepted just before the outage was noticed may
			// still arrive: nats.go sends it on reconnecting.
			if string(m) != "lost" {
				got <- string(m)
				return
			}
		}
	}()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		httpGet(t, "http://"+addr+"/receive?msg=back")
		select {
		case m := <-got:
			if m != "back" {
				t.Fatalf("after the outage the client got %q, want back", m)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no /receive reached the client after NATS came back")
		}
	}
}
