package loop

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/proto/ws13"
)

// An independent conformance suite modelled on the Autobahn|Testsuite
// fuzzing client, run against an echo route over real sockets. Autobahn
// itself needs Python 2 and cannot run here, so its case list (sections
// 1-7, 9, 10, 12, 13) is rebuilt from the suite's case descriptions and
// RFC 6455 / RFC 7692. Case ids are Autobahn's; where Autobahn has many
// near-identical cases the table holds the distinct ones. Cases already in
// websocket_conformance_test.go are not repeated and are named in comments
// ("see conformance: <subtest>").
//
// Verdicts follow Autobahn's: "echo" cases must answer every message and
// pong and then complete a clean closing handshake (1000 echoed);
// "fail" cases must end with the server's close frame carrying the RFC's
// code and the TCP connection closed, after the frames listed as expected
// before the failure.

// abMax is the echo route's MaxMessageSize: room for section 9's 16 MiB.
const abMax = 16<<20 + 1024

// abFrame is one expected server frame (a whole message for data: the
// reader reassembles fragments, since section 10 allows autofragmentation).
type abFrame struct {
	op      ws.OpCode
	payload []byte
}

type abCase struct {
	id   string
	send []byte     // client frames, masked
	chop int        // write send in pieces of chop bytes (0: one write)
	want []abFrame  // frames expected back, in order
	fail StatusCode // the server's close code after want; 0: clean echo
	eof  bool       // after want (holding the close echo) expect only EOF
}

func abServer(t testing.TB) string {
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		o := WSOptions{MaxMessageSize: abMax, PingInterval: -1, MaxUnsentPerConn: 64 << 20}
		app.HandleWebSocket("/ab", wsEchoRoute(o), o)
		oz := o
		oz.Compression = &CompressionOptions{Threshold: -1} // compress every echo
		app.HandleWebSocket("/abz", wsEchoRoute(oz), oz)
	})
	return addr
}

// readMessage reads the next message or control frame, reassembling
// fragmented data messages and inflating compressed ones.
func (r *wsRaw) readMessage() (abFrame, bool, error) {
	f, err := r.readFrame()
	if err != nil || f.op.IsControl() || f.fin {
		return abFrame{f.op, f.payload}, f.rsv1, err
	}
	msg := abFrame{f.op, append([]byte(nil), f.payload...)}
	for {
		g, err := r.readFrame()
		if err != nil {
			return msg, f.rsv1, err
		}
		if g.op != ws.OpContinuation || g.rsv1 {
			return msg, f.rsv1, fmt.Errorf("frame %v (rsv1 %v) inside a fragmented message", g.op, g.rsv1)
		}
		msg.payload = append(msg.payload, g.payload...)
		if g.fin {
			return msg, f.rsv1, nil
		}
	}
}

// writeChopped writes b in pieces of chop bytes. When the server may fail
// the connection midway (mayClose), a write error ends the writing quietly:
// the server's close frame is already in our receive buffer (Linux keeps
// received data readable after the peer's RST).
func (r *wsRaw) writeChopped(b []byte, chop int, mayClose bool) {
	if chop <= 0 {
		chop = len(b)
	}
	for len(b) > 0 {
		n := min(chop, len(b))
		// Generous: section 9 writes 16 MiB at once under -race.
		r.c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		if _, err := r.c.Write(b[:n]); err != nil {
			if mayClose {
				return
			}
			r.t.Fatalf("write: %v", err)
		}
		b = b[n:]
	}
}

func abRun(t *testing.T, addr string, tc abCase) {
	r := wsDialRaw(t, addr, "/ab", nil)
	r.writeChopped(tc.send, tc.chop, tc.fail != 0 || tc.eof)
	for i, w := range tc.want {
		got, _, err := r.readMessage()
		if err != nil {
			t.Fatalf("expected frame %d (%v, %d bytes): %v", i, w.op, len(w.payload), err)
		}
		if got.op != w.op || !bytes.Equal(got.payload, w.payload) {
			t.Fatalf("frame %d: got %v %d bytes %.40q, want %v %d bytes %.40q", i, got.op, len(got.payload), got.payload, w.op, len(w.payload), w.payload)
		}
	}
	if tc.eof {
		r.expectEOF()
		return
	}
	if tc.fail != 0 {
		if code, reason := r.readClose(); code != tc.fail {
			t.Fatalf("close code %d (%q), want %d", code, reason, tc.fail)
		}
		return
	}
	r.write(ws13.AppendMaskedCloseFrame(nil, wsMask, CloseNormal, ""))
	if code, reason := r.readClose(); code != CloseNormal {
		t.Fatalf("closing handshake: code %d (%q), want 1000", code, reason)
	}
}

