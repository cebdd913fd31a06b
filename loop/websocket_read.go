package loop

// The read path of a WebSocket: frames parsed in place in gnet's input
// buffer, bounds on what a message in flight may hold, and the handler's
// OnMessage, OnPing and OnPong.

import (
	"math"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/proto/ws13"
)

func (w *WebSocket) traffic() {
	c := w.conn()
	budget := turnBytes
	if lim := w.route().opts.MaxMessageSize + 1<<20; int64(c.gc.InboundBuffered()) > lim {
		// gnet reads whatever arrives: input waiting behind a message
		// being inflated or behind the per-turn budget is bounded here.
		w.fail(ClosePolicy, "sending faster than the server reads")
		c.gc.Discard(-1)
		return
	}
	for !c.cf.has(cfClosing) && !c.cf.has(cfDead) && w.state != wsClosed {
		if c.cf.has(cfInflating) {
			return // the frames wait behind the message (stepInflates)
		}
		if w.need > 0 && c.gc.InboundBuffered() < int(w.need) {
			if r := w.rare; r != nil && r.checked > 0 && w.recheck(c.gc.InboundBuffered()) {
				buf, _ := c.gc.Peek(-1)
				w.checkPartial(buf)
			}
			return
		}
		buf := w.peekFrame()
		if len(buf) == 0 {
			return
		}
		ev, n, err := w.dec.Next(buf, w.route().lim)
		if err != nil {
			w.failErr(err)
			c.gc.Discard(-1)
			return
		}
		if n == 0 {
			// Wait for the whole frame before parsing it again: peeking
			// a partial frame on every read copies it each time (gnet
			// joins its ring buffer and the fresh read), which is
			// quadratic in the frame's size.
			if fl, ok := ws13.FrameLen(buf); ok && fl > int64(len(buf)) {
				if !w.reserve(fl) {
					c.gc.Discard(-1)
					return
				}
				w.checkPartial(buf)
			}
			w.startMessage()
			return
		}
		w.reserve(0)
		if w.rare != nil {
			w.rare.checked = 0
		}
		budget -= n
		w.handle(&ev)
		c.gc.Discard(n)
		if w.dec.Fragmented() {
			w.startMessage()
		}
		if c.cf.has(cfInflating) {
			return // a large compressed message goes on next turn
		}
		if budget <= 0 && c.gc.InboundBuffered() > 0 && !c.cf.has(cfClosing) {
			// Bounded work per turn: the rest is served after the loop
			// polled its other sockets.
			c.l.resumeNextTurn(c)
			return
		}
	}
	if c.gc.InboundBuffered() > 0 {
		c.gc.Discard(-1)
	}
}

// peekFrame returns the frame at the head of the input, or all of the
// input when that is less than one frame. Never more: Peek(-1) on a large
// backlog copies all of it when gnet's buffer wraps, once per frame.
func (w *WebSocket) peekFrame() []byte {
	gc := w.gc
	avail := gc.InboundBuffered()
	if avail == 0 {
		return nil
	}
	hdr, _ := gc.Peek(min(avail, ws13.MaxFrameHeader))
	if fl, ok := ws13.FrameLen(hdr); ok && fl <= int64(avail) {
		buf, _ := gc.Peek(int(fl))
		return buf
	}
	buf, _ := gc.Peek(-1)
	return buf
}

// checkPartial checks the UTF-8 of the part of a text frame received so far
// (RFC 6455 8.1: an endpoint fails the connection "as soon as" it finds
// invalid UTF-8), and notes how much it checked: it checks again when the
// frame's buffered part doubled, so the work stays linear in its size.
func (w *WebSocket) checkPartial(buf []byte) {
	if err := w.dec.CheckPartial(buf); err != nil {
		w.failErr(err)
		w.conn().gc.Discard(-1)
		return
	}
	if len(buf) < 2 || (buf[0]&0x0f != byte(ws.OpText) && buf[0]&0x0f != byte(ws.OpContinuation)) {
		return
	}
	if w.rare == nil {
		w.rare = &wsRare{}
	}
	w.rare.checked = max(len(buf), 1)
}

