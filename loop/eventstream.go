package loop

// Server-Sent Events (the HTML Living Standard's text/event-stream, what a
// browser's EventSource reads) on a streamed response (stream.go).

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// EventStreamOptions configures Request.EventStream. The zero value is the
// sensible default; each field documents its default and cost.
type EventStreamOptions struct {
	// Heartbeat is how long a stream may go without output before the
	// loop sends a comment line (": hb"), which clients ignore: proxies
	// and load balancers cut idle connections (often after 60 s), and a
	// write is how a client that vanished without a FIN is found. It
	// costs one timing-wheel entry per stream (the connection's own), no
	// timer or goroutine; the stream is checked every Heartbeat, so the
	// longest silence is between one and two periods. Default: 15s;
	// negative: none.
	Heartbeat time.Duration
	// Retry, when positive, is sent at the start as the retry field, in
	// whole milliseconds: how long the client's EventSource waits before
	// it reconnects. Default: 0, not sent (browsers wait about 3 s).
	Retry time.Duration
	// MaxUnsentPerConn bounds the output the socket has not taken yet; an
	// event or heartbeat that would pass it ends the stream as a slow
	// consumer's (Metrics().StreamSlowConsumerCloses) and Send returns
	// ErrSlowConsumer, as for a WebSocket under SlowClose: the last chunk
	// goes past the bound and the connection closes once it went out or
	// after a second, so that an EventSource that reads it reconnects at
	// once. A replay (Hub.SubscribeStream) goes at the client's pace
	// within half of it. An event into
	// an empty buffer goes whatever its size while the loop is under
	// Options.MaxUnsentTotal. Memory: up to this many bytes per stream
	// whose client does not read. Default: 1 MiB (WSOptions' default).
	MaxUnsentPerConn int
}

func (o EventStreamOptions) withDefaults() EventStreamOptions {
	if o.Heartbeat == 0 {
		o.Heartbeat = 15 * time.Second
	}
	if o.MaxUnsentPerConn <= 0 {
		o.MaxUnsentPerConn = 1 << 20
	}
	return o
}

// EventStream is a text/event-stream response: one event per Send, for
// as long as the client keeps the connection. Its methods are loop-only
// unless their name ends in Async: Send, WritePrepared and Close return
// ErrNotOnLoop from another goroutine and do nothing; SendAsync,
// WritePreparedAsync and CloseAsync are their goroutine-safe doors. It
// ends by Close, by the client leaving, as a slow consumer, or by
// Loop.Stop (which closes it cleanly, so the client reconnects at once);
// Closed reports it, and every Hub of the loop drops it from its topics
// once the handler or callback that ended it has returned.
type EventStream struct {
	r        *Request
	hb       time.Duration // <= 0: no heartbeats
	active   bool          // output since the last heartbeat check
	closed   bool
	notified bool // ended ran: counted out, observers told
}

// ErrEventField is returned for an event id or name that contains CR or
// LF (it would end the field and inject others), or an id with NUL (which
// clients ignore).
var ErrEventField = errors.New("loop: event id or name contains CR, LF or (id) NUL")

// Loop-only.
// EventStream starts a text/event-stream response. From another goroutine
// it returns ErrNotOnLoop and does nothing. It sets Content-Type,
// Cache-Control: no-cache and X-Accel-Buffering: no (nginx would buffer the
// stream otherwise), and flushes the headers (and the retry field) at once.
// Set other headers and the status before. The request is then
// asynchronous: returning from the handler does not end the stream.
//
// A HEAD request gets the headers and a stream that is already closed. A
// request that arrives while the loop stops gets a stream closed at once
// (cleanly: the client reconnects elsewhere).
func (r *Request) EventStream(o EventStreamOptions) (*EventStream, error) {
	switch {
	case !r.c.l.InLoop():
		return nil, ErrNotOnLoop
	case r.finished:
		return nil, fmt.Errorf("loop: event stream: %w", ErrFinished)
	case r.streaming:
		return nil, errors.New("loop: event stream: the response was already flushed")
	case r.gone:
		return nil, fmt.Errorf("loop: event stream: %w", ErrStreamClosed)
	}
	o = o.withDefaults()
	r.SetHeader("Content-Type", "text/event-stream")
	r.SetHeader("Cache-Control", "no-cache")
	r.SetHeader("X-Accel-Buffering", "no")
	r.streamMax = o.MaxUnsentPerConn
	es := &EventStream{r: r, hb: o.Heartbeat}
	r.es = es
	bump(&r.c.l.st.openEventStreams, 1)
	if o.Retry > 0 {
		r.out = append(r.out, "retry: "...)
		r.out = strconv.AppendInt(r.out, o.Retry.Milliseconds(), 10)
		r.out = append(r.out, "\n\n"...)
	}
	if err := r.Flush(); err != nil {
		es.closed = true
		return nil, fmt.Errorf("loop: event stream: %w", err)
	}
	c := r.c
	if !es.closed && c.l.state.Load() != stateRunning {
		es.Close()
	}
	if !es.closed && es.hb > 0 {
		c.l.wheel.set(c, es.hb)
	}
	return es, nil
}

