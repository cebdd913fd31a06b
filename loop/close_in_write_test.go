package loop

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// resetPeer resets c (SO_LINGER 0) and returns once the kernel has taken
// the reset on the server's side too, so that the server's next write on
// this connection fails (ECONNRESET) whatever the scheduling: on Linux a
// reset socket leaves the TCP table, so the test waits until neither end
// of c is listed in /proc/net/tcp (IPv4 loopback).
func resetPeer(t *testing.T, c net.Conn) {
	t.Helper()
	me := fmt.Sprintf(":%04X", c.LocalAddr().(*net.TCPAddr).Port)
	peer := fmt.Sprintf(":%04X", c.RemoteAddr().(*net.TCPAddr).Port)
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	listed := func() (string, error) {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			return "", err
		}
		for _, ln := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(ln) // sl local rem state ...
			if len(f) > 3 && (strings.HasSuffix(f[1], me) && strings.HasSuffix(f[2], peer) ||
				strings.HasSuffix(f[1], peer) && strings.HasSuffix(f[2], me)) {
				return ln, nil
			}
		}
		return "", nil
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		on, err := listed()
		if err != nil {
			// No /proc (not Linux): on loopback the reset is taken
			// within the close call in practice.
			t.Logf("cannot confirm the reset: %v", err)
			return
		}
		if on == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection still in /proc/net/tcp 5 s after the reset: %s", on)
		}
	}
}

// slowStep is a handler step that blocks the loop until the test lets it
// go (at most 5 s, so a failing test does not wedge the loop for good).
type slowStep struct {
	entered chan struct{}
	proceed chan struct{}
}

func newSlowStep() *slowStep {
	return &slowStep{entered: make(chan struct{}, 1), proceed: make(chan struct{})}
}

func (s *slowStep) run() {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	select {
	case <-s.proceed:
	case <-time.After(5 * time.Second):
	}
}

// resetDuring waits until the loop is inside s, resets c and lets s go:
// the loop's next write on c fails and gnet runs OnClose inside it.
func (s *slowStep) resetDuring(t *testing.T, c net.Conn) {
	t.Helper()
	select {
	case <-s.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop never reached the slow step")
	}
	resetPeer(t, c)
	close(s.proceed)
}

// A peer that resets while the upgrade is being decided: the 101 write fails,
// gnet closes the connection inside upgrade(), and the lifecycle promises
// (exactly one OnClose per Open; the request valid in newHandler/Open) and
// the free lists must survive it.
func TestCloseInsideUpgradeWrite(t *testing.T) {
	opened := make(chan reviewSeen, 1)
	closed := make(chan struct{}, 1)
	step := newSlowStep()
	var app *Application
	l, addr := wsStartLoop(t, func(l *Loop, a *Application) {
		app = a
		a.HandleWebSocket("/ws", func(r *Request) WebSocketHandler {
			s := reviewSeen{path: r.Path}
			return &reviewLife{opened: opened, closed: closed, s: func(w *WebSocket) {
				if rq := w.Request(); rq != nil {
					s.reqPath = rq.Path
				}
				opened <- s
			}}
		}, WSOptions{CheckOrigin: func(string, *Request) bool {
			step.run() // a slow check, on the loop; the peer resets meanwhile
			return true
		}})
	})
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(wsHandshake(addr, "/ws"))); err != nil {
		t.Fatal(err)
	}
	step.resetDuring(t, c)

	var s reviewSeen
	select {
	case s = <-opened:
	case <-time.After(5 * time.Second):
		t.Fatal("Open never ran after the 101's write failed")
	}
	if s.path != "/ws" || s.reqPath != "/ws" {
		t.Errorf("upgrade request already recycled: newHandler saw Path %q, Open saw Request().Path %q; want /ws", s.path, s.reqPath)
	}
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Errorf("Open ran but OnClose never followed (connection closed inside upgrade)")
	}
	dup := make(chan int, 1)
	l.AddCallback(func() {
		n := 0
		m := map[*httpConn]int{}
		for _, h := range app.freeHC {
			m[h]++
			if m[h] == 2 {
				n++
			}
		}
		dup <- n
	})
	if n := <-dup; n > 0 {
		t.Errorf("httpConn released twice: %d duplicate entries in Application.freeHC (two later connections would share one parser)", n)
	}
}

