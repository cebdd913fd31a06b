package loop

import (
	"time"

	"golang.org/x/sys/unix"
)

// Closing a connection without losing what was written to it.
//
// gnet's Close makes one write attempt of the outbound buffer and drops the
// rest (pitfall 15 in the team notes), so a response, an error page or a
// close frame still queued would be truncated. The loop therefore closes in
// steps: stop reading (input is discarded), wait until gnet's outbound
// buffer is empty (polled, see watch.go), then close. A lingering close
// (closeLinger, for a peer that may still be sending) half-closes after the
// drain and reads and discards the peer's input until it closes too, so
// the peer reads the answer instead of a reset (net/http's
// closeWriteAndWait, nginx's lingering_close). Both steps are bounded by
// Options.CloseFlushTimeout and Options.LingerTimeout; a connection past
// them is closed at once, whatever is unsent.

// close closes the connection once what was written has been sent, or when
// CloseFlushTimeout passed. Loop-only; idempotent.
func (c *conn) close() { c.startClose(false) }

// closeLinger is close for a connection whose peer may still be sending:
// after the drain it sends FIN and discards input until the peer's FIN or
// LingerTimeout. Loop-only; idempotent, and it upgrades a pending close.
func (c *conn) closeLinger() { c.startClose(true) }

func (c *conn) startClose(linger bool) {
	if c.cf.has(cfDead) {
		return
	}
	if c.cf.has(cfClosing) {
		if linger && !c.cf.has(cfHalfClosed) {
			c.cf.set(cfLinger, true)
		}
		return
	}
	c.cf.set(cfClosing, true)
	c.cf.set(cfLinger, linger)
	c.cf.set(cfPaused, false)
	c.l.wheel.set(c, c.l.opts.CloseFlushTimeout)
	c.proceedClose()
}

// proceedClose takes a closing connection to its next step: wait for the
// output to drain, half-close and linger, or close. Loop-only.
func (c *conn) proceedClose() {
	if c.cf.has(cfDead) {
		return
	}
	if c.gc.OutboundBuffered() > 0 {
		c.l.watch(c)
		return
	}
	if c.cf.has(cfLinger) && !c.cf.has(cfHalfClosed) {
		c.cf.set(cfHalfClosed, true)
		if err := unix.Shutdown(c.gc.Fd(), unix.SHUT_WR); err == nil {
			c.l.wheel.set(c, c.l.opts.LingerTimeout)
			return
		}
	}
	c.gc.Close()
}

// closeDeadline ends a close that ran out of time. Loop-only.
func (c *conn) closeDeadline() {
	if n := c.gc.OutboundBuffered(); n > 0 {
		c.l.log.Debug("loop: closing with output unsent", "bytes", n, "remote", c.gc.RemoteAddr())
	}
	c.gc.Close()
}

// slowCloseFlush bounds how long a slow consumer being closed keeps its
// unsent output so that its close frame (or its stream's last chunk)
// reaches a client that reads again: a client that does not read in that
// time loses it, and its memory and share of Options.MaxUnsentTotal are
// freed. Shorter than CloseFlushTimeout, which is for output a client asked
// for (a response): this one is kept for the client's sake only, while
// other connections may need the loop's budget.
const slowCloseFlush = time.Second

// closeSlow closes a slow consumer's connection once what was written has
// gone (its close frame, its last chunk), for at most slowCloseFlush (or
// CloseFlushTimeout when shorter). Loop-only.
func (c *conn) closeSlow(linger bool) {
	c.startClose(linger)
	if !c.cf.has(cfDead) && c.gc.OutboundBuffered() > 0 {
		c.l.wheel.set(c, min(c.l.opts.CloseFlushTimeout, slowCloseFlush))
	}
}

// slowGrace reports whether a slow consumer being closed may keep its
// unsent output for slowCloseFlush and have its close frame or last chunk
// written past its bound: not when the loop is over Options.MaxUnsentTotal,
// whose budget the other connections need; it is then closed at once.
// Loop-only.
func (l *Loop) slowGrace() bool { return !l.unsentOver(0) }

// closeDefaults are the defaults of the close timeouts in Options.
const (
	defaultCloseFlushTimeout = 5 * time.Second
	defaultLingerTimeout     = 2 * time.Second
)
