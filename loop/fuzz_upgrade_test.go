package loop

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
	gws "github.com/gorilla/websocket"
)

// FuzzUpgrade sends fuzzed bytes (a request head plus whatever follows it,
// frames included) over a real socket to a live loop serving a plain and a
// compressing echo route, then half-closes. Properties:
//   - the loop never panics (a panic on the loop kills the test binary);
//   - whatever the server answers starts with an HTTP/1.1 status line whose
//     code is 101 or 4xx or 501/505 (never 500: nothing may go wrong
//     inside), and the server closes the connection after our EOF;
//   - a well-formed gorilla client on the same loop still gets its echo.
//
// The seeds (real handshakes from gorilla, coder and browsers, with and
// without trailing frames and extension offers) run in every `go test`.
func FuzzUpgrade(f *testing.F) {
	_, addr := wsStartLoop(f, func(l *Loop, app *Application) {
		o := WSOptions{MaxMessageSize: 1 << 20, PingInterval: -1}
		app.HandleWebSocket("/echo", wsEchoRoute(o), o)
		oz := o
		oz.Compression = &CompressionOptions{Threshold: -1}
		app.HandleWebSocket("/z", wsEchoRoute(oz), oz)
	})
	hello := wsFrame(true, ws.OpText, []byte("hello"))
	bye := wsFrame(true, ws.OpClose, []byte{0x03, 0xe8})
	deflated := wsCompressedFrame(true, ws.OpText, []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})
	seeds := []string{
		// gorilla/websocket's handshake.
		"GET /echo HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: Go-http-client/1.1\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\n",
		// A browser's, with the permessage-deflate offer every browser sends.
		"GET /z HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n" +
			"Upgrade: websocket\r\nOrigin: http://" + addr + "\r\nSec-WebSocket-Version: 13\r\n" +
			"Accept-Encoding: gzip, deflate, br\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n" +
			"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
		// coder/websocket's, offering context takeover and a subprotocol.
		"GET /z?x=1 HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n" +
			"Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9; client_max_window_bits=10\r\n\r\n",
		wsHandshake(addr, "/echo") + string(hello) + string(bye),
		wsHandshake(addr, "/z", "Sec-WebSocket-Extensions: permessage-deflate\r\n") + string(deflated) + string(hello),
		wsHandshake(addr, "/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n") + string(deflated),
		wsHandshake(addr, "/echo") + wsHandshake(addr, "/echo"),
		"GET /echo HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nUpgrade: websocket\r\n\r\nhello",
		"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16, ,;=\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			t.Skip("inputs are bounded to 64 KiB")
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Reset on close: tens of thousands of runs would otherwise fill
		// the ephemeral port range with TIME_WAIT sockets.
		c.(*net.TCPConn).SetLinger(0)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(data); err != nil && !isConnReset(err) {
			t.Fatalf("write: %v", err)
		}
		c.(*net.TCPConn).CloseWrite()
		resp, err := io.ReadAll(c)
		if err != nil && !isConnReset(err) {
			// A timeout: the server kept the connection after our EOF.
			t.Fatalf("reading the answer: %v (got %.80q)", err, resp)
		}
		if len(resp) > 0 {
			checkStatusLine(t, resp)
		}
		g := gorillaDialOnce(t, addr)
		defer g.Close()
		g.NetConn().SetDeadline(time.Now().Add(5 * time.Second))
		if err := g.WriteMessage(gws.TextMessage, []byte("still alive")); err != nil {
			t.Fatal(err)
		}
		if _, p, err := g.ReadMessage(); err != nil || string(p) != "still alive" {
			t.Fatalf("echo after the fuzzed connection: %q %v", p, err)
		}
	})
}

func isConnReset(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("connection reset"))
}

func checkStatusLine(t *testing.T, resp []byte) {
	t.Helper()
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 ")) || len(resp) < 12 {
		t.Fatalf("answer does not start with a status line: %.80q", resp)
	}
	code, err := strconv.Atoi(string(resp[9:12]))
	if err != nil {
		t.Fatalf("status line %.40q", resp)
	}
	switch {
	case code == 101, code >= 400 && code < 500, code == 501, code == 505:
	default:
		t.Fatalf("status %d: %.200q", code, resp)
	}
}

// gorillaDialOnce dials without registering a cleanup per call (a fuzz run
// makes many).
func gorillaDialOnce(t *testing.T, addr string) *gws.Conn {
	t.Helper()
	d := gws.Dialer{HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial(wsURL(addr, "/echo"), nil)
	if err != nil {
		t.Fatalf("well-formed client after the fuzzed connection: %v", err)
	}
	c.NetConn().(*net.TCPConn).SetLinger(0)
	return c
}
