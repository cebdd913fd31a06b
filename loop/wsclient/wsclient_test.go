package wsclient

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/proto/ws13"
)

// Close codes the tests use.
const (
	CloseNormal        = ws13.CloseNormal
	CloseGoingAway     = ws13.CloseGoingAway
	CloseProtocolError = ws13.CloseProtocolError
	CloseNoStatus      = ws13.CloseNoStatus
	CloseAbnormal      = ws13.CloseAbnormal
)

// echoHandler echoes every message with its type.
type echoHandler struct{ loop.WebSocketBase }

func (echoHandler) OnMessage(w *loop.WebSocket, typ loop.MessageType, data []byte) {
	if typ == loop.Binary {
		w.WriteBinary(data)
		return
	}
	w.WriteText(data)
}

// startEcho runs a loop with an echo route at /echo on a free loopback port
// and returns the URL; the loop stops when the test ends.
func startEcho(t testing.TB) string {
	t.Helper()
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/echo", func(*loop.Request) loop.WebSocketHandler { return echoHandler{} }, loop.WSOptions{})
	l := loop.New(loop.Options{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- l.Start() }()
	<-l.Ready()
	if l.Addr() == nil {
		t.Fatal(<-started)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Stop(ctx)
	})
	return "ws://" + l.Addr().String() + "/echo"
}

// recvT waits for a value on ch, or fails the test after 5 s.
func recvT[T any](t testing.TB, ch <-chan T, what string) T {
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

// TestDialRejectsBadHeader: a header that would split the request is an
// error before anything is sent.
func TestDialRejectsBadHeader(t *testing.T) {
	_, err := Dial("ws://127.0.0.1:1/x", DialOptions{Header: http.Header{"X-A": {"1\r\nEvil: yes"}}})
	if !errors.Is(err, ws13.ErrRequestHeader) {
		t.Fatalf("err %v, want ErrRequestHeader", err)
	}
}

// TestDialRejectsUnofferedSubprotocol: a server that picks a subprotocol
// the client did not offer fails the handshake (RFC 6455 4.1).
func TestDialRejectsUnofferedSubprotocol(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		accept := ws13.AppendAcceptKey(nil, []byte(req.Header.Get("Sec-WebSocket-Key")))
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + string(accept) + "\r\nSec-WebSocket-Protocol: evil\r\n\r\n"))
		c.Read(make([]byte, 1))
	}()
	_, err = Dial("ws://"+ln.Addr().String()+"/x", DialOptions{Subprotocols: []string{"chat"}})
	if !errors.Is(err, ws13.ErrResponseSubprotocol) {
		t.Fatalf("err %v, want ErrResponseSubprotocol", err)
	}
}

// ---- the blocking client's close, concurrency and framing ----

// dialPeerFrame is one frame a rawPeer read from the client.
type dialPeerFrame struct {
	kind    ws13.EventKind
	op      ws.OpCode
	payload []byte
	code    ws13.StatusCode
}

// rawPeer is the server end of one Dial connection, driven by hand: it
// decodes the client's masked frames and writes whatever the test wants.
type rawPeer struct {
	t   testing.TB
	c   net.Conn
	br  *bufio.Reader
	buf []byte
	dec ws13.Decoder
}

// startRawPeer listens on 127.0.0.1, answers one upgrade and hands the test
// the server end.
func startRawPeer(t testing.TB) (string, <-chan *rawPeer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	peers := make(chan *rawPeer, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { c.Close() })
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			c.Close()
			return
		}
		accept := ws13.AppendAcceptKey(nil, []byte(req.Header.Get("Sec-WebSocket-Key")))
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + string(accept) + "\r\n\r\n"))
		peers <- &rawPeer{t: t, c: c, br: br}
	}()
	return "ws://" + ln.Addr().String() + "/x", peers
}