// recheck reports whether a partial text frame with b bytes buffered is
// checked again: on every read while it is small, then each time it
// doubled, which keeps the total work linear in the frame's size.
func (w *WebSocket) recheck(b int) bool {
	checked := w.rare.checked
	return b >= 2*checked || (b < 4096 && b > checked)
}

// turnBytes bounds the input one connection is served per turn of the loop
// (frames handled, or inflated bytes of a compressed message), so that one
// busy client cannot hold back the others.
const turnBytes = 1 << 20

// reserve sets the frame size w waits for (0: none) and accounts for it in
// the loop's Options.MaxPartialTotal; over that it fails the connection
// with 1013 and returns false.
func (w *WebSocket) reserve(fl int64) bool {
	l := w.l
	if fl > 0 && l.partial-int64(w.need)+fl > l.opts.MaxPartialTotal {
		w.fail(CloseTryAgainLater, "server busy: too many large messages in flight")
		w.reserve(0)
		return false
	}
	if fl == 0 && w.need > 0 && (w.cf.has(cfClosing) || w.cf.has(cfDead) || w.state == wsClosed) {
		l.freed(int64(w.need)) // a large frame that never completed
	}
	l.partial += fl - int64(w.need)
	w.need = int32(min(fl, math.MaxInt32))
	return true
}

// startMessage starts the MessageTimeout clock of a message in flight (it
// uses the wheel deadline, so pings wait until the message is in).
func (w *WebSocket) startMessage() {
	c := w.conn()
	if c.cf.has(cfInMessage) || w.state != wsOpen {
		return
	}
	c.cf.set(cfInMessage, true)
	c.l.wheel.set(c, w.route().opts.MessageTimeout)
}

// endMessage stops the message clock and resumes the ping schedule.
func (w *WebSocket) endMessage() {
	c := w.conn()
	if !c.cf.has(cfInMessage) {
		return
	}
	c.cf.set(cfInMessage, false)
	if w.state != wsOpen {
		return
	}
	w.wsf.set(wsAwaitPong, false)
	if p := w.route().opts.PingInterval; p > 0 {
		c.l.wheel.set(c, p)
	} else {
		c.l.wheel.clear(c)
	}
}

// failErr fails the connection for a decoding error.
func (w *WebSocket) failErr(err error) {
	if ce, ok := err.(*ws13.CloseError); ok {
		code := ce.Code
		if tb := w.route().opts.TooBigCode; code == CloseTooBig && tb != 0 {
			code = tb
		}
		w.fail(code, ce.Reason)
		return
	}
	w.fail(CloseProtocolError, err.Error())
}

func (w *WebSocket) handle(ev *ws13.Event) {
	switch ev.Kind {
	case ws13.EventMessage:
		if ev.Compressed {
			w.inflated(ev)
		} else if w.state == wsOpen {
			w.countIn(len(ev.Payload))
			w.guard(func() { w.h.OnMessage(w, MessageType(ev.Op), ev.Payload) })
		}
		w.dec.Release()
		w.endMessage()
	case ws13.EventPing:
		if w.state == wsOpen {
			w.writeControl(ws.OpPong, ev.Payload)
			w.guard(func() { w.h.OnPing(w, ev.Payload) })
		}
	case ws13.EventPong:
		// A pong, and only a pong, answers the ping (the deadline looks
		// at wsSeen); other input does not prove the peer reads.
		w.wsf.set(wsSeen, true)
		if w.state == wsOpen {
			w.guard(func() { w.h.OnPong(w, ev.Payload) })
		}
	case ws13.EventClose:
		bump(&w.l.st.closeRecv[closeIndex(ev.Code)], 1)
		w.code = ev.Code
		w.setReason(string(ev.Reason))
		if !w.wsf.has(wsSentClose) {
			// Echo the peer's code (RFC 6455 5.5.1); none when it sent none.
			code := ev.Code
			if code == CloseNoStatus {
				code = 0
			}
			w.wsf.set(wsSentClose, true)
			w.conn().write(w.appendClose(nil, code, ""))
		}
		w.state = wsClosed
		w.conn().close()
	case ws13.EventNone:
	}
}
