package ws13

import (
	"testing"

	"github.com/gobwas/ws"
)

// benchNext decodes the same masked frame every iteration. Next unmasks the
// payload in place, so each iteration masks it back with ws.Cipher: the
// result includes one extra Cipher pass over the payload (see
// BenchmarkCipher for its cost alone).
func benchNext(b *testing.B, op ws.OpCode, size int) {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	f := AppendMaskedFrame(nil, true, op, testMask, payload)
	start := HeaderLen(size, true)
	var d Decoder
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		ev, n, err := d.Next(f, Limits{})
		if err != nil || n != len(f) || ev.Kind != EventMessage {
			b.Fatal(err)
		}
		ws.Cipher(f[start:], testMask, 0)
	}
}

func BenchmarkNextText64(b *testing.B)     { benchNext(b, ws.OpText, 64) }
func BenchmarkNextBinary64K(b *testing.B)  { benchNext(b, ws.OpBinary, 64<<10) }
func BenchmarkNextText64K(b *testing.B)    { benchNext(b, ws.OpText, 64<<10) }
func BenchmarkCipher64(b *testing.B)       { benchCipher(b, 64) }
func BenchmarkCipher64K(b *testing.B)      { benchCipher(b, 64<<10) }
func BenchmarkAppendFrame64(b *testing.B)  { benchAppend(b, 64, false) }
func BenchmarkAppendMasked64(b *testing.B) { benchAppend(b, 64, true) }

func benchCipher(b *testing.B, size int) {
	p := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		ws.Cipher(p, testMask, 0)
	}
}

func benchAppend(b *testing.B, size int, masked bool) {
	payload := make([]byte, size)
	dst := make([]byte, 0, 2*size+16)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if masked {
			dst = AppendMaskedFrame(dst[:0], true, ws.OpBinary, testMask, payload)
		} else {
			dst = AppendFrame(dst[:0], true, ws.OpBinary, payload)
		}
	}
}

// BenchmarkNextFragmented decodes a 4-fragment 4 KiB text message.
func BenchmarkNextFragmented(b *testing.B) {
	chunk := make([]byte, 1024)
	for i := range chunk {
		chunk[i] = 'a' + byte(i%26)
	}
	var frames [][]byte
	for i := range 4 {
		op := ws.OpContinuation
		if i == 0 {
			op = ws.OpText
		}
		frames = append(frames, AppendMaskedFrame(nil, i == 3, op, testMask, chunk))
	}
	start := HeaderLen(len(chunk), true)
	var d Decoder
	b.SetBytes(4 * int64(len(frames[0])))
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range frames {
			if _, _, err := d.Next(f, Limits{}); err != nil {
				b.Fatal(err)
			}
			ws.Cipher(f[start:], testMask, 0)
		}
		d.Release()
	}
}

func BenchmarkAcceptKey(b *testing.B) {
	key := []byte("dGhlIHNhbXBsZSBub25jZQ==")
	var dst [32]byte
	b.ReportAllocs()
	for b.Loop() {
		_ = AppendAcceptKey(dst[:0], key)
	}
}

func BenchmarkNewMask(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewMask()
	}
}
