package loop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/proto/http1"
	"github.com/tornago/tornago/proto/ws13"
)

// ClientOptions configures DialWebSocket. The zero value is ready; every
// field documents its default. The fields it shares with wsclient.DialOptions
// and WSOptions have the same names, defaults (ws13's table) and meaning of
// zero (the default) and negative (the default, except PingInterval: off).
type ClientOptions struct {
	// Header adds request headers (Origin, Authorization, Cookie, ...). A
	// Host field replaces the URL's host. The handshake's own fields
	// (Upgrade, Connection, Sec-WebSocket-*) are refused: offer
	// subprotocols with Subprotocols. Do not modify the map after
	// DialWebSocket: every (re)connection reads it.
	Header http.Header
	// Subprotocols are offered in Sec-WebSocket-Protocol, in preference
	// order; WebSocket.Subprotocol tells which one the server chose.
	Subprotocols []string
	// HandshakeTimeout bounds one attempt: waiting for a dialer (at most 64
	// dials run at once per loop), the TCP connect and the upgrade. The
	// upgrade part is a timing-wheel deadline (no timer per connection).
	// Default: 10s.
	HandshakeTimeout time.Duration
	// MaxMessageSize bounds a received message; a larger one closes the
	// connection with 1009. Default: 10 MiB (Tornado's).
	MaxMessageSize int64
	// CloseTimeout bounds the wait for the server's close frame after the
	// client's. Default: 5s.
	CloseTimeout time.Duration
	// LocalAddr is the source IP to bind ("127.0.0.2"), optionally with a
	// port. Default: any. One source IP gives at most ~28k connections to
	// one server address (the ephemeral port range); spread more over
	// several loopback addresses.
	LocalAddr string
	// Reconnect makes the client dial again after a failed attempt or a
	// close it did not ask for (Client.Close stops it), waiting an
	// exponential backoff with jitter: MinBackoff, doubled per consecutive
	// failure up to MaxBackoff, each wait drawn uniformly from [d/2, d].
	// A successful open resets the backoff. Default: false.
	Reconnect bool
	// MinBackoff and MaxBackoff bound the reconnect delay. Defaults: 500ms
	// and 30s; MaxBackoff is raised to MinBackoff if smaller.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval makes the client ping this often to detect a half-open
	// server, as WSOptions.PingInterval does for the server side. It costs
	// a timing-wheel entry per connection, no timer or goroutine. Default:
	// 25s; negative disables (the loop still answers the server's pings).
	PingInterval time.Duration
	// PingTimeout closes (1006) a connection whose pong to the client's
	// ping has not arrived within this long; only a pong counts, other
	// input does not. Default: 20s.
	PingTimeout time.Duration
	// Resume makes the client resume a history topic across reconnects
	// (the server side is Hub.SubscribeSince): it remembers the position
	// of the last positioned message it received ("E-N\n" + data) or the
	// one set with Client.SetPosition, and dials each reconnect with
	// since=<that position> in the URL's query (replacing a since the URL
	// had), so the server sends what was missed before the live messages.
	// OnMessage still gets the whole frame. Default: false.
	Resume bool
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = ws13.DefaultHandshakeTimeout
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = ws13.DefaultMaxMessage
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = ws13.DefaultCloseTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.PingInterval == 0 {
		o.PingInterval = ws13.DefaultPingInterval
	}
	if o.PingInterval < 0 {
		o.PingInterval = -1 // WSOptions: negative disables
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = ws13.DefaultPingTimeout
	}
	return o
}

// ClientHandler holds the callbacks of a client connection, in the shape of
// Python websocket-client's WebSocketApp. Every callback runs on the loop;
// a nil field is a no-op. Per connection the promises of WebSocketHandler
// hold: OnMessage only after OnOpen returned, exactly one OnClose per
// OnOpen, nothing after OnClose. A failed attempt (no OnOpen) gets OnError
// instead.
type ClientHandler struct {
	// OnOpen runs once the server accepted the upgrade.
	OnOpen func(w *WebSocket)
	// OnMessage gets each complete message; data is borrowed and valid only
	// until OnMessage returns.
	OnMessage func(w *WebSocket, typ MessageType, data []byte)
	// OnError reports an attempt that failed before OnOpen: refused or
	// timed-out dial, rejected or malformed handshake (err is a *DialError).
	// Not called after Client.Close.
	OnError func(c *Client, err error)
	// OnClose runs once an opened connection is gone; w.CloseCode and
	// w.CloseReason say why (1006 when no close frame was exchanged).
	OnClose func(w *WebSocket)
}

