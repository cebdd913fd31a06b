package loop

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// A panic in newHandler must not leave an accepted WebSocket with no
// handler, no ping and no deadline behind (upgrade used to write the 101
// before calling newHandler): the upgrade is refused instead.
func TestWebSocketNewHandlerPanicLeavesNoOrphan(t *testing.T) {
	_, addr := startTestLoop(t, nil, func(l *Loop) *Application {
		a := NewApplication(AppOptions{})
		a.HandleWebSocket("/ws", func(*Request) WebSocketHandler { panic("boom") },
			WSOptions{PingInterval: 100 * time.Millisecond, PingTimeout: 100 * time.Millisecond})
		return a
	})
	r := wsDialTCP(t, addr)
	r.write([]byte(wsHandshake(addr, "/ws")))
	resp := r.response()
	if resp.StatusCode != 101 {
		return // refused: fine
	}
	// Accepted: the route's 100 ms ping must come, or the server must close.
	r.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var b [1]byte
	_, err := r.br.Read(b[:])
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("newHandler panicked after the 101 was sent; the connection got no ping, no close and no deadline for 2s (orphan, never reaped)")
	}
	if err != nil && !errors.Is(err, io.EOF) {
		t.Logf("read: %v", err)
	}
}
