package realtime

import (
	"testing"
	"unsafe"
)

// TestIdleSize keeps what an idle protocol connection adds to the loop's
// own WebSocket small: its Client (the 128 B size class; 192 before its
// fields were packed) and its 16 B handler (32 before), no per-connection
// buffer, map or header copy once connected.
func TestIdleSize(t *testing.T) {
	c, w := unsafe.Sizeof(Client{}), unsafe.Sizeof(wsConn{})
	t.Logf("Client %d B, wsConn %d B", c, w)
	if c > 128 || w > 16 {
		t.Fatalf("Client %d B (want <= 128), wsConn %d B (want <= 16)", c, w)
	}
}
