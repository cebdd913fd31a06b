package ws13

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// prefixOfValid reports whether more bytes could make p valid UTF-8: the
// reference for CheckPartial, from unicode/utf8 rather than the decoder's
// state machine. utf8.FullRune is false exactly for a valid sequence cut
// short (it counts an invalid encoding as a full, width-1 rune).
func prefixOfValid(p []byte) bool {
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size == 1 {
			return !utf8.FullRune(p)
		}
		p = p[size:]
	}
	return true
}

func TestCheckPartial(t *testing.T) {
	long := strings.Repeat("é", 700) // 1400 bytes: more than one chunk of the stack buffer
	tests := []struct {
		name    string
		deflate bool
		client  bool
		before  []byte // complete frames decoded first (earlier fragments)
		frame   []byte // the frame, cut to cut bytes
		cut     int
		want    bool // 1007
	}{
		{name: "valid text prefix", frame: mf(true, ws.OpText, "hello world"), cut: 12},
		{name: "invalid byte in the first part", frame: mf(true, ws.OpText, "hel\xfflo world"), cut: 12, want: true},
		{name: "invalid byte not yet received", frame: mf(true, ws.OpText, "hello\xff"), cut: 6 + 5},
		{name: "sequence cut at the end", frame: mf(true, ws.OpText, "a\xf0\x9f\x98\x80b"), cut: 6 + 3},
		{name: "bad second byte of a sequence", frame: mf(true, ws.OpText, "a\xe0\x80\x80b"), cut: 6 + 3, want: true},
		{name: "surrogate", frame: mf(true, ws.OpText, "a\xed\xa0\x80b"), cut: 6 + 3, want: true},
		{name: "non-final first fragment", frame: mf(false, ws.OpText, "ok\xc0\xafzz"), cut: 6 + 4, want: true},
		{name: "binary frame", frame: mf(true, ws.OpBinary, "\xff\xfe\xfd\xfc"), cut: 8},
		{name: "ping", frame: mf(true, ws.OpPing, "\xff\xfe\xfd\xfc"), cut: 8},
		{name: "close with bad reason", frame: mf(true, ws.OpClose, "\x03\xe8\xff\xfe"), cut: 8},
		{name: "header only", frame: mf(true, ws.OpText, "\xff"), cut: 6},
		{name: "mask incomplete", frame: mf(true, ws.OpText, "\xff"), cut: 4},
		{name: "one byte", frame: mf(true, ws.OpText, "\xff"), cut: 1},
		{name: "16-bit length", frame: mf(true, ws.OpText, long+"\xff"+long), cut: 8 + 1500, want: true},
		{name: "16-bit length valid", frame: mf(true, ws.OpText, long+long), cut: 8 + 1401},
		{name: "16-bit length incomplete", frame: mf(true, ws.OpText, long+long), cut: 3},
		{name: "64-bit length", frame: rawFrame(0x81, true, 127, []byte{0, 0, 0, 0, 0, 0, 0x05, 0x7c}, []byte(long+"\xc3\x28zz")), cut: 14 + 1402, want: true},
		{name: "64-bit length incomplete", frame: rawFrame(0x81, true, 127, []byte{0, 0, 0, 0, 0, 1, 0, 0}, nil), cut: 9},
		// The invalid byte is right after the first 1024-byte chunk, and a
		// two-byte sequence straddles the chunk boundary.
		{name: "sequence across the stack chunk", frame: mf(true, ws.OpText, "x"+long[:1022]+"\xc3\x28zz"), cut: 8 + 1025, want: true},
		{name: "valid across the stack chunk", frame: mf(true, ws.OpText, "x"+long[:1022]+"ézz"), cut: 8 + 1025},
		{name: "compressed text", deflate: true, frame: rawFrame(0x81|RSV1, true, 4, nil, []byte("\xff\xff\xff\xff")), cut: 8},
		{name: "compressed continuation", deflate: true,
			before: rawFrame(0x01|RSV1, true, 2, nil, []byte("\xff\xff")),
			frame:  mf(true, ws.OpContinuation, "\xff\xff\xff"), cut: 8},
		{name: "continuation carries the state: valid",
			before: mf(false, ws.OpText, "a\xf0\x9f"),
			frame:  mf(true, ws.OpContinuation, "\x98\x80bc"), cut: 6 + 3},
		{name: "continuation carries the state: invalid",
			before: mf(false, ws.OpText, "a\xf0\x9f"),
			frame:  mf(true, ws.OpContinuation, "\x28\x80bc"), cut: 6 + 1, want: true},
		{name: "continuation of binary",
			before: mf(false, ws.OpBinary, "a\xf0\x9f"),
			frame:  mf(true, ws.OpContinuation, "\x28\x80bc"), cut: 6 + 3},
		{name: "ping inside a text message",
			before: mf(false, ws.OpText, "a\xf0\x9f"),
			frame:  mf(true, ws.OpPing, "\x28\x80bc"), cut: 6 + 3},
		{name: "client side, unmasked", client: true, frame: AppendFrame(nil, true, ws.OpText, []byte("ab\xffcd")), cut: 5, want: true},
		{name: "client side, unmasked, valid", client: true, frame: AppendFrame(nil, true, ws.OpText, []byte("ab\xe2\x82")), cut: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			d.SetDeflate(tt.deflate)
			d.SetClientSide(tt.client)
			if tt.before != nil {
				if _, n, err := d.Next(tt.before, Limits{}); n != len(tt.before) || err != nil {
					t.Fatalf("before: n=%d err=%v", n, err)
				}
			}
			buf := tt.frame[:tt.cut]
			if _, n, err := d.Next(buf, Limits{}); n != 0 || err != nil {
				t.Fatalf("the cut frame is not incomplete: n=%d err=%v", n, err)
			}
			var st decState
			if d.s != nil {
				st = *d.s
			}
			snap := bytes.Clone(buf)
			err := d.CheckPartial(buf)
			if got := err != nil; got != tt.want {
				t.Fatalf("CheckPartial = %v, want error %v", err, tt.want)
			}
			if err != nil && closeCode(err) != CloseInvalidPayload {
				t.Fatalf("error %v, want 1007", err)
			}
			if !bytes.Equal(buf, snap) {
				t.Fatal("CheckPartial modified buf")
			}
			if d.s != nil && (d.s.utf8 != st.utf8 || d.s.flags != st.flags || d.s.op != st.op || len(d.s.buf) != len(st.buf)) {
				t.Fatal("CheckPartial changed the decoder's state")
			}
			// Next then decodes the whole frame as if CheckPartial had not
			// run; when CheckPartial failed, so does Next, with 1007.
			_, n, nerr := d.Next(tt.frame, Limits{})
			if tt.want && (n == 0 || closeCode(nerr) != CloseInvalidPayload) {
				t.Fatalf("whole frame: n=%d err=%v, want 1007", n, nerr)
			}
		})
	}
}

