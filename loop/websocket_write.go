package loop

// The write path of a WebSocket: messages, prepared broadcasts (framed
// once for every client), and the slow-consumer policy that bounds unsent
// output.

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/proto/ws13"
)

// SlowConsumerPolicy is what a WebSocket route does with a client whose
// unsent output is over its bound.
type SlowConsumerPolicy uint8

const (
	// SlowClose closes the connection at once, dropping its unsent output
	// (the 1008 close frame goes out only if the socket takes it), and
	// counts it in Stats().SlowConsumerCloses. Centrifuge's behaviour.
	SlowClose SlowConsumerPolicy = iota
	// SlowSkip drops the message for that client only: the write returns
	// ErrSkipped and is counted in Stats().SlowConsumerSkips, and the
	// client gets later messages once it caught up (uWebSockets'
	// maxBackpressure without closeOnBackpressureLimit). For ticks,
	// prices and presence, where the next message supersedes the last.
	SlowSkip
)

// ErrSkipped is returned by a write that the SlowSkip policy dropped.
var ErrSkipped = errors.New("loop: message skipped: the client's unsent output is over its bound")

// WriteMessage sends a text message. Goroutine-safe: from the loop it goes
// straight to the connection's output; from another goroutine data is copied
// and the write runs on the loop (its error is not reported; ErrLoopBacklog
// when the loop's queue of such data is over Options.MaxQueuedBytes).
func (w *WebSocket) WriteMessage(data []byte) error { return w.write(ws.OpText, data) }

// WriteString sends a text message. Goroutine-safe like WriteMessage.
func (w *WebSocket) WriteString(s string) error { return w.write(ws.OpText, []byte(s)) }

// WriteBinary sends a binary message. Goroutine-safe like WriteMessage.
func (w *WebSocket) WriteBinary(data []byte) error { return w.write(ws.OpBinary, data) }

// WriteJSON sends v encoded as JSON in a text message. Goroutine-safe.
func (w *WebSocket) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("loop: websocket JSON: %w", err)
	}
	return w.write(ws.OpText, b)
}

// Ping sends a ping with data (at most 125 bytes). Goroutine-safe.
func (w *WebSocket) Ping(data []byte) error {
	if len(data) > ws13.MaxControlPayload {
		return fmt.Errorf("loop: ping payload %d bytes > 125", len(data))
	}
	return w.write(ws.OpPing, data)
}

func (w *WebSocket) write(op ws.OpCode, data []byte) error {
	l := w.l
	if !l.InLoop() {
		cp := append([]byte(nil), data...)
		// Bounded by Options.MaxQueuedBytes: a loop that falls behind
		// makes writers fail fast instead of queueing without limit.
		return l.addDataCallback(len(cp), func() { _ = w.write(op, cp) })
	}
	if !w.writable() {
		return ErrWebSocketClosed
	}
	return w.writeFrame(op, data)
}

// admit applies the route's slow-consumer policy to a write of n bytes:
// nil lets it through. Loop-only.
func (w *WebSocket) admit(n int) error {
	c := w.conn()
	o := &w.route().opts
	b := c.gc.OutboundBuffered()
	over := b > 0 && b+n > o.MaxBufferedBytes
	if !over && (b > 0 || n > o.MaxBufferedBytes) && c.l.unsentOver(n) {
		// The loop's budget is spent: only a small write into an empty
		// buffer (which the socket most likely takes whole) goes on.
		over = true
	}
	if !over {
		return nil
	}
	if o.SlowConsumer == SlowSkip {
		c.l.slowSkips.Add(1)
		return ErrSkipped
	}
	c.l.slowCloses.Add(1)
	w.abort(ClosePolicy, "slow consumer: send buffer full")
	return ErrWebSocketClosed
}

// writeControl writes a pong or ping. It is small and not refused under
// SlowSkip, but a peer that floods pings and never reads the pongs is a
// slow consumer like any other: past MaxBufferedBytes it is closed.
func (w *WebSocket) writeControl(op ws.OpCode, data []byte) error {
	c := w.conn()
	if c.gc.OutboundBuffered() > w.route().opts.MaxBufferedBytes {
		c.l.slowCloses.Add(1)
		w.abort(ClosePolicy, "slow consumer: send buffer full")
		return ErrWebSocketClosed
	}
	if w.wsf.has(wsClient) {
		return w.writeMasked(op, data)
	}
	l := c.l
	l.scratch = ws13.AppendFrame(l.scratch[:0], true, op, data)
	return c.write(l.scratch)
}

