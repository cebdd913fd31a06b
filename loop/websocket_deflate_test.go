package loop

import (
	"bytes"
	"compress/flate"
	"context"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	cws "github.com/coder/websocket"
	"github.com/gobwas/ws"
	gws "github.com/gorilla/websocket"
)

// permessage-deflate (RFC 7692) against real clients (gorilla, coder) and a
// raw client that builds compressed frames by hand.

const wsDeflateMax = 4 << 20 // MaxMessageSize of the deflate routes

// wsDeflateServer serves /z (echo, compression on), /plain (echo, off) and
// /rec (recorder, compression on).
func wsDeflateServer(t testing.TB) (string, chan *wsRec) {
	var recs chan *wsRec
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		o := WSOptions{MaxMessageSize: wsDeflateMax, PingInterval: -1, Compression: &CompressionOptions{}}
		app.HandleWebSocket("/z", wsEchoRoute(o), o)
		app.HandleWebSocket("/plain", wsEchoRoute(WSOptions{}), WSOptions{MaxMessageSize: wsDeflateMax})
		recs = wsRecRoute(app, "/rec", o, nil)
	})
	return addr, recs
}

// wsDeflateMessages are echo payloads: empty, below and at the 128-byte
// threshold, compressible and not, and larger than a loop read (64 KiB).
func wsDeflateMessages() [][]byte {
	rnd := make([]byte, 300<<10)
	for i := range rnd {
		rnd[i] = byte(i*7919 + i>>3)
	}
	return [][]byte{
		nil,
		[]byte("hi"),
		bytes.Repeat([]byte("a"), 127),
		bytes.Repeat([]byte("a"), 128),
		bytes.Repeat([]byte("tornado "), 1000),
		rnd,
		bytes.Repeat([]byte("héllo wörld "), 200<<10), // 2.8 MiB of text
	}
}

// deflateRaw compresses p as a permessage-deflate message (tail stripped).
func deflateRaw(t testing.TB, p []byte, level int) []byte {
	t.Helper()
	var b bytes.Buffer
	fw, err := flate.NewWriter(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(p)
	fw.Flush()
	z := b.Bytes()
	if !bytes.HasSuffix(z, []byte{0, 0, 0xff, 0xff}) {
		t.Fatal("flush did not end with the empty stored block")
	}
	return z[:len(z)-4]
}

func inflateRaw(t testing.TB, z []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(z),
		bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}))))
	if err != nil {
		t.Fatalf("inflate server frame: %v", err)
	}
	return out
}

// wsDialDeflate upgrades with the given Sec-WebSocket-Extensions offer and
// returns the raw client and the response's extension header.
func wsDialDeflate(t testing.TB, addr, path, offer string) (*wsRaw, string) {
	t.Helper()
	r := wsDialTCP(t, addr)
	extra := ""
	if offer != "" {
		extra = "Sec-WebSocket-Extensions: " + offer + "\r\n"
	}
	r.write([]byte(wsHandshake(addr, path, extra)))
	resp := r.response()
	if resp.StatusCode != 101 {
		t.Fatalf("handshake: status %d", resp.StatusCode)
	}
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	r.rsv1OK = ext != ""
	return r, ext
}

// wsCompressedFrame builds a masked frame with RSV1 set.
func wsCompressedFrame(fin bool, op ws.OpCode, z []byte) []byte {
	f := wsFrame(fin, op, z)
	f[0] |= 0x40
	return f
}

