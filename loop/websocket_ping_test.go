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