// ErrHandshakeTimeout is wrapped by the *DialError of an attempt that did
// not complete within ClientOptions.HandshakeTimeout.
var ErrHandshakeTimeout = errors.New("loop: websocket handshake timed out")

// DialError is the error OnError receives: the URL, the HTTP status of the
// server's reply (0 when none arrived) and the cause (a net error,
// ErrHandshakeTimeout, or one of ws13's ErrResponse* values). The blocking
// client (loop/wsclient) returns the same type.
type DialError = ws13.DialError

// Client is a loop-driven WebSocket client connection (and its reconnects),
// made by DialWebSocket. It costs no goroutine while connected: the socket is
// registered on the loop like a server connection.
type Client struct {
	l     *Loop
	h     ClientHandler
	opts  ClientOptions
	url   string
	addr  string // host:port to dial
	host  string // Host header
	uri   string // request-target
	local net.Addr
	route *wsRoute

	closed atomic.Bool

	// Loop-only.
	ws       *WebSocket
	hs       *clientHandshake // the attempt in progress
	retry    *Timeout
	failures int
	pos      pubsub.Position // the last position received (Resume)
	query    url.Values
	path     string
}

// Goroutine-safe.
// DialWebSocket starts connecting to a ws:// URL (a query string is kept)
// and returns at once; h's callbacks report the outcome. It returns an
// error only for a bad URL or options (checked by ws13.CheckDial, as
// wsclient.Dial does), or a stopped loop. It may be called before Start
// (the dial begins once the loop runs).
//
// wss:// is not supported: terminate TLS in a proxy.
func (l *Loop) DialWebSocket(rawURL string, h ClientHandler, opts ClientOptions) (*Client, error) {
	if s := l.state.Load(); s == stateStopping || s == stateStopped {
		return nil, fmt.Errorf("loop: websocket dial %s: %w", rawURL, ErrStopped)
	}
	u, addr, err := ws13.CheckDial(rawURL, opts.Header, opts.Subprotocols)
	if err != nil {
		return nil, fmt.Errorf("loop: websocket dial %s: %w", rawURL, err)
	}
	o := opts.withDefaults()
	cl := &Client{
		l:    l,
		h:    h,
		opts: o,
		url:  rawURL,
		addr: addr,
		host: u.Host,
		uri:  u.RequestURI(),
	}
	if o.Resume {
		cl.query, cl.path = u.Query(), u.EscapedPath()
		if cl.path == "" {
			cl.path = "/"
		}
		if p, err := pubsub.ParsePosition(cl.query.Get("since")); err == nil {
			cl.pos = p
		}
	}
	if o.LocalAddr != "" {
		a, err := parseLocalAddr(o.LocalAddr)
		if err != nil {
			return nil, fmt.Errorf("loop: websocket dial %s: local address: %w", rawURL, err)
		}
		cl.local = a
	}
	cl.route = clientRoute(o)
	l.AddCallback(cl.connect)
	return cl, nil
}

func parseLocalAddr(s string) (*net.TCPAddr, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("%q is neither an IP nor IP:port", s)
	}
	return net.TCPAddrFromAddrPort(ap), nil
}

// clientRouteKey selects a shared wsRoute: clients with the same limits
// share one, so 20k clients do not carry 20k copies of the options.
type clientRouteKey struct {
	maxMsg                           int64
	pingEvery, pingTTL, closeTimeout time.Duration
}

var clientRoutes sync.Map // clientRouteKey -> *wsRoute

