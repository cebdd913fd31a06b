package loop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/proto/ws13"
)

// clientLoop starts a loop with no listener at all, as the bench's client
// process runs it, and stops it when the test ends.
func clientLoop(t testing.TB) *Loop {
	t.Helper()
	l := New(Options{
		TimeoutResolution: 10 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	errc := make(chan error, 1)
	go func() { errc <- l.Start() }()
	select {
	case <-l.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("client-only loop not ready")
	}
	select {
	case err := <-errc:
		t.Fatalf("client-only loop start: %v", err)
	default:
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := l.Stop(ctx); err != nil {
			t.Logf("loop stop: %v", err)
		}
	})
	return l
}

type clientMsg struct {
	typ  MessageType
	data string
}

type clientClosed struct {
	code   StatusCode
	reason string
}

// clientRec records a client's callbacks on buffered channels.
type clientRec struct {
	opens  chan *WebSocket
	msgs   chan clientMsg
	errs   chan error
	closes chan clientClosed
}

func newClientRec() *clientRec {
	return &clientRec{
		opens:  make(chan *WebSocket, 100),
		msgs:   make(chan clientMsg, 100),
		errs:   make(chan error, 100),
		closes: make(chan clientClosed, 100),
	}
}

// handler records everything; onOpen (may be nil) runs after recording.
func (r *clientRec) handler(onOpen func(*WebSocket)) ClientHandler {
	return ClientHandler{
		OnOpen: func(w *WebSocket) {
			r.opens <- w
			if onOpen != nil {
				onOpen(w)
			}
		},
		OnMessage: func(w *WebSocket, typ MessageType, data []byte) { r.msgs <- clientMsg{typ, string(data)} },
		OnError:   func(c *Client, err error) { r.errs <- err },
		OnClose:   func(w *WebSocket) { r.closes <- clientClosed{w.CloseCode(), w.CloseReason()} },
	}
}

// expectNone fails if ch delivers anything within d.
func expectNone[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %v", what, v)
	case <-time.After(d):
	}
}

// onLoopWait runs fn on l and waits for it.
func onLoopWait(t *testing.T, l *Loop, fn func()) {
	t.Helper()
	done := make(chan struct{})
	l.AddCallback(func() { fn(); close(done) })
	wsRecv(t, done, "loop callback")
}

func TestClientEchoOwnServer(t *testing.T) {
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		app.HandleWebSocket("/echo", wsEchoRoute(WSOptions{}), WSOptions{})
	})
	big := strings.Repeat("0123456789abcdef", 200<<10/16) // 200 KiB: 64-bit length
	mid := strings.Repeat("m", 40<<10)                    // 16-bit length, above the 16 KiB scratch
	rec := newClientRec()
	cl, err := l.DialWebSocket(wsURL(addr, "/echo?x=1&y=2"), rec.handler(func(w *WebSocket) {
		w.WriteText([]byte("hello"))
		w.WriteBinary([]byte{0, 1, 2, 255})
		w.WriteJSON(map[string]int{"n": 1})
		w.WriteText([]byte(mid))
		w.WritePrepared(prepared(Text, []byte("prepared")))
		w.WriteText([]byte(big))
		if err := w.Ping([]byte("p")); err != nil {
			t.Errorf("ping: %v", err)
		}
	}), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := wsRecv(t, rec.opens, "open")
	for _, want := range []clientMsg{{Text, "hello"}, {Binary, "\x00\x01\x02\xff"}, {Text, `{"n":1}`},
		{Text, mid}, {Text, "prepared"}, {Text, big}} {
		got := wsRecv(t, rec.msgs, "echo")
		if got.typ != want.typ || got.data != want.data {
			t.Fatalf("echo: got %v %.40q (%d bytes), want %v %.40q (%d bytes)", got.typ, got.data, len(got.data), want.typ, want.data, len(want.data))
		}
	}
	onLoopWait(t, l, func() {
		if cl.WebSocket() != w {
			t.Error("Client.WebSocket is not the open connection")
		}
	})
	// A write from another goroutine goes through the loop.
	if err := w.WriteAsync(Text, []byte("from a goroutine"), nil); err != nil {
		t.Fatal(err)
	}
	if got := wsRecv(t, rec.msgs, "echo"); got.data != "from a goroutine" {
		t.Fatalf("got %q", got.data)
	}
	cl.Close()
	cl.Close() // idempotent
	if c := wsRecv(t, rec.closes, "close"); c.code != CloseNormal {
		t.Fatalf("close code %d %q, want 1000", c.code, c.reason)
	}
	onLoopWait(t, l, func() {
		if cl.WebSocket() != nil {
			t.Error("Client.WebSocket not nil after the close")
		}
	})
	if err := w.WriteText([]byte("late")); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("goroutine write after close: %v, want ErrNotOnLoop", err)
	}
	onLoopWait(t, l, func() {
		if err := w.WriteText([]byte("late")); !errors.Is(err, ErrWebSocketClosed) {
			t.Errorf("loop write after close: %v", err)
		}
	})
	expectNone(t, rec.errs, 50*time.Millisecond, "error")
}

