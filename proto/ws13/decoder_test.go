package ws13

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// mf is a masked frame as a client sends it.
func mf(fin bool, op ws.OpCode, payload string) []byte {
	return AppendMaskedFrame(nil, fin, op, testMask, []byte(payload))
}

// rawFrame builds a frame by hand: first byte b0, length field encoded as
// lenBytes (the 7-bit value lenField, then ext), masked with testMask when
// masked.
func rawFrame(b0 byte, masked bool, lenField byte, ext []byte, payload []byte) []byte {
	b1 := lenField
	if masked {
		b1 |= 0x80
	}
	out := append([]byte{b0, b1}, ext...)
	if masked {
		out = append(out, testMask[:]...)
		start := len(out)
		out = append(out, payload...)
		ws.Cipher(out[start:], testMask, 0)
		return out
	}
	return append(out, payload...)
}

func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

type rec struct {
	Kind    EventKind
	Op      ws.OpCode
	Payload string
	Code    StatusCode
	Reason  string
}

func (r rec) String() string {
	return fmt.Sprintf("{%v op=%d %q code=%d reason=%q}", r.Kind, r.Op, r.Payload, r.Code, r.Reason)
}

func toRec(ev Event) rec {
	return rec{ev.Kind, ev.Op, string(ev.Payload), ev.Code, string(ev.Reason)}
}

type result struct {
	evs      []rec
	err      error
	consumed int
}

func closeCode(err error) StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// feed decodes stream (copied first) as a connection would receive it:
// cut into chunks ending at the offsets in cuts, each appended to the
// pending bytes, Next called until it needs more. It checks the invariants
// every caller relies on.
func feed(tb testing.TB, stream []byte, client bool, lim Limits, cuts ...int) result {
	tb.Helper()
	var d Decoder
	d.SetClientSide(client)
	var r result
	var pending []byte
	prev := 0
	for i := 0; i <= len(cuts); i++ {
		c := len(stream)
		if i < len(cuts) {
			c = cuts[i]
		}
		pending = append(pending, stream[prev:c]...)
		prev = c
		for {
			var before []byte
			if len(pending) <= 4096 { // keep byte-by-byte feeding linear
				before = append(before, pending...)
			}
			ev, n, err := d.Next(pending, lim)
			if n < 0 || n > len(pending) {
				tb.Fatalf("Next returned n=%d for %d bytes", n, len(pending))
			}
			if err != nil {
				var ce *CloseError
				if !errors.As(err, &ce) {
					tb.Fatalf("error %T %v is not a *CloseError", err, err)
				}
				r.err = err
				r.consumed += n
				return r
			}
			if n == 0 {
				if ev.Kind != EventNone {
					tb.Fatalf("n == 0 with event %v", toRec(ev))
				}
				if before != nil && !bytes.Equal(before, pending) {
					tb.Fatalf("Next modified the buffer of an incomplete frame")
				}
				break
			}
			if ev.Kind != EventNone {
				r.evs = append(r.evs, toRec(ev))
			}
			if ev.Kind == EventMessage {
				d.Release()
			}
			pending = pending[n:]
			r.consumed += n
		}
	}
	return r
}

func sameResult(a, b result) bool {
	if len(a.evs) != len(b.evs) || a.consumed != b.consumed || closeCode(a.err) != closeCode(b.err) {
		return false
	}
	if (a.err == nil) != (b.err == nil) || (a.err != nil && a.err.Error() != b.err.Error()) {
		return false
	}
	for i := range a.evs {
		if a.evs[i] != b.evs[i] {
			return false
		}
	}
	return true
}

