package loop

// A WebSocket's one wheel deadline: the keep-alive ping and its timeout,
// the MessageTimeout of a message in flight, and the CloseTimeout of our
// close frame.

import (
	"github.com/gobwas/ws"
)

func (w *WebSocket) deadline() {
	c := w.conn()
	o := &w.route().opts
	switch {
	case w.state != wsOpen:
		c.close() // the peer never answered our close frame
	case c.cf.has(cfInMessage):
		// MessageTimeout: a message took too long to arrive.
		w.fail(ClosePolicy, "message timeout")
	case w.wsf.has(wsAwaitPong) && !w.wsf.has(wsSeen):
		w.code = CloseAbnormal
		w.setReason("ping timeout")
		w.state = wsClosed
		c.close()
	case w.wsf.has(wsAwaitPong):
		// The peer answered in time: the next ping is due one
		// PingInterval after the last one, not one PingTimeout.
		w.wsf.set(wsAwaitPong, false)
		next := o.PingInterval - o.PingTimeout
		if next <= 0 {
			next = o.PingInterval
		}
		c.l.wheel.set(c, next)
	default:
		w.wsf.set(wsSeen, false)
		w.wsf.set(wsAwaitPong, true)
		w.writeControl(ws.OpPing, nil)
		if w.state == wsOpen {
			c.l.wheel.set(c, o.PingTimeout)
		}
	}
}