// next reads the client's next frame (pings, pongs and close frames
// included); io.EOF once the client closed the TCP connection.
func (p *rawPeer) next() (dialPeerFrame, error) {
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		ev, n, err := p.dec.Next(p.buf, ws13.Limits{})
		if err != nil {
			return dialPeerFrame{}, err
		}
		if n > 0 {
			f := dialPeerFrame{kind: ev.Kind, op: ev.Op, payload: append([]byte(nil), ev.Payload...), code: ev.Code}
			if ev.Kind == ws13.EventMessage {
				p.dec.Release()
			}
			p.buf = append(p.buf[:0], p.buf[n:]...)
			if ev.Kind == ws13.EventNone {
				continue
			}
			return f, nil
		}
		var tmp [4096]byte
		m, err := p.br.Read(tmp[:])
		p.buf = append(p.buf, tmp[:m]...)
		if m == 0 && err != nil {
			return dialPeerFrame{}, err
		}
	}
}

// rest reads frames until the client closes the TCP connection.
func (p *rawPeer) rest() []dialPeerFrame {
	var fs []dialPeerFrame
	for {
		f, err := p.next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				p.t.Errorf("peer: reading the client's frames: %v", err)
			}
			return fs
		}
		fs = append(fs, f)
	}
}

func (p *rawPeer) write(b []byte) {
	p.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.c.Write(b); err != nil {
		p.t.Errorf("peer write: %v", err)
	}
}

func countCloses(fs []dialPeerFrame) int {
	n := 0
	for _, f := range fs {
		if f.kind == ws13.EventClose {
			n++
		}
	}
	return n
}

func dialT(t testing.TB, url string) *Conn {
	t.Helper()
	c, err := Dial(url, DialOptions{HandshakeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(CloseNormal, "") })
	return c
}

// TestDialConcurrentRecvClose: one goroutine in Recv, another sends and
// then calls Close, against the real server's echo route. Close used to
// call Recv on the buffer the reader was decoding (panics, "reserved bits
// set", races under -race). The reader must get the echo, then io.EOF with
// the server's 1000.
func TestDialConcurrentRecvClose(t *testing.T) {
	echo := startEcho(t)
	for i := range 20 {
		c := dialT(t, echo)
		type got struct {
			msgs []string
			err  error
		}
		done := make(chan got, 1)
		go func() {
			var g got
			for {
				_, msg, err := c.Recv()
				if err != nil {
					g.err = err
					done <- g
					return
				}
				g.msgs = append(g.msgs, string(msg))
			}
		}()
		if err := c.Send("hi"); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(CloseNormal, "bye"); err != nil {
			t.Fatalf("run %d: Close: %v", i, err)
		}
		g := recvT(t, done, "the reader to return")
		if len(g.msgs) != 1 || g.msgs[0] != "hi" || g.err != io.EOF {
			t.Fatalf("run %d: reader got %q, %v; want [hi], io.EOF", i, g.msgs, g.err)
		}
		if c.CloseCode() != CloseNormal {
			t.Fatalf("run %d: close %d %q, want the server's echo of 1000", i, c.CloseCode(), c.CloseReason())
		}
	}
}

// TestDialConcurrentSendRecvClose: a writer goroutine sending without
// pause, a reader goroutine receiving and Close from a third goroutine:
// nothing races, both return errors cleanly, and the server gets one close.
func TestDialConcurrentSendRecvClose(t *testing.T) {
	echo := startEcho(t)
	for i := range 5 {
		c := dialT(t, echo)
		recvErr, sendErr := make(chan error, 1), make(chan error, 1)
		go func() {
			for {
				if _, _, err := c.Recv(); err != nil {
					recvErr <- err
					return
				}
			}
		}()
		go func() {
			for {
				if err := c.Send("x"); err != nil {
					sendErr <- err
					return
				}
			}
		}()
		_, first, err := c.Recv() // one echo proves the writer runs
		if err != nil || string(first) != "x" {
			t.Fatalf("run %d: Recv %q, %v", i, first, err)
		}
		closed := make(chan error, 1)
		go func() { closed <- c.Close(CloseGoingAway, "") }()
		if err := recvT(t, closed, "Close"); err != nil {
			t.Fatalf("run %d: Close: %v", i, err)
		}
		if err := recvT(t, recvErr, "the reader's error"); err != io.EOF {
			t.Fatalf("run %d: reader: %v, want io.EOF", i, err)
		}
		if err := recvT(t, sendErr, "the writer's error"); !errors.Is(err, ErrCloseSent) && !errors.Is(err, net.ErrClosed) {
			t.Fatalf("run %d: writer: %v, want ErrCloseSent or net.ErrClosed", i, err)
		}
	}
}

