package loop

// Streamed responses: Request.Flush sends the head and then the body in
// pieces as the handler produces it (chunked for HTTP/1.1, until close
// for HTTP/1.0). The unsent output is bounded like a WebSocket's: past
// the bound the stream is a slow consumer's and the connection is closed,
// so a client that stops reading never holds more than the bound.

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrStreamClosed is returned by a write to a streamed response (Flush,
// EventStream.Send) whose connection is closed or closing, or whose
// stream was ended.
var ErrStreamClosed = errors.New("loop: stream closed")

// ErrSlowConsumer is returned by the write that found a stream's unsent
// output over its bound: the connection is closed at once. It wraps
// ErrStreamClosed.
var ErrSlowConsumer = fmt.Errorf("%w: slow consumer, unsent output over its bound", ErrStreamClosed)

// Loop-only. Flush sends what Write appended since the last Flush. The first
// Flush sends the status line and headers first and starts a streamed body:
// chunked for an HTTP/1.1 client (one chunk per Flush), or delimited by the
// connection's close for HTTP/1.0 (with Connection: close). After it the
// status and headers can no longer change, and the request is asynchronous
// (as after Async): Finish sends the rest and the last chunk, after which a
// keep-alive connection serves its next request.
//
// A HEAD request (or a 204/304 status) gets the headers and is finished by
// the first Flush; later Writes and Flushes return ErrFinished.
//
// The output the socket has not taken is bounded by
// AppOptions.MaxUnsentPerConn (EventStreamOptions.MaxUnsentPerConn for an
// event stream) and by the loop's Options.MaxUnsentTotal: a Flush that
// would pass them closes the connection (counted in
// Metrics().StreamSlowConsumerCloses) and returns ErrSlowConsumer. Flush never
// waits. Write's bytes are copied by the time Flush returns.
func (r *Request) Flush() error {
	if !r.c.l.InLoop() {
		return ErrNotOnLoop
	}
	if r.finished {
		return ErrFinished
	}
	c := r.c
	if r.gone || c.cf.has(cfDead) || c.cf.has(cfClosing) {
		return ErrStreamClosed
	}
	if !r.streaming {
		return r.startStream()
	}
	if len(r.out) == 0 {
		return nil
	}
	return r.sendOut()
}

// bodylessStatus reports statuses whose responses have no body.
func bodylessStatus(code int) bool { return code == 204 || code == 304 || code < 200 }

// startStream sends the head (and what was written so far).
func (r *Request) startStream() error {
	c := r.c
	r.streaming = true
	r.chunked = r.head.Minor > 0
	if !r.chunked {
		r.keep = false // the body ends with the connection
	}
	bodyless := bodylessStatus(r.status)
	l := c.l
	l.scratch = r.appendHead(l.scratch[:0], r.hc.app.opts.ServerHeader, bodyless, true)
	err := c.write(l.scratch)
	if err != nil {
		return fmt.Errorf("loop: flush: %w", err)
	}
	if r.headOnly || bodyless {
		r.out = r.out[:0]
		return r.Finish()
	}
	r.async = true // the body goes on after the handler returned
	if len(r.out) == 0 {
		return nil
	}
	return r.sendOut()
}

// sendOut sends r.out as one piece of the body and empties it.
func (r *Request) sendOut() error {
	err := r.sendBody(r.out)
	r.out = r.out[:0]
	if cap(r.out) > 64<<10 {
		r.out = nil // one large piece must not keep its buffer for the stream's life
	}
	return err
}

// chunkOverhead is the framing a chunk adds: up to 8 hex digits (a piece
// is at most 4 GiB here) and two CRLFs.
const chunkOverhead = 12

// sendBody sends b as one chunk (or raw, for HTTP/1.0) under the stream's
// bound. Loop-only; b is copied or written by the time it returns.
func (r *Request) sendBody(b []byte) error {
	if err := r.admit(len(b) + chunkOverhead); err != nil {
		return err
	}
	c, l := r.c, r.c.l
	var err error
	switch {
	case !r.chunked:
		err = c.write(b)
	case len(b) <= 16<<10:
		l.scratch = appendChunk(l.scratch[:0], b)
		err = c.write(l.scratch)
	default:
		// Not copied into the scratch buffer: gnet copies only what the
		// socket does not take.
		l.scratch = appendChunkSize(l.scratch[:0], len(b))
		l.iov[0], l.iov[1] = l.scratch, b
		err = c.writev(l.iov[:])
		l.iov[0], l.iov[1] = nil, nil
		if err == nil {
			err = c.write(crlf)
		}
	}
	l.trimScratch()
	if err != nil {
		return fmt.Errorf("loop: stream write: %w", err)
	}
	r.bodySent += len(b)
	return nil
}

var crlf = []byte("\r\n")

// writeFramed writes bytes already framed for this stream (a prepared
// event's chunk) under the stream's bound; n is the body bytes in them.
func (r *Request) writeFramed(b []byte, n int) error {
	if err := r.admit(len(b)); err != nil {
		return err
	}
	if err := r.c.write(b); err != nil {
		return fmt.Errorf("loop: stream write: %w", err)
	}
	r.bodySent += n
	return nil
}

// streamLimit is the stream's bound on unsent output.
func (r *Request) streamLimit() int {
	if r.streamMax > 0 {
		return r.streamMax
	}
	return r.hc.app.opts.MaxUnsentPerConn
}

// admit applies the slow-consumer rule (Loop.overBound) to a write of n
// bytes: nil lets it through, otherwise the connection is closed at once.
// Loop-only.
func (r *Request) admit(n int) error {
	c := r.c
	if !c.l.overBound(c.gc.OutboundBuffered(), n, r.streamLimit()) {
		return nil
	}
	r.abortStream(true)
	return ErrSlowConsumer
}

// overBound is the slow-consumer rule shared by WebSockets and streamed
// responses: whether a write of n bytes to a connection with b bytes
// unsent would take its unsent output over limit, or spend the loop's
// budget (Options.MaxUnsentTotal). Its caller applies its own policy
// (refuse, skip, close). Small enough to be inlined: the write path pays
// no call for it. Loop-only.
func (l *Loop) overBound(b, n, limit int) bool {
	// Past the loop's budget only a small write into an empty buffer
	// (which the socket most likely takes whole) goes on.
	return b > 0 && b+n > limit || (b > 0 || n > limit) && l.unsentOver(n)
}

// abortStream closes a streamed response's connection at once, dropping
// what is unsent: a slow consumer's (its memory is the point), or a
// stream cut by SendError. The client sees no last chunk (or, for
// HTTP/1.0, a body shorter than it would have been). A slow event stream
// ends cleanly instead (endSlowEventStream) while the loop is within
// Options.MaxUnsentTotal. The request's end is
// reported by the connection's close (httpConn.closed). Loop-only.
func (r *Request) abortStream(slow bool) {
	c := r.c
	r.keep = false
	if r.es != nil {
		r.es.closed = true // Closed at once; the observers run on the close
	}
	if c.cf.has(cfDead) || c.cf.has(cfClosing) {
		return
	}
	if slow {
		c.l.streamSlow.Add(1)
		c.l.log.Debug("loop: closing a slow stream consumer", "path", r.Path, "unsent", c.gc.OutboundBuffered())
		if r.es != nil && c.l.slowGrace() {
			r.endSlowEventStream()
			return
		}
	}
	c.cf.set(cfClosing, true)
	c.l.wheel.clear(c)
	c.gc.Close()
}

// endSlowEventStream ends a slow consumer's event stream cleanly: the last
// chunk goes past the bound (5 bytes), and the connection closes once its
// output drained or after slowCloseFlush, dropping what the client did not
// read by then (closeSlow). An EventSource that reads the end
// reconnects at once with its Last-Event-ID and resumes where it was (a
// stream cut short would be an error to other clients). Loop-only.
func (r *Request) endSlowEventStream() {
	c := r.c
	if r.chunked {
		c.write(lastChunk)
	}
	c.closeSlow(false)
}

var lastChunk = []byte("0\r\n\r\n")

// appendTail appends what Finish sends after a Flush: the rest of the
// body and the last chunk.
func (r *Request) appendTail(dst []byte) []byte {
	if r.headOnly || bodylessStatus(r.status) {
		return dst
	}
	if len(r.out) > 0 {
		r.bodySent += len(r.out)
		if r.chunked {
			dst = appendChunk(dst, r.out)
		} else {
			dst = append(dst, r.out...)
		}
	}
	if r.chunked {
		dst = append(dst, "0\r\n\r\n"...)
	}
	return dst
}

// appendChunkSize appends a chunk's size line.
func appendChunkSize(dst []byte, n int) []byte {
	dst = strconv.AppendUint(dst, uint64(n), 16)
	return append(dst, "\r\n"...)
}

// appendChunk appends b as one chunk (RFC 9112 7.1).
func appendChunk(dst, b []byte) []byte {
	dst = appendChunkSize(dst, len(b))
	dst = append(dst, b...)
	return append(dst, "\r\n"...)
}