func TestWebSocketDeflateGorillaEcho(t *testing.T) {
	addr, _ := wsDeflateServer(t)
	c, resp, err := (&gws.Dialer{EnableCompression: true, HandshakeTimeout: 5 * time.Second}).Dial(wsURL(addr, "/z"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(got, "permessage-deflate") {
		t.Fatalf("extension response %q", got)
	}
	for _, level := range []int{flate.BestSpeed, flate.BestCompression} {
		c.SetCompressionLevel(level)
		for i, m := range wsDeflateMessages() {
			if level == flate.BestCompression && len(m) > 64<<10 {
				continue // slow under -race, and nothing new
			}
			for _, typ := range []int{gws.TextMessage, gws.BinaryMessage} {
				if typ == gws.TextMessage && !utf8.Valid(m) {
					continue
				}
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if err := c.WriteMessage(typ, m); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				gt, got, err := c.ReadMessage()
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				if gt != typ || !bytes.Equal(got, m) {
					t.Fatalf("message %d (%d bytes, type %d): echo differs (%d bytes, type %d)", i, len(m), typ, len(got), gt)
				}
			}
		}
	}
}

func TestWebSocketDeflateCoderEcho(t *testing.T) {
	addr, _ := wsDeflateServer(t)
	for _, mode := range []cws.CompressionMode{cws.CompressionNoContextTakeover, cws.CompressionContextTakeover} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c, resp, err := cws.Dial(ctx, wsURL(addr, "/z"), &cws.DialOptions{CompressionMode: mode, CompressionThreshold: 1})
		if err != nil {
			cancel()
			t.Fatalf("mode %v: %v", mode, err)
		}
		if got := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(got, "client_no_context_takeover") {
			t.Fatalf("mode %v: extension response %q", mode, got)
		}
		c.SetReadLimit(wsDeflateMax)
		for i, m := range wsDeflateMessages() {
			if err := c.Write(ctx, cws.MessageBinary, m); err != nil {
				t.Fatalf("mode %v write %d: %v", mode, i, err)
			}
			typ, got, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("mode %v read %d: %v", mode, i, err)
			}
			if typ != cws.MessageBinary || !bytes.Equal(got, m) {
				t.Fatalf("mode %v message %d: echo differs", mode, i)
			}
		}
		c.Close(cws.StatusNormalClosure, "")
		cancel()
	}
}

func TestWebSocketDeflateOffByDefault(t *testing.T) {
	addr, _ := wsDeflateServer(t)
	r, ext := wsDialDeflate(t, addr, "/plain", "permessage-deflate; client_max_window_bits")
	if ext != "" {
		t.Fatalf("route without Compression answered extensions %q", ext)
	}
	// Without the extension RSV1 is still a protocol error.
	r.write(wsCompressedFrame(true, ws.OpText, deflateRaw(t, []byte("hello"), 1)))
	if code, _ := r.readClose(); code != CloseProtocolError {
		t.Fatalf("close code %d, want 1002", code)
	}
	// A compression route with a client that offers nothing: no extension.
	r, ext = wsDialDeflate(t, addr, "/z", "")
	if ext != "" {
		t.Fatalf("no offer, but extensions %q", ext)
	}
	r.write(wsCompressedFrame(true, ws.OpText, deflateRaw(t, []byte("hello"), 1)))
	if code, _ := r.readClose(); code != CloseProtocolError {
		t.Fatalf("close code %d, want 1002", code)
	}
}

func TestWebSocketDeflateRaw(t *testing.T) {
	addr, _ := wsDeflateServer(t)
	r, ext := wsDialDeflate(t, addr, "/z", "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits")
	if want := "permessage-deflate; server_no_context_takeover; client_no_context_takeover"; ext != want {
		t.Fatalf("extensions %q, want %q", ext, want)
	}
	msg := []byte(strings.Repeat("the quick brown fox ", 50))

	// An unfragmented compressed message comes back compressed.
	r.write(wsCompressedFrame(true, ws.OpText, deflateRaw(t, msg, 9)))
	f := r.mustFrame()
	if !f.rsv1 || f.op != ws.OpText || !bytes.Equal(inflateRaw(t, f.payload), msg) {
		t.Fatalf("echo: rsv1=%v op=%v len=%d", f.rsv1, f.op, len(f.payload))
	}
	if len(f.payload) >= len(msg)/4 {
		t.Fatalf("echo of %d repetitive bytes compressed to %d", len(msg), len(f.payload))
	}

	// A small message is answered uncompressed (under Threshold), even if
	// it came compressed.
	r.write(wsCompressedFrame(true, ws.OpText, deflateRaw(t, []byte("hi"), 1)))
	if f := r.mustFrame(); f.rsv1 || string(f.payload) != "hi" {
		t.Fatalf("small echo: rsv1=%v %q", f.rsv1, f.payload)
	}
	// Uncompressed messages are still allowed on a deflate connection.
	r.send(true, ws.OpBinary, msg)
	if f := r.mustFrame(); !f.rsv1 || !bytes.Equal(inflateRaw(t, f.payload), msg) {
		t.Fatalf("plain in, compressed out: rsv1=%v", f.rsv1)
	}

	// A compressed message in three fragments with a ping in between: RSV1
	// only on the first fragment.
	z := deflateRaw(t, msg, 1)
	a, b := len(z)/3, 2*len(z)/3
	r.write(cat(wsCompressedFrame(false, ws.OpText, z[:a]),
		wsFrame(false, ws.OpContinuation, z[a:b]),
		wsFrame(true, ws.OpPing, []byte("p")),
		wsFrame(true, ws.OpContinuation, z[b:])))
	if f := r.mustFrame(); f.op != ws.OpPong || string(f.payload) != "p" {
		t.Fatalf("pong: %v %q", f.op, f.payload)
	}
	if f := r.mustFrame(); !f.rsv1 || !bytes.Equal(inflateRaw(t, f.payload), msg) {
		t.Fatalf("fragmented compressed echo differs")
	}

	// A compressed message far larger than one loop read, inflated over
	// several turns (1 MiB a turn); its echo is over CompressionOptions'
	// MaxSize (1 MiB), so it goes back uncompressed.
	big := bytes.Repeat([]byte("0123456789abcdef"), 128<<10) // 2 MiB
	zb := deflateRaw(t, big, 1)
	r.write(wsCompressedFrame(true, ws.OpBinary, zb))
	if f := r.mustFrame(); f.rsv1 || !bytes.Equal(f.payload, big) {
		t.Fatalf("2 MiB compressed message: echo (rsv1 %v, %d bytes) differs", f.rsv1, len(f.payload))
	}
}

