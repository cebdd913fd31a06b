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

// closeDefaults are the defaults of the close timeouts in Options.
const (
	defaultCloseFlushTimeout = 5 * time.Second
	defaultLingerTimeout     = 2 * time.Second
)
