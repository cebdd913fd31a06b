package ws13

import (
	"math/rand/v2"
	"testing"

	"github.com/gobwas/ws"
)

// FuzzDecoder feeds random bytes to a server-side decoder, whole and cut
// into random chunks (from seed): it must never panic, never consume more
// than it was given, and produce the same events, error and consumed count
// either way.
func FuzzDecoder(f *testing.F) {
	stream, _ := multiStream()
	f.Add(stream[:600], uint64(1))
	f.Add(mf(true, ws.OpText, "hello"), uint64(2))
	f.Add(cat(mf(false, ws.OpText, "a\xf0\x9f"), mf(true, ws.OpPing, "p"), mf(true, ws.OpContinuation, "\x98\x80")), uint64(3))
	f.Add(cat(mf(false, ws.OpText, "a\xf0\x9f"), mf(true, ws.OpContinuation, "\x28")), uint64(4))
	f.Add(mf(true, ws.OpClose, "\x03\xe8bye"), uint64(5))
	f.Add(mf(true, ws.OpClose, "\x03"), uint64(6))
	f.Add([]byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0}, uint64(7))
	f.Add([]byte{0x82, 0xFF, 0x00, 0, 0, 0, 0, 1, 0, 0}, uint64(8))
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'}, uint64(9))
	f.Add([]byte{0x01, 0x81, 0, 0, 0, 0, 0xce, 0x80, 0x81, 0, 0, 0, 0, 0xbc}, uint64(10))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		lim := Limits{MaxMessage: 1 << 16}
		whole := feed(t, data, false, lim)
		if whole.consumed > len(data) {
			t.Fatalf("consumed %d of %d", whole.consumed, len(data))
		}
		for _, ev := range whole.evs {
			if ev.Kind == EventNone || ev.Kind > EventClose {
				t.Fatalf("bad event %v", ev)
			}
			if ev.Kind == EventMessage && ev.Op != ws.OpText && ev.Op != ws.OpBinary {
				t.Fatalf("message with opcode %d", ev.Op)
			}
			if ev.Kind == EventClose && ev.Code != CloseNoStatus && !ValidCloseCode(ev.Code) {
				t.Fatalf("close event with code %d", ev.Code)
			}
			if ev.Kind >= EventPing && len(ev.Payload) > MaxControlPayload {
				t.Fatalf("control payload of %d bytes", len(ev.Payload))
			}
		}
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		var cuts []int
		for c := 0; c < len(data); {
			c += 1 + rng.IntN(8)
			if c < len(data) {
				cuts = append(cuts, c)
			}
		}
		if split := feed(t, data, false, lim, cuts...); !sameResult(whole, split) {
			t.Fatalf("whole: %v %v %d\nsplit %v: %v %v %d", whole.evs, whole.err, whole.consumed, cuts, split.evs, split.err, split.consumed)
		}
	})
}