// TestWebSocketDeflateWindowBits: a client that limits the server's window
// gets the same server_max_window_bits back and Huffman-only frames (no
// back-references, so any window decodes them).
func TestWebSocketDeflateWindowBits(t *testing.T) {
	addr, _ := wsDeflateServer(t)
	r, ext := wsDialDeflate(t, addr, "/z", "permessage-deflate; server_max_window_bits=9; server_no_context_takeover")
	if !strings.HasSuffix(ext, "; server_max_window_bits=9") {
		t.Fatalf("extensions %q", ext)
	}
	msg := bytes.Repeat([]byte("a"), 10000)
	r.send(true, ws.OpBinary, msg)
	f := r.mustFrame()
	if !f.rsv1 || !bytes.Equal(inflateRaw(t, f.payload), msg) {
		t.Fatal("echo differs")
	}
	// LZ77 would turn 10000 'a's into a few bytes; Huffman-only needs at
	// least one bit per byte.
	if len(f.payload) < 10000/8 {
		t.Fatalf("%d bytes: the server used back-references despite server_max_window_bits=9", len(f.payload))
	}
	// Invalid offers are declined (RFC 7692 5), a later valid one taken.
	_, ext = wsDialDeflate(t, addr, "/z", "permessage-deflate; server_max_window_bits=16, permessage-deflate; foo, permessage-deflate")
	if ext != "permessage-deflate; server_no_context_takeover; client_no_context_takeover" {
		t.Fatalf("extensions %q", ext)
	}
	_, ext = wsDialDeflate(t, addr, "/z", "permessage-deflate; client_no_context_takeover; client_no_context_takeover")
	if ext != "" {
		t.Fatalf("duplicate parameter accepted: %q", ext)
	}
}

