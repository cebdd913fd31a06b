package wsclient

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/proto/http1"
	"github.com/tornago/tornago/proto/ws13"
)

// DialOptions configures Dial. The zero value is ready; every field
// documents its default. The names, defaults and the meaning of zero and
// negative values are those of loop.ClientOptions (ws13's table): zero or
// negative means the default.
type DialOptions struct {
	// Header adds request headers (Origin, Authorization, Cookie, ...). A
	// Host field replaces the URL's host. The handshake's own fields
	// (Upgrade, Connection, Sec-WebSocket-*) are refused: offer
	// subprotocols with Subprotocols.
	Header http.Header
	// Subprotocols are offered in Sec-WebSocket-Protocol, in preference
	// order; Conn.Subprotocol tells which one the server chose.
	Subprotocols []string
	// HandshakeTimeout bounds the TCP connect and the upgrade. Default: 10s.
	HandshakeTimeout time.Duration
	// MaxMessageSize bounds a received message; a larger one fails Recv
	// and closes the connection with 1009. Default: 10 MiB (Tornado's).
	MaxMessageSize int64
	// CloseTimeout bounds Close: the wait to send the close frame (behind
	// a Send blocked on a peer that does not read) plus the wait for the
	// server's close frame. Default: 5s.
	CloseTimeout time.Duration
}

func (o DialOptions) withDefaults() DialOptions {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = ws13.DefaultHandshakeTimeout
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = ws13.DefaultMaxMessage
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = ws13.DefaultCloseTimeout
	}
	return o
}

// MessageType tells text from binary messages (the values of
// loop.MessageType).
type MessageType uint8

// Message types.
const (
	Text   MessageType = 1
	Binary MessageType = 2
)

// ErrCloseSent is returned by Send and SendBinary once a close frame was
// sent (by Close, or by Recv echoing the server's close): RFC 6455 5.5.1,
// "After sending a Close frame, the application MUST NOT send any more data
// frames."
var ErrCloseSent = errors.New("wsclient: close frame already sent")

// DialError is the error Dial returns: the URL, the HTTP status of the
// server's reply (0 when none arrived) and the cause (a net error,
// ws13.ErrURL or ws13.ErrRequestHeader when nothing was sent, or one of
// ws13's ErrResponse* values). The loop-driven client's loop.DialError is
// the same type.
type DialError = ws13.DialError

// Conn is a blocking WebSocket client connection for scripts and tests, in
// the shape of Python's websocket.create_connection: Send, Recv, Close. It
// runs on the calling goroutines; it is not loop-driven.
//
// Concurrency: every method is goroutine-safe. The intended use is one
// goroutine calling Recv and one calling Send/SendBinary (they may be the
// same), with Close and SetDeadline callable from any goroutine at any
// time, concurrently with both. Concurrent Recv calls are serialized (each
// message goes to one of them), as are concurrent Sends (frames never
// interleave); pongs and close frames written by Recv and Close take the
// same turn as Sends.
type Conn struct {
	nc          net.Conn
	subprotocol string

	// cmu guards the server's close code and reason, set by the reader and
	// read by CloseCode and CloseReason from any goroutine.
	cmu         sync.Mutex
	closeCode   ws13.StatusCode
	closeReason string

	closeTimeout time.Duration
	closing      atomic.Bool // Close was called

	// rlock is the reader's turn, a one-slot channel rather than a mutex so
	// that Close can wait for it, for the server's close or for its timeout
	// in one select. Everything down to pending is guarded by it.
	rlock   chan struct{}
	buf     []byte // buf[off:] is received and not yet decoded
	off     int
	dec     ws13.Decoder
	lim     ws13.Limits
	rerr    error         // sticky: io.EOF after the server's close, or the failure
	pending []dialMessage // messages Close read while waiting for the server's close
	pendN   int64         // bytes in pending
	// readDone is closed when rerr is set, so Close stops waiting.
	readDone chan struct{}

	// wlock is the writer's turn (a one-slot channel so that Close can give
	// up on a Send stuck behind a peer that does not read); it guards
	// closeSent.
	wlock     chan struct{}
	closeSent bool
}

