package loop

import (
	"errors"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/tornago/tornago/proto/http1"
)

// httpConn serves HTTP/1.1 on one connection: parse a head in place in gnet's
// buffer, collect the body, run the handler, write the response, repeat.
// Pipelined requests wait in gnet's buffer while a request is in flight, so
// responses always go out in request order.
type httpConn struct {
	app     *Application
	parser  http1.Parser
	head    http1.Head
	req     *Request // in flight, or collecting its body
	chunk   http1.ChunkedDecoder
	waiting bool // a deadline for the current head/body is set
	sent100 bool
	// held is the input counted in the loop's held total (Loop.held):
	// what was buffered behind the request in flight at the last look.
	held int
	// upgradeReq is the request that upgraded the connection, recycled
	// once the upgrade has returned to traffic.
	upgradeReq *Request
}

func (h *httpConn) traffic(c *conn) {
	for served := 0; !c.cf.has(cfClosing) && !c.cf.has(cfDead); {
		if c.kind != kindHTTP { // upgraded: the rest of the buffer is frames
			h.setHeld(c.l, 0)
			h.app.releaseHTTPConn(h)
			c.dispatchTraffic()
			return
		}
		if h.req == nil && c.gc.InboundBuffered() > 0 {
			if c.gc.OutboundBuffered() > h.app.opts.MaxUnsentPerConn {
				// The client does not read its responses: stop serving
				// its pipelined requests until they went out
				// (watch.go resumes), so its output stays bounded.
				c.cf.set(cfPaused, true)
				c.l.watch(c)
				return
			}
			if served >= turnRequests {
				c.l.resumeNextTurn(c) // bounded work per turn; the rest next turn
				return
			}
		}
		if h.req != nil && h.req.dispatched {
			// A request is in flight (a long poll, a stream): the rest
			// waits in gnet's buffer, but only a little of it, for a
			// stream may last for hours.
			h.hold(c)
			return
		}
		if r := h.req; r != nil && !r.head.Chunked && (!r.head.Expect100 || h.sent100) &&
			int64(c.gc.InboundBuffered()) < r.head.ContentLength {
			// Waiting for the rest of a body: peeking now would join gnet's
			// buffer again on every read, quadratic for large bodies.
			h.wait(c)
			return
		}
		buf, _ := c.gc.Peek(-1)
		if h.req == nil {
			if len(buf) == 0 {
				return
			}
			n, err := h.parser.Parse(buf, h.app.opts.Limits, &h.head)
			if errors.Is(err, http1.ErrIncomplete) {
				if !h.waiting {
					h.waiting = true
					c.l.wheel.set(c, h.app.opts.HeaderTimeout)
				}
				return
			}
			if err != nil {
				status := 400
				// Declared here: errors.As moves its target to the heap,
				// which must not cost a request that parsed.
				var perr *http1.Error
				if errors.As(err, &perr) {
					status = perr.Status
				}
				h.reject(c, status)
				return
			}
			if !h.startRequest(c, buf[:n]) {
				return
			}
			c.gc.Discard(n)
			served++
			continue
		}
		if !h.readBody(c, buf) {
			return
		}
	}
}

// startRequest copies the head (so an asynchronous handler may keep it past
// gnet's buffer) and prepares the body phase.
func (h *httpConn) startRequest(c *conn, raw []byte) bool {
	r := h.app.newRequest()
	r.c, r.hc, r.status = c, h, 200
	if h.app.opts.AccessLog != nil {
		r.start = c.l.now()
	}
	r.raw = append(r.raw, raw...)
	var p http1.Parser
	if _, err := p.Parse(r.raw, h.app.opts.Limits, &r.head); err != nil {
		h.reject(c, 400)
		return false
	}
	hd := &r.head
	r.Method = string(hd.Method)
	r.Path = unescapePath(hd.Path)
	r.RawQuery = string(hd.Query)
	r.Proto = "HTTP/1.1"
	if hd.Minor == 0 {
		r.Proto = "HTTP/1.0"
	}
	r.keep = hd.KeepAlive && c.l.state.Load() == stateRunning
	r.headOnly = r.Method == "HEAD"
	if hd.ContentLength > h.app.opts.Limits.MaxBodyBytes {
		h.reject(c, 413)
		return false
	}
	h.req = r
	h.sent100 = false
	h.chunk.Reset()
	return true
}

