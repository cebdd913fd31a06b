package loop

// Test helpers shared by the package's tests: one way to start a loop (also
// exported to the external loop_test package as StartTestLoop), and the
// WebSocket helpers (raw client, recorder and echo routes, real-client
// dialers). Names are prefixed ws where they concern WebSockets.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/proto/ws13"
)

// startTestLoop runs a loop on a free loopback port serving what setup
// returns (setup gets the loop before it listens, to add routes and
// state), and stops it when the test ends: Stop must succeed within 3 s
// (or only miss its deadline) and Start must then return nil. A nil logger
// discards (tests that panic on purpose would flood the output).
func startTestLoop(t testing.TB, logger *slog.Logger, setup func(l *Loop) *Application) (*Loop, string) {
	t.Helper()
	return startTestLoopWith(t, Options{TimeoutResolution: 10 * time.Millisecond, Logger: logger}, setup)
}

// startTestLoopWith is startTestLoop with the loop's options given.
func startTestLoopWith(t testing.TB, opts Options, setup func(l *Loop) *Application) (*Loop, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := New(opts)
	if err := l.Listen(addr, setup(l)); err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "loop", l.Start, l.Ready(), l.Stop, 5*time.Second)
	return l, addr
}

// StartTestLoop is startTestLoop for the external loop_test package (this
// file is compiled into the test binary only).
var StartTestLoop = startTestLoop

// ---- helpers (all prefixed ws so they do not clash with other test files) ----

// wsStartLoop starts a loop on a free loopback port with the routes setup
// adds, logging warnings to stderr, and stops it when the test ends.
func wsStartLoop(t testing.TB, setup func(l *Loop, app *Application)) (*Loop, string) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return startTestLoop(t, logger, func(l *Loop) *Application {
		app := NewApplication(AppOptions{})
		setup(l, app)
		return app
	})
}

// wsEchoHandler echoes every message with its type.
type wsEchoHandler struct{ WebSocketBase }

func (wsEchoHandler) OnMessage(w *WebSocket, typ MessageType, data []byte) {
	if typ == Binary {
		w.WriteBinary(data)
		return
	}
	w.WriteText(data)
}

func wsEchoRoute(opts WSOptions) func(*Request) WebSocketHandler {
	return func(*Request) WebSocketHandler { return wsEchoHandler{} }
}

// wsClosedInfo is what a recorder reports from OnClose.
type wsClosedInfo struct {
	id     string
	code   StatusCode
	reason string
	events []string
}

// wsRec records the lifecycle calls it gets. events is touched only on the
// loop; tests read it through wsEvents (a callback and a channel).
type wsRec struct {
	id       string
	events   []string
	opened   bool
	closed   bool
	openCh   chan *WebSocket
	closeCh  chan wsClosedInfo
	onOpen   func(*WebSocket)
	onMsg    func(*WebSocket, MessageType, []byte) // default: echo
	pings    int
	pongs    int
	protocol string
}

func (r *wsRec) Open(w *WebSocket) {
	if r.closed {
		r.events = append(r.events, "open-after-close")
	}
	r.opened = true
	r.protocol = w.Subprotocol()
	r.events = append(r.events, "open")
	if r.onOpen != nil {
		r.onOpen(w)
	}
	select {
	case r.openCh <- w:
	default:
	}
}

func (r *wsRec) OnMessage(w *WebSocket, typ MessageType, data []byte) {
	switch {
	case r.closed:
		r.events = append(r.events, "msg-after-close")
	case !r.opened:
		r.events = append(r.events, "msg-before-open")
	}
	if len(data) <= 64 {
		r.events = append(r.events, "msg:"+string(data))
	} else {
		r.events = append(r.events, fmt.Sprintf("msg:%d bytes", len(data)))
	}
	if r.onMsg != nil {
		r.onMsg(w, typ, data)
		return
	}
	if typ == Binary {
		w.WriteBinary(data)
	} else {
		w.WriteText(data)
	}
}

func (r *wsRec) OnPing(w *WebSocket, data []byte) {
	if r.closed || !r.opened {
		r.events = append(r.events, "ping-out-of-order")
	}
	r.pings++
}

func (r *wsRec) OnPong(w *WebSocket, data []byte) {
	if r.closed || !r.opened {
		r.events = append(r.events, "pong-out-of-order")
	}
	r.pongs++
}

func (r *wsRec) OnClose(w *WebSocket) {
	if r.closed {
		r.events = append(r.events, "close-twice")
	}
	if !r.opened {
		r.events = append(r.events, "close-before-open")
	}
	r.closed = true
	r.events = append(r.events, "close")
	r.closeCh <- wsClosedInfo{id: r.id, code: w.CloseCode(), reason: w.CloseReason(), events: append([]string(nil), r.events...)}
}

// wsRecRoute installs a route whose connections each get a new recorder,
// handed to the test on the returned channel.
func wsRecRoute(app *Application, pattern string, opts WSOptions, setup func(*wsRec)) chan *wsRec {
	recs := make(chan *wsRec, 64)
	app.HandleWebSocket(pattern, func(req *Request) WebSocketHandler {
		r := &wsRec{id: req.GetArgument("id", ""), openCh: make(chan *WebSocket, 1), closeCh: make(chan wsClosedInfo, 1)}
		if setup != nil {
			setup(r)
		}
		recs <- r
		return r
	}, opts)
	return recs
}