func clientRoute(o ClientOptions) *wsRoute {
	k := clientRouteKey{o.MaxMessageSize, o.PingInterval, o.PingTimeout, o.CloseTimeout}
	if r, ok := clientRoutes.Load(k); ok {
		return r.(*wsRoute)
	}
	wo := WSOptions{MaxMessageSize: o.MaxMessageSize, PingInterval: o.PingInterval, PingTimeout: o.PingTimeout,
		CloseTimeout: o.CloseTimeout}.withDefaults()
	r, _ := clientRoutes.LoadOrStore(k, &wsRoute{opts: wo, lim: ws13.Limits{MaxMessage: wo.MaxMessageSize}})
	return r.(*wsRoute)
}

// Goroutine-safe.
// URL returns the URL given to DialWebSocket.
func (c *Client) URL() string { return c.url }

// Goroutine-safe.
// Loop returns the loop the client runs on.
func (c *Client) Loop() *Loop { return c.l }

// Loop-only.
// Position returns the position a Resume client resumes from: the last
// positioned message received, or what SetPosition set.
func (c *Client) Position() pubsub.Position { return c.pos }

// Loop-only.
// SetPosition sets the position the next reconnect resumes from, for a
// position the application learned otherwise (a server's message saying
// where the history stands before any message came).
func (c *Client) SetPosition(p pubsub.Position) { c.pos = p }

// Loop-only.
// WebSocket returns the open (or closing) connection, nil while connecting
// or after the close.
func (c *Client) WebSocket() *WebSocket { return c.ws }

// Goroutine-safe.
// Close stops reconnecting, abandons an attempt in progress and closes the
// current connection with 1000 (OnClose follows when the server answers or
// ClientOptions.CloseTimeout passes). OnError is not called any more.
// Idempotent.
func (c *Client) Close() {
	if c.closed.Swap(true) {
		return
	}
	if c.l.InLoop() {
		c.closeOnLoop()
		return
	}
	c.l.AddCallback(c.closeOnLoop)
}

func (c *Client) closeOnLoop() {
	c.l.RemoveTimeout(c.retry)
	c.retry = nil
	if hs := c.hs; hs != nil {
		c.hs = nil
		hs.done = true
		if hs.c != nil {
			hs.c.close()
		}
	}
	if c.ws != nil {
		c.ws.Close(CloseNormal, "")
	}
}

// connect starts an attempt. Loop-only.
func (c *Client) connect() {
	if c.closed.Load() || c.hs != nil || c.ws != nil || c.l.state.Load() != stateRunning {
		return
	}
	hs := &clientHandshake{cl: c, start: c.l.now(), key: ws13.NewKey()}
	uri := c.uri
	if c.opts.Resume && c.pos != (pubsub.Position{}) {
		c.query.Set("since", c.pos.String())
		uri = c.path + "?" + c.query.Encode()
	}
	hs.req = ws13.AppendRequest(make([]byte, 0, 256), c.host, uri, hs.key, c.opts.Subprotocols, c.opts.Header)
	c.hs = hs
	c.l.dials.push(c.l, hs)
}

// scheduleRetry arms the next attempt if reconnecting applies. Loop-only.
func (c *Client) scheduleRetry() {
	if !c.opts.Reconnect || c.closed.Load() || c.l.state.Load() != stateRunning ||
		c.retry != nil || c.hs != nil || c.ws != nil {
		return
	}
	d := c.opts.MinBackoff
	for i := 0; i < c.failures && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.opts.MaxBackoff)
	d = d/2 + rand.N(d/2+1)
	c.failures++
	c.retry = c.l.CallLater(d, c.retryNow)
}

func (c *Client) retryNow() {
	c.retry = nil
	c.connect()
}

// connClosed runs after OnClose of an opened connection. Loop-only.
func (c *Client) connClosed(w *WebSocket) {
	if c.ws == w {
		c.ws = nil
	}
	c.scheduleRetry()
}

// clientHooks adapts a Client's ClientHandler to WebSocketHandler, so the
// client side reuses the server's read, ping and close path unchanged.
type clientHooks Client

func (h *clientHooks) Open(w *WebSocket) {
	if h.h.OnOpen != nil {
		h.h.OnOpen(w)
	}
}