// continue100 is the interim response to Expect: 100-continue.
var continue100 = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// readBody collects the body; it returns true when the request was
// dispatched and the loop may look for the next one.
func (h *httpConn) readBody(c *conn, buf []byte) bool {
	r := h.req
	hd := &r.head
	needBody := hd.Chunked || hd.ContentLength > 0
	if needBody && hd.Expect100 && !h.sent100 && (hd.Chunked && len(buf) == 0 || int64(len(buf)) < hd.ContentLength) {
		h.sent100 = true
		// Through conn.write: what the socket does not take is counted
		// in the unsent total and watched like any response.
		c.write(continue100)
	}
	switch {
	case hd.Chunked:
		n, out, done, err := h.chunk.Decode(buf, r.Body, h.app.opts.Limits.MaxBodyBytes)
		r.Body = out
		c.gc.Discard(n)
		if err != nil {
			st := 400
			var perr *http1.Error
			if errors.As(err, &perr) {
				st = perr.Status
			}
			h.req = nil
			h.reject(c, st)
			return false
		}
		if !done {
			h.wait(c)
			return false
		}
	case hd.ContentLength > 0:
		if int64(len(buf)) < hd.ContentLength {
			h.wait(c)
			return false
		}
		r.Body = append([]byte(nil), buf[:hd.ContentLength]...)
		c.gc.Discard(int(hd.ContentLength))
	}
	h.dispatch(c, r)
	return true
}

func (h *httpConn) wait(c *conn) {
	if !h.waiting {
		h.waiting = true
		c.l.wheel.set(c, h.app.opts.HeaderTimeout)
	}
}

// dispatch routes r and runs its handler, recovering a panic into a 500.
func (h *httpConn) dispatch(c *conn, r *Request) {
	h.waiting = false
	r.dispatched = true
	c.l.wheel.clear(c)
	handler, args := h.app.match(r.Path)
	r.PathArgs = args
	func() {
		defer func() {
			if p := recover(); p != nil {
				c.l.log.Error("loop: panic in handler", "method", r.Method, "path", r.Path, "panic", p, "stack", string(debug.Stack()))
				if !r.finished {
					r.keep = false
					r.async = false
					r.SendError(500)
				}
			}
		}()
		if handler == nil {
			r.SendError(404)
			return
		}
		handler.Serve(r)
	}()
	if !r.finished && !r.async {
		r.Finish()
	} else if !r.finished {
		c.l.st.asyncPending(r)
	}
}

// finish writes r's response and moves on to the next pipelined request.
func (h *httpConn) finish(c *conn, r *Request) {
	if c.cf.has(cfDead) || c.cf.has(cfClosing) {
		return
	}
	// gnet's Write copies what the socket does not take at once, so the
	// loop's scratch buffer serves every response.
	l := c.l
	n := len(r.out)
	if r.headOnly {
		n = 0
	}
	if r.streaming {
		l.scratch = r.appendTail(l.scratch[:0])
		n = r.bodySent
	} else {
		l.scratch = r.appendResponse(l.scratch[:0], h.app.opts.ServerHeader)
	}
	if len(l.scratch) > 0 { // empty for a HEAD request after Flush
		c.write(l.scratch)
	}
	l.trimScratch()
	if h.app.opts.AccessLog != nil {
		l.safeCall(func() { h.accessLog(r, r.status, n) })
	}
	if h.req == r {
		h.req = nil
		h.setHeld(l, 0) // what was held is served next
	}
	if !r.keep {
		// Lingering: the client may have pipelined more requests, and
		// closing with unread input makes the kernel send a reset that
		// can destroy the response in flight.
		c.closeLinger()
		return
	}
	if r.async {
		// Finished from a callback: requests that arrived meanwhile are
		// buffered and gnet will not call OnTraffic again for them.
		if c.gc.InboundBuffered() > 0 {
			c.gc.Wake(nil)
		}
	}
	if c.gc.InboundBuffered() == 0 {
		c.l.wheel.set(c, h.app.opts.IdleTimeout)
	}
}

// reject answers a malformed or oversized request and closes.
func (h *httpConn) reject(c *conn, status int) { h.rejectWhy(c, status, "") }

// rejectWhy is reject with a reason after the status text.
func (h *httpConn) rejectWhy(c *conn, status int, why string) {
	r := &Request{c: c, hc: h, status: status}
	r.SetHeader("Content-Type", "text/plain; charset=UTF-8")
	r.out = append(r.out, http1.StatusText(status)...)
	if why != "" {
		r.out = append(r.out, ": "...)
		r.out = append(r.out, why...)
	}
	r.out = append(r.out, '\n')
	c.write(r.appendResponse(nil, h.app.opts.ServerHeader))
	// The client may still be sending (a 431 for a huge header, a 413):
	// linger so that it reads the answer instead of a reset.
	c.closeLinger()
}