type reviewSeen struct {
	path    string
	reqPath string // ws.Request().Path during Open
}

type reviewLife struct {
	WebSocketBase
	opened chan reviewSeen
	closed chan struct{}
	s      func(*WebSocket)
}

func (r *reviewLife) Open(w *WebSocket) { r.s(w) }

func (r *reviewLife) OnClose(*WebSocket) {
	select {
	case r.closed <- struct{}{}:
	default:
	}
}

// The same failure inside OnMessage: the echo's write fails, gnet runs
// OnClose synchronously, so OnClose runs nested inside OnMessage (and the
// decoder's pooled buffer that data may alias is released under it).
func TestCloseInsideOnMessageWrite(t *testing.T) {
	type result struct{ closedDuringMsg, closedAfter bool }
	res := make(chan result, 1)
	step := newSlowStep()
	_, addr := wsStartLoop(t, func(l *Loop, a *Application) {
		a.HandleWebSocket("/ws", func(*Request) WebSocketHandler {
			return &reviewNest{step: step, res: func(during bool) { res <- result{closedDuringMsg: during} }}
		}, WSOptions{})
	})
	r := wsDialRaw(t, addr, "/ws", nil)
	r.send(true, 1, []byte("hello"))
	step.resetDuring(t, r.c)
	select {
	case got := <-res:
		if got.closedDuringMsg {
			t.Errorf("OnClose ran while OnMessage was still running (the echo write failed and gnet closed synchronously); the handler then keeps running after OnClose")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnMessage did not finish")
	}
}

type reviewNest struct {
	WebSocketBase
	inMsg, closed bool
	step          *slowStep
	res           func(bool)
}

func (h *reviewNest) OnMessage(w *WebSocket, typ MessageType, data []byte) {
	h.inMsg = true
	h.step.run() // a slow handler on the loop; the peer resets meanwhile
	w.WriteText(data)
	h.inMsg = false
	h.res(h.closed)
}

func (h *reviewNest) OnClose(*WebSocket) { h.closed = true }

// handle(EventPing) checks the state, writes the pong, then calls OnPing.
// When the pong's write fails, gnet runs OnClose inside the write and OnPing
// still follows: a call after OnClose.
func TestCloseInsidePongWrite(t *testing.T) {
	var l *Loop
	var recs chan *wsRec
	step := newSlowStep()
	l, addr := wsStartLoop(t, func(_ *Loop, a *Application) {
		recs = wsRecRoute(a, "/ws", WSOptions{}, func(r *wsRec) {
			r.onMsg = func(*WebSocket, MessageType, []byte) {
				step.run() // busy; the peer resets meanwhile
			}
		})
	})
	r := wsDialRaw(t, addr, "/ws", nil)
	rec := wsRecv(t, recs, "recorder")
	wsRecv(t, rec.openCh, "open")
	// A message and a ping in one segment: the ping is handled right
	// after the slow OnMessage, in the same traffic call.
	r.write(append(wsFrame(true, 1, []byte("slow")), wsFrame(true, 9, []byte("p"))...))
	step.resetDuring(t, r.c)
	wsRecv(t, rec.closeCh, "OnClose")
	// An OnPing after OnClose would run in the same traffic call, which
	// has returned before wsEvents' callback runs.
	for _, ev := range wsEvents(t, l, rec) {
		if ev == "ping-out-of-order" {
			t.Fatalf("OnPing ran after OnClose: events %v", wsEvents(t, l, rec))
		}
	}
}
