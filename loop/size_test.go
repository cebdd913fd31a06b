package loop

import (
	"testing"
	"unsafe"
)

// TestConnSize guards the idle cost: a WebSocket is the conn struct, and 96
// bytes is a Go size class (the next is 112). A field added here moves
// every idle connection's memory; put rare state behind conn.rare instead.
func TestConnSize(t *testing.T) {
	if s := unsafe.Sizeof(conn{}); s > 96 {
		t.Fatalf("conn is %d bytes, want <= 96", s)
	}
	if unsafe.Sizeof(WebSocket{}) != unsafe.Sizeof(conn{}) {
		t.Fatal("WebSocket and conn differ in size")
	}
}