func TestWebSocketDeflateFailures(t *testing.T) {
	addr, recs := wsDeflateServer(t)
	// 64 MiB of zeros in about 100 KiB, 16 times the route's limit: 64
	// copies of 1 MiB of zeros deflated and sync-flushed (each copy only
	// refers back to zeros, so the concatenation inflates to zeros).
	chunk := append(deflateRaw(t, make([]byte, 1<<20), flate.BestCompression), 0, 0, 0xff, 0xff)
	bomb := bytes.Repeat(chunk, 64)
	bomb = bomb[:len(bomb)-4]
	if len(bomb) > 128<<10 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	hello := deflateRaw(t, []byte("hello hello hello"), 1)
	cases := []struct {
		name string
		send []byte
		want StatusCode
	}{
		{"zip-bomb", wsCompressedFrame(true, ws.OpBinary, bomb), CloseTooBig},
		{"zip-bomb-fragmented", cat(wsCompressedFrame(false, ws.OpBinary, bomb[:1000]), wsFrame(true, ws.OpContinuation, bomb[1000:])), CloseTooBig},
		{"rsv1-on-continuation", cat(wsCompressedFrame(false, ws.OpText, hello[:3]), wsCompressedFrame(true, ws.OpContinuation, hello[3:])), CloseProtocolError},
		{"rsv1-on-ping", wsCompressedFrame(true, ws.OpPing, nil), CloseProtocolError},
		{"rsv2", func() []byte { f := wsFrame(true, ws.OpText, []byte("x")); f[0] |= 0x20; return f }(), CloseProtocolError},
		{"rsv1-rsv3", func() []byte { f := wsCompressedFrame(true, ws.OpText, hello); f[0] |= 0x10; return f }(), CloseProtocolError},
		{"corrupt-deflate", wsCompressedFrame(true, ws.OpBinary, []byte{0xff, 0xff, 0xff, 0xff}), CloseInvalidPayload},
		{"compressed-invalid-utf8", wsCompressedFrame(true, ws.OpText, deflateRaw(t, []byte("ok\xff"), 1)), CloseInvalidPayload},
		{"compressed-utf8-cut", wsCompressedFrame(true, ws.OpText, deflateRaw(t, []byte("h\xe2\x82"), 1)), CloseInvalidPayload},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, ext := wsDialDeflate(t, addr, "/rec", "permessage-deflate")
			if ext == "" {
				t.Fatal("not negotiated")
			}
			rec := wsRecv(t, recs, "handler")
			r.write(tc.send)
			if code, _ := r.readClose(); code != tc.want {
				t.Fatalf("server close code %d, want %d", code, tc.want)
			}
			ci := wsRecv(t, rec.closeCh, "OnClose")
			if ci.code != tc.want {
				t.Fatalf("OnClose code %d, want %d", ci.code, tc.want)
			}
			for _, e := range ci.events {
				if strings.HasPrefix(e, "msg") {
					t.Fatalf("a failed message reached OnMessage: %v", e)
				}
			}
		})
	}
}

// TestWebSocketDeflatePrepared: a broadcast is compressed once per level
// and sent compressed only to connections that negotiated the extension.
func TestWebSocketDeflatePrepared(t *testing.T) {
	msg := bytes.Repeat([]byte("broadcast "), 100)
	p := prepared(Text, msg)
	_, addr := wsStartLoop(t, func(_ *Loop, app *Application) {
		o := WSOptions{PingInterval: -1, Compression: &CompressionOptions{}}
		app.HandleWebSocket("/b", func(*Request) WebSocketHandler { return wsPreparedSender{p: p} }, o)
	})
	z1, _ := wsDialDeflate(t, addr, "/b", "permessage-deflate")
	z2, _ := wsDialDeflate(t, addr, "/b", "permessage-deflate")
	plain, _ := wsDialDeflate(t, addr, "/b", "")
	var frames [][]byte
	for _, r := range []*wsRaw{z1, z2} {
		f := r.mustFrame()
		if !f.rsv1 || !bytes.Equal(inflateRaw(t, f.payload), msg) {
			t.Fatal("compressed prepared frame differs")
		}
		frames = append(frames, f.payload)
	}
	if f := plain.mustFrame(); f.rsv1 || !bytes.Equal(f.payload, msg) {
		t.Fatal("plain prepared frame differs")
	}
	if !bytes.Equal(frames[0], frames[1]) {
		t.Fatal("the two compressed frames differ")
	}
	p.mu.Lock()
	n := 0
	for _, f := range p.zframes {
		if f != nil {
			n++
		}
	}
	p.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d compressed variants cached, want 1", n)
	}
}

type wsPreparedSender struct {
	WebSocketBase
	p *PreparedMessage
}

func (s wsPreparedSender) Open(w *WebSocket) {
	if err := w.WritePrepared(s.p); err != nil {
		panic(err)
	}
}