type dialMessage struct {
	typ  MessageType
	data []byte
}

// Goroutine-safe; it blocks until the handshake ends. Dial connects to a ws:// URL (query strings kept) and performs the
// opening handshake, all within DialOptions.HandshakeTimeout; every frame
// it sends is masked with a fresh key. Errors are *DialError.
func Dial(rawURL string, opts DialOptions) (*Conn, error) {
	c, status, err := dial(rawURL, opts)
	if err != nil {
		return nil, &DialError{URL: rawURL, Status: status, Err: err}
	}
	return c, nil
}

// dial is Dial; it returns the HTTP status of the server's reply with an
// error when a reply arrived.
func dial(rawURL string, opts DialOptions) (*Conn, int, error) {
	u, addr, err := ws13.CheckDial(rawURL, opts.Header, opts.Subprotocols)
	if err != nil {
		return nil, 0, err
	}
	opts = opts.withDefaults()
	nc, err := net.DialTimeout("tcp", addr, opts.HandshakeTimeout)
	if err != nil {
		return nil, 0, err
	}
	nc.SetDeadline(time.Now().Add(opts.HandshakeTimeout))
	key := ws13.NewKey()
	req := ws13.AppendRequest(nil, u.Host, u.RequestURI(), key, opts.Subprotocols, opts.Header)
	if _, err := nc.Write(req); err != nil {
		nc.Close()
		return nil, 0, fmt.Errorf("send the upgrade request: %w", err)
	}
	c := &Conn{
		nc:           nc,
		closeTimeout: opts.CloseTimeout,
		lim:          ws13.Limits{MaxMessage: opts.MaxMessageSize},
		rlock:        make(chan struct{}, 1),
		wlock:        make(chan struct{}, 1),
		readDone:     make(chan struct{}),
	}
	c.dec.SetClientSide(true)
	var rh http1.ResponseHead
	for {
		n, perr := http1.ParseResponse(c.buf, 0, &rh)
		if perr == nil {
			// No extension is offered, so any is a failure (RFC 6455 4.1).
			acc, err := ws13.CheckResponse(rh.Status, rh.Get, ws13.ClientOffer{Key: key, Subprotocols: opts.Subprotocols})
			if err != nil {
				nc.Close()
				return nil, rh.Status, err
			}
			c.subprotocol = acc.Subprotocol
			c.off = n // early frames stay
			break
		}
		if !errors.Is(perr, http1.ErrIncomplete) {
			nc.Close()
			return nil, 0, fmt.Errorf("bad handshake response: %w", perr)
		}
		if err := c.fill(); err != nil {
			nc.Close()
			return nil, 0, fmt.Errorf("read the handshake response: %w", err)
		}
	}
	nc.SetDeadline(time.Time{})
	return c, 0, nil
}

// Goroutine-safe.
// Subprotocol returns the subprotocol the server selected, "" for none.
func (c *Conn) Subprotocol() string { return c.subprotocol }

// Goroutine-safe.
// CloseCode returns the code of the server's close frame (1005,
// ws13.CloseNoStatus, when it had none), 0 while none arrived. It is set
// before Recv returns io.EOF, and before Close returns when Close read the
// server's close itself.
func (c *Conn) CloseCode() ws13.StatusCode {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return c.closeCode
}

// Goroutine-safe.
// CloseReason returns the reason of the server's close frame, "" while
// none arrived; see CloseCode.
func (c *Conn) CloseReason() string {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return c.closeReason
}

