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
func TestPingsBeyondOneBatch(t *testing.T) {
	const n = 10 * wheelBatch
	// A coarse tick, so that the connections opened below fall due
	// together.
	l, addr := startTestLoopWith(t, Options{TimeoutResolution: time.Second}, func(l *Loop) ConnHandler {
		app := NewApplication(AppOptions{})
		app.HandleWebSocket("/p", wsEchoRoute(WSOptions{}), WSOptions{PingInterval: 3 * time.Second, PingTimeout: 10 * time.Second})
		return app
	})
	var rs []*wsRaw
	for i := 0; i < n; i++ {
		rs = append(rs, wsDialRaw(t, addr, "/p", nil))
	}
	rs[n-1].c.Close() // falls due with the others, closed by then
	maxDue := make(chan int, 1)
	go func() { // sample the wheel's backlog while the pings go out
		most := 0
		for t0 := time.Now(); time.Since(t0) < 6*time.Second; time.Sleep(time.Millisecond) {
			ch := make(chan int, 1)
			l.AddCallback(func() { ch <- len(l.wheel.due) - l.wheel.dueAt })
			most = max(most, <-ch)
		}
		maxDue <- most
	}()
	for i, r := range rs[:n-1] {
		r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := r.readFrame()
		if err != nil {
			t.Fatalf("connection %d of %d: no ping: %v", i, n, err)
		}
		if f.op != ws.OpPing {
			t.Fatalf("connection %d: got op %v, want a ping", i, f.op)
		}
	}
	// Sampled between turns: a backlog shows that a tick fired one batch
	// and left the rest to the next turns.
	if m := <-maxDue; m == 0 {
		t.Errorf("no deadline ever waited for a later batch (%d connections, batches of %d)", n, wheelBatch)
	}
}
