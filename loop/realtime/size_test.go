package realtime

import (
	"testing"
	"unsafe"
)

// TestIdleSize keeps what an idle protocol connection adds to the loop's
// own WebSocket small: its Client (a 160 B size class; 192 before its
// fields were packed) and its handler, no per-connection buffer, map or
// header copy once connected.
func TestIdleSize(t *testing.T) {
	c, w := unsafe.Sizeof(Client{}), unsafe.Sizeof(wsConn{})
	t.Logf("Client %d B, wsConn %d B", c, w)
	if c > 160 || w > 32 {
		t.Fatalf("Client %d B (want <= 160), wsConn %d B (want <= 32)", c, w)
	}
}
