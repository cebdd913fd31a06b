package loop

import (
	"runtime/debug"
	"unsafe"

	"github.com/panjf2000/gnet/v2"

	"github.com/tornago/tornago/proto/ws13"
)

// connMode is what a connection currently speaks (HTTP/1.1, the client side
// of a handshake). A WebSocket is not a connMode: it lives in the conn
// itself (see kind), so that an idle WebSocket is one allocation.
type connMode interface {
	traffic(c *conn)  // bytes are buffered in c.gc
	deadline(c *conn) // the wheel deadline passed
	closed(c *conn, err error)
	shutdown(c *conn) // the loop is stopping
}

// Connection kinds: what aux points to and who handles events.
const (
	kindNone uint8 = iota // not served yet; aux is nil
	kindHTTP              // aux is the *httpConn
	kindDial              // aux is the *clientHandshake of a DialWebSocket
	kindWS                // the conn is a WebSocket; aux is its *wsRoute
)

// conn is the per-connection state the loop keeps. It is deliberately small:
// an idle WebSocket costs this struct, gnet's, and nothing else. The struct
// is also the WebSocket (type WebSocket conn): its WebSocket fields are
// unused while the connection speaks HTTP, which costs less than a second
// allocation per upgraded connection. Keep it at 96 bytes (TestConnSize):
// it is a Go size class, and the next one is 112.
type conn struct {
	l  *Loop
	gc gnet.Conn

	// Every tracked connection is on exactly one list through these links:
	// a wheel slot when it has a deadline, the wheel's list of connections
	// without one otherwise. Shutdown finds every connection there.
	wnext, wprev *conn

	// aux is what kind says (an unsafe.Pointer so that one word serves
	// three types).
	aux unsafe.Pointer

	// WebSocket fields (kindWS).
	h    WebSocketHandler
	rare *wsRare // what most connections never set
	dec  ws13.Decoder

	// wexp is the wheel tick of the deadline, modulo 2^32 (compared with
	// wrap-around arithmetic).
	wexp  uint32
	need  int32 // bytes the partial frame at the input's head needs (WebSocket)
	code  StatusCode
	kind  uint8
	where uint8 // which list holds the connection: onNone, onSlot, onIdle
	state uint8 // WebSocket: wsOpen, wsClosing, wsClosed
	wsf   wsFlags
	cf    connFlags
}

// connFlags are a connection's lifecycle bits (see conn_close.go).
type connFlags uint8

const (
	cfClosing    connFlags = 1 << iota // close requested: input is discarded, output drains, then the socket closes
	cfDead                             // OnClose ran
	cfLinger                           // after the output drained, half-close and read until EOF (lingering close)
	cfHalfClosed                       // our FIN is sent (lingering)
	cfWatched                          // on the loop's list of connections with unsent output
	cfPaused                           // input is left unread until the output drains (backpressure)
	cfInMessage                        // WebSocket: a message is in flight; the wheel deadline is its MessageTimeout
	cfInflating                        // WebSocket: a compressed message is being inflated over several turns (Loop.inflates)
)

func (f connFlags) has(b connFlags) bool { return f&b != 0 }

func (f *connFlags) set(b connFlags, v bool) {
	if v {
		*f |= b
	} else {
		*f &^= b
	}
}

func (c *conn) http() *httpConn             { return (*httpConn)(c.aux) }
func (c *conn) handshake() *clientHandshake { return (*clientHandshake)(c.aux) }
func (c *conn) ws() *WebSocket              { return (*WebSocket)(c) }

// mode is the connMode of an HTTP or handshaking connection, nil otherwise.
func (c *conn) mode() connMode {
	switch c.kind {
	case kindHTTP:
		return c.http()
	case kindDial:
		return c.handshake()
	}
	return nil
}

func (c *conn) traffic() {
	if c.cf.has(cfClosing) || c.cf.has(cfDead) || c.kind == kindNone {
		c.gc.Discard(-1)
		return
	}
	if c.cf.has(cfPaused) {
		// Backpressure: the output must drain before more input is
		// served (watch.go wakes the connection). gnet keeps reading
		// the socket, so the input waiting is bounded here.
		if int64(c.gc.InboundBuffered()) > c.inLimit() {
			c.l.log.Warn("loop: closing a connection that sends too much while its output is blocked", "buffered", c.gc.InboundBuffered())
			c.gc.Discard(-1)
			c.closeLinger()
		}
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.l.log.Error("loop: panic while serving a connection", "panic", r, "stack", string(debug.Stack()))
			c.close()
		}
	}()
	c.dispatchTraffic()
}

// dispatchTraffic hands buffered input to what the connection speaks now.
func (c *conn) dispatchTraffic() {
	if c.kind == kindWS {
		c.ws().traffic()
	} else if m := c.mode(); m != nil {
		m.traffic(c)
	}
}

func (c *conn) onDeadline() {
	if c.cf.has(cfDead) {
		return
	}
	if c.cf.has(cfClosing) {
		c.closeDeadline()
		return
	}
	if c.kind == kindWS {
		c.ws().deadline()
	} else if m := c.mode(); m != nil {
		m.deadline(c)
	}
}

// onOpen runs when gnet registered a connection the loop dialed
// (DialWebSocket); its handshake was set before registration.
func (c *conn) onOpen() {
	if c.kind == kindDial {
		c.handshake().open(c)
	}
}

func (c *conn) closed(err error) {
	if c.cf.has(cfDead) {
		return
	}
	c.cf.set(cfDead, true)
	c.l.wheel.untrack(c)
	c.l.openConns.Add(-1)
	if c.kind == kindWS {
		bump(&c.l.st.openWS, -1)
	}
	if c.kind == kindNone {
		return
	}
	// The kind is read when fn runs: an upgrade in progress may change it.
	fn := func() {
		if c.kind == kindWS {
			c.ws().closed(err)
		} else if m := c.mode(); m != nil {
			m.closed(c, err)
		}
	}
	if c.l.busy > 0 {
		// gnet runs OnClose inside Write when the socket write fails. The
		// handler that wrote is still running: tell the mode once it has
		// returned, so that nothing of it runs after OnClose.
		c.l.deferredCloses = append(c.l.deferredCloses, fn)
		return
	}
	c.l.safeCall(fn)
}

// inLimit is the input a connection may have waiting while it is paused.
func (c *conn) inLimit() int64 {
	if c.kind == kindHTTP {
		lim := c.http().app.opts.Limits
		return int64(lim.MaxHeaderBytes) + lim.MaxBodyBytes
	}
	return 1 << 20
}

func (c *conn) shutdown() {
	if c.cf.has(cfDead) || c.cf.has(cfClosing) {
		return
	}
	if c.kind == kindWS {
		c.ws().shutdown()
	} else if m := c.mode(); m != nil {
		m.shutdown(c)
	} else {
		c.close()
	}
}

// write writes b and accounts for what the socket did not take. Loop-only.
func (c *conn) write(b []byte) error {
	before := c.gc.OutboundBuffered()
	_, err := c.gc.Write(b)
	c.wrote(before)
	return err
}

// writev is write for two slices (a header and a payload, not joined).
func (c *conn) writev(bs [][]byte) error {
	before := c.gc.OutboundBuffered()
	_, err := c.gc.Writev(bs)
	c.wrote(before)
	return err
}

func (c *conn) wrote(before int) {
	if c.cf.has(cfDead) {
		return
	}
	if b := c.gc.OutboundBuffered(); b > 0 {
		c.l.unsent += b - before
		c.l.watch(c)
	}
}
