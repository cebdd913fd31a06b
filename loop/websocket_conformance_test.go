package loop

import (
	"bytes"
	"testing"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/proto/ws13"
)

// RFC 6455 conformance over raw sockets with hand-made frames. Each case
// checks the close code in the server's close frame and, where it matters,
// the code OnClose saw.

const wsConfMax = 1024 // MaxMessageSize of the conformance route

func wsConfServer(t *testing.T) (string, chan *wsRec) {
	var recs chan *wsRec
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		recs = wsRecRoute(app, "/c", WSOptions{MaxMessageSize: wsConfMax, PingInterval: -1}, nil)
	})
	return addr, recs
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestWebSocketConformanceFailures(t *testing.T) {
	addr, recs := wsConfServer(t)
	rsv := wsFrame(true, ws.OpText, []byte("x"))
	rsv[0] |= 0x40
	cases := []struct {
		name string
		send []byte
		want StatusCode
	}{
		{"unmasked", ws13.AppendFrame(nil, true, ws.OpText, []byte("hi")), CloseProtocolError},
		{"rsv1", rsv, CloseProtocolError},
		{"reserved-data-opcode", wsFrame(true, ws.OpCode(3), []byte("x")), CloseProtocolError},
		{"reserved-control-opcode", wsFrame(true, ws.OpCode(0xB), nil), CloseProtocolError},
		{"ping-126", wsFrame(true, ws.OpPing, make([]byte, 126)), CloseProtocolError},
		{"fragmented-ping", wsFrame(false, ws.OpPing, []byte("p")), CloseProtocolError},
		{"continuation-without-start", wsFrame(true, ws.OpContinuation, []byte("x")), CloseProtocolError},
		{"new-message-inside-fragmented", cat(wsFrame(false, ws.OpText, []byte("a")), wsFrame(true, ws.OpText, []byte("b"))), CloseProtocolError},
		{"invalid-utf8", wsFrame(true, ws.OpText, []byte{'o', 'k', 0xff}), CloseInvalidPayload},
		{"invalid-utf8-split", cat(wsFrame(false, ws.OpText, []byte("h\xce")), wsFrame(true, ws.OpContinuation, []byte("\x28"))), CloseInvalidPayload},
		{"utf8-truncated-at-end", cat(wsFrame(false, ws.OpText, []byte("h\xe2\x82")), wsFrame(true, ws.OpContinuation, nil)), CloseInvalidPayload},
		{"invalid-utf8-close-reason", wsFrame(true, ws.OpClose, []byte{0x03, 0xe8, 0xff}), CloseInvalidPayload},
		{"too-big", wsFrame(true, ws.OpBinary, make([]byte, wsConfMax+1)), CloseTooBig},
		{"too-big-header-only", wsFrame(true, ws.OpBinary, make([]byte, 1<<20))[:14], CloseTooBig},
		{"too-big-fragmented", cat(wsFrame(false, ws.OpBinary, make([]byte, 600)), wsFrame(true, ws.OpContinuation, make([]byte, 600))), CloseTooBig},
		{"close-1-byte", wsFrame(true, ws.OpClose, []byte{0x03}), CloseProtocolError},
		{"close-code-999", wsFrame(true, ws.OpClose, []byte{0x03, 0xe7}), CloseProtocolError},
		{"close-code-1005", wsFrame(true, ws.OpClose, []byte{0x03, 0xed}), CloseProtocolError},
		{"close-code-1006", wsFrame(true, ws.OpClose, []byte{0x03, 0xee}), CloseProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := wsDialRaw(t, addr, "/c", nil)
			rec := wsRecv(t, recs, "handler")
			r.write(tc.send)
			code, reason := r.readClose()
			if code != tc.want {
				t.Fatalf("server close code %d (%q), want %d", code, reason, tc.want)
			}
			info := wsRecv(t, rec.closeCh, "OnClose")
			if info.code != tc.want {
				t.Fatalf("OnClose code %d, want %d", info.code, tc.want)
			}
			for _, e := range info.events {
				if e != "open" && e != "close" {
					t.Fatalf("unexpected event %q in %v", e, info.events)
				}
			}
		})
	}
}