func (w *WebSocket) writeFrame(op ws.OpCode, data []byte) error {
	c := w.conn()
	if err := w.admit(len(data) + 14); err != nil {
		return err
	}
	if op.IsData() {
		w.countOut(len(data))
	}
	if w.wsf.has(wsClient) {
		return w.writeMasked(op, data)
	}
	l := c.l
	if w.wsf.has(wsDeflate) && op.IsData() && w.route().opts.Compression.compresses(len(data)) {
		var err error
		if l.scratch, err = appendDeflatedFrame(l.scratch[:0], w.level(), op, data); err != nil {
			return err
		}
		err = c.write(l.scratch)
		l.trimScratch()
		return err
	}
	if len(data) <= 16<<10 {
		l.scratch = ws13.AppendFrame(l.scratch[:0], true, op, data)
		return c.write(l.scratch)
	}
	l.scratch = ws13.AppendHeader(l.scratch[:0], true, op, len(data))
	if len(data) > writePiece {
		return c.writeLarge(l.scratch, data)
	}
	l.iov[0], l.iov[1] = l.scratch, data
	err := c.writev(l.iov[:])
	l.iov[0], l.iov[1] = nil, nil
	return err
}

// writeMasked writes a client frame, masked with a fresh key (RFC 6455 5.3).
// The payload is copied while masking: the caller's bytes stay untouched.
func (w *WebSocket) writeMasked(op ws.OpCode, data []byte) error {
	l := w.l
	mask := ws13.NewMask()
	if len(data) <= 16<<10 {
		l.scratch = ws13.AppendMaskedFrame(l.scratch[:0], true, op, mask, data)
		return w.conn().write(l.scratch)
	}
	return w.conn().write(ws13.AppendMaskedFrame(nil, true, op, mask, data))
}

// WritePrepared sends a frame already encoded with PrepareMessage, so a
// broadcast encodes once and writes the same bytes to every client.
// Loop-only.
func (w *WebSocket) WritePrepared(p *PreparedMessage) error {
	if !w.writable() {
		return ErrWebSocketClosed
	}
	c := w.conn()
	if err := w.admit(len(p.frame)); err != nil {
		return err
	}
	if w.route().st != nil {
		_, payload := p.split()
		w.countOut(len(payload))
	}
	if w.wsf.has(wsClient) {
		op, payload := p.split()
		return w.writeMasked(op, payload)
	}
	frame := p.frame
	if w.wsf.has(wsDeflate) {
		if _, payload := p.split(); w.route().opts.Compression.compresses(len(payload)) {
			var err error
			if frame, err = p.deflated(w.level()); err != nil {
				return err
			}
		}
	}
	return c.write(frame)
}

// PreparedMessage is a server frame encoded once for many connections.
// Its compressed variants (one per compression level in use) are encoded
// lazily, once, by the first WritePrepared to a connection that negotiated
// permessage-deflate.
type PreparedMessage struct {
	frame []byte
	mu    sync.Mutex // guards zframes: routes on several loops may share p
	// zframes holds the compressed frames, indexed by level+2.
	zframes [][]byte
}

// PrepareMessage encodes a text (or binary) message once. Goroutine-safe.
func PrepareMessage(typ MessageType, data []byte) *PreparedMessage {
	return &PreparedMessage{frame: ws13.AppendFrame(nil, true, ws.OpCode(typ), data)}
}

// PrepareJSON encodes v as JSON in a prepared text message (nil on error).
func PrepareJSON(v any) *PreparedMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return PrepareMessage(Text, b)
}

// split returns the opcode and payload of a prepared (unmasked) frame, so
// a client can re-encode it masked.
func (p *PreparedMessage) split() (ws.OpCode, []byte) {
	f := p.frame
	op := ws.OpCode(f[0] & 0x0f)
	switch n := f[1] & 0x7f; n {
	case 126:
		return op, f[4:]
	case 127:
		return op, f[10:]
	default:
		return op, f[2:]
	}
}