// TestDialCloseSendsOneFrame: Close sends exactly one close frame, whether
// the client starts the closing handshake or the server does (the client
// has then already echoed the server's close from Recv).
func TestDialCloseSendsOneFrame(t *testing.T) {
	t.Run("client first", func(t *testing.T) {
		url, peers := startRawPeer(t)
		c := dialT(t, url)
		p := recvT(t, peers, "the connection")
		got := make(chan []dialPeerFrame, 1)
		go func() {
			f, err := p.next()
			if err != nil || f.kind != ws13.EventClose || f.code != CloseNormal {
				t.Errorf("first frame %+v, %v; want a 1000 close", f, err)
			}
			p.write(ws13.AppendCloseFrame(nil, CloseNormal, ""))
			got <- append([]dialPeerFrame{f}, p.rest()...)
		}()
		if err := c.Close(CloseNormal, ""); err != nil {
			t.Fatal(err)
		}
		if fs := recvT(t, got, "the client's frames"); countCloses(fs) != 1 {
			t.Fatalf("server got %d close frames (%+v), want 1", countCloses(fs), fs)
		}
	})
	t.Run("server first", func(t *testing.T) {
		url, peers := startRawPeer(t)
		c := dialT(t, url)
		p := recvT(t, peers, "the connection")
		p.write(ws13.AppendCloseFrame(nil, CloseGoingAway, "restart"))
		if _, _, err := c.Recv(); err != io.EOF {
			t.Fatalf("Recv: %v, want io.EOF", err)
		}
		if c.CloseCode() != CloseGoingAway || c.CloseReason() != "restart" {
			t.Fatalf("close %d %q", c.CloseCode(), c.CloseReason())
		}
		got := make(chan []dialPeerFrame, 1)
		go func() { got <- p.rest() }()
		if err := c.Close(CloseNormal, ""); err != nil {
			t.Fatal(err)
		}
		fs := recvT(t, got, "the client's frames")
		if countCloses(fs) != 1 || fs[0].code != CloseGoingAway {
			t.Fatalf("server got %+v, want one close echoing 1001", fs)
		}
		if err := c.Send("late"); !errors.Is(err, ErrCloseSent) {
			t.Fatalf("Send after the close: %v, want ErrCloseSent", err)
		}
	})
}

// TestDialCloseKeepsLateMessages: Close with no Recv in progress reads
// until the server's close itself; a message the server sent before its
// close is kept for Recv, not dropped.
func TestDialCloseKeepsLateMessages(t *testing.T) {
	url, peers := startRawPeer(t)
	c := dialT(t, url)
	p := recvT(t, peers, "the connection")
	peerDone := make(chan struct{})
	defer func() { recvT(t, peerDone, "the peer") }()
	go func() {
		defer close(peerDone)
		if f, err := p.next(); err != nil || f.kind != ws13.EventClose {
			t.Errorf("peer: %+v, %v; want the client's close", f, err)
			return
		}
		p.write(ws13.AppendFrame(nil, true, ws.OpText, []byte("late")))
		p.write(ws13.AppendCloseFrame(nil, CloseNormal, ""))
		p.rest()
	}()
	if err := c.Close(CloseNormal, ""); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Recv(); err != nil || string(msg) != "late" {
		t.Fatalf("Recv after Close: %q, %v; want the late message", msg, err)
	}
	if _, _, err := c.Recv(); err != io.EOF {
		t.Fatalf("Recv: %v, want io.EOF", err)
	}
}