// TestClientGorillaServer talks to gorilla/websocket's server, which
// refuses unmasked client frames ("incorrect mask flag"), so every echo
// proves masking; it also checks headers, the subprotocol, the server's
// ping and its close code.
func TestClientGorillaServer(t *testing.T) {
	type seen struct {
		origin, auth, custom, protos, remote string
	}
	seenCh := make(chan seen, 4)
	pongs := make(chan string, 4)
	up := gws.Upgrader{Subprotocols: []string{"chat.v2"}, CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		seenCh <- seen{r.Header.Get("Origin"), r.Header.Get("Authorization"), r.Header.Get("X-Custom"),
			r.Header.Get("Sec-WebSocket-Protocol"), r.RemoteAddr}
		c, err := up.Upgrade(rw, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetPongHandler(func(s string) error { pongs <- s; return nil })
		c.WriteControl(gws.PingMessage, []byte("srv-ping"), time.Now().Add(time.Second))
		for {
			typ, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			if string(data) == "bye" {
				c.WriteMessage(gws.CloseMessage, gws.FormatCloseMessage(4001, "see you"))
				continue
			}
			c.WriteMessage(typ, data)
		}
	}))
	defer srv.Close()

	l := clientLoop(t)
	rec := newClientRec()
	hdr := http.Header{}
	hdr.Set("Origin", "http://example.test")
	hdr.Set("Authorization", "Bearer secret")
	hdr.Add("X-Custom", "v1")
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/path?q=1"
	_, err := l.DialWebSocket(u, rec.handler(func(w *WebSocket) {
		w.WriteText([]byte("one"))
		w.WriteBinary(bytes.Repeat([]byte{7}, 100<<10))
	}), ClientOptions{Header: hdr, Subprotocols: []string{"chat.v1", "chat.v2"}, LocalAddr: "127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	s := wsRecv(t, seenCh, "request")
	if s.origin != "http://example.test" || s.auth != "Bearer secret" || s.custom != "v1" || s.protos != "chat.v1, chat.v2" {
		t.Fatalf("server saw %+v", s)
	}
	if !strings.HasPrefix(s.remote, "127.0.0.2:") {
		t.Errorf("LocalAddr ignored: server saw %s", s.remote)
	}
	w := wsRecv(t, rec.opens, "open")
	if w.Subprotocol() != "chat.v2" {
		t.Errorf("subprotocol %q", w.Subprotocol())
	}
	if m := wsRecv(t, rec.msgs, "echo"); m.typ != Text || m.data != "one" {
		t.Fatalf("echo %v %q", m.typ, m.data)
	}
	if m := wsRecv(t, rec.msgs, "echo"); m.typ != Binary || m.data != string(bytes.Repeat([]byte{7}, 100<<10)) {
		t.Fatalf("binary echo %v %d bytes", m.typ, len(m.data))
	}
	if p := wsRecv(t, pongs, "pong"); p != "srv-ping" {
		t.Fatalf("pong %q", p)
	}
	if err := w.WriteAsync(Text, []byte("bye"), nil); err != nil {
		t.Fatal(err)
	}
	if c := wsRecv(t, rec.closes, "close"); c.code != 4001 || c.reason != "see you" {
		t.Fatalf("close %d %q", c.code, c.reason)
	}
	expectNone(t, rec.errs, 20*time.Millisecond, "error")
}

// rawServer accepts one connection and hands it to fn on its goroutine.
func rawServer(t *testing.T, fn func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fn(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}

// rawFrame is a frame as the raw test server reads it.
type rawFrame struct {
	fin     bool
	op      ws.OpCode
	masked  bool
	mask    [4]byte
	payload []byte // unmasked
}

func readRawFrame(br *bufio.Reader) (rawFrame, error) {
	var f rawFrame
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return f, err
	}
	f.fin, f.op, f.masked = h[0]&0x80 != 0, ws.OpCode(h[0]&0x0f), h[1]&0x80 != 0
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	if f.masked {
		io.ReadFull(br, f.mask[:])
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(br, f.payload); err != nil {
		return f, err
	}
	if f.masked {
		ws.Cipher(f.payload, f.mask, 0)
	}
	return f, nil
}

// TestClientMasksEveryFrameWithFreshKey reads the client's frames off the
// wire: every one is masked, each with its own key, and the payload
// unmasks to what was sent. The server also sends a frame in the same
// segment as its 101, which the client must not lose.
func TestClientMasksEveryFrameWithFreshKey(t *testing.T) {
	frames := make(chan rawFrame, 16)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		resp := ws13.AppendResponse(nil, []byte(r.Header.Get("Sec-WebSocket-Key")), "", "", nil)
		resp = ws13.AppendFrame(resp, true, ws.OpText, []byte("early"))
		c.Write(resp)
		for {
			f, err := readRawFrame(br)
			if err != nil {
				close(frames)
				return
			}
			frames <- f
			if f.op == ws.OpClose {
				c.Write(ws13.AppendCloseFrame(nil, StatusCode(binary.BigEndian.Uint16(f.payload)), ""))
			}
		}
	})
	l := clientLoop(t)
	rec := newClientRec()
	cl, err := l.DialWebSocket("ws://"+addr+"/", rec.handler(nil), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := wsRecv(t, rec.opens, "open")
	if m := wsRecv(t, rec.msgs, "early frame"); m.data != "early" {
		t.Fatalf("early frame %q", m.data)
	}
	for _, s := range []string{"a", "a", "a", "a"} {
		if err := w.WriteAsync(Text, []byte(s), nil); err != nil {
			t.Fatal(err)
		}
	}
	masks := map[[4]byte]bool{}
	for i := 0; i < 4; i++ {
		f := wsRecv(t, frames, "frame")
		if !f.masked || !f.fin || f.op != ws.OpText || string(f.payload) != "a" {
			t.Fatalf("frame %d: %+v", i, f)
		}
		masks[f.mask] = true
	}
	if len(masks) != 4 {
		t.Fatalf("masking keys reused: %d distinct of 4", len(masks))
	}
	cl.Close()
	f := wsRecv(t, frames, "close frame")
	if !f.masked || f.op != ws.OpClose || binary.BigEndian.Uint16(f.payload) != 1000 {
		t.Fatalf("close frame %+v", f)
	}
	if c := wsRecv(t, rec.closes, "close"); c.code != CloseNormal {
		t.Fatalf("close code %d", c.code)
	}
}

func TestClientRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := clientLoop(t)
	rec := newClientRec()
	if _, err := l.DialWebSocket("ws://"+addr+"/x", rec.handler(nil), ClientOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wsRecv(t, rec.errs, "error")
	var de *DialError
	if !errors.As(err, &de) || de.Status != 0 || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("want a *DialError wrapping ECONNREFUSED, got %T %v", err, err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error does not name the URL: %v", err)
	}
	expectNone(t, rec.opens, 50*time.Millisecond, "open")
	expectNone(t, rec.errs, 0, "second error (Reconnect is off)")
}

func TestClientBadHandshake(t *testing.T) {
	httpSrv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Error(rw, "go away", http.StatusForbidden)
	}))
	defer httpSrv.Close()
	reply := func(resp func(key string) string) string {
		return rawServer(t, func(c net.Conn, br *bufio.Reader) {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.WriteString(c, resp(r.Header.Get("Sec-WebSocket-Key")))
			io.Copy(io.Discard, br)
		})
	}
	accept := func(key string) string { return string(ws13.AppendAcceptKey(nil, []byte(key))) }
	cases := []struct {
		name   string
		addr   string
		status int
		want   error
		text   string
	}{
		{"403", strings.TrimPrefix(httpSrv.URL, "http://"), 403, ws13.ErrResponseStatus, ""},
		{"wrong accept", reply(func(string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
		}), 101, ws13.ErrResponseAccept, ""},
		{"missing accept", reply(func(string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
		}), 101, ws13.ErrResponseAccept, ""},
		{"unoffered subprotocol", reply(func(k string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept(k) + "\r\nSec-WebSocket-Protocol: evil\r\n\r\n"
		}), 101, ws13.ErrResponseSubprotocol, ""},
		{"unoffered extension", reply(func(k string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept(k) + "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
		}), 101, ws13.ErrResponseExtension, ""},
		{"not HTTP", reply(func(string) string { return "SSH-2.0-OpenSSH\r\n\r\n" }), 0, nil, "bad handshake response"},
		{"closed mid-head", reply(func(string) string { return "HTTP/1.1 101 Switching" }), 0, nil, "closed during the handshake"},
	}
	l := clientLoop(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "closed mid-head" {
				// The server closes right after the partial head.
				tc.addr = rawServer(t, func(c net.Conn, br *bufio.Reader) {
					http.ReadRequest(br)
					io.WriteString(c, "HTTP/1.1 101 Switching")
				})
			}
			rec := newClientRec()
			if _, err := l.DialWebSocket("ws://"+tc.addr+"/", rec.handler(nil), ClientOptions{}); err != nil {
				t.Fatal(err)
			}
			err := wsRecv(t, rec.errs, "error")
			var de *DialError
			if !errors.As(err, &de) || de.Status != tc.status {
				t.Fatalf("got %T %v, want a *DialError with status %d", err, err, tc.status)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want it to mention %q", err, tc.text)
			}
			expectNone(t, rec.opens, 30*time.Millisecond, "open")
			expectNone(t, rec.closes, 0, "close")
		})
	}
}