func abRunAll(t *testing.T, addr string, cases []abCase) {
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) { abRun(t, addr, tc) })
	}
}

// frZero is a client frame masked with the all-zero key: legal on the
// wire, and built with a plain copy, which keeps section 9's 16 MiB frames
// cheap to make under -race (the server still unmasks them).
func frZero(fin bool, op ws.OpCode, p []byte) []byte {
	f := ws13.AppendHeader(make([]byte, 0, 14+len(p)), fin, op, len(p))
	f[1] |= 0x80
	f = append(f, 0, 0, 0, 0)
	return append(f, p...)
}

// fr is a masked client frame.
func fr(fin bool, op ws.OpCode, p []byte) []byte { return wsFrame(fin, op, p) }

func rsvFrame(rsv byte, fin bool, op ws.OpCode, p []byte) []byte {
	f := wsFrame(fin, op, p)
	f[0] |= rsv << 4
	return f
}

func text(s string) abFrame    { return abFrame{ws.OpText, []byte(s)} }
func binaryF(b []byte) abFrame { return abFrame{ws.OpBinary, b} }
func pong(p []byte) abFrame    { return abFrame{ws.OpPong, p} }
func closeBody(code StatusCode, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

func abPattern(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// Section 1: framing, text and binary messages of the boundary lengths of
// the 7-bit, 16-bit and 64-bit length encodings.
func TestAutobahn1Framing(t *testing.T) {
	addr := abServer(t)
	var cases []abCase
	for i, n := range []int{0, 125, 126, 127, 128, 65535, 65536} {
		p := abPattern(n, '*')
		cases = append(cases,
			abCase{id: fmt.Sprintf("1.1.%d", i+1), send: fr(true, ws.OpText, p), want: []abFrame{{ws.OpText, p}}},
			abCase{id: fmt.Sprintf("1.2.%d", i+1), send: fr(true, ws.OpBinary, abPattern(n, 0xfe)), want: []abFrame{binaryF(abPattern(n, 0xfe))}})
	}
	p := abPattern(65536, '*')
	cases = append(cases,
		abCase{id: "1.1.8", send: fr(true, ws.OpText, p), chop: 997, want: []abFrame{{ws.OpText, p}}},
		abCase{id: "1.2.8", send: fr(true, ws.OpBinary, p), chop: 997, want: []abFrame{binaryF(p)}})
	abRunAll(t, addr, cases)
}

// Section 2: pings and pongs. 2.1 (empty ping), 2.4 (125 bytes) and 2.5
// (126 bytes, 1002): see conformance: ping-pong-same-payload, ping-126.
func TestAutobahn2PingPong(t *testing.T) {
	addr := abServer(t)
	hello := []byte("Hello, world!")
	bin := []byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}
	p125 := abPattern(125, 0xfe)
	var ten []byte
	var tenPongs []abFrame
	for i := range 10 {
		p := []byte(fmt.Sprintf("payload-%d", i))
		ten = append(ten, fr(true, ws.OpPing, p)...)
		tenPongs = append(tenPongs, pong(p))
	}
	abRunAll(t, addr, []abCase{
		{id: "2.2", send: fr(true, ws.OpPing, hello), want: []abFrame{pong(hello)}},
		{id: "2.3", send: fr(true, ws.OpPing, bin), want: []abFrame{pong(bin)}},
		{id: "2.6", send: fr(true, ws.OpPing, p125), chop: 1, want: []abFrame{pong(p125)}},
		{id: "2.7", send: fr(true, ws.OpPong, nil)},
		{id: "2.8", send: fr(true, ws.OpPong, []byte("unsolicited pong payload"))},
		{id: "2.9", send: cat(fr(true, ws.OpPong, []byte("unsolicited")), fr(true, ws.OpPing, []byte("ping payload"))),
			want: []abFrame{pong([]byte("ping payload"))}},
		{id: "2.10", send: ten, want: tenPongs},
		{id: "2.11", send: ten, chop: 1, want: tenPongs},
	})
}

// Section 3: reserved bits with no extension negotiated. 3.1 (RSV1 alone
// on text): see conformance: rsv1.
func TestAutobahn3ReservedBits(t *testing.T) {
	addr := abServer(t)
	h := []byte("Hello, world!")
	okText := fr(true, ws.OpText, h)
	abRunAll(t, addr, []abCase{
		{id: "3.2", send: cat(okText, rsvFrame(2, true, ws.OpText, h), fr(true, ws.OpPing, nil)), want: []abFrame{text("Hello, world!")}, fail: CloseProtocolError},
		{id: "3.3", send: cat(okText, rsvFrame(3, true, ws.OpText, h), fr(true, ws.OpPing, nil)), want: []abFrame{text("Hello, world!")}, fail: CloseProtocolError},
		{id: "3.4", send: cat(okText, rsvFrame(4, true, ws.OpText, h), fr(true, ws.OpPing, nil)), chop: 1, want: []abFrame{text("Hello, world!")}, fail: CloseProtocolError},
		{id: "3.5", send: rsvFrame(5, true, ws.OpBinary, abPattern(8, 0xff)), fail: CloseProtocolError},
		{id: "3.6", send: rsvFrame(6, true, ws.OpPing, h), fail: CloseProtocolError},
		{id: "3.7", send: rsvFrame(7, true, ws.OpClose, nil), fail: CloseProtocolError},
	})
}

// Section 4: reserved opcodes, each after a valid text message. Opcode 3
// and 11 alone: see conformance: reserved-data-opcode,
// reserved-control-opcode.
func TestAutobahn4ReservedOpcodes(t *testing.T) {
	addr := abServer(t)
	okText := fr(true, ws.OpText, []byte("Hello, world!"))
	var cases []abCase
	for i, op := range []ws.OpCode{3, 4, 5, 6, 7} {
		cases = append(cases, abCase{id: fmt.Sprintf("4.1.%d", i+1),
			send: cat(okText, fr(true, op, []byte("reserved")), fr(true, ws.OpPing, nil)),
			want: []abFrame{text("Hello, world!")}, fail: CloseProtocolError})
	}
	for i, op := range []ws.OpCode{11, 12, 13, 14, 15} {
		cases = append(cases, abCase{id: fmt.Sprintf("4.2.%d", i+1),
			send: cat(okText, fr(true, op, []byte("reserved")), fr(true, ws.OpPing, nil)),
			want: []abFrame{text("Hello, world!")}, fail: CloseProtocolError})
	}
	abRunAll(t, addr, cases)
}

// Section 5: fragmentation. 5.1 (fragmented ping), 5.9 (continuation
// without a start), 5.18 (two text starts) and pings/pongs between
// fragments (5.6): see conformance: fragmented-ping,
// continuation-without-start, new-message-inside-fragmented,
// ping-between-fragments.
func TestAutobahn5Fragmentation(t *testing.T) {
	addr := abServer(t)
	f1, f2 := []byte("fragment1"), []byte("fragment2")
	two := cat(fr(false, ws.OpText, f1), fr(true, ws.OpContinuation, f2))
	withPing := cat(fr(false, ws.OpText, f1), fr(true, ws.OpPing, []byte("ping")), fr(true, ws.OpContinuation, f2))
	hw := fr(true, ws.OpText, []byte("Hello, world!"))
	contStart := func(fin bool) []byte {
		return cat(fr(fin, ws.OpContinuation, []byte("non-continuation payload")), hw)
	}
	five := cat(fr(false, ws.OpText, []byte("f1")), fr(false, ws.OpContinuation, []byte("f2")),
		fr(true, ws.OpPing, []byte("pongme 1!")), fr(false, ws.OpContinuation, []byte("f3")),
		fr(false, ws.OpContinuation, []byte("f4")), fr(true, ws.OpPing, []byte("pongme 2!")),
		fr(true, ws.OpContinuation, []byte("f5")))
	fiveWant := []abFrame{pong([]byte("pongme 1!")), pong([]byte("pongme 2!")), text("f1f2f3f4f5")}
	bad := cat(fr(false, ws.OpContinuation, f1), fr(false, ws.OpText, f2), fr(true, ws.OpContinuation, []byte("fragment3")))
	abRunAll(t, addr, []abCase{
		{id: "5.2", send: cat(fr(false, ws.OpPong, f1), fr(true, ws.OpContinuation, f2)), fail: CloseProtocolError},
		{id: "5.3", send: two, want: []abFrame{text("fragment1fragment2")}},
		{id: "5.4", send: two, chop: 5, want: []abFrame{text("fragment1fragment2")}},
		{id: "5.5", send: two, chop: 1, want: []abFrame{text("fragment1fragment2")}},
		{id: "5.7", send: withPing, chop: 5, want: []abFrame{pong([]byte("ping")), text("fragment1fragment2")}},
		{id: "5.8", send: withPing, chop: 1, want: []abFrame{pong([]byte("ping")), text("fragment1fragment2")}},
		{id: "5.10", send: contStart(true), chop: 1, fail: CloseProtocolError},
		{id: "5.12", send: contStart(false), fail: CloseProtocolError},
		{id: "5.13", send: contStart(false), chop: 1, fail: CloseProtocolError},
		{id: "5.15", send: cat(two, fr(false, ws.OpContinuation, []byte("fragment3")), fr(true, ws.OpText, []byte("fragment4"))),
			want: []abFrame{text("fragment1fragment2")}, fail: CloseProtocolError},
		{id: "5.16", send: cat(bad, bad), fail: CloseProtocolError},
		{id: "5.17", send: cat(fr(true, ws.OpContinuation, f1), fr(false, ws.OpText, f2), fr(true, ws.OpContinuation, []byte("fragment3"))), fail: CloseProtocolError},
		{id: "5.19", send: five, want: fiveWant},
		{id: "5.20", send: five, chop: 1, want: fiveWant},
	})
}

// UTF-8 sequences of Autobahn section 6 (from Markus Kuhn's UTF-8 decoder
// capability and stress test, which Autobahn uses).
var (
	abValidUTF8 = []string{
		"Hello-µ@ßöäüàá-UTF-8!!",
		"κόσμε",
		// 6.7 first possible sequence of each length.
		"\x00", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80",
		// 6.8/6.9 last possible sequence of each length (still Unicode).
		"\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf",
		// 6.10 other boundary conditions.
		"\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd",
		// 6.23 noncharacters are valid UTF-8.
		"\xef\xbf\xbe", "\xef\xb7\x90", "\xf0\x9f\xbf\xbe", "\xf4\x8f\xbf\xbe",
	}
	abInvalidUTF8 = []string{
		// 6.3.1 κόσμε, a surrogate, "edited".
		"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
		// 6.8/6.9 five- and six-byte sequences, beyond U+10FFFF.
		"\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80", "\xf7\xbf\xbf\xbf", "\xfb\xbf\xbf\xbf\xbf",
		"\xfd\xbf\xbf\xbf\xbf\xbf", "\xf4\x90\x80\x80",
		// 6.11-6.13 unexpected continuation bytes, lonely start bytes.
		"\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80\xbf", "\xc0 \xc1 ", "\xe0 \xef ", "\xf0 \xf7 ", "\xf8 \xfb ", "\xfc \xfd ",
		// 6.14/6.15 sequences with the last byte missing, and concatenated.
		"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xdf", "\xef\xbf", "\xf7\xbf\xbf",
		"\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf",
		// 6.16 impossible bytes.
		"\xfe", "\xff", "\xfe\xfe\xff\xff",
		// 6.17-6.19 overlong encodings.
		"\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xc0\x80", "\xe0\x80\x80",
		// 6.20/6.21 single and paired UTF-16 surrogates.
		"\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf",
		"\xed\xa0\x80\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf",
	}
)

// Section 6: UTF-8 handling, whole and fragmented at every byte (so every
// multi-byte character is split at each of its bytes). Invalid bytes cut
// after a valid prefix: see conformance: invalid-utf8-split,
// utf8-truncated-at-end.
func TestAutobahn6UTF8(t *testing.T) {
	addr := abServer(t)
	for _, s := range abValidUTF8 {
		if !utf8.ValidString(s) {
			t.Fatalf("table error: %q is invalid", s)
		}
	}
	for _, s := range abInvalidUTF8 {
		if utf8.ValidString(s) {
			t.Fatalf("table error: %q is valid", s)
		}
	}
	perByte := func(s string) []byte {
		if len(s) == 1 {
			return fr(true, ws.OpText, []byte(s))
		}
		var b []byte
		for i := range len(s) {
			op := ws.OpContinuation
			if i == 0 {
				op = ws.OpText
			}
			b = append(b, fr(i == len(s)-1, op, []byte{s[i]})...)
		}
		return b
	}
	cases := []abCase{
		{id: "6.1.1", send: fr(true, ws.OpText, nil), want: []abFrame{text("")}},
		{id: "6.1.2", send: cat(fr(false, ws.OpText, nil), fr(false, ws.OpContinuation, nil), fr(true, ws.OpContinuation, nil)), want: []abFrame{text("")}},
		{id: "6.1.3", send: cat(fr(false, ws.OpText, nil), fr(false, ws.OpContinuation, []byte("middle")), fr(true, ws.OpContinuation, nil)), want: []abFrame{text("middle")}},
	}
	for i, s := range abValidUTF8 {
		cases = append(cases,
			abCase{id: fmt.Sprintf("6.valid.%d", i), send: fr(true, ws.OpText, []byte(s)), want: []abFrame{text(s)}},
			abCase{id: fmt.Sprintf("6.valid.%d-per-byte", i), send: perByte(s), want: []abFrame{text(s)}})
	}
	for i, s := range abInvalidUTF8 {
		cases = append(cases,
			abCase{id: fmt.Sprintf("6.invalid.%d", i), send: fr(true, ws.OpText, []byte(s)), fail: CloseInvalidPayload},
			abCase{id: fmt.Sprintf("6.invalid.%d-per-byte", i), send: perByte(s), fail: CloseInvalidPayload})
	}
	abRunAll(t, addr, cases)

	// 6.4.x fail fast: the connection fails on the fragment holding the
	// invalid bytes, before the message's last fragment is even sent.
	for i, first := range []string{"κόσμε\xed\xa0\x80", "κόσμε\xf4\x90\x80\x80", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4"} {
		t.Run(fmt.Sprintf("6.4.%d", i+1), func(t *testing.T) {
			r := wsDialRaw(t, addr, "/ab", nil)
			if i == 2 {
				// 6.4.3: the invalid byte arrives in a later fragment.
				r.write(fr(false, ws.OpText, []byte(first)))
				r.write(fr(false, ws.OpContinuation, []byte("\x90\x80\x80")))
			} else {
				r.write(fr(false, ws.OpText, []byte(first)))
			}
			if code, _ := r.readClose(); code != CloseInvalidPayload {
				t.Fatalf("close code %d, want 1007", code)
			}
		})
	}
}

// Section 7: close handling. 7.1.6 sends a large message before the close.
// Empty close (7.3.1), 1-byte body (7.3.2), invalid UTF-8 reason (7.5.1),
// codes 999/1005/1006 and 1000/1001/3000/4002 echoed: see conformance:
// close-without-code, close-1-byte, invalid-utf8-close-reason,
// close-code-*, peer-close-echoed, nothing-after-close.
func TestAutobahn7Close(t *testing.T) {
	addr := abServer(t)
	cl := func(code StatusCode, reason string) []byte { return fr(true, ws.OpClose, closeBody(code, reason)) }
	closeEcho := func(code StatusCode) abFrame { return abFrame{ws.OpClose, closeBody(code, "")} }
	big := abPattern(256<<10, 'x')
	cases := []abCase{
		{id: "7.1.1", send: cat(fr(true, ws.OpText, []byte("Hello World!")), cl(1000, "")), want: []abFrame{text("Hello World!"), closeEcho(1000)}},
		{id: "7.1.2", send: cat(cl(1000, ""), cl(1000, "")), want: []abFrame{closeEcho(1000)}},
		{id: "7.1.3", send: cat(cl(1000, ""), fr(true, ws.OpPing, []byte("ping"))), want: []abFrame{closeEcho(1000)}},
		{id: "7.1.5", send: cat(fr(false, ws.OpText, []byte("fragment1")), cl(1000, ""), fr(true, ws.OpContinuation, []byte("fragment2"))), want: []abFrame{closeEcho(1000)}},
		{id: "7.1.6", send: cat(fr(true, ws.OpText, big), cl(1000, ""), fr(true, ws.OpPing, nil)), want: []abFrame{{ws.OpText, big}, closeEcho(1000)}},
		{id: "7.3.3", send: cl(1000, ""), want: []abFrame{closeEcho(1000)}},
		{id: "7.3.4", send: cl(1000, "Hello World!"), want: []abFrame{closeEcho(1000)}},
		{id: "7.3.5", send: cl(1000, strings.Repeat("*", 123)), want: []abFrame{closeEcho(1000)}},
		{id: "7.3.6", send: cl(1000, strings.Repeat("*", 124)), fail: CloseProtocolError},
	}
	// The close echo is in want; then only the TCP close may follow.
	for i := range cases {
		cases[i].eof = cases[i].fail == 0
	}
	for i, code := range []StatusCode{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		cases = append(cases, abCase{id: fmt.Sprintf("7.7.%d-%d", i+1, code), send: cl(code, ""), want: []abFrame{closeEcho(code)}, eof: true})
	}
	for i, code := range []StatusCode{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, abCase{id: fmt.Sprintf("7.9.%d-%d", i+1, code), send: cl(code, ""), fail: CloseProtocolError})
	}
	abRunAll(t, addr, cases)
}