// The negotiation header must also reach a browser-style client through
// net/http's reading of the 101 (no duplicate or malformed lines).
func TestWebSocketDeflateResponseHeader(t *testing.T) {
	addr, _ := wsDeflateServer(t)
	r := wsDialTCP(t, addr)
	r.write([]byte(wsHandshake(addr, "/z", "Sec-WebSocket-Extensions: permessage-deflate\r\n",
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n")))
	resp := r.response()
	if resp.StatusCode != http.StatusSwitchingProtocols || len(resp.Header.Values("Sec-WebSocket-Extensions")) != 1 {
		t.Fatalf("status %d, extensions %q", resp.StatusCode, resp.Header.Values("Sec-WebSocket-Extensions"))
	}
}

// BenchmarkEchoDeflate4K echoes a compressed 4 KiB text message (JSON-like,
// compressible) over one loopback connection: the server inflates, then
// deflates the echo at level 1. It shows the per-message cost of borrowing
// pooled (de)compressors; allocations include the client's reads.
func BenchmarkEchoDeflate4K(b *testing.B) {
	addr, _ := wsDeflateServer(b)
	r, ext := wsDialDeflate(b, addr, "/z", "permessage-deflate")
	if ext == "" {
		b.Fatal("not negotiated")
	}
	payload := bytes.Repeat([]byte(`{"user":"tornado","msg":"hello","seq":12345},`), 4096/45+1)[:4096]
	frame := wsCompressedFrame(true, ws.OpText, deflateRaw(b, payload, 1))
	r.c.SetDeadline(time.Time{})
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	var f wsSrvFrame
	for i := 0; i < b.N; i++ {
		if _, err := r.c.Write(frame); err != nil {
			b.Fatal(err)
		}
		var err error
		if f, err = r.readFrame(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if !f.rsv1 || !bytes.Equal(inflateRaw(b, f.payload), payload) {
		b.Fatal("bad echo")
	}
}

// wsLenHandler answers every message with its length, so that a test
// reads a few bytes per message whatever it sent.
type wsLenHandler struct{ WebSocketBase }

func (wsLenHandler) OnMessage(w *WebSocket, _ MessageType, data []byte) {
	w.WriteText([]byte(strconv.Itoa(len(data))))
}

// TestWebSocketDeflateBombReusesBuffers: a stream of small frames that
// each inflate to a large message (a deflate bomb, issue 18) reuses the
// large output buffer of the previous message instead of growing a new
// one by doubling each time (before: about 40 MiB allocated, zeroed and
// partly copied per 16 MiB message, which cost the loop several times the
// inflating itself and kept the garbage collector running).
func TestWebSocketDeflateBombReusesBuffers(t *testing.T) {
	const size = 16 << 20
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		o := WSOptions{MaxMessageSize: size, PingInterval: -1, Compression: &CompressionOptions{}}
		app.HandleWebSocket("/n", func(*Request) WebSocketHandler { return wsLenHandler{} }, o)
	})
	r, _ := wsDialDeflate(t, addr, "/n", "permessage-deflate")
	frame := wsCompressedFrame(true, ws.OpBinary, deflateRaw(t, make([]byte, size), 1))
	roundTrip := func() {
		t.Helper()
		r.write(frame)
		if f := r.mustFrame(); string(f.payload) != strconv.Itoa(size) {
			t.Fatalf("answer %q, want %d", f.payload, size)
		}
	}
	roundTrip() // the first message allocates the large buffer
	const n = 5
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		// A client that waits for its echo leaves time for collections
		// (every few tens of milliseconds under a bomb with GOGC=10):
		// they must not free the kept buffer (a sync.Pool would).
		runtime.GC()
		runtime.GC()
		roundTrip()
	}
	runtime.ReadMemStats(&after)
	// Growing afresh per message allocates n times the message or more.
	if got := after.TotalAlloc - before.TotalAlloc; got > 2*size {
		t.Fatalf("%d messages inflating to %d MiB allocated %d MiB; want the buffer reused (< %d MiB)",
			n, size>>20, got>>20, 2*size>>20)
	}
}

// TestInflateSparesBound: kept inflate buffers stay within
// KeepInflateBytes (default: one buffer, the largest), larger ones replace
// smaller ones, and all are freed once unused for inflateSpareIdle.
func TestInflateSparesBound(t *testing.T) {
	buf := func(n int) *[]byte { b := make([]byte, 0, n); return &b }
	one := &inflateSpares{}
	one.put(buf(2 << 20))
	one.put(buf(8 << 20))
	one.put(buf(4 << 20))
	if n, b := one.kept(); n != 1 || b != 8<<20 {
		t.Fatalf("default: kept %d buffers, %d bytes; want the 8 MiB one alone", n, b)
	}
	if one.get(8<<20) != nil {
		t.Fatal("get returned a buffer no larger than asked")
	}
	if bp := one.get(1 << 20); bp == nil || cap(*bp) != 8<<20 {
		t.Fatalf("get: %v", bp)
	}
	if _, b := one.kept(); b != 0 {
		t.Fatalf("%d bytes kept after the only buffer was taken", b)
	}
	none := &inflateSpares{max: -1}
	none.put(buf(2 << 20))
	if n, _ := none.kept(); n != 0 {
		t.Fatal("negative KeepInflateBytes kept a buffer")
	}
	s := &inflateSpares{max: 10 << 20}
	for _, n := range []int{2 << 20, 3 << 20, 4 << 20, 6 << 20} {
		s.put(buf(n))
	}
	if _, b := s.kept(); b > 10<<20 || s.get(5<<20) == nil {
		t.Fatalf("budget 10 MiB: kept %d bytes; the 6 MiB buffer must be among them", b)
	}
	deadline := time.Now().Add(5 * inflateSpareIdle)
	for {
		n, _ := s.kept()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d kept buffers not freed after %v unused", n, 5*inflateSpareIdle)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kept is the number and capacity of s's buffers (the timer changes them).
func (s *inflateSpares) kept() (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bufs), s.bytes
}

// TestWebSocketLargeEchoInPieces: a message larger than writePiece goes to
// gnet in pieces (conn.writeLarge) and arrives whole and in order.
func TestWebSocketLargeEchoInPieces(t *testing.T) {
	addr, _ := wsDeflateServer(t)
	c, _, err := (&gws.Dialer{HandshakeTimeout: 5 * time.Second}).Dial(wsURL(addr, "/plain"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for k, n := range []int{3*writePiece + 3, writePiece + 1, writePiece} {
		m := make([]byte, n)
		for i := range m {
			m[i] = byte(i*31 + i>>11 + k)
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMessage(gws.BinaryMessage, m); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read %d: %v", k, err)
		}
		if !bytes.Equal(got, m) {
			t.Fatalf("echo %d (%d bytes) differs (%d bytes)", k, len(m), len(got))
		}
	}
}

// TestWebSocketDeflateBombsInStep: several connections whose messages
// inflate to large sizes at the same pace all get every message, in order,
// although stepInflates leaves some of them for the next turn once a turn
// allocated and delivered inflateTurnWork bytes.
func TestWebSocketDeflateBombsInStep(t *testing.T) {
	const size, conns, msgs = 16 << 20, 4, 3
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		o := WSOptions{MaxMessageSize: size, PingInterval: -1, Compression: &CompressionOptions{KeepInflateBytes: conns * (size + 1)}}
		app.HandleWebSocket("/n", func(*Request) WebSocketHandler { return wsLenHandler{} }, o)
	})
	var frames [msgs][]byte
	for k := range frames {
		frames[k] = wsCompressedFrame(true, ws.OpBinary, deflateRaw(t, make([]byte, size-k), 1))
	}
	rs := make([]*wsRaw, conns)
	for i := range rs {
		rs[i], _ = wsDialDeflate(t, addr, "/n", "permessage-deflate")
	}
	for _, r := range rs {
		r.write(cat(frames[:]...)) // every connection's messages at once
	}
	for i, r := range rs {
		for k := range msgs {
			if f := r.mustFrame(); string(f.payload) != strconv.Itoa(size-k) {
				t.Fatalf("connection %d, message %d: answer %q, want %d", i, k, f.payload, size-k)
			}
		}
	}
}

// TestInflateGrowInSteps: a message that outgrows its buffer with no kept
// buffer to take (a bomb's start) moves to each larger buffer at most
// inflateMove bytes a step, over several turns (before: a step that found
// a 16 MiB buffer full copied all of it into a fresh 64 MiB one, and the
// trace of attack c showed turns of 50-200 ms doing that), and the
// message comes out whole and intact.
func TestInflateGrowInSteps(t *testing.T) {
	const size = 20 << 20
	src := make([]byte, size)
	for i := range src {
		src[i] = byte(i / 4096 % 251) // compressible, but every page differs
	}
	j := newInflateJob(deflateRaw(t, src, 1), ws.OpBinary, size, nil)
	defer j.release()
	fullSteps := 0 // steps that began on a full buffer: moving it
	for steps := 0; ; steps++ {
		if steps > 1000 {
			t.Fatal("no end after 1000 steps")
		}
		l, c := len(*j.bp), cap(*j.bp)
		if l == c {
			fullSteps++
		}
		done, err := j.step(turnBytes)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		if cap(*j.bp) != c {
			// Moved: moving l bytes took at least l/inflateMove steps.
			if want := (l + inflateMove - 1) / inflateMove; fullSteps < want {
				t.Fatalf("a full %d KiB buffer moved in %d steps; want at least %d (at most %d KiB copied a step)",
					l>>10, fullSteps, want, inflateMove>>10)
			}
		}
		if len(*j.bp) != l || cap(*j.bp) != c {
			fullSteps = 0
		}
	}
	if !bytes.Equal(*j.bp, src) {
		t.Fatalf("inflated %d bytes differ from the %d sent", len(*j.bp), len(src))
	}
}
