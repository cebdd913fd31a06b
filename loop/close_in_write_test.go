package loop

import (
	"net"
	"testing"
	"time"
)

// rstAfterSend sends raw and then resets the connection (SO_LINGER 0)
// while the loop is still busy in a slow handler, so the loop's next write
// on it fails and gnet runs OnClose synchronously inside that write.
func rstAfterSend(t *testing.T, addr, raw string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the loop has read it and sleeps
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// A peer that resets while the upgrade is being decided: the 101 write fails,
// gnet closes the connection inside upgrade(), and the lifecycle promises
// (exactly one OnClose per Open; the request valid in newHandler/Open) and
// the free lists must survive it.
func TestCloseInsideUpgradeWrite(t *testing.T) {
	opened := make(chan reviewSeen, 1)
	closed := make(chan struct{}, 1)
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
			time.Sleep(400 * time.Millisecond) // a slow check, on the loop
			return true
		}})
	})
	rstAfterSend(t, addr, wsHandshake(addr, "/ws"))

	var s reviewSeen
	select {
	case s = <-opened:
	case <-time.After(5 * time.Second):
		t.Skip("Open never ran: the write did not fail on this kernel")
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
	_, addr := wsStartLoop(t, func(l *Loop, a *Application) {
		a.HandleWebSocket("/ws", func(*Request) WebSocketHandler {
			return &reviewNest{res: func(during bool) { res <- result{closedDuringMsg: during} }}
		}, WSOptions{})
	})
	r := wsDialRaw(t, addr, "/ws", nil)
	r.send(true, 1, []byte("hello"))
	time.Sleep(100 * time.Millisecond) // OnMessage is sleeping on the loop
	r.c.(*net.TCPConn).SetLinger(0)
	r.c.Close()
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
	res           func(bool)
}

func (h *reviewNest) OnMessage(w *WebSocket, typ MessageType, data []byte) {
	h.inMsg = true
	time.Sleep(400 * time.Millisecond) // a slow handler on the loop
	w.WriteMessage(data)
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
	l, addr := wsStartLoop(t, func(_ *Loop, a *Application) {
		recs = wsRecRoute(a, "/ws", WSOptions{}, func(r *wsRec) {
			r.onMsg = func(*WebSocket, MessageType, []byte) {
				time.Sleep(400 * time.Millisecond) // busy; the peer resets meanwhile
			}
		})
	})
	r := wsDialRaw(t, addr, "/ws", nil)
	rec := wsRecv(t, recs, "recorder")
	wsRecv(t, rec.openCh, "open")
	// A message and a ping in one segment: the ping is handled right
	// after the slow OnMessage, in the same traffic call.
	r.write(append(wsFrame(true, 1, []byte("slow")), wsFrame(true, 9, []byte("p"))...))
	time.Sleep(100 * time.Millisecond)
	r.c.(*net.TCPConn).SetLinger(0)
	r.c.Close()
	wsRecv(t, rec.closeCh, "OnClose")
	time.Sleep(100 * time.Millisecond)
	for _, ev := range wsEvents(t, l, rec) {
		if ev == "ping-out-of-order" {
			t.Fatalf("OnPing ran after OnClose: events %v", wsEvents(t, l, rec))
		}
	}
}