// Loop-only.
// Send sends one event. From another goroutine it returns ErrNotOnLoop and
// sends nothing (use SendAsync). id (when not "") sets the client's last
// event ID, event (when not "") the event type (default "message"); data is
// split into one data line per line (on LF, CRLF or CR, as the client
// splits them), so the client's event.data is data with its line breaks as
// LF. It returns ErrEventField for an invalid id or event, ErrStreamClosed
// after the stream ended, ErrSlowConsumer when it ended it. data is copied
// (or written) by the time Send returns.
func (es *EventStream) Send(id, event string, data []byte) error {
	if err := checkEventFields(id, event); err != nil {
		return err
	}
	if !es.r.c.l.InLoop() {
		return ErrNotOnLoop
	}
	if err := es.writable(); err != nil {
		return err
	}
	l := es.r.c.l
	var out []byte
	var n int
	l.scratch, out, n = appendEventFramed(l.scratch[:0], es.r.chunked, id, event, data)
	err := es.write(out, n)
	l.trimScratch()
	return err
}

// Loop-only.
// WritePrepared sends an event encoded once by PrepareEvent, so that a
// broadcast writes the same bytes to every stream. Errors as Send's, and
// ErrNilPrepared for a nil p.
func (es *EventStream) WritePrepared(p *PreparedEvent) error {
	if p == nil {
		return ErrNilPrepared
	}
	if !es.r.c.l.InLoop() {
		return ErrNotOnLoop
	}
	if err := es.writable(); err != nil {
		return err
	}
	if es.r.chunked {
		return es.write(p.chunk, len(p.body))
	}
	return es.write(p.body, len(p.body))
}

// Goroutine-safe.
// SendAsync sends one event as Send would. Data is copied, the write runs
// on the loop, and done (if not nil) is called there with Send's result. It
// returns at once, without queueing anything, ErrEventField, ErrLoopBacklog
// (the loop's queue of data from other goroutines is over
// Options.MaxAsyncBytes) or ErrStopped; done is then not called.
func (es *EventStream) SendAsync(id, event string, data []byte, done func(error)) error {
	if err := checkEventFields(id, event); err != nil {
		return err
	}
	cp := append([]byte(nil), data...)
	return es.r.c.l.addDataCallback(len(cp)+len(id)+len(event), func() {
		err := es.Send(id, event, cp)
		if done != nil {
			done(err)
		}
	})
}

// Goroutine-safe.
// WritePreparedAsync sends p as WritePrepared would. The write runs on the
// loop and done (if not nil) is called there with its result. It returns at
// once, without queueing anything, ErrNilPrepared, ErrLoopBacklog or
// ErrStopped; done is then not called.
func (es *EventStream) WritePreparedAsync(p *PreparedEvent, done func(error)) error {
	if p == nil {
		return ErrNilPrepared
	}
	return es.r.c.l.addDataCallback(asyncCost, func() {
		err := es.WritePrepared(p)
		if done != nil {
			done(err)
		}
	})
}

// writable reports whether the stream takes output, sending first what
// was written to the request with Write.
func (es *EventStream) writable() error {
	r := es.r
	if es.closed || r.finished || r.gone || r.c.cf.has(cfClosing) || r.c.cf.has(cfDead) {
		return ErrStreamClosed
	}
	if len(r.out) > 0 {
		return r.Flush()
	}
	return nil
}

func (es *EventStream) write(b []byte, n int) error {
	if err := es.r.writeFramed(b, n); err != nil {
		return err
	}
	es.active = true
	return nil
}

// heartbeatChunk is a comment line as one chunk; heartbeatRaw without the
// chunk framing (HTTP/1.0).
var (
	heartbeatChunk = []byte("6\r\n: hb\n\n\r\n")
	heartbeatRaw   = heartbeatChunk[3:9]
)

// appendEventComment appends a comment line (text must hold no line
// break), as one chunk when chunked.
func appendEventComment(dst []byte, chunked bool, text string) []byte {
	n := len(": ") + len(text) + len("\n\n")
	if chunked {
		dst = appendChunkSize(dst, n)
	}
	dst = append(dst, ": "...)
	dst = append(dst, text...)
	dst = append(dst, "\n\n"...)
	if chunked {
		dst = append(dst, "\r\n"...)
	}
	return dst
}

// heartbeat runs at the stream's wheel deadline (httpConn.deadline): a
// comment unless something went out since the last one. Loop-only.
func (es *EventStream) heartbeat() {
	if es.closed || es.hb <= 0 {
		return
	}
	if !es.active {
		b := heartbeatRaw
		if es.r.chunked {
			b = heartbeatChunk
		}
		if err := es.write(b, len(heartbeatRaw)); err != nil {
			return
		}
	}
	es.active = false
	es.r.c.l.wheel.set(es.r.c, es.hb)
}

