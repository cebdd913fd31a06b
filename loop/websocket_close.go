package loop

// Closing a WebSocket: the closing handshake (RFC 6455 7), failing the
// connection after a protocol violation, and aborting a slow consumer.
// The socket itself closes through conn.close (close.go), after its
// output drained.

import (
	"fmt"

	"github.com/tornago/tornago/proto/ws13"
)

// Loop-only.
// Close starts the closing handshake with code and reason; OnClose follows
// once the peer answers or CloseTimeout passes. From another goroutine it
// returns ErrNotOnLoop and does nothing (use CloseAsync). It returns an
// error for a code or reason that may not be sent, and ErrWebSocketClosed
// when a close already started or the connection is gone.
func (w *WebSocket) Close(code StatusCode, reason string) error {
	if err := checkClose(code, reason); err != nil {
		return err
	}
	l := w.l
	if !l.InLoop() {
		return ErrNotOnLoop
	}
	if w.state != wsOpen || w.cf.has(cfDead) {
		return ErrWebSocketClosed
	}
	w.state = wsClosing
	w.code = code
	w.setReason(reason)
	w.wsf.set(wsSentClose, true)
	w.conn().write(w.appendClose(nil, code, reason))
	l.wheel.set(w.conn(), w.route().opts.CloseTimeout)
	return nil
}

// Goroutine-safe.
// CloseAsync starts the closing handshake as Close would. It runs on the
// loop and done (if not nil) is called there with Close's result
// (ErrWebSocketClosed for a socket already closing or closed). It returns
// at once, without queueing anything, the error for a code or reason that
// may not be sent, ErrLoopBacklog (the loop's queue of work from other
// goroutines is over Options.MaxAsyncBytes) or ErrStopped; done is then
// not called.
func (w *WebSocket) CloseAsync(code StatusCode, reason string, done func(error)) error {
	if err := checkClose(code, reason); err != nil {
		return err
	}
	return w.l.addDataCallback(asyncCost+len(reason), func() {
		err := w.Close(code, reason)
		if done != nil {
			done(err)
		}
	})
}

// checkClose validates a close code and reason before they are sent.
func checkClose(code StatusCode, reason string) error {
	if err := ws13.CheckCloseFrame(code, reason); err != nil {
		return fmt.Errorf("loop: close: %w", err)
	}
	return nil
}

// appendClose appends a close frame for this side: masked for a client.
func (w *WebSocket) appendClose(dst []byte, code StatusCode, reason string) []byte {
	bump(&w.l.st.closeSent[closeIndex(code)], 1)
	if w.wsf.has(wsClient) {
		return ws13.AppendMaskedCloseFrame(dst, ws13.NewMask(), code, reason)
	}
	return ws13.AppendCloseFrame(dst, code, reason)
}

// fail closes after a protocol violation with the RFC's code.
func (w *WebSocket) fail(code StatusCode, reason string) {
	w.code = code
	w.setReason(reason)
	if !w.wsf.has(wsSentClose) {
		w.wsf.set(wsSentClose, true)
		w.conn().write(w.appendClose(nil, code, reason))
	}
	w.state = wsClosed
	// The peer may be in the middle of sending (a message too big): a
	// lingering close lets it read the close frame instead of a reset.
	w.conn().closeLinger()
}

// abort closes a slow consumer: nothing more is written to it but its
// close frame, which goes past the bound (a few bytes, and without it a
// browser sees 1006 and no reason), and the socket closes once the
// output drained, or after slowCloseFlush for a client that does not
// read, dropping what it did not read (its memory is the point). The
// close lingers, so that a client answering with its own close frame
// reads ours rather than a reset. When the loop is over MaxUnsentTotal it
// closes at once, and the close frame goes only if the socket takes it.
func (w *WebSocket) abort(code StatusCode, reason string) {
	c := w.conn()
	w.code = code
	w.setReason(reason)
	grace := c.l.slowGrace()
	if !w.wsf.has(wsSentClose) {
		w.wsf.set(wsSentClose, true)
		if grace {
			c.write(w.appendClose(nil, code, reason))
		} else if c.gc.OutboundBuffered() == 0 {
			c.gc.Write(w.appendClose(nil, code, reason))
		}
	}
	w.state = wsClosed
	if grace {
		c.closeSlow(true)
		return
	}
	c.cf.set(cfClosing, true)
	c.l.wheel.clear(c)
	c.gc.Close()
}

func (w *WebSocket) closed(err error) {
	if !w.wsf.has(wsSentClose) && w.code == 0 {
		w.code = CloseAbnormal
		w.setReason("")
		if err != nil {
			w.setReason(err.Error())
		}
	}
	w.state = wsClosed
	w.reserve(0)
	w.dropInflate()
	if w.wsf.has(wsOpened) && !w.wsf.has(wsNotified) {
		w.wsf.set(wsNotified, true)
		w.guard(func() { w.h.OnClose(w) })
	}
	w.dec.Release()
	w.l.notifyWebSocketClosed(w)
}

func (w *WebSocket) shutdown() {
	if w.wsf.has(wsClient) {
		w.Close(CloseGoingAway, "client shutting down")
		return
	}
	w.Close(CloseGoingAway, "server shutting down")
}
