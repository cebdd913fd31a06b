package loop

// Tests of Group: real loops sharing a loopback port with SO_REUSEPORT,
// real clients (wsclient.Dial, net/http), and hubs sharing topics through one
// MemoryBroker.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/wsclient"
)

// startTestGroup runs a group of n loops on a free loopback port, each
// serving what setup returns for it, and stops it when the test ends: Start
// must then return nil.
func startTestGroup(t *testing.T, n int, setup func(g *Group, l *Loop, i int) *Application) (*Group, string) {
	t.Helper()
	g := NewGroup(n, Options{TimeoutResolution: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err := g.Listen("127.0.0.1:0", func(l *Loop, i int) *Application { return setup(g, l, i) }); err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "group", g.Start, g.Ready(), g.Stop, 10*time.Second)
	return g, g.Addr().String()
}

// groupWho sends, as its first message, the index of the loop whose
// handler runs it, or what is wrong about where it runs.
type groupWho struct {
	WebSocketBase
	g *Group
	i int
}

func (h groupWho) Open(w *WebSocket) {
	msg := strconv.Itoa(h.i)
	for j, l := range h.g.Loops() {
		if (j == h.i) != l.InLoop() {
			msg = fmt.Sprintf("handler of loop %d: loop %d InLoop=%v", h.i, j, l.InLoop())
		}
	}
	if w.Loop() != h.g.Loops()[h.i] {
		msg = fmt.Sprintf("handler of loop %d: connection on another loop", h.i)
	}
	w.WriteText([]byte(msg))
}

func groupWhoSetup(g *Group, l *Loop, i int) *Application {
	app := NewApplication(AppOptions{})
	app.HandleWebSocket("/who", func(*Request) WebSocketHandler { return groupWho{g: g, i: i} }, WSOptions{})
	return app
}

// groupDial connects to path and returns the client with the loop index
// its handler reported.
func groupDial(t *testing.T, addr, path string, n int) (*wsclient.Conn, int) {
	t.Helper()
	c, err := wsclient.Dial("ws://"+addr+path, wsclient.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(CloseNormal, "") })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := c.Recv()
	if err != nil {
		t.Fatalf("first message: %v", err)
	}
	i, err := strconv.Atoi(string(msg))
	if err != nil || i < 0 || i >= n {
		t.Fatalf("first message %q, want a loop index below %d", msg, n)
	}
	c.SetDeadline(time.Time{})
	return c, i
}

// TestGroupSpreadsConnections: the kernel spreads connections over the
// loops (SO_REUSEPORT hashes each one's 4-tuple; 200 source ports miss one
// of 4 loops with probability 4*(3/4)^200), and each connection's handler
// runs on the loop that accepted it.
func TestGroupSpreadsConnections(t *testing.T) {
	const n, conns = 4, 200
	g, addr := startTestGroup(t, n, groupWhoSetup)
	if len(g.Loops()) != n {
		t.Fatalf("%d loops, want %d", len(g.Loops()), n)
	}
	perLoop := make([]int, n)
	for range conns {
		_, i := groupDial(t, addr, "/who", n)
		perLoop[i]++
	}
	for i, k := range perLoop {
		if k == 0 {
			t.Errorf("loop %d got no connection of %d (spread %v)", i, conns, perLoop)
		}
	}
	t.Logf("connections per loop: %v", perLoop)
}

// groupSub subscribes to "news" and then says which loop it is on.
type groupSub struct {
	WebSocketBase
	hub *Hub
	i   int
}

func (h groupSub) Open(w *WebSocket) {
	if err := h.hub.Subscribe("news", w); err != nil {
		w.Close(CloseInternalError, err.Error())
		return
	}
	w.WriteText([]byte(strconv.Itoa(h.i)))
}