func TestRules(t *testing.T) {
	ext16 := func(n int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(n)) }
	ext64 := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
	closeBody := func(code uint16, reason string) string {
		return string(binary.BigEndian.AppendUint16(nil, code)) + reason
	}

	type tc struct {
		name   string
		in     []byte
		client bool
		lim    Limits
		code   StatusCode // 0: no error expected
		evs    []rec      // events expected before the error/end
	}
	tests := []tc{
		// 5.1 masking.
		{name: "server/unmasked text", in: rawFrame(0x81, false, 2, nil, []byte("hi")), code: 1002},
		{name: "server/unmasked ping", in: rawFrame(0x89, false, 0, nil, nil), code: 1002},
		{name: "server/unmasked header only", in: []byte{0x82, 0x7e}, code: 1002},
		{name: "server/masked ok", in: mf(true, ws.OpText, "hi"), evs: []rec{{Kind: EventMessage, Op: ws.OpText, Payload: "hi"}}},
		{name: "client/masked text", in: mf(true, ws.OpText, "hi"), client: true, code: 1002},
		{name: "client/unmasked ok", in: rawFrame(0x81, false, 2, nil, []byte("hi")), client: true, evs: []rec{{Kind: EventMessage, Op: ws.OpText, Payload: "hi"}}},

		// 5.2 RSV bits.
		{name: "rsv1", in: rawFrame(0xC1, true, 2, nil, []byte("hi")), code: 1002},
		{name: "rsv2", in: rawFrame(0xA1, true, 2, nil, []byte("hi")), code: 1002},
		{name: "rsv3", in: rawFrame(0x91, true, 2, nil, []byte("hi")), code: 1002},
		{name: "rsv on ping", in: rawFrame(0xC9, true, 0, nil, nil), code: 1002},

		// 5.5 control frames.
		{name: "ping 125 ok", in: mf(true, ws.OpPing, strings.Repeat("p", 125)), evs: []rec{{Kind: EventPing, Op: ws.OpPing, Payload: strings.Repeat("p", 125)}}},
		{name: "ping 126", in: rawFrame(0x89, true, 126, ext16(126), bytes.Repeat([]byte("p"), 126)), code: 1002},
		{name: "ping 126 header only", in: rawFrame(0x89, true, 126, ext16(126), nil)[:4], code: 1002},
		{name: "pong 64-bit 200", in: rawFrame(0x8A, true, 127, ext64(200), bytes.Repeat([]byte("p"), 200)), code: 1002},
		{name: "close 126", in: rawFrame(0x88, true, 126, ext16(126), append([]byte{3, 232}, bytes.Repeat([]byte("r"), 124)...)), code: 1002},
		{name: "ping non-minimal 16-bit length ok", in: rawFrame(0x89, true, 126, ext16(5), []byte("hello")), evs: []rec{{Kind: EventPing, Op: ws.OpPing, Payload: "hello"}}},
		{name: "ping fin=0", in: rawFrame(0x09, true, 0, nil, nil), code: 1002},
		{name: "pong fin=0", in: rawFrame(0x0A, true, 1, nil, []byte("x")), code: 1002},
		{name: "close fin=0", in: rawFrame(0x08, true, 0, nil, nil), code: 1002},

		// 5.4 fragmentation.
		{name: "continuation without message", in: mf(true, ws.OpContinuation, "x"), code: 1002},
		{name: "continuation fin=0 without message", in: mf(false, ws.OpContinuation, "x"), code: 1002},
		{name: "continuation after complete message", in: cat(mf(true, ws.OpText, "a"), mf(true, ws.OpContinuation, "b")), code: 1002,
			evs: []rec{{Kind: EventMessage, Op: ws.OpText, Payload: "a"}}},
		{name: "text inside fragmented text", in: cat(mf(false, ws.OpText, "a"), mf(true, ws.OpText, "b")), code: 1002},
		{name: "binary inside fragmented text", in: cat(mf(false, ws.OpText, "a"), mf(false, ws.OpBinary, "b")), code: 1002},
		{name: "text inside fragmented binary", in: cat(mf(false, ws.OpBinary, "a"), mf(true, ws.OpText, "b")), code: 1002},
		{name: "control between fragments ok", in: cat(mf(false, ws.OpBinary, "a"), mf(true, ws.OpPing, "p"), mf(true, ws.OpPong, "q"), mf(true, ws.OpContinuation, "b")),
			evs: []rec{{Kind: EventPing, Op: ws.OpPing, Payload: "p"}, {Kind: EventPong, Op: ws.OpPong, Payload: "q"}, {Kind: EventMessage, Op: ws.OpBinary, Payload: "ab"}}},

		// 5.2 payload length.
		{name: "64-bit length MSB", in: rawFrame(0x82, true, 127, ext64(1<<63|5), nil)[:10], code: 1002},
		{name: "64-bit length MSB all ones", in: rawFrame(0x82, true, 127, ext64(^uint64(0)), nil), code: 1002},
		{name: "non-minimal 16-bit ok", in: rawFrame(0x81, true, 126, ext16(5), []byte("hello")), evs: []rec{{Kind: EventMessage, Op: ws.OpText, Payload: "hello"}}},
		{name: "non-minimal 64-bit ok", in: rawFrame(0x81, true, 127, ext64(5), []byte("hello")), evs: []rec{{Kind: EventMessage, Op: ws.OpText, Payload: "hello"}}},
		{name: "16-bit 300 ok", in: mf(true, ws.OpBinary, strings.Repeat("b", 300)), evs: []rec{{Kind: EventMessage, Op: ws.OpBinary, Payload: strings.Repeat("b", 300)}}},
		{name: "64-bit 70000 ok", in: mf(true, ws.OpBinary, strings.Repeat("b", 70000)), evs: []rec{{Kind: EventMessage, Op: ws.OpBinary, Payload: strings.Repeat("b", 70000)}}},
		{name: "empty text ok", in: mf(true, ws.OpText, ""), evs: []rec{{Kind: EventMessage, Op: ws.OpText, Payload: ""}}},

		// 8.1 UTF-8.
		{name: "text invalid byte", in: mf(true, ws.OpText, "ab\xffcd"), code: 1007},
		{name: "text overlong", in: mf(true, ws.OpText, "\xc0\x80"), code: 1007},
		{name: "text surrogate", in: mf(true, ws.OpText, "\xed\xa0\x80"), code: 1007},
		{name: "text above U+10FFFF", in: mf(true, ws.OpText, "\xf4\x90\x80\x80"), code: 1007},
		{name: "text truncated", in: mf(true, ws.OpText, "ab\xe2\x82"), code: 1007},
		{name: "binary invalid UTF-8 ok", in: mf(true, ws.OpBinary, "\xff\xfe"), evs: []rec{{Kind: EventMessage, Op: ws.OpBinary, Payload: "\xff\xfe"}}},
		{name: "text valid multibyte ok", in: mf(true, ws.OpText, "κόσμε😀"), evs: []rec{{Kind: EventMessage, Op: ws.OpText, Payload: "κόσμε😀"}}},
		{name: "fragmented text truncated at fin", in: cat(mf(false, ws.OpText, "ab\xf0\x9f"), mf(true, ws.OpContinuation, "\x98")), code: 1007},
		{name: "fragmented text invalid in first fragment", in: mf(false, ws.OpText, "a\xffb"), code: 1007},

		// Size limit (7.4.1 1009).
		{name: "size: declared > max, header only", in: rawFrame(0x82, true, 11, nil, nil)[:2], lim: Limits{MaxMessage: 10}, code: 1009},
		{name: "size: declared 16-bit > max, header only", in: []byte{0x82, 0xFE, 0x01, 0x00}, lim: Limits{MaxMessage: 255}, code: 1009},
		{name: "size: declared 64-bit huge, header only", in: []byte{0x82, 0xFF, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, code: 1009},
		{name: "size: default limit 10 MiB + 1", in: binary.BigEndian.AppendUint64([]byte{0x82, 0xFF}, 10<<20+1), code: 1009},
		{name: "size: exactly max ok", in: mf(true, ws.OpBinary, "0123456789"), lim: Limits{MaxMessage: 10}, evs: []rec{{Kind: EventMessage, Op: ws.OpBinary, Payload: "0123456789"}}},
		{name: "size: fragments exceed, second header only", in: cat(mf(false, ws.OpBinary, "012345"), mf(true, ws.OpContinuation, "6789X")[:2]), lim: Limits{MaxMessage: 10}, code: 1009},
		{name: "size: fragments exactly max ok", in: cat(mf(false, ws.OpBinary, "012345"), mf(true, ws.OpContinuation, "6789")), lim: Limits{MaxMessage: 10},
			evs: []rec{{Kind: EventMessage, Op: ws.OpBinary, Payload: "0123456789"}}},
		{name: "size: control frames not counted", in: cat(mf(false, ws.OpBinary, "0123456789"), mf(true, ws.OpPing, "ping!"), mf(true, ws.OpContinuation, "")), lim: Limits{MaxMessage: 10},
			evs: []rec{{Kind: EventPing, Op: ws.OpPing, Payload: "ping!"}, {Kind: EventMessage, Op: ws.OpBinary, Payload: "0123456789"}}},
		{name: "size: limit per message, not per connection", in: cat(mf(true, ws.OpBinary, "0123456789"), mf(false, ws.OpBinary, "01234"), mf(true, ws.OpContinuation, "56789")), lim: Limits{MaxMessage: 10},
			evs: []rec{{Kind: EventMessage, Op: ws.OpBinary, Payload: "0123456789"}, {Kind: EventMessage, Op: ws.OpBinary, Payload: "0123456789"}}},

		// 5.5.1 / 7.4 close frames.
		{name: "close empty", in: mf(true, ws.OpClose, ""), evs: []rec{{Kind: EventClose, Op: ws.OpClose, Code: 1005}}},
		{name: "close 1 byte", in: mf(true, ws.OpClose, "\x03"), code: 1002},
		{name: "close 1000 reason", in: mf(true, ws.OpClose, closeBody(1000, "bye")), evs: []rec{{Kind: EventClose, Op: ws.OpClose, Payload: closeBody(1000, "bye"), Code: 1000, Reason: "bye"}}},
		{name: "close reason invalid UTF-8", in: mf(true, ws.OpClose, closeBody(1000, "b\xffe")), code: 1007},
		{name: "close reason truncated UTF-8", in: mf(true, ws.OpClose, closeBody(1000, "\xe2\x82")), code: 1007},
	}
	for _, c := range []uint16{0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 5001, 65535} {
		tests = append(tests, tc{name: fmt.Sprintf("close code %d invalid", c), in: mf(true, ws.OpClose, closeBody(c, "")), code: 1002})
	}
	for _, c := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		body := closeBody(c, "ok")
		tests = append(tests, tc{name: fmt.Sprintf("close code %d valid", c), in: mf(true, ws.OpClose, body),
			evs: []rec{{Kind: EventClose, Op: ws.OpClose, Payload: body, Code: StatusCode(c), Reason: "ok"}}})
	}
	for _, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		tests = append(tests,
			tc{name: fmt.Sprintf("reserved opcode %#x", op), in: rawFrame(0x80|op, true, 0, nil, nil), code: 1002},
			tc{name: fmt.Sprintf("reserved opcode %#x header only", op), in: []byte{0x80 | op, 0xFE}, code: 1002},
		)
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := feed(t, tt.in, tt.client, tt.lim)
			if got := closeCode(r.err); got != tt.code {
				t.Fatalf("close code = %d (err %v), want %d", got, r.err, tt.code)
			}
			if tt.code == 0 && r.consumed != len(tt.in) {
				t.Fatalf("consumed %d of %d bytes", r.consumed, len(tt.in))
			}
			if fmt.Sprint(r.evs) != fmt.Sprint(tt.evs) {
				t.Fatalf("events:\n got %v\nwant %v", r.evs, tt.evs)
			}
			// The same outcome byte by byte.
			cuts := make([]int, 0, len(tt.in))
			for i := 1; i < len(tt.in); i++ {
				cuts = append(cuts, i)
			}
			if len(tt.in) < 2000 {
				if r2 := feed(t, tt.in, tt.client, tt.lim, cuts...); !sameResult(r, r2) {
					t.Fatalf("byte by byte: got %v %v, whole: %v %v", r2.evs, r2.err, r.evs, r.err)
				}
			}
		})
	}
}