// Loop-only.
// Close ends the stream cleanly: the last chunk goes out (for HTTP/1.0 the
// connection closes), and a keep-alive connection serves its next request.
// From another goroutine it returns ErrNotOnLoop and does nothing (use
// CloseAsync). Closing a closed stream does nothing and returns nil.
func (es *EventStream) Close() error {
	if !es.r.c.l.InLoop() {
		return ErrNotOnLoop
	}
	if es.closed {
		return nil
	}
	es.r.Finish() // ends the stream (ended) whatever it returns
	es.ended()
	return nil
}

// Goroutine-safe.
// CloseAsync ends the stream as Close would. It runs on the loop and done
// (if not nil) is called there with Close's result. It returns at once
// ErrLoopBacklog or ErrStopped when nothing was queued; done is then not
// called.
func (es *EventStream) CloseAsync(done func(error)) error {
	return es.r.c.l.addDataCallback(asyncCost, func() {
		err := es.Close()
		if done != nil {
			done(err)
		}
	})
}

// Loop-only.
// Closed reports whether the stream ended (Close, the client gone, a slow
// consumer, Stop).
func (es *EventStream) Closed() bool { return es.closed }

// Loop-only.
// Request returns the stream's request: its path, arguments and headers
// stay readable for the stream's life and after.
func (es *EventStream) Request() *Request { return es.r }

// Loop-only.
// LastEventID is the ID the client resumes from: the Last-Event-ID
// header, which EventSource sends when it reconnects, else the
// lastEventId query argument (EventSource polyfills use it, and so can a
// first connection that resumes from an ID it stored). "" when neither is
// present.
func (es *EventStream) LastEventID() string {
	if v := es.r.Header("Last-Event-ID"); v != "" {
		return v
	}
	return es.r.GetArgument("lastEventId", "")
}

// ended records the stream's end once: counted out of the open streams,
// and the loop's observers told (after the running handler or callback
// returned, so an observer never runs inside the caller's iteration over
// its streams). Loop-only.
func (es *EventStream) ended() {
	es.closed = true
	if es.notified {
		return
	}
	es.notified = true
	l := es.r.c.l
	bump(&l.st.openEventStreams, -1)
	if len(l.esCloseObservers) == 0 {
		return
	}
	fn := func() { l.notifyEventStreamClosed(es) }
	if l.busy > 0 {
		l.deferredCloses = append(l.deferredCloses, fn)
		return
	}
	l.safeCall(fn)
}

// PreparedEvent is an event encoded once for many streams (a broadcast).
// It is immutable: streams on several loops and goroutines may share it.
type PreparedEvent struct {
	chunk []byte // the event as one chunk (HTTP/1.1 streams)
	body  []byte // the event alone, inside chunk (HTTP/1.0 streams)
}

// Goroutine-safe.
// PrepareEvent encodes an event as Send would, once, for WritePrepared. It
// returns ErrEventField when id or event is invalid. data is copied.
func PrepareEvent(id, event string, data []byte) (*PreparedEvent, error) {
	if err := checkEventFields(id, event); err != nil {
		return nil, err
	}
	return prepareEvent(id, event, data), nil
}

// prepareEvent is PrepareEvent for id and event known to be valid.
func prepareEvent(id, event string, data []byte) *PreparedEvent {
	_, out, n := appendEventFramed(nil, true, id, event, data)
	return &PreparedEvent{chunk: out, body: out[len(out)-2-n : len(out)-2]}
}

func checkEventFields(id, event string) error {
	if strings.ContainsAny(id, "\r\n\x00") || strings.ContainsAny(event, "\r\n") {
		return ErrEventField
	}
	return nil
}

// appendEventFramed appends an event, as one chunk when chunked, and
// returns the buffer, the bytes to write (a suffix of it: the chunk's
// size line is placed in front of the event once its length is known) and
// the event's length in them.
func appendEventFramed(dst []byte, chunked bool, id, event string, data []byte) (buf, out []byte, n int) {
	start := len(dst)
	if !chunked {
		dst = appendEvent(dst, id, event, data)
		return dst, dst[start:], len(dst) - start
	}
	const room = 10 // 8 hex digits and CRLF
	dst = append(dst, "0000000000"...)
	body := len(dst)
	dst = appendEvent(dst, id, event, data)
	n = len(dst) - body
	var tmp [room]byte
	size := appendChunkSize(tmp[:0], n)
	off := body - len(size)
	copy(dst[off:], size)
	dst = append(dst, "\r\n"...)
	return dst, dst[off:], n
}

// appendEvent appends one event in the text/event-stream format.
func appendEvent(dst []byte, id, event string, data []byte) []byte {
	if id != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
		dst = append(dst, '\n')
	}
	if event != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, event...)
		dst = append(dst, '\n')
	}
	// At least one data line: an event without one is not dispatched.
	for {
		dst = append(dst, "data: "...)
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			dst = append(dst, data...)
			dst = append(dst, '\n')
			break
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(dst, '\n')
}