// Section 9: limits and performance; every echo must come back intact.
func TestAutobahn9Limits(t *testing.T) {
	addr := abServer(t)
	// Patterns repeated with bytes.Repeat (a memmove, fast under -race);
	// the binary one has a prime period so frame boundaries do not align.
	var bin251 [251]byte
	for i := range bin251 {
		bin251[i] = byte(i * 31)
	}
	mk := func(n int, textual bool) []byte {
		if textual {
			return bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz"), n/26+1)[:n]
		}
		return bytes.Repeat(bin251[:], n/251+1)[:n]
	}
	opOf := func(textual bool) ws.OpCode {
		if textual {
			return ws.OpText
		}
		return ws.OpBinary
	}
	frag := func(op ws.OpCode, p []byte, size int) []byte {
		out := make([]byte, 0, len(p)+(len(p)/size+1)*14)
		for i := 0; i < len(p); i += size {
			o := ws.OpContinuation
			if i == 0 {
				o = op
			}
			chunk := p[i:min(i+size, len(p))]
			h := len(out)
			out = ws13.AppendHeader(out, i+size >= len(p), o, len(chunk))
			out[h+1] |= 0x80 // masked, with the all-zero key (see frZero)
			out = append(append(out, 0, 0, 0, 0), chunk...)
		}
		return out
	}
	// Cases are built one at a time when they run: building all of them
	// first would hold some 300 MiB at once, slow under -race.
	type lazy struct {
		id    string
		build func() abCase
	}
	var cases []lazy
	for _, textual := range []bool{true, false} {
		sec := map[bool][3]int{true: {1, 3, 5}, false: {2, 4, 6}}[textual]
		for i, n := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20} {
			cases = append(cases, lazy{fmt.Sprintf("9.%d.%d", sec[0], i+1), func() abCase {
				p := mk(n, textual)
				return abCase{send: frZero(true, opOf(textual), p), want: []abFrame{{opOf(textual), p}}}
			}})
		}
		for i, size := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20} {
			cases = append(cases, lazy{fmt.Sprintf("9.%d.%d", sec[1], i+1), func() abCase {
				p := mk(4<<20, textual)
				return abCase{send: frag(opOf(textual), p, size), want: []abFrame{{opOf(textual), p}}}
			}})
		}
		for i, chop := range []int{64, 128, 256, 512, 1024, 2048, 4096} {
			cases = append(cases, lazy{fmt.Sprintf("9.%d.%d", sec[2], i+1), func() abCase {
				p := mk(1<<20, textual)
				return abCase{send: frZero(true, opOf(textual), p), chop: chop, want: []abFrame{{opOf(textual), p}}}
			}})
		}
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) { abRun(t, addr, c.build()) })
	}

	// 9.7/9.8: 1000 round trips (send, wait for the echo) per size.
	for i, n := range []int{0, 16, 64, 256, 1 << 10, 4 << 10} {
		for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary} {
			sec := 7
			if op == ws.OpBinary {
				sec = 8
			}
			t.Run(fmt.Sprintf("9.%d.%d", sec, i+1), func(t *testing.T) {
				r := wsDialRaw(t, addr, "/ab", nil)
				p := mk(n, true)
				f := frZero(true, op, p)
				for j := range 1000 {
					r.write(f)
					got, _, err := r.readMessage()
					if err != nil || got.op != op || !bytes.Equal(got.payload, p) {
						t.Fatalf("round trip %d: %v %v", j, got.op, err)
					}
				}
			})
		}
	}
}