func (h *clientHooks) OnMessage(w *WebSocket, typ MessageType, data []byte) {
	if h.opts.Resume {
		if p, ok := framePosition(data); ok {
			h.pos = p
		}
	}
	if h.h.OnMessage != nil {
		h.h.OnMessage(w, typ, data)
	}
}

func (h *clientHooks) OnClose(w *WebSocket) {
	defer (*Client)(h).connClosed(w) // even if the callback panics
	if h.h.OnClose != nil {
		h.h.OnClose(w)
	}
}

func (h *clientHooks) OnPing(*WebSocket, []byte) {}

func (h *clientHooks) OnPong(*WebSocket, []byte) {}

// clientHandshake is the connMode of a client connection until the server's
// 101 arrives; then the connection becomes a *WebSocket.
type clientHandshake struct {
	cl    *Client
	c     *conn // set on the loop once registered
	key   []byte
	req   []byte
	start int64 // loop clock at the start of the attempt
	done  bool  // succeeded, failed or abandoned: nothing more to report
}

// remaining is what is left of the handshake timeout. Goroutine-safe.
func (hs *clientHandshake) remaining() time.Duration {
	return hs.cl.opts.HandshakeTimeout - time.Duration(hs.cl.l.now()-hs.start)
}

// open runs on the loop when gnet registered the dialed socket: send the
// upgrade request and arm the handshake deadline.
func (hs *clientHandshake) open(c *conn) {
	hs.c = c
	cl := hs.cl
	if hs.done || cl.closed.Load() || c.l.state.Load() != stateRunning {
		hs.done = true
		if cl.hs == hs {
			cl.hs = nil
		}
		c.close()
		return
	}
	// Through conn.write, so that a request the socket does not take at
	// once counts in the loop's unsent output (Metrics.UnsentBytes,
	// MaxUnsentTotal) and is watched until it drains.
	err := c.write(hs.req)
	hs.req = nil
	if err != nil {
		hs.fail(0, fmt.Errorf("send the upgrade request: %w", err))
		return
	}
	c.l.wheel.set(c, max(hs.remaining(), time.Millisecond))
}

func (hs *clientHandshake) traffic(c *conn) {
	if hs.done {
		c.gc.Discard(-1)
		return
	}
	cl := hs.cl
	buf, _ := c.gc.Peek(-1)
	var rh http1.ResponseHead
	n, err := http1.ParseResponse(buf, 0, &rh)
	if errors.Is(err, http1.ErrIncomplete) {
		return
	}
	if err != nil {
		c.gc.Discard(-1)
		hs.fail(0, fmt.Errorf("bad handshake response: %w", err))
		return
	}
	// No extension is offered, so any is a failure (RFC 6455 4.1).
	acc, err := ws13.CheckResponse(rh.Status, rh.Get, ws13.ClientOffer{Key: hs.key, Subprotocols: cl.opts.Subprotocols})
	if err != nil {
		c.gc.Discard(-1)
		hs.fail(rh.Status, err)
		return
	}
	sub := acc.Subprotocol
	c.gc.Discard(n) // rh aliases buf: used up above (acc holds copies)
	hs.done = true
	cl.hs = nil
	cl.failures = 0
	c.l.wheel.clear(c)

	w := newWebSocket(c, (*clientHooks)(cl), cl.route, sub)
	w.wsf.set(wsClient, true)
	w.dec.SetClientSide(true)
	cl.ws = w
	w.open(nil)
	// Frames the server sent right after its 101 are already buffered;
	// gnet would not call OnTraffic again for them.
	if !c.cf.has(cfClosing) && !c.cf.has(cfDead) && c.gc.InboundBuffered() > 0 {
		w.traffic()
	}
}

func (hs *clientHandshake) deadline(c *conn) {
	hs.fail(0, fmt.Errorf("%w after %v", ErrHandshakeTimeout, hs.cl.opts.HandshakeTimeout))
}

func (hs *clientHandshake) closed(c *conn, err error) {
	if err == nil {
		err = io.EOF
	}
	hs.fail(0, fmt.Errorf("connection closed during the handshake: %w", err))
}