// TestClientHandshakeTimeout dials a listener that accepts and never
// answers: the wheel deadline fails the attempt and closes the socket.
func TestClientHandshakeTimeout(t *testing.T) {
	eof := make(chan error, 1)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		_, err := io.Copy(io.Discard, br) // the request, then EOF when the client gives up
		eof <- err
	})
	l := clientLoop(t)
	rec := newClientRec()
	start := time.Now()
	if _, err := l.DialWebSocket("ws://"+addr+"/", rec.handler(nil), ClientOptions{HandshakeTimeout: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	err := wsRecv(t, rec.errs, "error")
	if !errors.Is(err, ErrHandshakeTimeout) {
		t.Fatalf("got %v, want ErrHandshakeTimeout", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("timed out after %v, before the 200ms timeout", d)
	}
	if err := wsRecv(t, eof, "server-side EOF"); err != nil {
		t.Fatalf("server side: %v (want a clean EOF: the client closed its socket)", err)
	}
}

// TestClientReconnect: the server drops the first connection without a
// close frame; the client reconnects, then Client.Close ends it for good.
// TestClientCloseDuringHandshake: Close abandons an attempt the server
// never answers: the socket is closed at once and OnError stays silent.
func TestClientCloseDuringHandshake(t *testing.T) {
	gotReq := make(chan struct{}, 1)
	eof := make(chan error, 1)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		gotReq <- struct{}{}
		_, err := io.Copy(io.Discard, br)
		eof <- err
	})
	l := clientLoop(t)
	rec := newClientRec()
	c, err := l.DialWebSocket("ws://"+addr+"/", rec.handler(nil), ClientOptions{Reconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	wsRecv(t, gotReq, "upgrade request")
	c.Close()
	if err := wsRecv(t, eof, "server-side EOF"); err != nil {
		t.Fatalf("server side: %v", err)
	}
	expectNone(t, rec.errs, 100*time.Millisecond, "error after Close")
	expectNone(t, rec.opens, 0, "open")
}

// TestClientDialBeforeStart: a dial made before Start begins once the loop
// runs.
func TestClientDialBeforeStart(t *testing.T) {
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		app.HandleWebSocket("/echo", wsEchoRoute(WSOptions{}), WSOptions{})
	})
	l := New(Options{})
	rec := newClientRec()
	if _, err := l.DialWebSocket(wsURL(addr, "/echo"), rec.handler(func(w *WebSocket) { w.WriteText([]byte("early bird")) }), ClientOptions{}); err != nil {
		t.Fatal(err)
	}
	go l.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
	}()
	wsRecv(t, rec.opens, "open")
	if m := wsRecv(t, rec.msgs, "echo"); m.data != "early bird" {
		t.Fatalf("echo %q", m.data)
	}
}