// wsEvents reads a recorder's events on the loop.
func wsEvents(t testing.TB, l *Loop, r *wsRec) []string {
	t.Helper()
	ch := make(chan []string, 1)
	l.AddCallback(func() { ch <- append([]string(nil), r.events...) })
	select {
	case ev := <-ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("loop did not run the callback")
		return nil
	}
}

func wsRecv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

const wsTestKey = "dGhlIHNhbXBsZSBub25jZQ=="

func wsHandshake(host, path string, extra ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + wsTestKey + "\r\nSec-WebSocket-Version: 13\r\n" + strings.Join(extra, "") + "\r\n"
}

// wsRaw is a hand-driven client connection.
type wsRaw struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
	// rsv1OK accepts RSV1 on server frames (permessage-deflate negotiated).
	rsv1OK bool
}

func wsDialTCP(t testing.TB, addr string) *wsRaw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &wsRaw{t: t, c: c, br: bufio.NewReader(c)}
}

// wsDialRaw dials and upgrades; extraBytes are sent in the same Write as the
// handshake.
func wsDialRaw(t testing.TB, addr, path string, extraBytes []byte) *wsRaw {
	t.Helper()
	r := wsDialTCP(t, addr)
	r.write(append([]byte(wsHandshake(addr, path)), extraBytes...))
	resp := r.response()
	if resp.StatusCode != 101 {
		t.Fatalf("handshake: status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Sec-WebSocket-Accept = %q", got)
	}
	return r
}

func (r *wsRaw) write(b []byte) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *wsRaw) response() *http.Response {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		r.t.Fatalf("read response: %v", err)
	}
	if resp.StatusCode != 101 {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp
}

var wsMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// wsFrame builds a masked client frame.
func wsFrame(fin bool, op ws.OpCode, payload []byte) []byte {
	return ws13.AppendMaskedFrame(nil, fin, op, wsMask, payload)
}

func (r *wsRaw) send(fin bool, op ws.OpCode, payload []byte) { r.write(wsFrame(fin, op, payload)) }

type wsSrvFrame struct {
	fin     bool
	rsv1    bool
	op      ws.OpCode
	payload []byte
}

// readFrame reads one server frame, checking that it is unmasked and has no
// reserved bits.
func (r *wsRaw) readFrame() (wsSrvFrame, error) {
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return wsSrvFrame{}, err
	}
	if rsv := h[0] & 0x70; rsv != 0 && (rsv != 0x40 || !r.rsv1OK) {
		return wsSrvFrame{}, fmt.Errorf("server frame with RSV bits %#x", h[0])
	}
	if h[1]&0x80 != 0 {
		return wsSrvFrame{}, errors.New("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return wsSrvFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return wsSrvFrame{}, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.br, p); err != nil {
		return wsSrvFrame{}, err
	}
	return wsSrvFrame{fin: h[0]&0x80 != 0, rsv1: h[0]&0x40 != 0, op: ws.OpCode(h[0] & 0x0f), payload: p}, nil
}

func (r *wsRaw) mustFrame() wsSrvFrame {
	r.t.Helper()
	f, err := r.readFrame()
	if err != nil {
		r.t.Fatalf("read frame: %v", err)
	}
	return f
}

// readClose skips frames until the server's close frame and returns its
// code (1005 for an empty body) and reason; then it expects the server to
// close the TCP connection.
func (r *wsRaw) readClose() (StatusCode, string) {
	r.t.Helper()
	for {
		f, err := r.readFrame()
		if err != nil {
			r.t.Fatalf("waiting for a close frame: %v", err)
		}
		if f.op != ws.OpClose {
			continue
		}
		code, reason := CloseNoStatus, ""
		if len(f.payload) >= 2 {
			code = StatusCode(binary.BigEndian.Uint16(f.payload))
			reason = string(f.payload[2:])
		} else if len(f.payload) == 1 {
			r.t.Fatalf("server close frame with a 1-byte body")
		}
		r.expectEOF()
		return code, reason
	}
}

// expectEOF expects the server to close the TCP connection soon, skipping
// whatever frames come first.
func (r *wsRaw) expectEOF() {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, r.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("server did not close the connection")
	}
}

func wsURL(addr, path string) string { return "ws://" + addr + path }

func gorillaDial(t testing.TB, addr, path string, d *gws.Dialer) *gws.Conn {
	t.Helper()
	if d == nil {
		d = &gws.Dialer{HandshakeTimeout: 5 * time.Second}
	}
	c, _, err := d.Dial(wsURL(addr, path), nil)
	if err != nil {
		t.Fatalf("gorilla dial %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// runUntilCleanup runs start (a Loop's or Group's) on a goroutine, waits
// up to wait for ready, and stops with stop when the test ends, checking
// that Start returns nil (and not before).
func runUntilCleanup(t testing.TB, what string, start func() error, ready <-chan struct{}, stop func(context.Context) error, wait time.Duration) {
	t.Helper()
	startErr := make(chan error, 1)
	go func() { startErr <- start() }()
	select {
	case <-ready:
	case <-time.After(wait):
		t.Fatalf("%s not ready after %v", what, wait)
	}
	select {
	case err := <-startErr:
		t.Fatalf("Start returned early: %v", err)
	default:
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait*3/5)
		defer cancel()
		if err := stop(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Stop: %v", err)
		}
		select {
		case err := <-startErr:
			if err != nil {
				t.Errorf("Start: %v", err)
			}
		case <-time.After(wait):
			t.Error("Start did not return after Stop")
		}
	})
}