// fill reads more bytes into buf, first moving the undecoded tail to the
// front. The caller holds rlock.
func (c *Conn) fill() error {
	if c.off > 0 {
		c.buf = c.buf[:copy(c.buf, c.buf[c.off:])]
		c.off = 0
	}
	if cap(c.buf)-len(c.buf) < 4<<10 {
		c.buf = slices.Grow(c.buf, 16<<10)
	}
	for {
		n, err := c.nc.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Goroutine-safe.
// Send sends a text message; s must be valid UTF-8 (the server closes the
// connection with 1007 otherwise). After a close frame was sent it returns
// ErrCloseSent.
func (c *Conn) Send(s string) error { return c.write(ws.OpText, []byte(s)) }

// Goroutine-safe.
// SendBinary sends a binary message; see Send.
func (c *Conn) SendBinary(b []byte) error { return c.write(ws.OpBinary, b) }

func (c *Conn) write(op ws.OpCode, p []byte) error {
	frame := ws13.AppendMaskedFrame(nil, true, op, ws13.NewMask(), p)
	c.wlock <- struct{}{}
	defer func() { <-c.wlock }()
	if c.closeSent {
		return fmt.Errorf("wsclient: send: %w", ErrCloseSent)
	}
	if _, err := c.nc.Write(frame); err != nil {
		return fmt.Errorf("wsclient: send: %w", err)
	}
	return nil
}

// writePong answers a ping, unless a close frame was sent already. The
// caller holds rlock, not wlock.
func (c *Conn) writePong(p []byte) {
	frame := ws13.AppendMaskedFrame(nil, true, ws.OpPong, ws13.NewMask(), p)
	c.wlock <- struct{}{}
	defer func() { <-c.wlock }()
	if !c.closeSent {
		c.nc.Write(frame) // a failed write shows up as a read error
	}
}

// sendClose writes the connection's one close frame; it does nothing if
// one was sent already. The caller holds wlock.
func (c *Conn) sendClose(code ws13.StatusCode, reason string) error {
	if c.closeSent {
		return nil
	}
	c.closeSent = true
	_, err := c.nc.Write(ws13.AppendMaskedCloseFrame(nil, ws13.NewMask(), code, reason))
	return err
}

// Goroutine-safe (see Conn).
// Recv returns the next message; the bytes are the caller's. Pings are
// answered. After the server's close frame it echoes it (unless Close sent
// one already) and returns io.EOF, unwrapped, with CloseCode and
// CloseReason set; a protocol violation by the server sends the matching
// close code and returns the *ws13.CloseError (wrapped). Either is
// returned again by every later call. Messages Close received on Recv's
// behalf while waiting for the server's close come first. SetDeadline
// bounds the wait.
func (c *Conn) Recv() (MessageType, []byte, error) {
	c.rlock <- struct{}{}
	defer func() { <-c.rlock }()
	if len(c.pending) > 0 {
		m := c.pending[0]
		c.pending[0] = dialMessage{}
		c.pending = c.pending[1:]
		c.pendN -= int64(len(m.data))
		return m.typ, m.data, nil
	}
	return c.next()
}

// next reads the next message or the end of the stream. The caller holds
// rlock.
func (c *Conn) next() (MessageType, []byte, error) {
	if c.rerr != nil {
		return 0, nil, c.rerr
	}
	for {
		ev, n, err := c.dec.Next(c.buf[c.off:], c.lim)
		if err != nil {
			// RFC 6455 7.1.7: fail the connection, with the code the decoder
			// chose (1002, 1007, 1009).
			var ce *ws13.CloseError
			if errors.As(err, &ce) {
				c.wlock <- struct{}{}
				c.sendClose(ce.Code, ce.Reason)
				<-c.wlock
			}
			c.dec.Release()
			return 0, nil, c.fail(fmt.Errorf("wsclient: recv: %w", err))
		}
		if n == 0 {
			if err := c.fill(); err != nil {
				return 0, nil, c.fail(fmt.Errorf("wsclient: recv: %w", err))
			}
			continue
		}
		// ev's bytes alias buf (or the decoder's assembly buffer): use them
		// before consuming the frame.
		switch ev.Kind {
		case ws13.EventMessage:
			out := append([]byte(nil), ev.Payload...)
			c.dec.Release() // the assembly buffer, if fragmented
			c.consume(n)
			return MessageType(ev.Op), out, nil
		case ws13.EventPing:
			c.writePong(ev.Payload)
		case ws13.EventClose:
			c.cmu.Lock()
			c.closeCode, c.closeReason = ev.Code, string(ev.Reason)
			c.cmu.Unlock()
			// RFC 6455 5.5.1: the endpoint "MUST send a Close frame in
			// response", "typically echoing the status code it received";
			// no second one if Close sent ours.
			c.wlock <- struct{}{}
			c.sendClose(ev.Code, "")
			<-c.wlock
			c.consume(n)
			return 0, nil, c.fail(io.EOF)
		}
		// A pong, or a non-final fragment now in the decoder's assembly
		// buffer (not released: the message is still in progress).
		c.consume(n)
	}
}

// consume drops n decoded bytes; a buffer grown by a large message is let
// go once empty.
func (c *Conn) consume(n int) {
	c.off += n
	if c.off == len(c.buf) {
		c.off = 0
		c.buf = c.buf[:0]
		if cap(c.buf) > 1<<20 {
			c.buf = nil
		}
	}
}

// fail makes err the reader's sticky result and wakes a waiting Close.
func (c *Conn) fail(err error) error {
	if c.rerr == nil {
		c.rerr = err
		close(c.readDone)
	}
	return c.rerr
}

// Goroutine-safe.
// SetDeadline sets the read and write deadline of the underlying socket.
// Close replaces the deadlines with its own.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// Goroutine-safe.
// Close starts the closing handshake and closes the socket: it sends a
// close frame with code and reason (none if Recv already echoed the
// server's close), waits for the server's close frame and closes the
// socket, all within DialOptions.CloseTimeout.
//
// A Recv running concurrently returns io.EOF once the server's close
// arrives (or an error if it does not in time); Close never reads while a
// Recv does. With no Recv in progress Close reads itself, and keeps data
// messages that arrive before the server's close (up to MaxMessageSize
// bytes in all; beyond that they are dropped) for later Recv calls.
//
// code must be one a peer may send (1000-1003, 1007-1014, 3000-4999) and
// reason at most 123 bytes of UTF-8; otherwise Close returns an error and
// sends and closes nothing. A second Close returns an error wrapping
// net.ErrClosed.
func (c *Conn) Close(code ws13.StatusCode, reason string) error {
	if err := ws13.CheckCloseFrame(code, reason); err != nil {
		return fmt.Errorf("wsclient: close: %w", err)
	}
	if !c.closing.CompareAndSwap(false, true) {
		return fmt.Errorf("wsclient: close: %w", net.ErrClosed)
	}
	deadline := time.Now().Add(c.closeTimeout)
	timeout := time.NewTimer(c.closeTimeout)
	defer timeout.Stop()
	var werr error
	select {
	case c.wlock <- struct{}{}:
		c.nc.SetWriteDeadline(deadline)
		werr = c.sendClose(code, reason)
		<-c.wlock
	case <-timeout.C:
		werr = errors.New("timed out behind a blocked Send")
	}
	if werr == nil {
		c.awaitClose(timeout.C, deadline)
	}
	cerr := c.nc.Close()
	if werr != nil {
		return fmt.Errorf("wsclient: close: %w", werr)
	}
	if cerr != nil {
		return fmt.Errorf("wsclient: close: %w", cerr)
	}
	return nil
}

// awaitClose waits for the server's close frame: read by a Recv in
// progress (readDone), or by Close itself once no Recv holds the reader's
// turn.
func (c *Conn) awaitClose(timeout <-chan time.Time, deadline time.Time) {
	select {
	case <-c.readDone:
	case <-timeout:
	case c.rlock <- struct{}{}:
		defer func() { <-c.rlock }()
		c.nc.SetReadDeadline(deadline)
		for {
			typ, data, err := c.next()
			if err != nil {
				return
			}
			if c.pendN+int64(len(data)) <= c.lim.MaxMessage {
				c.pending = append(c.pending, dialMessage{typ, data})
				c.pendN += int64(len(data))
			}
		}
	}
}