func TestClientReconnect(t *testing.T) {
	var opens atomic.Int32
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		app.HandleWebSocket("/kick", func(*Request) WebSocketHandler { return kickFirst{&opens} }, WSOptions{})
	})
	cl := clientLoop(t)
	rec := newClientRec()
	c, err := cl.DialWebSocket(wsURL(addr, "/kick"), rec.handler(nil),
		ClientOptions{Reconnect: true, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w1 := wsRecv(t, rec.opens, "first open")
	if cc := wsRecv(t, rec.closes, "close of the dropped connection"); cc.code != CloseAbnormal {
		t.Fatalf("close code %d, want 1006", cc.code)
	}
	w2 := wsRecv(t, rec.opens, "second open")
	if w1 == w2 {
		t.Fatal("the same WebSocket was reopened")
	}
	if err := w2.WriteAsync(Text, []byte("still here"), nil); err != nil {
		t.Fatal(err)
	}
	if m := wsRecv(t, rec.msgs, "echo on the new connection"); m.data != "still here" {
		t.Fatalf("echo %q", m.data)
	}
	c.Close()
	if cc := wsRecv(t, rec.closes, "close"); cc.code != CloseNormal {
		t.Fatalf("close code %d, want 1000", cc.code)
	}
	expectNone(t, rec.opens, 300*time.Millisecond, "open after Close")
	if n := opens.Load(); n != 2 {
		t.Fatalf("server saw %d connections, want 2", n)
	}
}

// kickFirst drops its first connection at once (no close frame) and echoes
// on the later ones.
type kickFirst struct{ n *atomic.Int32 }

func (k kickFirst) Open(w *WebSocket) {
	if k.n.Add(1) == 1 {
		w.conn().close()
	}
}
func (kickFirst) OnMessage(w *WebSocket, typ MessageType, data []byte) { w.WriteText(data) }
func (kickFirst) OnClose(*WebSocket)                                   {}
func (kickFirst) OnPing(*WebSocket, []byte)                            {}
func (kickFirst) OnPong(*WebSocket, []byte)                            {}

func TestClientCloseStopsReconnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := clientLoop(t)
	rec := newClientRec()
	start := time.Now()
	c, err := l.DialWebSocket("ws://"+addr+"/", rec.handler(nil),
		ClientOptions{Reconnect: true, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if err := wsRecv(t, rec.errs, "refused attempt"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	// Backoff: the first wait is >= 5ms, the next ones grow to >= 20ms
	// (d/2 of 10, 20, 40 ms), so four attempts take at least 5+10+20 ms.
	if d := time.Since(start); d < 35*time.Millisecond {
		t.Errorf("4 attempts in %v: no backoff", d)
	}
	c.Close()
	for len(rec.errs) > 0 { // one attempt may have been in flight
		<-rec.errs
	}
	expectNone(t, rec.errs, 300*time.Millisecond, "error after Close")
	expectNone(t, rec.opens, 0, "open")
}

func TestClientMaxMessageSize(t *testing.T) {
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		app.HandleWebSocket("/echo", wsEchoRoute(WSOptions{}), WSOptions{})
	})
	rec := newClientRec()
	_, err := l.DialWebSocket(wsURL(addr, "/echo"), rec.handler(func(w *WebSocket) {
		w.WriteText([]byte(strings.Repeat("x", 2000)))
	}), ClientOptions{MaxMessageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	wsRecv(t, rec.opens, "open")
	if c := wsRecv(t, rec.closes, "close"); c.code != CloseTooBig {
		t.Fatalf("close code %d %q, want 1009", c.code, c.reason)
	}
	expectNone(t, rec.msgs, 20*time.Millisecond, "oversized message delivered")
}

// pingCounter counts the pings a server connection receives.
type pingCounter struct {
	WebSocketBase
	n *atomic.Int32
}

func (p pingCounter) OnPing(*WebSocket, []byte) { p.n.Add(1) }

// TestClientPings: with PingInterval the client pings; a server that
// answers keeps the connection, one that never answers gets it closed with
// 1006 after PingTimeout.
func TestClientPings(t *testing.T) {
	var pings atomic.Int32
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		app.HandleWebSocket("/ping", func(*Request) WebSocketHandler { return pingCounter{n: &pings} }, WSOptions{})
	})
	l := clientLoop(t)
	rec := newClientRec()
	opts := ClientOptions{PingInterval: 30 * time.Millisecond, PingTimeout: 200 * time.Millisecond}
	if _, err := l.DialWebSocket(wsURL(addr, "/ping"), rec.handler(nil), opts); err != nil {
		t.Fatal(err)
	}
	wsRecv(t, rec.opens, "open")
	deadline := time.Now().Add(5 * time.Second)
	for pings.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := pings.Load(); n < 3 {
		t.Fatalf("server got %d pings", n)
	}
	expectNone(t, rec.closes, 0, "close while the server answers pings")

	// A server that completes the handshake and then goes silent.
	silent := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		c.Write(ws13.AppendResponse(nil, []byte(r.Header.Get("Sec-WebSocket-Key")), "", "", nil))
		time.Sleep(3 * time.Second)
	})
	rec2 := newClientRec()
	if _, err := l.DialWebSocket("ws://"+silent+"/", rec2.handler(nil), opts); err != nil {
		t.Fatal(err)
	}
	wsRecv(t, rec2.opens, "open")
	if c := wsRecv(t, rec2.closes, "ping-timeout close"); c.code != CloseAbnormal || c.reason != "ping timeout" {
		t.Fatalf("close %d %q, want 1006 ping timeout", c.code, c.reason)
	}
}

