package loop

import (
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// TestWebSocketHandshakeFieldLines sends opening handshakes whose fields are
// split over several field lines, from a raw TCP client: the Connection and
// Upgrade tokens count on any line (RFC 9110 5.3), a repeated
// Sec-WebSocket-Key or a second, different Sec-WebSocket-Version is a 400
// (RFC 6455 11.3.1, 11.3.5).
func TestWebSocketHandshakeFieldLines(t *testing.T) {
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		app.HandleWebSocket("/echo", wsEchoRoute(WSOptions{}), WSOptions{})
	})
	base := wsHandshake(addr, "/echo")
	replace := func(old, new string) string {
		t.Helper()
		if !strings.Contains(base, old) {
			t.Fatalf("%q not in request", old)
		}
		return strings.Replace(base, old, new, 1)
	}
	for _, tc := range []struct {
		name   string
		req    string
		status int
	}{
		{"connection-two-lines", replace("Connection: Upgrade\r\n", "Connection: keep-alive\r\nConnection: Upgrade\r\n"), 101},
		{"connection-two-lines-upgrade-first", replace("Connection: Upgrade\r\n", "Connection: Upgrade\r\nConnection: keep-alive\r\n"), 101},
		{"upgrade-two-lines", replace("Upgrade: websocket\r\n", "Upgrade: h2c\r\nUpgrade: websocket\r\n"), 101},
		{"key-two-lines", replace("Sec-WebSocket-Key: "+wsTestKey+"\r\n",
			"Sec-WebSocket-Key: "+wsTestKey+"\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"), 400},
		{"key-two-identical-lines", replace("Sec-WebSocket-Key: "+wsTestKey+"\r\n",
			"Sec-WebSocket-Key: "+wsTestKey+"\r\nSec-WebSocket-Key: "+wsTestKey+"\r\n"), 400},
		{"key-comma-joined", replace(wsTestKey, wsTestKey+", AAAAAAAAAAAAAAAAAAAAAA=="), 400},
		{"version-two-lines-differing", replace("Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n"), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := wsDialTCP(t, addr)
			r.write([]byte(tc.req))
			resp := r.response()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 101 {
				return
			}
			if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
				t.Fatalf("Sec-WebSocket-Accept = %q", got)
			}
			r.send(true, ws.OpText, []byte("hi"))
			f, err := r.readFrame()
			if err != nil || f.op != ws.OpText || string(f.payload) != "hi" {
				t.Fatalf("echo: %v %v %q", err, f.op, f.payload)
			}
		})
	}
}
