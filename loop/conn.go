package loop

import (
	"runtime/debug"

	"github.com/panjf2000/gnet/v2"
)

// connMode is what a connection currently speaks (HTTP/1.1, WebSocket).
type connMode interface {
	traffic(c *conn)  // bytes are buffered in c.gc
	deadline(c *conn) // the wheel deadline passed
	closed(c *conn, err error)
	shutdown(c *conn) // the loop is stopping
}

// conn is the per-connection state the loop keeps. It is deliberately small:
// an idle connection costs this struct, gnet's, and nothing else.
type conn struct {
	l    *Loop
	gc   gnet.Conn
	mode connMode

	wnext, wprev *conn // timing wheel list
	next, prev   *conn // the loop's list of open connections

	// wexp is the wheel tick of the deadline, modulo 2^32 (compared with
	// wrap-around arithmetic); 32 bits and the flags share one word so the
	// struct fits an 80-byte allocation.
	wexp     uint32
	winWheel bool
	closing  bool // Close requested; ignore further input
	dead     bool // OnClose ran
}

// close asks gnet to close the connection after flushing what was written.
// Loop-only; idempotent.
func (c *conn) close() {
	if c.closing || c.dead {
		return
	}
	c.closing = true
	c.l.wheel.clear(c)
	c.gc.Close()
}

func (c *conn) traffic() {
	if c.closing || c.dead || c.mode == nil {
		c.gc.Discard(-1)
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.l.log.Error("loop: panic while serving a connection", "panic", r, "stack", string(debug.Stack()))
			c.close()
		}
	}()
	c.mode.traffic(c)
}

func (c *conn) onDeadline() {
	if c.dead || c.mode == nil {
		return
	}
	c.mode.deadline(c)
}

// onOpen runs when gnet registered a connection the loop dialed
// (DialWebSocket); its mode was set before registration.
func (c *conn) onOpen() {
	if o, ok := c.mode.(interface{ open(*conn) }); ok {
		o.open(c)
	}
}

func (c *conn) closed(err error) {
	if c.dead {
		return
	}
	c.dead = true
	c.l.wheel.clear(c)
	c.l.conns.remove(c)
	c.l.openConns.Add(-1)
	if c.mode == nil {
		return
	}
	fn := func() { c.mode.closed(c, err) }
	if c.l.busy > 0 {
		// gnet runs OnClose inside Write when the socket write fails. The
		// handler that wrote is still running: tell the mode once it has
		// returned, so that nothing of it runs after OnClose (and c.mode is
		// read then, after an upgrade in progress has set it).
		c.l.deferredCloses = append(c.l.deferredCloses, fn)
		return
	}
	c.l.safeCall(fn)
}

func (c *conn) shutdown() {
	if c.dead || c.closing {
		return
	}
	if c.mode == nil {
		c.close()
		return
	}
	c.mode.shutdown(c)
}

// connList is an intrusive list, so tracking a connection allocates nothing.
type connList struct{ head *conn }

func (cl *connList) push(c *conn) {
	c.prev = nil
	c.next = cl.head
	if cl.head != nil {
		cl.head.prev = c
	}
	cl.head = c
}

func (cl *connList) remove(c *conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else if cl.head == c {
		cl.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.next, c.prev = nil, nil
}

func (cl *connList) each(fn func(*conn)) {
	for c := cl.head; c != nil; {
		next := c.next
		fn(c)
		c = next
	}
}
