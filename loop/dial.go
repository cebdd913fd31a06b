package loop

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/proto/http1"
	"github.com/tornago/tornago/proto/ws13"
)

// DialOptions configures Dial. The zero value is ready.
type DialOptions struct {
	// Header adds request headers (Origin, Cookie, ...).
	Header [][2]string
	// Subprotocols are offered in Sec-WebSocket-Protocol.
	Subprotocols []string
	// HandshakeTimeout bounds connect + upgrade. Default: 10s.
	HandshakeTimeout time.Duration
	// MaxMessageSize bounds received messages. Default: 64 MiB.
	MaxMessageSize int64
}

// Conn is a blocking WebSocket client connection for scripts and tests, in
// the shape of Python's websocket.create_connection: Send, Recv, Close. It
// uses one goroutine (the caller's); it is not loop-driven. Send and Recv
// may be used from one goroutine each.
type Conn struct {
	nc          net.Conn
	br          *bufio.Reader
	buf         []byte
	dec         ws13.Decoder
	lim         ws13.Limits
	Subprotocol string
	// CloseCode and CloseReason hold the server's close frame once Recv
	// returned io.EOF.
	CloseCode   StatusCode
	CloseReason string
}

// Dial connects to a ws:// URL (query strings kept) and performs the
// handshake, masking every frame with a fresh key.
func Dial(rawURL string, opts DialOptions) (*Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", rawURL, err)
	}
	if u.Scheme != "ws" {
		return nil, fmt.Errorf("dial %s: scheme %q not supported (ws:// only; terminate TLS in a proxy)", rawURL, u.Scheme)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	for _, h := range opts.Header {
		if err := ws13.CheckRequestHeader(h[0], h[1]); err != nil {
			return nil, fmt.Errorf("dial %s: %w", rawURL, err)
		}
	}
	if err := ws13.CheckSubprotocols(opts.Subprotocols); err != nil {
		return nil, fmt.Errorf("dial %s: %w", rawURL, err)
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 64 << 20
	}
	nc, err := net.DialTimeout("tcp", host, opts.HandshakeTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", rawURL, err)
	}
	nc.SetDeadline(time.Now().Add(opts.HandshakeTimeout))
	key := ws13.NewKey()
	req := ws13.AppendRequest(nil, u.Host, u.RequestURI(), key, opts.Subprotocols, opts.Header)
	if _, err := nc.Write(req); err != nil {
		nc.Close()
		return nil, fmt.Errorf("dial %s: send handshake: %w", rawURL, err)
	}
	c := &Conn{nc: nc, br: bufio.NewReaderSize(nc, 32<<10), lim: ws13.Limits{MaxMessage: opts.MaxMessageSize}}
	c.dec.SetClientSide(true)
	var rh http1.ResponseHead
	for {
		n, perr := http1.ParseResponse(c.buf, 0, &rh)
		if perr == nil {
			if err := ws13.CheckResponse(rh.Status, rh.Get("Upgrade"), rh.Get("Connection"), rh.Get("Sec-WebSocket-Accept"), key); err != nil {
				nc.Close()
				return nil, fmt.Errorf("dial %s: bad handshake (status %d): %w", rawURL, rh.Status, err)
			}
			if err := ws13.CheckResponseSubprotocol(rh.Get("Sec-WebSocket-Protocol"), opts.Subprotocols); err != nil {
				nc.Close()
				return nil, fmt.Errorf("dial %s: bad handshake: %w", rawURL, err)
			}
			if err := ws13.CheckResponseExtensions(rh.Get("Sec-WebSocket-Extensions"), nil); err != nil {
				nc.Close()
				return nil, fmt.Errorf("dial %s: bad handshake: %w", rawURL, err)
			}
			c.Subprotocol = string(rh.Get("Sec-WebSocket-Protocol"))
			c.buf = append(c.buf[:0], c.buf[n:]...) // early frames stay
			break
		}
		if !errors.Is(perr, http1.ErrIncomplete) {
			nc.Close()
			return nil, fmt.Errorf("dial %s: bad handshake: %w", rawURL, perr)
		}
		if err := c.fill(); err != nil {
			nc.Close()
			return nil, fmt.Errorf("dial %s: read handshake: %w", rawURL, err)
		}
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *Conn) fill() error {
	var tmp [16 << 10]byte
	n, err := c.br.Read(tmp[:])
	c.buf = append(c.buf, tmp[:n]...)
	if n > 0 {
		return nil
	}
	return err
}

// Send sends a text message.
func (c *Conn) Send(s string) error { return c.write(ws.OpText, []byte(s)) }

// SendBinary sends a binary message.
func (c *Conn) SendBinary(b []byte) error { return c.write(ws.OpBinary, b) }

func (c *Conn) write(op ws.OpCode, p []byte) error {
	if _, err := c.nc.Write(ws13.AppendMaskedFrame(nil, true, op, ws13.NewMask(), p)); err != nil {
		return fmt.Errorf("websocket send: %w", err)
	}
	return nil
}

// Recv returns the next message (pings are answered). After the server's
// close frame it returns io.EOF with CloseCode/CloseReason set. SetDeadline
// bounds the wait.
func (c *Conn) Recv() (MessageType, []byte, error) {
	for {
		ev, n, err := c.dec.Next(c.buf, c.lim)
		if err != nil {
			return 0, nil, fmt.Errorf("websocket recv: %w", err)
		}
		if n == 0 {
			if err := c.fill(); err != nil {
				return 0, nil, fmt.Errorf("websocket recv: %w", err)
			}
			continue
		}
		var out []byte
		switch ev.Kind {
		case ws13.EventMessage:
			out = append([]byte(nil), ev.Payload...)
		case ws13.EventPing:
			c.write(ws.OpPong, ev.Payload)
		case ws13.EventClose:
			c.CloseCode, c.CloseReason = ev.Code, string(ev.Reason)
		}
		typ := MessageType(ev.Op)
		kind := ev.Kind
		c.dec.Release()
		c.buf = append(c.buf[:0], c.buf[n:]...)
		switch kind {
		case ws13.EventMessage:
			return typ, out, nil
		case ws13.EventClose:
			code := c.CloseCode
			if code == CloseNoStatus {
				code = 0
			}
			c.nc.Write(ws13.AppendMaskedCloseFrame(nil, ws13.NewMask(), code, ""))
			return 0, nil, io.EOF
		}
	}
}

// SetDeadline sets the read and write deadline of the underlying socket.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// Close sends a close frame with code and reason, waits briefly for the
// server's reply and closes the socket.
func (c *Conn) Close(code StatusCode, reason string) error {
	c.nc.Write(ws13.AppendMaskedCloseFrame(nil, ws13.NewMask(), code, reason))
	c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, _, err := c.Recv(); err != nil {
			break
		}
	}
	return c.nc.Close()
}