// Section 10: autofragmentation. A 64 KiB message must come back whole;
// the reader accepts it fragmented (10.1.1 allows the server to fragment).
func TestAutobahn10Autofragmentation(t *testing.T) {
	addr := abServer(t)
	p := abPattern(65536, '*')
	abRunAll(t, addr, []abCase{{id: "10.1.1", send: fr(true, ws.OpText, p), chop: 997, want: []abFrame{{ws.OpText, p}}}})
}

// Sections 12 and 13: permessage-deflate echo with several message sizes
// (12: text from a corpus and binary, 16 B to 256 KiB) and several
// extension offers (13: Autobahn's (server_no_context_takeover,
// server_max_window_bits) pairs, plus client_max_window_bits and
// client_no_context_takeover). Every echo must come back compressed (the
// route compresses every message) and inflate to what was sent. Autobahn
// sends 1000 messages per case; a few per size keep -race runs short.
func TestAutobahn12And13Deflate(t *testing.T) {
	addr := abServer(t)
	corpus := []byte(strings.Repeat("It was the best of times, it was the worst of times; ", 6000))
	type msg struct {
		op   ws.OpCode
		p, f []byte
	}
	build := func(sizes []int, per int) []msg {
		var ms []msg
		for si, n := range sizes {
			for k := range per {
				for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary} {
					var p []byte
					if op == ws.OpText {
						start := (si*7 + k*13) % 1000
						p = corpus[start : start+n]
					} else {
						p = make([]byte, n)
						for i := range p {
							p[i] = byte((i*i + k) >> 3)
						}
					}
					ms = append(ms, msg{op, p, wsCompressedFrame(true, op, deflateRaw(t, p, 6))})
				}
			}
		}
		return ms
	}
	run := func(t *testing.T, offer string, ms []msg) {
		r, ext := wsDialDeflate(t, addr, "/abz", offer)
		if !strings.HasPrefix(ext, "permessage-deflate") {
			t.Fatalf("offer %q declined", offer)
		}
		for i, m := range ms {
			r.write(m.f)
			got, rsv1, err := r.readMessage()
			if err != nil {
				t.Fatalf("message %d (%d bytes): %v", i, len(m.p), err)
			}
			if !rsv1 {
				t.Fatalf("message %d (%d bytes): echo not compressed", i, len(m.p))
			}
			if out := inflateRaw(t, got.payload); got.op != m.op || !bytes.Equal(out, m.p) {
				t.Fatalf("message %d (%d bytes): echo differs", i, len(m.p))
			}
		}
		r.write(ws13.AppendMaskedCloseFrame(nil, wsMask, CloseNormal, ""))
		if code, _ := r.readClose(); code != CloseNormal {
			t.Fatalf("close %d", code)
		}
	}
	t.Run("12.1", func(t *testing.T) {
		run(t, "permessage-deflate", build([]int{16, 64, 256, 1 << 10, 4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10}, 2))
	})
	few := build([]int{16, 1 << 10, 64 << 10}, 2)
	for i, offer := range []string{
		"permessage-deflate; client_no_context_takeover",                            // 13.2
		"permessage-deflate; server_max_window_bits=8",                              // 13.3
		"permessage-deflate; server_max_window_bits=15",                             // 13.4
		"permessage-deflate; server_no_context_takeover; server_max_window_bits=8",  // 13.5
		"permessage-deflate; server_no_context_takeover; server_max_window_bits=15", // 13.6
		"permessage-deflate; server_no_context_takeover; server_max_window_bits=8, " +
			"permessage-deflate; server_no_context_takeover, permessage-deflate", // 13.7
		"permessage-deflate; client_max_window_bits",    // browsers
		"permessage-deflate; client_max_window_bits=10", // a limited client window
	} {
		t.Run(fmt.Sprintf("13.%d", i+2), func(t *testing.T) { run(t, offer, few) })
	}
}