func TestDialWebSocketRejectsBadInput(t *testing.T) {
	l := New(Options{})
	for _, c := range []struct {
		url  string
		opts ClientOptions
		want string
	}{
		{"wss://127.0.0.1/", ClientOptions{}, "not supported"},
		{"http://127.0.0.1/", ClientOptions{}, "not supported"},
		{"ws:///path", ClientOptions{}, "no host"},
		{"ws://[::1", ClientOptions{}, "missing ']'"},
		{"ws://127.0.0.1/", ClientOptions{Header: http.Header{"X": {"a\r\nb"}}}, "CR, LF"},
		{"ws://127.0.0.1/", ClientOptions{Header: http.Header{"Sec-Websocket-Key": {"k"}}}, "set by the handshake"},
		{"ws://127.0.0.1/", ClientOptions{Subprotocols: []string{"a b"}}, "not a token"},
		{"ws://127.0.0.1/", ClientOptions{LocalAddr: "localhost"}, "local address"},
	} {
		_, err := l.DialWebSocket(c.url, ClientHandler{}, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("DialWebSocket(%q, %+v) = %v, want an error mentioning %q", c.url, c.opts, err, c.want)
		}
	}
	if err := l.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.DialWebSocket("ws://127.0.0.1/", ClientHandler{}, ClientOptions{}); !errors.Is(err, ErrStopped) {
		t.Errorf("dial on a stopped loop: %v", err)
	}
}