func (hs *clientHandshake) shutdown(c *conn) {
	hs.done = true
	if hs.cl.hs == hs {
		hs.cl.hs = nil
	}
	c.close()
}

// fail ends the attempt: close the socket, report, maybe retry. Loop-only.
func (hs *clientHandshake) fail(status int, err error) {
	if hs.done {
		return
	}
	hs.done = true
	cl := hs.cl
	if cl.hs == hs {
		cl.hs = nil
	}
	if hs.c != nil {
		hs.c.close()
	}
	if cl.h.OnError != nil && !cl.closed.Load() {
		derr := &DialError{URL: cl.url, Status: status, Err: err}
		cl.l.safeCall(func() { cl.h.OnError(cl, derr) })
	}
	cl.scheduleRetry()
}

// maxDialers bounds the goroutines that dial for a loop. They exist only
// while dials are queued: an established client connection has none.
const maxDialers = 64

// dialQueue hands client attempts to dialer goroutines: a dial (and gnet's
// Register, which waits for the loop) blocks, so it must not run on the loop.
type dialQueue struct {
	mu      sync.Mutex
	q       []*clientHandshake
	workers int
}

func (d *dialQueue) push(l *Loop, hs *clientHandshake) {
	d.mu.Lock()
	d.q = append(d.q, hs)
	start := d.workers < maxDialers
	if start {
		d.workers++
	}
	d.mu.Unlock()
	if start {
		go l.dialWorker()
	}
}

func (d *dialQueue) pop() *clientHandshake {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.q) == 0 {
		d.q = nil
		d.workers--
		return nil
	}
	hs := d.q[0]
	d.q[0] = nil
	d.q = d.q[1:]
	return hs
}

func (l *Loop) dialWorker() {
	for hs := l.dials.pop(); hs != nil; hs = l.dials.pop() {
		l.dialOne(hs)
	}
}

// dialOne connects hs's socket and registers it with gnet, which dups the
// descriptor into the loop and closes ours: each connection then costs one
// descriptor and no goroutine. Runs on a dialer goroutine.
func (l *Loop) dialOne(hs *clientHandshake) {
	failed := func(err error) {
		l.AddCallback(func() { hs.fail(0, err) })
	}
	cl := hs.cl
	if cl.closed.Load() || l.state.Load() != stateRunning {
		failed(ErrStopped) // not reported after Close; dropped once stopped
		return
	}
	left := hs.remaining()
	if left <= 0 {
		failed(fmt.Errorf("%w waiting for a dialer", ErrHandshakeTimeout))
		return
	}
	d := net.Dialer{Timeout: left}
	if cl.local != nil {
		d.LocalAddr = cl.local
	}
	nc, err := d.Dial("tcp", cl.addr)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("%w: %w", ErrHandshakeTimeout, err)
		}
		failed(err)
		return
	}
	c := &conn{l: l, kind: kindDial, aux: unsafe.Pointer(hs)}
	ctx := gnet.NewContext(gnet.NewNetConnContext(context.Background(), nc), c)
	ch, err := l.eng.Register(ctx)
	if err != nil {
		nc.Close()
		failed(fmt.Errorf("register with the loop: %w", err))
		return
	}
	select {
	case res := <-ch:
		if res.Err != nil {
			failed(fmt.Errorf("register with the loop: %w", res.Err))
		}
	case <-l.done:
	}
}

// framePosition reads the position that starts a positioned frame
// ("E-N\n" + data, Hub.SubscribeSince).
func framePosition(data []byte) (pubsub.Position, bool) {
	if len(data) == 0 || data[0] < '0' || data[0] > '9' {
		return pubsub.Position{}, false
	}
	i := 0
	for i < len(data) && i < 42 && data[i] != '\n' {
		i++
	}
	if i == len(data) || data[i] != '\n' {
		return pubsub.Position{}, false
	}
	p, err := pubsub.ParsePosition(string(data[:i]))
	return p, err == nil && p != (pubsub.Position{})
}