func TestWebSocketConformanceValid(t *testing.T) {
	addr, recs := wsConfServer(t)
	t.Run("ping-pong-same-payload", func(t *testing.T) {
		r := wsDialRaw(t, addr, "/c", nil)
		<-recs
		for _, p := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{0xfe}, 125)} {
			r.send(true, ws.OpPing, p)
			f := r.mustFrame()
			if f.op != ws.OpPong || !bytes.Equal(f.payload, p) || !f.fin {
				t.Fatalf("got %v fin=%v %q, want pong %q", f.op, f.fin, f.payload, p)
			}
		}
	})
	t.Run("ping-between-fragments", func(t *testing.T) {
		r := wsDialRaw(t, addr, "/c", nil)
		<-recs
		r.write(cat(
			wsFrame(false, ws.OpText, []byte("ab")),
			wsFrame(true, ws.OpPing, []byte("mid")),
			wsFrame(false, ws.OpContinuation, []byte("cd")),
			wsFrame(true, ws.OpPong, []byte("unsolicited")),
			wsFrame(true, ws.OpContinuation, []byte("ef")),
		))
		if f := r.mustFrame(); f.op != ws.OpPong || string(f.payload) != "mid" {
			t.Fatalf("got %v %q, want pong mid", f.op, f.payload)
		}
		if f := r.mustFrame(); f.op != ws.OpText || string(f.payload) != "abcdef" {
			t.Fatalf("got %v %q, want text abcdef", f.op, f.payload)
		}
	})
	t.Run("fragmented-reassembled", func(t *testing.T) {
		r := wsDialRaw(t, addr, "/c", nil)
		<-recs
		// A UTF-8 character split across fragments is fine.
		r.write(cat(
			wsFrame(false, ws.OpText, []byte("h\xc3")),
			wsFrame(false, ws.OpContinuation, []byte("\xa9llo ")),
			wsFrame(false, ws.OpContinuation, nil),
			wsFrame(true, ws.OpContinuation, []byte("world")),
		))
		if f := r.mustFrame(); f.op != ws.OpText || string(f.payload) != "héllo world" {
			t.Fatalf("got %v %q", f.op, f.payload)
		}
		// Byte by byte, binary, at the size limit.
		big := make([]byte, wsConfMax)
		for i := range big {
			big[i] = byte(i)
		}
		msg := cat(wsFrame(false, ws.OpBinary, big[:500]), wsFrame(true, ws.OpContinuation, big[500:]))
		for i := range msg {
			r.write(msg[i : i+1])
		}
		if f := r.mustFrame(); f.op != ws.OpBinary || !bytes.Equal(f.payload, big) {
			t.Fatalf("got %v len %d", f.op, len(f.payload))
		}
	})
	t.Run("peer-close-echoed", func(t *testing.T) {
		for _, code := range []StatusCode{1000, 1001, 3000, 4002} {
			r := wsDialRaw(t, addr, "/c", nil)
			rec := <-recs
			r.write(ws13.AppendMaskedCloseFrame(nil, wsMask, code, "reason"))
			got, _ := r.readClose()
			if got != code {
				t.Fatalf("sent %d, server answered %d", code, got)
			}
			info := wsRecv(t, rec.closeCh, "OnClose")
			if info.code != code || info.reason != "reason" {
				t.Fatalf("OnClose %d %q", info.code, info.reason)
			}
		}
	})
	t.Run("close-without-code", func(t *testing.T) {
		r := wsDialRaw(t, addr, "/c", nil)
		rec := <-recs
		r.send(true, ws.OpClose, nil)
		f := r.mustFrame()
		if f.op != ws.OpClose || len(f.payload) != 0 {
			t.Fatalf("server answered %v %x, want an empty close", f.op, f.payload)
		}
		r.expectEOF()
		if info := wsRecv(t, rec.closeCh, "OnClose"); info.code != CloseNoStatus {
			t.Fatalf("OnClose code %d, want 1005", info.code)
		}
	})
	t.Run("nothing-after-close", func(t *testing.T) {
		r := wsDialRaw(t, addr, "/c", nil)
		rec := <-recs
		r.write(cat(
			ws13.AppendMaskedCloseFrame(nil, wsMask, 1000, ""),
			wsFrame(true, ws.OpText, []byte("after")),
			wsFrame(true, ws.OpPing, []byte("after")),
		))
		code, _ := r.readClose()
		if code != 1000 {
			t.Fatalf("code %d", code)
		}
		info := wsRecv(t, rec.closeCh, "OnClose")
		if len(info.events) != 2 {
			t.Fatalf("events %v", info.events)
		}
	})
	t.Run("tcp-drop-1006", func(t *testing.T) {
		r := wsDialRaw(t, addr, "/c", nil)
		rec := <-recs
		r.c.Close()
		if info := wsRecv(t, rec.closeCh, "OnClose"); info.code != CloseAbnormal {
			t.Fatalf("OnClose code %d, want 1006", info.code)
		}
	})
}