// TestDialCloseBoundedWithoutAnswer: a server that never answers the close
// (and a Recv blocked on it) does not hold Close past its timeout; the
// blocked Recv returns an error.
func TestDialCloseBoundedWithoutAnswer(t *testing.T) {
	url, peers := startRawPeer(t)
	c, err := Dial(url, DialOptions{CloseTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p := recvT(t, peers, "the connection")
	go io.Copy(io.Discard, p.br) // reads, never answers
	recvErr := make(chan error, 1)
	go func() {
		_, _, err := c.Recv()
		recvErr <- err
	}()
	closed := make(chan error, 1)
	go func() { closed <- c.Close(CloseNormal, "") }()
	recvT(t, closed, "Close to give up on the silent server")
	if err := recvT(t, recvErr, "Recv to fail"); err == nil || err == io.EOF {
		t.Fatalf("Recv: %v, want an error", err)
	}
}

// TestDialCloseValidates: Close refuses codes a peer may not send (1005,
// 1006, 1015, <1000, 1004, 1016-2999, >=5000) and reasons over 123 bytes or
// not UTF-8, sends nothing, and the connection stays usable.
func TestDialCloseValidates(t *testing.T) {
	echo := startEcho(t)
	c := dialT(t, echo)
	bad := []struct {
		code   ws13.StatusCode
		reason string
	}{
		{0, ""}, {999, ""}, {1004, ""}, {CloseNoStatus, ""}, {CloseAbnormal, ""}, {1015, ""},
		{1016, ""}, {2999, ""}, {5000, ""}, {65535, ""},
		{CloseNormal, strings.Repeat("a", 124)}, {CloseNormal, "\xff"},
	}
	for _, b := range bad {
		if err := c.Close(b.code, b.reason); err == nil {
			t.Errorf("Close(%d, %d-byte reason) = nil, want an error", b.code, len(b.reason))
		}
	}
	if err := c.Send("still open"); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Recv(); err != nil || string(msg) != "still open" {
		t.Fatalf("Recv %q, %v", msg, err)
	}
	for _, code := range []ws13.StatusCode{1000, 1003, 1007, 1014, 3000, 4999} {
		if err := ws13.CheckCloseFrame(code, strings.Repeat("é", 61)); err != nil {
			t.Errorf("CheckCloseFrame(%d) = %v, want nil", code, err)
		}
	}
	if err := c.Close(4000, strings.Repeat("a", 123)); err != nil {
		t.Fatal(err)
	}
	if c.CloseCode() != 4000 {
		t.Fatalf("server echoed %d, want 4000", c.CloseCode())
	}
}

// TestDialRecvFragmented: a message in three fragments with a ping between
// them arrives whole (Recv used to drop the assembly buffer after every
// frame, so the second fragment failed as an unexpected continuation).
func TestDialRecvFragmented(t *testing.T) {
	url, peers := startRawPeer(t)
	c := dialT(t, url)
	p := recvT(t, peers, "the connection")
	var b []byte
	b = ws13.AppendFrame(b, false, ws.OpText, []byte("one "))
	b = ws13.AppendFrame(b, false, ws.OpContinuation, []byte("two "))
	b = ws13.AppendFrame(b, true, ws.OpPing, []byte("p"))
	b = ws13.AppendFrame(b, true, ws.OpContinuation, []byte("three"))
	p.write(b)
	typ, msg, err := c.Recv()
	if err != nil || typ != Text || string(msg) != "one two three" {
		t.Fatalf("Recv %v %q, %v", typ, msg, err)
	}
	if f, err := p.next(); err != nil || f.kind != ws13.EventPong || string(f.payload) != "p" {
		t.Fatalf("peer got %+v, %v; want the pong", f, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close(CloseNormal, "") }()
	if f, err := p.next(); err != nil || f.kind != ws13.EventClose {
		t.Fatalf("peer got %+v, %v; want the close", f, err)
	}
	p.write(ws13.AppendCloseFrame(nil, CloseNormal, ""))
	if err := recvT(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
}

// TestDialRecvProtocolError: a frame the client must reject fails Recv
// with the ws13 error, sends the matching close code once, and later Recvs
// return the same error.
func TestDialRecvProtocolError(t *testing.T) {
	url, peers := startRawPeer(t)
	c := dialT(t, url)
	p := recvT(t, peers, "the connection")
	p.write([]byte{0x81 | 0x40, 0}) // RSV1 without an extension
	_, _, err := c.Recv()
	var ce *ws13.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseProtocolError {
		t.Fatalf("Recv: %v, want a 1002 CloseError", err)
	}
	if _, _, err2 := c.Recv(); !errors.As(err2, &ce) {
		t.Fatalf("second Recv: %v, want the same error", err2)
	}
	go c.Close(CloseNormal, "")
	fs := p.rest()
	if countCloses(fs) != 1 || fs[0].code != CloseProtocolError {
		t.Fatalf("peer got %+v, want one 1002 close", fs)
	}
}

// answerOnce listens on 127.0.0.1 and answers one request with reply (the
// Sec-WebSocket-Accept for the client's key is appended when accept).
func answerOnce(t testing.TB, reply string, accept bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		if accept {
			reply += "Sec-WebSocket-Accept: " + string(ws13.AppendAcceptKey(nil, []byte(req.Header.Get("Sec-WebSocket-Key")))) + "\r\n"
		}
		c.Write([]byte(reply + "\r\n"))
		c.Read(make([]byte, 1))
	}()
	return "ws://" + ln.Addr().String() + "/x"
}

// TestDialSubprotocolTrimmed: the selected subprotocol comes back without
// the white space around it, as the loop client reports it (both use
// ws13.CheckResponse).
func TestDialSubprotocolTrimmed(t *testing.T) {
	url := answerOnce(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Protocol: \t chat \r\n", true)
	c, err := Dial(url, DialOptions{Subprotocols: []string{"superchat", "chat"}, HandshakeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	if c.Subprotocol() != "chat" {
		t.Fatalf("Subprotocol %q, want chat", c.Subprotocol())
	}
}

// TestDialNeedsHost: a URL without a host is refused before any dial (it
// used to dial ":80", the local host's port 80, as the loop client never
// did).
func TestDialNeedsHost(t *testing.T) {
	for _, u := range []string{"ws:///x", "ws://:8080/x", "wss://example.com/", "http://127.0.0.1:1/"} {
		_, err := Dial(u, DialOptions{})
		var de *DialError
		if !errors.Is(err, ws13.ErrURL) || !errors.As(err, &de) || de.URL != u {
			t.Errorf("Dial(%q) = %v, want a *DialError wrapping ws13.ErrURL", u, err)
		}
	}
}

// TestDialErrorStatus: a server refusing the upgrade gives a *DialError
// with its status and the ws13 cause.
func TestDialErrorStatus(t *testing.T) {
	url := answerOnce(t, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n", false)
	_, err := Dial(url, DialOptions{HandshakeTimeout: 5 * time.Second})
	var de *DialError
	if !errors.As(err, &de) || de.Status != 403 || !errors.Is(err, ws13.ErrResponseStatus) {
		t.Fatalf("Dial: %v, want a *DialError with status 403 wrapping ws13.ErrResponseStatus", err)
	}
}

// TestDialDefaults: the zero DialOptions get ws13's defaults, the ones
// loop.ClientOptions and loop.WSOptions use.
func TestDialDefaults(t *testing.T) {
	for _, o := range []DialOptions{{}, {HandshakeTimeout: -1, MaxMessageSize: -1, CloseTimeout: -1}} {
		d := o.withDefaults()
		if d.HandshakeTimeout != ws13.DefaultHandshakeTimeout || d.MaxMessageSize != ws13.DefaultMaxMessage ||
			d.CloseTimeout != ws13.DefaultCloseTimeout {
			t.Errorf("%+v.withDefaults() = %+v", o, d)
		}
	}
}