func TestCloseErrorMessage(t *testing.T) {
	err := error(&CloseError{Code: 1002, Reason: "reserved bits set"})
	if got, want := err.Error(), "ws13: close 1002: reserved bits set"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestValidCloseCode(t *testing.T) {
	for c := 0; c <= 0xFFFF; c++ {
		code := StatusCode(c)
		want := (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
		if got := ValidCloseCode(code); got != want {
			t.Fatalf("ValidCloseCode(%d) = %v, want %v", c, got, want)
		}
		// Agree with gobwas/ws except where it is stricter (1012-1014, which
		// it does not know) or looser (>= 5000, which RFC 6455 leaves
		// undefined).
		gob := ws.CheckCloseFrameData(ws.StatusCode(code), "") == nil
		if c < 5000 && (c < 1012 || c > 1014) && gob != want {
			t.Fatalf("code %d: ValidCloseCode %v, ws.CheckCloseFrameData %v", c, want, gob)
		}
	}
}

// multiStream is a valid stream exercising every path of the decoder.
func multiStream() ([]byte, []rec) {
	bin := strings.Repeat("\x00\xff", 150) // 16-bit length
	big := strings.Repeat("z", 70000)      // 64-bit length
	closeBody := "\x03\xe8bye"
	stream := cat(
		mf(true, ws.OpText, "hello"),
		mf(true, ws.OpPing, "p1"),
		mf(false, ws.OpText, "κό"),
		mf(false, ws.OpContinuation, "σ\xce"), // σ then half of μ
		mf(true, ws.OpPong, ""),
		mf(true, ws.OpContinuation, "\xbcε"),
		mf(true, ws.OpBinary, bin),
		mf(false, ws.OpBinary, ""),
		mf(false, ws.OpContinuation, "ab"),
		mf(true, ws.OpPing, ""),
		mf(true, ws.OpContinuation, "cd"),
		mf(true, ws.OpText, ""),
		mf(true, ws.OpBinary, big),
		mf(true, ws.OpClose, closeBody),
	)
	evs := []rec{
		{Kind: EventMessage, Op: ws.OpText, Payload: "hello"},
		{Kind: EventPing, Op: ws.OpPing, Payload: "p1"},
		{Kind: EventPong, Op: ws.OpPong},
		{Kind: EventMessage, Op: ws.OpText, Payload: "κόσμε"},
		{Kind: EventMessage, Op: ws.OpBinary, Payload: bin},
		{Kind: EventPing, Op: ws.OpPing},
		{Kind: EventMessage, Op: ws.OpBinary, Payload: "abcd"},
		{Kind: EventMessage, Op: ws.OpText},
		{Kind: EventMessage, Op: ws.OpBinary, Payload: big},
		{Kind: EventClose, Op: ws.OpClose, Payload: closeBody, Code: 1000, Reason: "bye"},
	}
	return stream, evs
}

func TestSplitFeeding(t *testing.T) {
	stream, want := multiStream()
	whole := feed(t, stream, false, Limits{})
	if whole.err != nil || whole.consumed != len(stream) {
		t.Fatalf("whole: err %v, consumed %d of %d", whole.err, whole.consumed, len(stream))
	}
	if fmt.Sprint(whole.evs) != fmt.Sprint(want) {
		t.Fatalf("whole: events\n got %v\nwant %v", whole.evs, want)
	}
	// Every split point of the stream into two parts (inside the 70000-byte
	// payload, where every split point takes the same path, one in 101).
	bigPayload := len(stream) - len(mf(true, ws.OpClose, "\x03\xe8bye")) - 70000
	for i := 0; i <= len(stream); i++ {
		if i > bigPayload+16 && i < bigPayload+70000-16 && i%101 != 0 {
			continue
		}
		if r := feed(t, stream, false, Limits{}, i); !sameResult(whole, r) {
			t.Fatalf("split at %d: got %v %v", i, r.evs, r.err)
		}
	}
	// Every pair of split points in the part before the large frame.
	small := stream[:bytes.Index(stream, mf(true, ws.OpBinary, strings.Repeat("z", 70000))[:10])]
	wholeSmall := feed(t, small, false, Limits{})
	if wholeSmall.err != nil || wholeSmall.consumed != len(small) || len(wholeSmall.evs) != len(want)-2 {
		t.Fatalf("small part: %v %v", wholeSmall.evs, wholeSmall.err)
	}
	for i := 0; i <= len(small); i++ {
		for j := i; j <= len(small); j++ {
			if r := feed(t, small, false, Limits{}, i, j); !sameResult(wholeSmall, r) {
				t.Fatalf("split at %d,%d: got %v %v", i, j, r.evs, r.err)
			}
		}
	}
	// Byte at a time.
	cuts := make([]int, len(stream))
	for i := range cuts {
		cuts[i] = i
	}
	if r := feed(t, stream, false, Limits{}, cuts...); !sameResult(whole, r) {
		t.Fatalf("byte by byte: got %v %v", r.evs, r.err)
	}
}

func TestFragmentedTextWithPing(t *testing.T) {
	var d Decoder
	frames := [][]byte{
		mf(false, ws.OpText, "Hel"),
		mf(true, ws.OpPing, "are you there"),
		mf(false, ws.OpContinuation, "lo, wor"),
		mf(true, ws.OpContinuation, "ld 😀"),
	}
	wantKinds := []EventKind{EventNone, EventPing, EventNone, EventMessage}
	for i, f := range frames {
		ev, n, err := d.Next(f, Limits{})
		if err != nil || n != len(f) || ev.Kind != wantKinds[i] {
			t.Fatalf("frame %d: ev %v n %d err %v", i, toRec(ev), n, err)
		}
		switch i {
		case 1:
			if string(ev.Payload) != "are you there" || !d.Fragmented() {
				t.Fatalf("ping: payload %q fragmented %v", ev.Payload, d.Fragmented())
			}
		case 3:
			if ev.Op != ws.OpText || string(ev.Payload) != "Hello, world 😀" {
				t.Fatalf("message: %v", toRec(ev))
			}
			if d.Fragmented() {
				t.Fatal("still fragmented after the final fragment")
			}
		}
	}
	d.Release()
	if d.s != nil {
		t.Fatal("Release kept the fragmentation state of a default decoder")
	}
	d.SetClientSide(true)
	d.Release()
	if d.s == nil || d.s.buf != nil || d.s.flags != flagClient {
		t.Fatalf("Release of a client-side decoder: %+v", d.s)
	}
}

// TestUTF8FailsEarly checks that invalid UTF-8 split across fragments fails
// on the fragment where it becomes impossible, even if that is not final.
func TestUTF8FailsEarly(t *testing.T) {
	tests := []struct {
		name    string
		frags   []string
		failAt  int // index of the fragment that must fail; -1: valid
		payload string
	}{
		{"4-byte rune split 2+2", []string{"a\xf0\x9f", "\x98\x80b"}, -1, "a😀b"},
		{"4-byte rune split 1+3", []string{"\xf0", "\x9f\x98\x80"}, -1, "😀"},
		{"4-byte rune split 3+1", []string{"\xf0\x9f\x98", "\x80"}, -1, "😀"},
		{"4-byte rune split 1+1+1+1", []string{"\xf0", "\x9f", "\x98", "\x80"}, -1, "😀"},
		{"4-byte rune with empty fragments", []string{"", "\xf0\x9f", "", "\x98\x80", ""}, -1, "😀"},
		{"bad continuation in 2nd of 3", []string{"a\xf0\x9f", "\x28more", "end"}, 1, ""},
		{"above U+10FFFF at 2nd byte", []string{"\xf4", "\x90", "\x80\x80"}, 1, ""},
		{"surrogate at 2nd byte", []string{"ok\xed", "\xa0\x80", "x"}, 1, ""},
		{"overlong E0 80", []string{"\xe0", "\x80\x80", "x"}, 1, ""},
		{"invalid lead F5 in 1st", []string{"abc\xf5", "\x80", "x"}, 0, ""},
		{"too many continuation bytes", []string{"\xc3\xa9", "\xa9", "x"}, 1, ""},
		{"valid prefix, truncated at fin", []string{"\xe2", "\x82"}, 1, ""},
		{"invalid in long ascii run of 2nd", []string{"\xc3", "\xa9" + strings.Repeat("a", 100) + "\xff" + strings.Repeat("b", 100), "x"}, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			for i, s := range tt.frags {
				op := ws.OpContinuation
				if i == 0 {
					op = ws.OpText
				}
				f := mf(i == len(tt.frags)-1, op, s)
				ev, n, err := d.Next(f, Limits{})
				if i == tt.failAt {
					if closeCode(err) != 1007 {
						t.Fatalf("fragment %d: err %v, want 1007", i, err)
					}
					return
				}
				if err != nil || n != len(f) {
					t.Fatalf("fragment %d: n %d err %v", i, n, err)
				}
				if i == len(tt.frags)-1 {
					if ev.Kind != EventMessage || string(ev.Payload) != tt.payload {
						t.Fatalf("final: %v", toRec(ev))
					}
				}
			}
			if tt.failAt >= 0 {
				t.Fatal("no error")
			}
		})
	}
}

// prefixOK reports whether p can be extended into valid UTF-8 (reference
// implementation for the incremental validator).
func prefixOK(p []byte) bool {
	if utf8.Valid(p) {
		return true
	}
	for k := 1; k <= 3; k++ {
		for _, first := range []byte{0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF} {
			q := append(append([]byte(nil), p...), first)
			q = append(q, bytes.Repeat([]byte{0x80}, k-1)...)
			if utf8.Valid(q) {
				return true
			}
		}
	}
	return false
}

func TestUTF8StateMachineExhaustive(t *testing.T) {
	// Every sequence of up to 3 bytes: the state is Accept iff the sequence
	// is valid, and not Reject iff it is a valid prefix.
	var buf [3]byte
	check := func(p []byte) {
		s := utf8Accept
		for _, b := range p {
			if s = s.step(b); s == utf8Reject {
				break
			}
		}
		if (s == utf8Accept) != utf8.Valid(p) {
			t.Fatalf("% x: state %d, utf8.Valid %v", p, s, utf8.Valid(p))
		}
		if (s != utf8Reject) != prefixOK(p) {
			t.Fatalf("% x: state %d, prefixOK %v", p, s, prefixOK(p))
		}
	}
	for a := 0; a < 256; a++ {
		buf[0] = byte(a)
		check(buf[:1])
		for b := 0; b < 256; b++ {
			buf[1] = byte(b)
			check(buf[:2])
			if a < 0xE0 || a > 0xF4 {
				continue // third byte cannot change a settled answer... checked below for a sample
			}
			for c := 0; c < 256; c += 1 {
				buf[2] = byte(c)
				check(buf[:3])
			}
		}
	}
	for a := 0; a < 256; a += 7 {
		for b := 0; b < 256; b += 3 {
			for c := 0; c < 256; c++ {
				check([]byte{byte(a), byte(b), byte(c)})
			}
		}
	}
}

func TestValidateUTF8Incremental(t *testing.T) {
	alphabet := []byte{'a', 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff}
	seed := uint64(1)
	rnd := func(n int) int {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return int(seed % uint64(n))
	}
	for iter := 0; iter < 200000; iter++ {
		n := rnd(24)
		p := make([]byte, n)
		for i := range p {
			if rnd(3) == 0 {
				p[i] = 'a'
			} else {
				p[i] = alphabet[rnd(len(alphabet))]
			}
		}
		s := utf8Accept
		prev := 0
		for prev < len(p) || prev == 0 {
			end := prev + rnd(len(p)-prev+1)
			if end == prev && prev < len(p) {
				end++
			}
			var ok bool
			s, ok = validateUTF8(s, p[prev:end])
			if want := prefixOK(p[:end]); ok != want {
				t.Fatalf("% x split at %d..%d: ok %v, prefixOK %v", p, prev, end, ok, want)
			}
			if !ok {
				break
			}
			prev = end
			if prev == len(p) {
				if (s == utf8Accept) != utf8.Valid(p) {
					t.Fatalf("% x: final state %d, Valid %v", p, s, utf8.Valid(p))
				}
				break
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	payloads := []string{"", "x", strings.Repeat("a", 125), strings.Repeat("b", 126), strings.Repeat("c", 0xFFFF), strings.Repeat("d", 0x10000)}
	for _, p := range payloads {
		for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary} {
			// Client -> server.
			orig := []byte(p)
			f := AppendMaskedFrame([]byte("prefix"), true, op, NewMask(), orig)
			if string(orig) != p {
				t.Fatal("AppendMaskedFrame modified the payload")
			}
			if len(f)-6 != HeaderLen(len(p), true)+len(p) {
				t.Fatalf("masked frame length %d, HeaderLen %d", len(f)-6, HeaderLen(len(p), true))
			}
			var srv Decoder
			ev, n, err := srv.Next(f[6:], Limits{})
			if err != nil || n != len(f)-6 || ev.Kind != EventMessage || ev.Op != op || string(ev.Payload) != p {
				t.Fatalf("server decode len %d: n %d err %v ev %v", len(p), n, err, ev.Kind)
			}
			// Server -> client.
			f = AppendFrame(nil, true, op, orig)
			if len(f) != HeaderLen(len(p), false)+len(p) {
				t.Fatalf("frame length %d, HeaderLen %d", len(f), HeaderLen(len(p), false))
			}
			var cli Decoder
			cli.SetClientSide(true)
			ev, n, err = cli.Next(f, Limits{})
			if err != nil || n != len(f) || ev.Kind != EventMessage || ev.Op != op || string(ev.Payload) != p {
				t.Fatalf("client decode len %d: n %d err %v", len(p), n, err)
			}
			// The server decoder must refuse the server's frame.
			if _, _, err := srv.Next(f, Limits{}); closeCode(err) != 1002 {
				t.Fatalf("server accepted an unmasked frame: %v", err)
			}
		}
	}
}

func TestHeaderLen(t *testing.T) {
	for _, c := range []struct{ n, want int }{{0, 2}, {125, 2}, {126, 4}, {0xFFFF, 4}, {0x10000, 10}, {1 << 40, 10}} {
		if got := HeaderLen(c.n, false); got != c.want {
			t.Errorf("HeaderLen(%d, false) = %d, want %d", c.n, got, c.want)
		}
		if got := HeaderLen(c.n, true); got != c.want+4 {
			t.Errorf("HeaderLen(%d, true) = %d, want %d", c.n, got, c.want+4)
		}
		// Agrees with gobwas/ws.
		if got := ws.HeaderSize(ws.Header{Length: int64(c.n), Masked: true}); got != c.want+4 {
			t.Errorf("ws.HeaderSize(%d) = %d", c.n, got)
		}
	}
	// Byte-exact header against gobwas/ws.WriteHeader.
	for _, n := range []int{0, 125, 126, 0xFFFF, 0x10000} {
		var w bytes.Buffer
		if err := ws.WriteHeader(&w, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(n)}); err != nil {
			t.Fatal(err)
		}
		got := AppendFrame(nil, true, ws.OpBinary, make([]byte, n))[:HeaderLen(n, false)]
		if !bytes.Equal(got, w.Bytes()) {
			t.Errorf("len %d: header % x, gobwas % x", n, got, w.Bytes())
		}
	}
}

func TestCloseFrames(t *testing.T) {
	if got := AppendCloseFrame(nil, 0, "ignored"); !bytes.Equal(got, []byte{0x88, 0}) {
		t.Fatalf("code 0: % x", got)
	}
	if got := AppendCloseFrame(nil, CloseNoStatus, ""); !bytes.Equal(got, []byte{0x88, 0}) {
		t.Fatalf("code 1005: % x", got)
	}
	if got := AppendCloseFrame(nil, 1000, "bye"); !bytes.Equal(got, []byte{0x88, 5, 0x03, 0xe8, 'b', 'y', 'e'}) {
		t.Fatalf("1000 bye: % x", got)
	}
	// A long reason is cut at a rune boundary within 123 bytes.
	long := strings.Repeat("é", 100) // 200 bytes
	f := AppendCloseFrame(nil, 1001, long)
	if len(f) != 2+2+122 || !utf8.Valid(f[4:]) {
		t.Fatalf("long reason: frame of %d bytes, valid %v", len(f), utf8.Valid(f[4:]))
	}
	f = AppendCloseFrame(nil, 1001, strings.Repeat("a", 200))
	if len(f) != 2+125 {
		t.Fatalf("long ascii reason: frame of %d bytes", len(f))
	}
	var cli Decoder
	cli.SetClientSide(true)
	ev, _, err := cli.Next(f, Limits{})
	if err != nil || ev.Kind != EventClose || ev.Code != 1001 || len(ev.Reason) != 123 {
		t.Fatalf("decode long close: %v %v", toRec(ev), err)
	}

	// Masked variants decode on the server side.
	for _, c := range []struct {
		code   StatusCode
		reason string
		want   StatusCode
	}{{0, "x", 1005}, {1005, "", 1005}, {1000, "bye", 1000}, {4000, long, 4000}} {
		m := AppendMaskedCloseFrame(nil, testMask, c.code, c.reason)
		var srv Decoder
		ev, n, err := srv.Next(m, Limits{})
		if err != nil || n != len(m) || ev.Kind != EventClose || ev.Code != c.want || !utf8.Valid(ev.Reason) {
			t.Fatalf("masked close %d: %v n=%d err %v", c.code, toRec(ev), n, err)
		}
	}
}

func TestAllocs(t *testing.T) {
	text := AppendMaskedFrame(nil, true, ws.OpText, testMask, []byte(strings.Repeat("héllo wörld ", 6)))
	bin := AppendMaskedFrame(nil, true, ws.OpBinary, testMask, make([]byte, 64<<10))
	cls := AppendMaskedCloseFrame(nil, testMask, 1000, "bye")
	out := make([]byte, 0, 1<<17)
	var d Decoder
	for name, f := range map[string][]byte{"text": text, "binary": bin, "close": cls} {
		hl := len(f) - HeaderLen(0, true)
		if f[1]&0x7f == 126 {
			hl -= 2
		} else if f[1]&0x7f == 127 {
			hl -= 8
		}
		payloadStart := len(f) - hl
		if a := testing.AllocsPerRun(100, func() {
			if _, _, err := d.Next(f, Limits{}); err != nil {
				t.Fatal(err)
			}
			ws.Cipher(f[payloadStart:], testMask, 0)
		}); a != 0 {
			t.Errorf("Next(%s): %v allocs", name, a)
		}
	}
	if a := testing.AllocsPerRun(100, func() {
		out = AppendFrame(out[:0], true, ws.OpBinary, text)
		out = AppendMaskedFrame(out[:0], true, ws.OpBinary, testMask, text)
		out = AppendCloseFrame(out[:0], 1000, "bye")
		out = AppendMaskedCloseFrame(out[:0], testMask, 1000, "bye")
	}); a != 0 {
		t.Errorf("Append*: %v allocs", a)
	}
	// Fragment assembly reuses its pooled buffer: no allocations per
	// fragment once warm (the pool's box costs one per Release at most).
	frag1 := mf(false, ws.OpText, strings.Repeat("a", 100))
	frag2 := mf(true, ws.OpContinuation, strings.Repeat("b", 100))
	if a := testing.AllocsPerRun(100, func() {
		f1 := append(out[:0], frag1...)
		if _, _, err := d.Next(f1, Limits{}); err != nil {
			t.Fatal(err)
		}
		f2 := append(out[:0], frag2...)
		if ev, _, err := d.Next(f2, Limits{}); err != nil || len(ev.Payload) != 200 {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("fragmented message without Release: %v allocs", a)
	}
}

func TestDecoderSize(t *testing.T) {
	// An idle WebSocket embeds a Decoder; the loop's 96-byte connection
	// struct has room for one pointer.
	if s := unsafeSizeofDecoder(); s > 8 {
		t.Fatalf("Decoder is %d bytes, want <= 8", s)
	}
}

func TestBufferPool(t *testing.T) {
	for _, c := range []struct{ n, size int }{{0, 512}, {1, 512}, {512, 512}, {513, 1024}, {4 << 20, 4 << 20}} {
		b := getBuf(c.n)
		if len(b) != 0 || cap(b) != c.size {
			t.Fatalf("getBuf(%d): len %d cap %d, want cap %d", c.n, len(b), cap(b), c.size)
		}
		putBuf(b)
	}
	if b := getBuf(4<<20 + 1); cap(b) < 4<<20+1 {
		t.Fatalf("getBuf above the largest class: cap %d", cap(b))
	}
	putBuf(make([]byte, 0, 1000)) // not a class size: dropped, no panic
	// A message assembled from many fragments crossing several classes.
	var d Decoder
	var want []byte
	for i := range 40 {
		op := ws.OpContinuation
		if i == 0 {
			op = ws.OpBinary
		}
		chunk := bytes.Repeat([]byte{byte(i)}, 100*i)
		want = append(want, chunk...)
		ev, _, err := d.Next(AppendMaskedFrame(nil, i == 39, op, testMask, chunk), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if i == 39 && !bytes.Equal(ev.Payload, want) {
			t.Fatal("assembled payload differs")
		}
	}
	d.Release()
}
