package loop

import (
	"bytes"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// WSOptions.PingTimeout promises to close "a connection from which nothing
// arrived within this long after a ping". A client that is busy sending one
// large frame cannot answer a ping before the frame ends (control frames go
// between frames), yet its bytes keep arriving: the connection must survive.
// The loop only counts complete frames (w.seen), so it kills the upload.
func TestWebSocketPingTimeoutDuringLargeFrame(t *testing.T) {
	_, addr := wsStartLoop(t, func(l *Loop, a *Application) {
		opts := WSOptions{PingInterval: 100 * time.Millisecond, PingTimeout: 300 * time.Millisecond}
		a.HandleWebSocket("/ws", wsEchoRoute(opts), opts)
	})
	r := wsDialRaw(t, addr, "/ws", nil)
	payload := bytes.Repeat([]byte("x"), 64<<10)
	frame := wsFrame(true, ws.OpBinary, payload)
	// 16 chunks 60 ms apart: bytes arrive every 60 ms for about 1 s.
	chunk := len(frame) / 16
	for off := 0; off < len(frame); off += chunk {
		end := min(off+chunk, len(frame))
		r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := r.c.Write(frame[off:end]); err != nil {
			t.Fatalf("server dropped the connection %d of %d bytes into a frame arriving every 60 ms (ping timeout counts only complete frames): %v", off, len(frame), err)
		}
		time.Sleep(60 * time.Millisecond)
	}
	for {
		f, err := r.readFrame()
		if err != nil {
			t.Fatalf("connection dropped while the client was still sending its frame: %v", err)
		}
		switch f.op {
		case ws.OpPing:
			continue // answered below by the next frame anyway
		case ws.OpClose:
			t.Fatalf("server closed while bytes of a frame were still arriving every 60 ms: close payload %q", f.payload)
		case ws.OpBinary:
			if len(f.payload) != len(payload) {
				t.Fatalf("echo %d bytes, want %d", len(f.payload), len(payload))
			}
			return
		}
	}
}

// TestPingsBeyondOneBatch: more connections fall due in one tick than the
// wheel fires per turn of the loop (wheelBatch); the rest fire in the next
// turns, so every connection still gets its ping, and one that closed while
// waiting for its batch is skipped.
//
// The deadlines are set together on the loop, so they fall due in one tick
// however slowly the connections were dialed, and the backlog is sampled
// by a callback that runs once per turn of the loop from before the tick
// until the backlog is gone, so it cannot miss it.
func TestPingsBeyondOneBatch(t *testing.T) {
	const n = 10 * wheelBatch
	l, addr := startTestLoopWith(t, Options{TimeoutResolution: 10 * time.Millisecond}, func(l *Loop) *Application {
		app := NewApplication(AppOptions{})
		// No ping of their own during the test: the test sets the deadlines.
		app.HandleWebSocket("/p", wsEchoRoute(WSOptions{}), WSOptions{PingInterval: time.Hour, PingTimeout: time.Hour})
		return app
	})
	rs := map[string]*wsRaw{}
	for i := 0; i < n; i++ {
		r := wsDialRaw(t, addr, "/p", nil)
		rs[r.c.LocalAddr().String()] = r
	}
	wsConns := func() int {
		ch := make(chan int, 1)
		l.AddCallback(func() {
			k := 0
			l.wheel.each(func(c *conn) {
				if c.kind == kindWS {
					k++
				}
			})
			ch <- k
		})
		return wsRecv(t, ch, "count")
	}
	for deadline := time.Now().Add(10 * time.Second); wsConns() != n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d WebSockets on the loop, want %d", wsConns(), n)
		}
	}
	type result struct {
		most   int    // largest backlog seen between turns
		closed string // the peer address of the connection closed in the backlog
	}
	res := make(chan result, 1)
	const d = 200 * time.Millisecond
	l.AddCallback(func() {
		l.wheel.each(func(c *conn) {
			if c.kind == kindWS {
				l.wheel.set(c, d)
			}
		})
		var r result
		stopAt := l.now() + int64(3*time.Second) // within wsRecv's 5 s
		var sample func()
		sample = func() {
			backlog := len(l.wheel.due) - l.wheel.dueAt
			if backlog > 0 && r.closed == "" {
				// The last of the backlog fires in a later turn: close it
				// now, its deadline must be skipped (no ping written).
				c := l.wheel.due[len(l.wheel.due)-1]
				r.closed = c.gc.RemoteAddr().String()
				c.close()
			}
			r.most = max(r.most, backlog)
			if (r.most > 0 && backlog == 0) || l.now() > stopAt {
				res <- r
				return
			}
			l.AddCallback(sample) // runs in the loop's next turn
		}
		// Start before the tick that fires them: a timer due earlier runs
		// first, and the callback it queues runs in the next turn, as does
		// the tick's continuation.
		l.CallLater(d/2, sample)
	})
	r := wsRecv(t, res, "the backlog sample")
	if r.most <= wheelBatch-1 {
		t.Fatalf("largest backlog between turns %d: the tick fired every deadline in one turn (%d connections, batches of %d)", r.most, n, wheelBatch)
	}
	if _, ok := rs[r.closed]; !ok {
		t.Fatalf("closed connection %q is none of the test's", r.closed)
	}
	for a, c := range rs {
		c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := c.readFrame()
		if a == r.closed {
			if err == nil {
				t.Errorf("connection closed while waiting for its batch got op %v, want EOF (its deadline must be skipped)", f.op)
			}
			continue
		}
		if err != nil {
			t.Fatalf("connection %s: no ping: %v", a, err)
		}
		if f.op != ws.OpPing {
			t.Fatalf("connection %s: got op %v, want a ping", a, f.op)
		}
	}
}
