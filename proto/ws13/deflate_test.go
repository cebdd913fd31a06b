package ws13

import (
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

func TestNegotiateDeflate(t *testing.T) {
	cases := []struct {
		name   string
		values []string
		ok     bool
		bits   int
	}{
		{"none", nil, false, 0},
		{"other-extension", []string{"x-webkit-deflate-frame"}, false, 0},
		{"plain", []string{"permessage-deflate"}, true, 0},
		{"browser", []string{"permessage-deflate; client_max_window_bits"}, true, 0},
		{"client-bits-value", []string{"permessage-deflate; client_max_window_bits=10"}, true, 0},
		{"quoted-bits", []string{`permessage-deflate; client_max_window_bits="10"`}, true, 0},
		{"no-context-takeover", []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover"}, true, 0},
		{"server-bits", []string{"permessage-deflate; server_max_window_bits=10"}, true, 10},
		{"after-other", []string{"foo; bar=1, permessage-deflate"}, true, 0},
		{"second-line", []string{"foo", "permessage-deflate; server_max_window_bits=12"}, true, 12},
		// RFC 7692 5: decline unknown parameters, invalid values, duplicates.
		{"unknown-param", []string{"permessage-deflate; foo"}, false, 0},
		{"server-bits-16", []string{"permessage-deflate; server_max_window_bits=16"}, false, 0},
		{"server-bits-7", []string{"permessage-deflate; server_max_window_bits=7"}, false, 0},
		{"server-bits-empty", []string{"permessage-deflate; server_max_window_bits"}, false, 0},
		{"takeover-with-value", []string{"permessage-deflate; server_no_context_takeover=1"}, false, 0},
		{"duplicate", []string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"}, false, 0},
		{"bad-then-good", []string{"permessage-deflate; foo, permessage-deflate; server_max_window_bits=9"}, true, 9},
		{"first-wins", []string{"permessage-deflate; server_max_window_bits=11, permessage-deflate"}, true, 11},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var vals [][]byte
			for _, v := range tc.values {
				vals = append(vals, []byte(v))
			}
			a, ok := NegotiateDeflate(vals...)
			if ok != tc.ok || a.ServerMaxWindowBits != tc.bits {
				t.Fatalf("got ok=%v bits=%d, want ok=%v bits=%d", ok, a.ServerMaxWindowBits, tc.ok, tc.bits)
			}
		})
	}
}

func TestAppendDeflateResponse(t *testing.T) {
	const base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	if got := string(AppendDeflateResponse(nil, DeflateAgreement{})); got != base {
		t.Fatalf("got %q", got)
	}
	if got := string(AppendDeflateResponse(nil, DeflateAgreement{ServerMaxWindowBits: 10})); got != base+"; server_max_window_bits=10" {
		t.Fatalf("got %q", got)
	}
	// The header goes through AppendResponse like any extension value.
	resp := string(AppendResponse(nil, []byte("dGhlIHNhbXBsZSBub25jZQ=="), "", base, nil))
	if want := "Sec-WebSocket-Extensions: " + base + "\r\n"; !strings.Contains(resp, want) {
		t.Fatalf("response %q lacks %q", resp, want)
	}
}

// compressed returns a masked frame with RSV1 set.
func compressed(fin bool, op ws.OpCode, payload string) []byte {
	f := mf(fin, op, payload)
	f[0] |= RSV1
	return f
}

func TestDecoderDeflate(t *testing.T) {
	next := func(d *Decoder, b []byte) (Event, error) {
		t.Helper()
		ev, n, err := d.Next(b, Limits{MaxMessage: 100})
		if err == nil && n != len(b) {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		return ev, err
	}
	// Without SetDeflate RSV1 is a protocol error.
	var d Decoder
	if _, err := next(&d, compressed(true, ws.OpText, "x")); closeCode(err) != CloseProtocolError {
		t.Fatalf("RSV1 without deflate: %v", err)
	}

	d = Decoder{}
	d.SetDeflate(true)
	// An unfragmented compressed text frame: reported, not UTF-8 checked.
	ev, err := next(&d, compressed(true, ws.OpText, "\xff\x00"))
	if err != nil || ev.Kind != EventMessage || !ev.Compressed || string(ev.Payload) != "\xff\x00" {
		t.Fatalf("compressed frame: %+v %v", ev, err)
	}
	// Uncompressed text is still checked.
	if _, err := next(&d, mf(true, ws.OpText, "\xff")); closeCode(err) != CloseInvalidPayload {
		t.Fatalf("plain invalid text: %v", err)
	}

	d = Decoder{}
	d.SetDeflate(true)
	// Fragmented: RSV1 on the first frame only; a ping in between.
	for _, f := range [][]byte{compressed(false, ws.OpText, "\xff"), mf(true, ws.OpPing, "p"), mf(false, ws.OpContinuation, "\xfe")} {
		if ev, err := next(&d, f); err != nil || ev.Compressed {
			t.Fatalf("fragment: %+v %v", ev, err)
		}
	}
	ev, err = next(&d, mf(true, ws.OpContinuation, "z"))
	if err != nil || !ev.Compressed || string(ev.Payload) != "\xff\xfez" {
		t.Fatalf("final fragment: %+v %v", ev, err)
	}
	d.Release()
	// The next fragmented message is not compressed.
	next(&d, mf(false, ws.OpText, "a"))
	if ev, err = next(&d, mf(true, ws.OpContinuation, "b")); err != nil || ev.Compressed || string(ev.Payload) != "ab" {
		t.Fatalf("plain fragmented after compressed: %+v %v", ev, err)
	}
	d.Release()

	for name, f := range map[string][]byte{
		"rsv1-continuation": cat(compressed(false, ws.OpText, "a"), compressed(true, ws.OpContinuation, "b")),
		"rsv1-ping":         compressed(true, ws.OpPing, ""),
		"rsv1-close":        compressed(true, ws.OpClose, ""),
		"rsv2":              func() []byte { f := mf(true, ws.OpText, "a"); f[0] |= 0x20; return f }(),
		"rsv1-rsv3":         func() []byte { f := compressed(true, ws.OpText, "a"); f[0] |= 0x10; return f }(),
	} {
		d := Decoder{}
		d.SetDeflate(true)
		var err error
		for b := f; len(b) > 0 && err == nil; {
			var n int
			_, n, err = d.Next(b, Limits{})
			b = b[n:]
		}
		if closeCode(err) != CloseProtocolError {
			t.Errorf("%s: %v, want 1002", name, err)
		}
	}
}

// FuzzNegotiateDeflate: any header value is parsed without panicking, and an
// accepted offer never carries a window outside RFC 7692's 8..15.
func FuzzNegotiateDeflate(f *testing.F) {
	for _, s := range []string{"permessage-deflate", "permessage-deflate; client_max_window_bits",
		"permessage-deflate; server_max_window_bits=10; server_no_context_takeover, permessage-deflate",
		`permessage-deflate; client_max_window_bits="15"`, "a;b=c, permessage-deflate;;", ";=,"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		a, ok := NegotiateDeflate(v)
		if !ok {
			return
		}
		if b := a.ServerMaxWindowBits; b != 0 && (b < 8 || b > 15) {
			t.Fatalf("accepted server_max_window_bits=%d", b)
		}
		resp := string(AppendDeflateResponse(nil, a))
		if strings.ContainsAny(resp, "\r\n") {
			t.Fatalf("response %q", resp)
		}
	})
}

// TestFrameLen: FrameLen agrees with the length Next consumes, for every
// length encoding, masked or not, and waits for a complete header.
func TestFrameLen(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		p := make([]byte, n)
		for _, f := range [][]byte{AppendFrame(nil, true, ws.OpBinary, p), AppendMaskedFrame(nil, true, ws.OpBinary, testMask, p)} {
			got, ok := FrameLen(f)
			if !ok || got != int64(len(f)) {
				t.Fatalf("payload %d: FrameLen %d %v, frame is %d bytes", n, got, ok, len(f))
			}
			hl := HeaderLen(n, f[1]&0x80 != 0) - 4*int(f[1]>>7)
			if _, ok := FrameLen(f[:hl-1]); ok {
				t.Fatalf("payload %d: header of %d bytes reported complete after %d", n, hl, hl-1)
			}
			if f[1]&0x80 != 0 {
				var d Decoder
				if _, used, err := d.Next(f, Limits{MaxMessage: 1 << 20}); err != nil || int64(used) != got {
					t.Fatalf("payload %d: Next consumed %d (%v), FrameLen %d", n, used, err, got)
				}
			}
		}
	}
}
