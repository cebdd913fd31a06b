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
	// SlowClose closes the connection: nothing more is written to it but
	// a 1008 close frame (past the bound), the socket closes once its
	// output drained or after a second (or Options.CloseFlushTimeout when
	// shorter), dropping what the client did not read by then, and it is
	// counted in Metrics().SlowConsumerCloses. When the loop is over
	// Options.MaxUnsentTotal the output is dropped at once, and the close
	// frame goes only if the socket takes it. Centrifuge's behaviour.
	SlowClose SlowConsumerPolicy = iota
	// SlowSkip drops the message for that client only: the write returns
	// ErrSkipped and is counted in Metrics().SlowConsumerSkips, and the
	// client gets later messages once it caught up (uWebSockets'
	// maxBackpressure without closeOnBackpressureLimit). For ticks,
	// prices and presence, where the next message supersedes the last.
	SlowSkip
)

// ErrSkipped is returned by a write that the SlowSkip policy dropped.
var ErrSkipped = errors.New("loop: message skipped: the client's unsent output is over its bound")

// Loop-only.
// WriteText sends data as one text message (data must be UTF-8; it is not
// checked). From another goroutine it returns ErrNotOnLoop and sends
// nothing (use WriteAsync). It returns ErrWebSocketClosed once a close
// started, ErrSkipped or ErrWebSocketClosed under the route's
// SlowConsumerPolicy, or the socket's write error. data is written (or
// copied) by the time it returns.
func (w *WebSocket) WriteText(data []byte) error { return w.write(ws.OpText, data) }

// Loop-only.
// WriteBinary sends data as one binary message. Errors as WriteText's.
func (w *WebSocket) WriteBinary(data []byte) error { return w.write(ws.OpBinary, data) }

// Loop-only.
// WriteJSON sends v encoded as JSON in one text message. Errors as
// WriteText's, and json.Marshal's.
func (w *WebSocket) WriteJSON(v any) error {
	if !w.l.InLoop() {
		return ErrNotOnLoop // before Marshal: nothing would be sent
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("loop: websocket JSON: %w", err)
	}
	return w.write(ws.OpText, b)
}

// Loop-only.
// Ping sends a ping with data (at most 125 bytes). Errors as WriteText's.
func (w *WebSocket) Ping(data []byte) error {
	if len(data) > ws13.MaxControlPayload {
		return fmt.Errorf("loop: ping payload %d bytes > 125", len(data))
	}
	return w.write(ws.OpPing, data)
}

// Goroutine-safe.
// WriteAsync sends data as one message of type typ (Text or Binary). Data
// is copied, the write runs on the loop, and done (if not nil) is called
// there with its result, WriteText's errors. It returns at once, without
// queueing anything, ErrLoopBacklog when the loop's queue of such data is
// over Options.MaxAsyncBytes (a loop that falls behind makes writers fail
// fast instead of queueing without limit), ErrStopped once the loop
// stopped, or an error for another typ; done is then not called.
func (w *WebSocket) WriteAsync(typ MessageType, data []byte, done func(error)) error {
	if typ != Text && typ != Binary {
		return fmt.Errorf("loop: websocket write: message type %d is neither Text nor Binary", typ)
	}
	cp := append([]byte(nil), data...)
	return w.l.addDataCallback(len(cp), func() {
		err := w.write(ws.OpCode(typ), cp)
		if done != nil {
			done(err)
		}
	})
}

// asyncCost is what an Async method without data of its own (a prepared
// message, a close) counts against Options.MaxAsyncBytes: about its
// closure's size, so that queueing without limit is refused all the same.
const asyncCost = 64

func (w *WebSocket) write(op ws.OpCode, data []byte) error {
	if !w.l.InLoop() {
		return ErrNotOnLoop
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
	if !c.l.overBound(c.gc.OutboundBuffered(), n, o.MaxUnsentPerConn) {
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
// slow consumer like any other: past MaxUnsentPerConn it is closed.
func (w *WebSocket) writeControl(op ws.OpCode, data []byte) error {
	c := w.conn()
	if c.gc.OutboundBuffered() > w.route().opts.MaxUnsentPerConn {
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

// Loop-only.
// WritePrepared sends a message encoded once with PrepareMessage or
// PrepareJSON, so that a broadcast writes the same bytes to every client.
// Errors as WriteText's, and ErrNilPrepared for a nil p.
func (w *WebSocket) WritePrepared(p *PreparedMessage) error {
	if p == nil {
		return ErrNilPrepared
	}
	if !w.l.InLoop() {
		return ErrNotOnLoop
	}
	return w.writePrepared(p)
}

// writePrepared is WritePrepared for a caller known to run on the loop with
// a non-nil p: a hub's fan-out checks that once per message, not once per
// subscriber.
func (w *WebSocket) writePrepared(p *PreparedMessage) error {
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

// Goroutine-safe.
// WritePreparedAsync sends p as WritePrepared would. The write runs on the
// loop and done (if not nil) is called there with its result. It returns at
// once, without queueing anything, ErrNilPrepared, ErrLoopBacklog (the
// loop's queue of work from other goroutines is over
// Options.MaxAsyncBytes) or ErrStopped; done is then not called.
func (w *WebSocket) WritePreparedAsync(p *PreparedMessage, done func(error)) error {
	if p == nil {
		return ErrNilPrepared
	}
	return w.l.addDataCallback(asyncCost, func() {
		err := w.WritePrepared(p)
		if done != nil {
			done(err)
		}
	})
}

// ErrNilPrepared is returned by WebSocket.WritePrepared and
// EventStream.WritePrepared (and their Async forms) for a nil prepared
// message or event.
var ErrNilPrepared = errors.New("loop: nil prepared message or event")

// PreparedMessage is a server frame encoded once for many connections.
// Its compressed variants (one per compression level in use) are encoded
// lazily, once, by the first WritePrepared to a connection that negotiated
// permessage-deflate. It is immutable once made: connections on several
// loops and goroutines may share it.
type PreparedMessage struct {
	frame []byte
	mu    sync.Mutex // guards zframes: routes on several loops may share p
	// zframes holds the compressed frames, indexed by level+2.
	zframes [][]byte
}

// Goroutine-safe.
// PrepareMessage encodes a message of type typ (Text or Binary) once, for
// WritePrepared. data is copied.
func PrepareMessage(typ MessageType, data []byte) (*PreparedMessage, error) {
	if typ != Text && typ != Binary {
		return nil, fmt.Errorf("loop: prepare message: message type %d is neither Text nor Binary", typ)
	}
	return prepareMessage(typ, data), nil
}

// prepareMessage is PrepareMessage for a typ known to be Text or Binary.
func prepareMessage(typ MessageType, data []byte) *PreparedMessage {
	return &PreparedMessage{frame: ws13.AppendFrame(nil, true, ws.OpCode(typ), data)}
}

// Goroutine-safe.
// PrepareJSON encodes v as JSON in a prepared text message, for
// WritePrepared.
func PrepareJSON(v any) (*PreparedMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("loop: prepare JSON: %w", err)
	}
	return prepareMessage(Text, b), nil
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
