// Command gnetws is the bench's floor: a bare gnet + gobwas/ws echo server
// with no framework around it, the shape of gnet's own WebSocket example. It
// serves one thing: every upgraded connection on any path echoes text and
// binary messages, answers pings, and echoes a close. It keeps no state per
// connection beyond gnet's own (an "upgraded" mark in gnet's context), sends
// no pings and has no timeouts, so `compare -servers tornago,gnetws` shows
// what Tornago's routing, timeouts and keep-alive cost on top of gnet.
//
// With -ping it also pings every upgraded connection once per interval (the
// pongs are read and dropped): the floor for Tornago's idle CPU with
// keep-alive pings. compare starts it without pings; start it by hand for
// that (gnetws -port P -ping 25s, then tornago-bench idle -url ... -pid).
//
// It is a measuring stick, not an example to copy: it trusts that a frame
// fits in gnet's inbound buffer and does not validate UTF-8 or reserved bits.
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
)

// upgraded is the context of an upgraded connection; one shared value, so
// marking a connection allocates nothing.
var upgraded any = struct{ upgraded bool }{true}

const maxHead = 8 << 10

// server runs on gnet's one event loop (WithMulticore(false)), so its
// scratch buffer needs no lock.
type server struct {
	gnet.BuiltinEventEngine
	scratch []byte

	// With pings: the upgraded connections, pinged a 1/pingBuckets share
	// per tick of interval/pingBuckets.
	ping   time.Duration
	conns  []gnet.Conn
	bucket int
}

const pingBuckets = 50

// tracked is the context of an upgraded connection when pings are on: its
// index in server.conns.
type tracked struct{ i int }

func (s *server) OnTick() (time.Duration, gnet.Action) {
	if s.ping <= 0 {
		return time.Hour, gnet.None
	}
	s.bucket = (s.bucket + 1) % pingBuckets
	ping := s.frame(true, ws.OpPing, nil)
	for i := s.bucket; i < len(s.conns); i += pingBuckets {
		s.conns[i].Write(ping)
	}
	return s.ping / pingBuckets, gnet.None
}

func (s *server) OnClose(c gnet.Conn, _ error) gnet.Action {
	if t, ok := c.Context().(*tracked); ok {
		last := s.conns[len(s.conns)-1]
		s.conns[t.i] = last
		last.Context().(*tracked).i = t.i
		s.conns = s.conns[:len(s.conns)-1]
	}
	return gnet.None
}

// frame encodes one unmasked frame (RFC 6455 5.2) into the scratch buffer;
// gnet copies what it cannot write at once, so the bytes are free again when
// Write returns. By hand, because gobwas's WriteHeader allocates per frame
// and a floor must not pay for what Tornago avoids.
func (s *server) frame(fin bool, op ws.OpCode, payload []byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	b := s.scratch[:0]
	switch n := len(payload); {
	case n <= 125:
		b = append(b, b0, byte(n))
	case n <= 65535:
		b = append(b, b0, 126, byte(n>>8), byte(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, b0, 127), uint64(n))
	}
	s.scratch = append(b, payload...)
	return s.scratch
}

// parseHeader reads a frame header in place (RFC 6455 5.2); ok is false
// until the whole header is buffered. gobwas's ReadHeader wants an
// io.Reader, which costs an allocation per frame.
func parseHeader(in []byte) (h ws.Header, hl int, ok bool) {
	if len(in) < 2 {
		return h, 0, false
	}
	h.Fin = in[0]&0x80 != 0
	h.OpCode = ws.OpCode(in[0] & 0x0f)
	h.Masked = in[1]&0x80 != 0
	hl = 2
	switch n := in[1] & 0x7f; n {
	case 126:
		if len(in) < 4 {
			return h, 0, false
		}
		h.Length, hl = int64(binary.BigEndian.Uint16(in[2:])), 4
	case 127:
		if len(in) < 10 {
			return h, 0, false
		}
		h.Length, hl = int64(binary.BigEndian.Uint64(in[2:])), 10
	default:
		h.Length = int64(n)
	}
	if h.Masked {
		if len(in) < hl+4 {
			return h, 0, false
		}
		copy(h.Mask[:], in[hl:hl+4])
		hl += 4
	}
	return h, hl, true
}

func (s *server) OnTraffic(c gnet.Conn) gnet.Action {
	if c.Context() == nil {
		return s.upgrade(c)
	}
	for {
		in, _ := c.Peek(-1)
		h, hl, ok := parseHeader(in)
		if !ok || int64(len(in)-hl) < h.Length {
			return gnet.None
		}
		payload := in[hl : hl+int(h.Length)]
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		op := h.OpCode
		switch op {
		case ws.OpText, ws.OpBinary, ws.OpContinuation:
		case ws.OpPing:
			op = ws.OpPong
		case ws.OpClose:
			c.Write(s.frame(true, ws.OpClose, payload))
			return gnet.Close
		default:
			c.Discard(hl + int(h.Length))
			continue
		}
		c.Write(s.frame(h.Fin, op, payload))
		c.Discard(hl + int(h.Length))
	}
}

func (s *server) upgrade(c gnet.Conn) gnet.Action {
	in, _ := c.Peek(-1)
	end := bytes.Index(in, []byte("\r\n\r\n"))
	if end < 0 {
		if len(in) > maxHead {
			return gnet.Close
		}
		return gnet.None
	}
	var rw = struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(in[:end+4]), c}
	if _, err := ws.Upgrade(rw); err != nil {
		return gnet.Close
	}
	c.Discard(end + 4)
	if s.ping > 0 {
		c.SetContext(&tracked{i: len(s.conns)})
		s.conns = append(s.conns, c)
	} else {
		c.SetContext(upgraded)
	}
	return gnet.None
}

func main() {
	port := flag.Int("port", 8890, "TCP port on 127.0.0.1")
	gcPercent := flag.Int("gc-percent", 10, "GOGC; the same default as cmd/tornago so that the two compare alike")
	ping := flag.Duration("ping", 0, "ping every upgraded connection this often (0: never)")
	flag.Parse()
	debug.SetGCPercent(*gcPercent)
	runtime.MemProfileRate = 0 // as in cmd/tornago
	addr := fmt.Sprintf("tcp://127.0.0.1:%d", *port)
	slog.Info("gnetws listening", "addr", addr)
	if err := gnet.Run(&server{ping: *ping}, addr, gnet.WithMulticore(false), gnet.WithReuseAddr(true), gnet.WithTicker(*ping > 0)); err != nil {
		slog.Error("gnetws", "err", err)
		os.Exit(1)
	}
}