func (h *httpConn) deadline(c *conn) {
	if h.req != nil && !h.waiting {
		if es := h.req.es; es != nil {
			es.heartbeat() // the stream's deadline is its heartbeat
		}
		return // a handler holds the request (long poll): its own timers rule
	}
	if h.waiting || c.gc.InboundBuffered() > 0 {
		h.reject(c, 408)
		return
	}
	c.close() // idle keep-alive connection
}

func (h *httpConn) closed(c *conn, err error) {
	h.setHeld(c.l, 0)
	if r := h.req; r != nil && !r.finished {
		r.gone = true
		c.l.st.asyncDone(r)
		if r.onGone != nil {
			fn := r.onGone
			r.onGone = nil
			c.l.safeCall(fn)
		}
		if r.es != nil {
			r.es.ended()
		}
	}
	if h.req == nil || h.req.finished {
		h.req = nil
		h.app.releaseHTTPConn(h)
	}
	h.req = nil
}

// hold bounds the input buffered behind the request in flight: up to
// AppOptions.MaxHeldInputPerConn per connection, and counted in the loop's
// total (Options.MaxHeldInputTotal). gnet reads the socket whatever the
// handler does and keeps what OnTraffic leaves in the connection's inbound
// ring buffer, which grows to what the client sent and goes back to gnet's
// pool only when emptied: bounded only by one maximal request, 1,000
// clients pipelining 256 KiB behind an event stream each took the server
// from 17 to 271 MB of RSS, kept for as long as their streams lasted (and
// after, until a collection ran). Past the bound the input is discarded here, before gnet copies
// it, and the connection is answered and closed. Loop-only.
func (h *httpConn) hold(c *conn) {
	n := c.gc.InboundBuffered()
	l := c.l
	if n > h.held && (n > h.app.opts.MaxHeldInputPerConn || l.held+int64(n-h.held) > l.opts.MaxHeldInputTotal) {
		h.overHeld(c, n)
		return
	}
	h.setHeld(l, n)
}

// setHeld records that h holds n bytes behind its request in flight.
func (h *httpConn) setHeld(l *Loop, n int) {
	if n == h.held {
		return
	}
	l.held += int64(n - h.held)
	h.held = n
	l.heldPub.Store(l.held)
}

// overHeld closes a connection whose input behind its request in flight
// passed its bound or the loop's, telling the client why in the way the
// request's state allows. The input is dropped at once: gnet would copy
// what OnTraffic leaves into the connection's ring buffer. Loop-only.
func (h *httpConn) overHeld(c *conn, n int) {
	l, r := c.l, h.req
	c.gc.Discard(-1)
	h.setHeld(l, 0)
	l.heldCloses.Add(1)
	why := "more than " + strconv.Itoa(h.app.opts.MaxHeldInputPerConn) + " bytes sent behind a request in flight"
	if n <= h.app.opts.MaxHeldInputPerConn {
		why = "the server's input budget for requests in flight is spent"
	}
	l.log.Debug("loop: closing a connection that sends too much behind a request in flight", "path", r.Path, "buffered", n, "reason", why)
	switch {
	case r.es != nil:
		// A comment (clients ignore it, a person reading the stream
		// sees it), then the stream's clean end, and the close.
		r.keep = false
		l.scratch = appendEventComment(l.scratch[:0], r.chunked, "closing: "+why)
		err := r.writeFramed(l.scratch, 0)
		l.trimScratch()
		if err == nil {
			r.es.Close()
		}
	case r.streaming:
		// Cut, as SendError does: a clean end would pass a truncated
		// body for a whole one.
		r.abortStream(false)
	default:
		// A parked request (long poll): the 400 is its answer, the first
		// response on the wire. Its handler learns it at the close
		// (OnConnectionClose); a later Finish does nothing.
		h.rejectWhy(c, 400, why)
	}
}

// turnRequests bounds the pipelined requests one connection is served per
// turn of the loop.
const turnRequests = 32

// shutdownGrace is how long Stop lets an asynchronous request (a long poll)
// finish by itself before answering it with 503.
const shutdownGrace = time.Second

func (h *httpConn) shutdown(c *conn) {
	r := h.req
	if r == nil {
		c.close()
		return
	}
	r.keep = false
	if r.es != nil && !r.finished {
		// An event stream has no end of its own: end it now, cleanly,
		// so that its client reconnects (elsewhere) at once.
		r.es.Close()
		return
	}
	if r.dispatched && r.async && !r.finished {
		// A streamed body past its grace is cut (SendError after Flush):
		// the client must not take a truncated download for a whole one.
		c.l.CallLater(shutdownGrace, func() {
			if h.req == r && !r.finished && !c.cf.has(cfDead) {
				r.async = false
				r.SetHeader("Retry-After", "1")
				r.SendError(503)
			}
		})
	}
}