func TestCheckPartialAllocs(t *testing.T) {
	var d Decoder
	frame := mf(true, ws.OpText, strings.Repeat("héllo wörld ", 400))
	buf := frame[:len(frame)-3]
	if a := testing.AllocsPerRun(100, func() {
		if err := d.CheckPartial(buf); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("CheckPartial: %v allocs", a)
	}
}

func BenchmarkCheckPartial(b *testing.B) {
	var d Decoder
	frame := mf(true, ws.OpText, strings.Repeat("héllo wörld ", 1<<13)) // ~106 KB
	buf := frame[:len(frame)-1]
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if err := d.CheckPartial(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzCheckPartial decodes a stream frame by frame and, before each frame
// is complete, calls CheckPartial on prefixes of it for which Next reports
// an incomplete frame. CheckPartial must agree with a reference (the
// message's bytes so far are a prefix of valid UTF-8, for uncompressed text
// messages), leave buf and the decoder unchanged, and agree with Next on
// the complete frame: a prefix that fails means Next fails with 1007, and a
// frame Next accepts has no failing prefix.
func FuzzCheckPartial(f *testing.F) {
	f.Add(mf(true, ws.OpText, "hel\xfflo"), uint64(0))
	f.Add(cat(mf(false, ws.OpText, "a\xf0\x9f"), mf(true, ws.OpPing, "p"), mf(true, ws.OpContinuation, "\x98\x80")), uint64(1))
	f.Add(cat(mf(false, ws.OpText, "a\xf0\x9f"), mf(true, ws.OpContinuation, "\x28")), uint64(2))
	f.Add(cat(rawFrame(0x01|RSV1, true, 2, nil, []byte("\xff\xff")), mf(true, ws.OpContinuation, "\xff")), uint64(3))
	f.Add(mf(true, ws.OpText, strings.Repeat("é", 600)+"\xed\xa0\x80"), uint64(4))
	f.Add(AppendFrame(nil, true, ws.OpText, []byte("ab\xffcd")), uint64(5))
	f.Add([]byte("\x01\xfa0000\xaf0"), uint64(0)) // a failing prefix of a frame that never completes
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		var d Decoder
		d.SetDeflate(seed&1 != 0)
		d.SetClientSide(seed&2 != 0)
		lim := Limits{MaxMessage: 1 << 16}
		buf := bytes.Clone(data)
		for len(buf) > 0 {
			end := len(buf)
			if fl, ok := FrameLen(buf); ok && fl < int64(end) {
				end = int(fl)
			}
			failed := -1
			check := func(k int) {
				p := buf[:k]
				if _, n, err := d.Next(p, lim); n != 0 || err != nil {
					return // not the contract's input
				}
				var st decState
				if d.s != nil {
					st = *d.s
				}
				snap := bytes.Clone(p)
				err := d.CheckPartial(p)
				if err != nil && closeCode(err) != CloseInvalidPayload {
					t.Fatalf("CheckPartial error %v", err)
				}
				if !bytes.Equal(p, snap) {
					t.Fatal("CheckPartial modified buf")
				}
				if d.s != nil && (d.s.utf8 != st.utf8 || d.s.flags != st.flags || d.s.op != st.op || len(d.s.buf) != len(st.buf)) {
					t.Fatal("CheckPartial changed the decoder's state")
				}
				if want, ok := partialRef(&d, p); ok && (err == nil) != want {
					t.Fatalf("CheckPartial(%q) = %v, reference says valid=%v", p, err, want)
				}
				if err != nil && failed < 0 {
					failed = k
				}
			}
			// Every prefix of short frames, a sample of long ones.
			if end <= 300 {
				for k := 0; k < end; k++ {
					check(k)
				}
			} else {
				for range 40 {
					check(rng.IntN(end))
				}
				check(end - 1)
			}
			_, n, err := d.Next(buf, lim)
			complete := n > 0 || err != nil
			if failed >= 0 && complete && closeCode(err) != CloseInvalidPayload {
				t.Fatalf("prefix of %d bytes failed, but Next on %d bytes: n=%d err=%v", failed, len(buf), n, err)
			}
			if err != nil || n == 0 {
				return
			}
			if !d.Fragmented() {
				d.Release()
			}
			buf = buf[n:]
		}
	})
}

// partialRef is the reference for CheckPartial on the incomplete frame p
// (after Next returned 0, nil for it): ok is false when CheckPartial has
// nothing to check, else valid tells whether the message's bytes so far
// (earlier fragments, then p's unmasked payload) are a prefix of valid
// UTF-8.
func partialRef(d *Decoder, p []byte) (valid, ok bool) {
	if len(p) < 2 || p[0]&bitsRsv != 0 {
		return false, false
	}
	op := ws.OpCode(p[0] & 0x0f)
	var prev []byte
	switch {
	case op == ws.OpText && !d.Fragmented():
	case op == ws.OpContinuation && d.Fragmented() && d.s.op == ws.OpText && d.s.flags&flagCompressed == 0:
		prev = d.s.buf
	default:
		return false, false
	}
	fl, hdr := FrameLen(p)
	if !hdr {
		return false, false
	}
	payloadLen := int(p[1] & 0x7f)
	hlen := 2
	switch payloadLen {
	case 126:
		hlen = 4
	case 127:
		hlen = 10
	}
	masked := p[1]&bitMask != 0
	if masked {
		hlen += 4
	}
	if len(p) < hlen {
		return false, false
	}
	_ = fl
	payload := bytes.Clone(p[hlen:])
	if masked {
		ws.Cipher(payload, [4]byte(p[hlen-4:hlen]), 0)
	}
	return prefixOfValid(append(bytes.Clone(prev), payload...)), true
}

func TestPrefixOfValid(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"", true}, {"abc", true}, {"a\xf0\x9f\x98", true}, {"a\xe0\xa0", true}, {"a\xe0\x80", false},
		{"\xed\x9f", true}, {"\xed\xa0", false}, {"\xf4\x8f", true}, {"\xf4\x90", false}, {"\xc3", true},
		{"\xc3\x28", false}, {"\xff", false}, {"\x80", false}, {"\xf0\x9f\x98\x80\x80", false},
	} {
		if got := prefixOfValid([]byte(c.in)); got != c.want {
			t.Errorf("prefixOfValid(%q) = %v", c.in, got)
		}
	}
}