// TestClientManyConnectionsNoGoroutines holds 2,000 client connections on
// one client-only loop and checks the goroutine count does not grow with
// them (only the bounded dialers and gnet's pool workers come and go).
func TestClientManyConnectionsNoGoroutines(t *testing.T) {
	const n = 2000
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		app.HandleWebSocket("/echo", wsEchoRoute(WSOptions{}), WSOptions{})
	})
	l := clientLoop(t)
	base := runtime.NumGoroutine()
	fdBase := openFDs()
	var echoed, failed atomic.Int32
	done := make(chan struct{})
	h := ClientHandler{
		OnOpen: func(w *WebSocket) { w.WriteText([]byte("x")) },
		OnMessage: func(w *WebSocket, typ MessageType, data []byte) {
			if echoed.Add(1) == n {
				close(done)
			}
		},
		OnError: func(c *Client, err error) {
			if failed.Add(1) == 1 {
				t.Errorf("dial failed: %v", err)
			}
		},
	}
	clients := make([]*Client, 0, n)
	for i := 0; i < n; i++ {
		c, err := l.DialWebSocket(wsURL(addr, "/echo"), h, ClientOptions{HandshakeTimeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	peak := 0
	deadline := time.After(60 * time.Second)
wait:
	for {
		select {
		case <-done:
			break wait
		case <-deadline:
			t.Fatalf("only %d of %d connections echoed (%d failed)", echoed.Load(), n, failed.Load())
		case <-time.After(5 * time.Millisecond):
			peak = max(peak, runtime.NumGoroutine())
		}
	}
	// Dialers and gnet's Register workers exist only while attempts are
	// in flight: 2 per dial, at most maxDialers dials at once.
	limit := base + 2*maxDialers + 20
	if peak > limit {
		t.Errorf("goroutines peaked at %d with %d dialing (base %d, limit %d)", peak, n, base, limit)
	}
	time.Sleep(50 * time.Millisecond)
	if g := runtime.NumGoroutine(); g > limit {
		t.Errorf("%d goroutines with %d open client connections (base %d)", g, n, base)
	}
	var open int
	onLoopWait(t, l, func() {
		for _, c := range clients {
			if c.WebSocket() != nil {
				open++
			}
		}
	})
	if open != n {
		t.Fatalf("%d of %d clients open", open, n)
	}
	// gnet dups the dialed descriptor and closes ours: one descriptor per
	// client connection (plus one per server connection of this process).
	if fdBase >= 0 {
		if grew := openFDs() - fdBase; grew > 2*n+50 {
			t.Errorf("%d descriptors for %d client+server connection pairs: the dialed copies leak", grew, n)
		}
	}
	t.Logf("%d client connections: %d goroutines (base %d, peak %d), %d more descriptors", n, runtime.NumGoroutine(), base, peak, openFDs()-fdBase)
}

// openFDs counts this process's open descriptors, -1 where /proc is absent.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// TestClientLoopStopClosesWith1001: stopping a client loop closes its
// connections with 1001 and the server sees that code; no reconnect.
func TestClientLoopStopClosesWith1001(t *testing.T) {
	var recs chan *wsRec
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		recs = wsRecRoute(app, "/rec", WSOptions{}, nil)
	})
	l := clientLoop(t)
	rec := newClientRec()
	if _, err := l.DialWebSocket(wsURL(addr, "/rec"), rec.handler(nil), ClientOptions{Reconnect: true, MinBackoff: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	wsRecv(t, rec.opens, "open")
	srv := wsRecv(t, recs, "server connection")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := l.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if c := wsRecv(t, srv.closeCh, "server-side close"); c.code != CloseGoingAway || c.reason != "client shutting down" {
		t.Fatalf("server saw close %d %q", c.code, c.reason)
	}
	if c := wsRecv(t, rec.closes, "client close"); c.code != CloseGoingAway {
		t.Fatalf("client close %d", c.code)
	}
	expectNone(t, rec.opens, 50*time.Millisecond, "reconnect after Stop")
}

// TestClientUpgradeUnsentAccounted (bug 7, client half): an upgrade request
// the socket does not take at once counts in the loop's unsent output
// (Metrics.UnsentBytes) until the server reads it, and the count falls back
// to exactly 0 once it did. The request used to be written around
// conn.write, so the loop never saw it: UnsentBytes stayed 0 and the
// connection was not watched.
func TestClientUpgradeUnsentAccounted(t *testing.T) {
	const pad = 16 << 20 // far more than loopback socket buffers hold
	read := make(chan struct{})
	drained := make(chan int64, 1)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		<-read // do not read until the test has seen the unsent bytes
		n, _ := io.CopyN(io.Discard, br, pad)
		drained <- n
		time.Sleep(time.Second) // keep the socket open while the test looks
	})
	l := clientLoop(t)
	rec := newClientRec()
	opts := ClientOptions{Header: http.Header{"X-Pad": {strings.Repeat("a", pad)}}, PingInterval: -1}
	cl, err := l.DialWebSocket("ws://"+addr+"/", rec.handler(nil), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitUnsent := func(what string, ok func(int64) bool) int64 {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := l.Metrics().UnsentBytes
			if ok(n) {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("Metrics.UnsentBytes = %d, want %s", n, what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	n := waitUnsent("> 0 while the server does not read the upgrade request", func(n int64) bool { return n > 0 })
	if n > pad+1024 {
		t.Fatalf("UnsentBytes %d, more than the request", n)
	}
	close(read)
	if got := wsRecv(t, drained, "the server to read the request"); got != pad {
		t.Fatalf("server read %d bytes, want %d", got, pad)
	}
	waitUnsent("0 once the server read the request", func(n int64) bool { return n == 0 })
}

// TestClientOptionsDefaults: the loop client's defaults are ws13's table,
// the ones WSOptions (server routes) and wsclient.DialOptions use, zero and
// negative meaning the same in all: the default, except a negative
// PingInterval, which turns pings off. The client's route gets them all,
// CloseTimeout included.
func TestClientOptionsDefaults(t *testing.T) {
	for _, o := range []ClientOptions{{}, {HandshakeTimeout: -1, MaxMessageSize: -1, CloseTimeout: -1, PingTimeout: -1}} {
		d := o.withDefaults()
		if d.HandshakeTimeout != ws13.DefaultHandshakeTimeout || d.MaxMessageSize != ws13.DefaultMaxMessage ||
			d.CloseTimeout != ws13.DefaultCloseTimeout || d.PingInterval != ws13.DefaultPingInterval ||
			d.PingTimeout != ws13.DefaultPingTimeout {
			t.Errorf("%+v.withDefaults() = %+v", o, d)
		}
		r := clientRoute(d).opts
		s := WSOptions{}.withDefaults()
		if r.MaxMessageSize != s.MaxMessageSize || r.CloseTimeout != s.CloseTimeout ||
			r.PingInterval != s.PingInterval || r.PingTimeout != s.PingTimeout {
			t.Errorf("client route %+v, server route defaults %+v", r, s)
		}
	}
	if d := (ClientOptions{PingInterval: -5}).withDefaults(); d.PingInterval >= 0 {
		t.Errorf("negative PingInterval became %v, want off", d.PingInterval)
	}
	if r := clientRoute(ClientOptions{CloseTimeout: 1234 * time.Millisecond}.withDefaults()); r.opts.CloseTimeout != 1234*time.Millisecond {
		t.Errorf("route CloseTimeout %v, want 1.234s", r.opts.CloseTimeout)
	}
}