// TestGroupHubExactlyOnce: hubs on 3 loops share "news" through one
// MemoryBroker. Messages published from a loop's HTTP handler, from
// another goroutine, and from two goroutines at once reach every client on
// every loop exactly once, each publisher's in its order, and every client
// sees the same sequence (MemoryBroker's one order).
func TestGroupHubExactlyOnce(t *testing.T) {
	const n, clients, k = 3, 60, 200
	broker := &pubsub.MemoryBroker{}
	hubs := make([]*Hub, n) // filled by setup, in Listen, before Start
	_, addr := startTestGroup(t, n, func(g *Group, l *Loop, i int) *Application {
		hub := NewHub(l, Text, broker)
		hubs[i] = hub
		app := NewApplication(AppOptions{})
		app.HandleWebSocket("/sub", func(*Request) WebSocketHandler { return groupSub{hub: hub, i: i} }, WSOptions{})
		app.HandleFunc("/pub", func(r *Request) {
			if !l.InLoop() {
				r.SendError(500)
				return
			}
			for j := range k {
				if err := hub.Publish("news", fmt.Appendf(nil, "a:%d", j)); err != nil {
					r.SendError(503)
					return
				}
			}
			r.Write(strconv.Itoa(i))
		})
		return app
	})

	var conns []*wsclient.Conn
	perLoop := make([]int, n)
	for range clients {
		c, i := groupDial(t, addr, "/sub", n)
		conns = append(conns, c)
		perLoop[i]++
	}
	for i, c := range perLoop {
		if c == 0 { // 3*(2/3)^60: not by chance
			t.Fatalf("no client on loop %d (spread %v): the test would not cross loops", i, perLoop)
		}
	}

	// (a) from a handler, on whichever loop serves the request.
	resp, err := http.Get("http://" + addr + "/pub")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/pub: %d %s", resp.StatusCode, body)
	}
	t.Logf("/pub served by loop %s", body)
	// (b) from another goroutine, through loop 1's hub.
	for j := range k {
		if err := publishWait(hubs[1], "news", fmt.Appendf(nil, "b:%d", j)); err != nil {
			t.Fatal(err)
		}
	}
	// (c, d) two goroutines at once, through loops 0 and 2.
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, p := range []struct {
		hub    *Hub
		prefix string
	}{{hubs[0], "c"}, {hubs[2], "d"}} {
		wg.Go(func() {
			<-start
			for j := range k {
				if err := publishWait(p.hub, "news", fmt.Appendf(nil, "%s:%d", p.prefix, j)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if err := publishWait(hubs[0], "news", []byte("end")); err != nil {
		t.Fatal(err)
	}

	var want []string
	for ci, c := range conns {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		var got []string
		for {
			_, msg, err := c.Recv()
			if err != nil {
				t.Fatalf("client %d after %d messages: %v", ci, len(got), err)
			}
			if string(msg) == "end" {
				break
			}
			got = append(got, string(msg))
		}
		if ci == 0 {
			checkEachOnceInOrder(t, got, k, []string{"a", "b", "c", "d"})
			want = got
			continue
		}
		if !slices.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Fatalf("client %d saw another sequence than client 0 (%d and %d messages, first difference at %d)", ci, len(got), len(want), i)
		}
	}
	for i, h := range hubs {
		if d := h.Dropped(); d != 0 {
			t.Errorf("hub %d dropped %d deliveries", i, d)
		}
	}
}

// checkEachOnceInOrder fails unless got holds prefix:0 .. prefix:k-1 once
// each and in that order for every prefix, and nothing else.
func checkEachOnceInOrder(t *testing.T, got []string, k int, prefixes []string) {
	t.Helper()
	next := map[string]int{}
	for _, p := range prefixes {
		next[p] = 0
	}
	for pos, m := range got {
		p, num, ok := strings.Cut(m, ":")
		j, err := strconv.Atoi(num)
		if _, known := next[p]; !ok || err != nil || !known {
			t.Fatalf("message %d: unexpected %q", pos, m)
		}
		if j != next[p] {
			t.Fatalf("message %d: %q, want %s:%d (lost, duplicated or reordered)", pos, m, p, next[p])
		}
		next[p]++
	}
	for _, p := range prefixes {
		if next[p] != k {
			t.Fatalf("%d messages from publisher %s, want %d", next[p], p, k)
		}
	}
}

// TestGroupStartFailsWhenPortTaken: a port held by a socket without
// SO_REUSEPORT (another program) is not shared: Listen refuses it, and if
// it is taken between Listen and Start, Start fails instead of running.
func TestGroupStartFailsWhenPortTaken(t *testing.T) {
	discard := slog.New(slog.DiscardHandler)
	setup := func(*Loop, int) *Application { return NewApplication(AppOptions{}) }

	t.Run("Listen", func(t *testing.T) {
		held, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		g := NewGroup(2, Options{Logger: discard})
		if err := g.Listen(held.Addr().String(), setup); err == nil {
			t.Fatalf("Listen on %s, held without SO_REUSEPORT, succeeded", held.Addr())
		}
	})

	t.Run("Start", func(t *testing.T) {
		g := NewGroup(2, Options{Logger: discard})
		free, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := free.Addr().String()
		free.Close()
		if err := g.Listen(addr, setup); err != nil {
			t.Fatal(err)
		}
		held, err := net.Listen("tcp", addr) // taken after Listen
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		startErr := make(chan error, 1)
		go func() { startErr <- g.Start() }()
		select {
		case err := <-startErr:
			if err == nil {
				t.Fatal("Start returned nil with the port held without SO_REUSEPORT")
			}
			t.Logf("Start: %v", err)
		case <-time.After(20 * time.Second):
			g.Stop(context.Background())
			t.Fatal("Start still running after 20s with the port held without SO_REUSEPORT")
		}
		select {
		case <-g.Ready():
		default:
			t.Error("Ready not closed after Start failed")
		}
	})
}

// TestGroupOneLoopFailing: when one loop cannot start (here a listener
// only it has, on a held port), Start stops the others and returns the
// error, so a supervisor sees the failure instead of a group short of a
// loop.
func TestGroupOneLoopFailing(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	g := NewGroup(2, Options{Logger: slog.New(slog.DiscardHandler)})
	if err := g.Listen("127.0.0.1:0", func(*Loop, int) *Application { return NewApplication(AppOptions{}) }); err != nil {
		t.Fatal(err)
	}
	if err := g.Loops()[1].Listen(held.Addr().String(), NewApplication(AppOptions{})); err != nil {
		t.Fatal(err)
	}
	startErr := make(chan error, 1)
	go func() { startErr <- g.Start() }()
	select {
	case err := <-startErr:
		if err == nil {
			t.Fatal("Start returned nil with loop 1 failing")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Start still running 20s after loop 1 failed: loop 0 was not stopped")
	}
	for i, l := range g.Loops() {
		select {
		case <-l.Done():
		default:
			t.Errorf("loop %d still running after Start returned", i)
		}
	}
	select {
	case <-g.Ready():
	default:
		t.Error("Ready not closed after Start returned")
	}
}

// TestGroupStopClosesWith1001: Stop reaches the WebSockets of every loop,
// each getting 1001 Going Away, and returns once they are closed.
func TestGroupStopClosesWith1001(t *testing.T) {
	const n = 3
	g, addr := startTestGroup(t, n, groupWhoSetup)
	var conns []*wsclient.Conn
	perLoop := make([]int, n)
	for covered := 0; covered < n; {
		if len(conns) == 300 {
			t.Fatalf("300 connections did not reach all %d loops: %v", n, perLoop)
		}
		c, i := groupDial(t, addr, "/who", n)
		conns = append(conns, c)
		if perLoop[i] == 0 {
			covered++
		}
		perLoop[i]++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- g.Stop(ctx) }()
	for ci, c := range conns {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, msg, err := c.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("client %d: got %q, %v; want the server's close", ci, msg, err)
		}
		if c.CloseCode() != CloseGoingAway {
			t.Errorf("client %d: close code %d, want 1001", ci, c.CloseCode())
		}
	}
	if err := <-stopped; err != nil {
		t.Errorf("Stop: %v", err)
	}
	for i, l := range g.Loops() {
		select {
		case <-l.Done():
		default:
			t.Errorf("loop %d still running after Stop returned", i)
		}
	}
}
