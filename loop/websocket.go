package loop

import (
	"compress/flate"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/proto/ws13"
)

// ErrWebSocketClosed is returned by writes on a closed or closing WebSocket
// (Tornado's WebSocketClosedError).
var ErrWebSocketClosed = errors.New("loop: websocket closed")

// StatusCode is a WebSocket close code (RFC 6455 7.4).
type StatusCode = ws.StatusCode

// Close codes used by the loop.
const (
	CloseNormal         StatusCode = 1000
	CloseGoingAway      StatusCode = 1001
	CloseProtocolError  StatusCode = 1002
	CloseNoStatus       StatusCode = 1005
	CloseAbnormal       StatusCode = 1006
	CloseInvalidPayload StatusCode = 1007
	ClosePolicy         StatusCode = 1008
	CloseTooBig         StatusCode = 1009
	CloseInternalError  StatusCode = 1011
	CloseTryAgainLater  StatusCode = 1013
)

// MessageType tells text from binary messages.
type MessageType uint8

// Message types.
const (
	Text   MessageType = 1
	Binary MessageType = 2
)

// WebSocketHandler is Tornado's WebSocketHandler as a set of override points.
// Embed WebSocketBase to get no-op defaults for the ones you skip.
//
// Lifecycle promises, all on the loop goroutine:
//   - OnMessage, OnPing and OnPong are never called before Open has returned;
//   - every Open is followed by exactly one OnClose;
//   - nothing is called after OnClose.
type WebSocketHandler interface {
	// Open runs once the handshake is answered. ws.Request() is valid
	// during Open only: copy what you need from it.
	Open(ws *WebSocket)
	// OnMessage gets each complete message. data is borrowed from the
	// connection's input buffer (or, for a compressed message, from a
	// pooled inflate buffer) and valid only until OnMessage returns: copy
	// it to keep it. No copy is made for you.
	OnMessage(ws *WebSocket, typ MessageType, data []byte)
	// OnClose runs once when the connection is gone; ws.CloseCode and
	// ws.CloseReason say why (1005 when the peer's close had no code, 1006
	// when there was no close frame).
	OnClose(ws *WebSocket)
	// OnPing runs after the automatic pong was queued; data is borrowed.
	OnPing(ws *WebSocket, data []byte)
	// OnPong runs on every pong; data is borrowed.
	OnPong(ws *WebSocket, data []byte)
}

// WebSocketBase implements every WebSocketHandler method as a no-op.
type WebSocketBase struct{}

// Open does nothing.
func (WebSocketBase) Open(*WebSocket) {}

// OnMessage does nothing.
func (WebSocketBase) OnMessage(*WebSocket, MessageType, []byte) {}

// OnClose does nothing.
func (WebSocketBase) OnClose(*WebSocket) {}

// OnPing does nothing.
func (WebSocketBase) OnPing(*WebSocket, []byte) {}

// OnPong does nothing.
func (WebSocketBase) OnPong(*WebSocket, []byte) {}

// WSOptions configures a WebSocket route. The zero value is the sensible
// default; each field documents its default and cost.
type WSOptions struct {
	// MaxMessageSize bounds a message (after assembling fragments); a larger
	// one closes with 1009. Default: 10 MiB (Tornado's).
	MaxMessageSize int64
	// PingInterval sends a ping this often to detect half-open peers
	// (Tornado's websocket_ping_interval). It costs one timing-wheel entry
	// per connection, no timer or goroutine. Default: 25s (under the 60 s
	// idle cut of common proxies); negative disables.
	PingInterval time.Duration
	// PingTimeout closes a connection from which nothing arrived within this
	// long after a ping. Default: 20s.
	PingTimeout time.Duration
	// CloseTimeout bounds the wait for the peer's close frame after ours.
	// Default: 5s.
	CloseTimeout time.Duration
	// MaxBufferedBytes bounds unsent output per connection (Centrifuge's
	// default; uWebSockets' is 64 KiB). A write that would exceed it is a
	// slow consumer's: SlowConsumer says what happens. A write into an
	// empty buffer is accepted whatever its size while the loop is under
	// Options.MaxUnsentBytes, so one message larger than the bound (up to
	// MaxMessageSize for an echo) still reaches a client that reads; over
	// the loop's bound only writes up to MaxBufferedBytes are. Memory: up
	// to this many bytes per connection that does not read.
	// Default: 1 MiB.
	MaxBufferedBytes int
	// SlowConsumer is the policy for a client whose unsent output is over
	// MaxBufferedBytes (or the loop's MaxUnsentBytes). Default: SlowClose.
	SlowConsumer SlowConsumerPolicy
	// MessageTimeout bounds the time from a message's first byte to its
	// last (a large frame in flight, fragments being assembled): past it
	// the connection is closed with 1008. Pings wait while a message is in
	// flight (a peer cannot answer them mid-frame). Raise it for large
	// uploads over slow links. Default: 30s.
	MessageTimeout time.Duration
	// CheckOrigin decides whether to accept a browser's Origin. Default:
	// only the same host as the Host header, or no Origin header at all
	// (non-browser clients); others get 403. Use AnyOrigin to accept all.
	CheckOrigin func(origin string, r *Request) bool
	// Subprotocols the route speaks, in preference order; the first one
	// the client also offers is selected. Default: none.
	Subprotocols []string
	// Compression enables permessage-deflate (RFC 7692) for clients that
	// offer it; see CompressionOptions for its memory and CPU cost.
	// Default: nil, off.
	Compression *CompressionOptions
}

// AnyOrigin accepts every Origin (for demos and non-browser APIs).
func AnyOrigin(string, *Request) bool { return true }

func (o WSOptions) withDefaults() WSOptions {
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = ws13.DefaultMaxMessage
	}
	if o.PingInterval == 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 20 * time.Second
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 5 * time.Second
	}
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = 1 << 20
	}
	if o.MessageTimeout <= 0 {
		o.MessageTimeout = 30 * time.Second
	}
	if o.CheckOrigin == nil {
		o.CheckOrigin = sameOrigin
	}
	o.Compression = o.Compression.withDefaults()
	return o
}

func sameOrigin(origin string, r *Request) bool {
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Header("Host"))
}

// wsRoute is the Handler a WebSocket route installs; dispatch upgrades.
type wsRoute struct {
	newHandler func(r *Request) WebSocketHandler
	opts       WSOptions
	lim        ws13.Limits
}

func (wr *wsRoute) Serve(r *Request) { r.hc.upgrade(r, wr) }

// HandleWebSocket adds a WebSocket route. newHandler is called for each
// upgrade (on the loop) and returns the connection's handler; it may return
// one shared stateless value to save memory. It refuses the upgrade by
// returning nil: the client gets the status newHandler set with
// r.SetStatus (401, 429, ...) or 403, and no 101. r is valid until Open
// returns: it is recycled for a later request then, so copy what you need.
func (a *Application) HandleWebSocket(pattern string, newHandler func(r *Request) WebSocketHandler, opts WSOptions) {
	o := opts.withDefaults()
	a.Handle(pattern, &wsRoute{newHandler: newHandler, opts: o, lim: ws13.Limits{MaxMessage: o.MaxMessageSize}})
}

// SlowConsumerPolicy is what a WebSocket route does with a client whose
// unsent output is over its bound.
type SlowConsumerPolicy uint8

const (
	// SlowClose closes the connection at once, dropping its unsent output
	// (the 1008 close frame goes out only if the socket takes it), and
	// counts it in Stats().SlowConsumerCloses. Centrifuge's behaviour.
	SlowClose SlowConsumerPolicy = iota
	// SlowSkip drops the message for that client only: the write returns
	// ErrSkipped and is counted in Stats().SlowConsumerSkips, and the
	// client gets later messages once it caught up (uWebSockets'
	// maxBackpressure without closeOnBackpressureLimit). For ticks,
	// prices and presence, where the next message supersedes the last.
	SlowSkip
)

// ErrSkipped is returned by a write that the SlowSkip policy dropped.
var ErrSkipped = errors.New("loop: message skipped: the client's unsent output is over its bound")

// Stats are loop-wide counters. Goroutine-safe.
type Stats struct {
	SlowConsumerCloses int64 // WebSockets closed for unsent output over their bound (SlowClose)
	SlowConsumerSkips  int64 // messages dropped for a lagging client (SlowSkip)
	AcceptsRefused     int64 // connections answered 503 and closed: MaxConns reached, or stopping
	OpenConns          int64 // connections open now (served and dialed)
	UnsentBytes        int64 // output written but not taken by the sockets, as of the last look (every 5 ms while any)
}

// Stats returns the loop's counters.
func (l *Loop) Stats() Stats {
	return Stats{
		SlowConsumerCloses: l.slowCloses.Load(),
		SlowConsumerSkips:  l.slowSkips.Load(),
		AcceptsRefused:     l.refused.Load(),
		OpenConns:          l.openConns.Load(),
		UnsentBytes:        l.unsentPub.Load(),
	}
}

const (
	wsOpen uint8 = iota
	wsClosing
	wsClosed
)

// WebSocket is one WebSocket connection. Methods marked goroutine-safe may
// be called from anywhere; the rest are loop-only.
//
// It is the loop's connection struct itself (96 bytes with gnet's ~380),
// so an idle WebSocket is one allocation of Tornago's.
type WebSocket conn

// wsFlags are a WebSocket's booleans, one bit each to fit the 96 bytes.
type wsFlags uint8

const (
	wsOpened    wsFlags = 1 << iota // Open ran
	wsNotified                      // OnClose ran
	wsAwaitPong                     // a ping is out; the deadline checks wsSeen
	wsSeen                          // bytes arrived since the last ping
	wsSentClose                     // our close frame is written
	wsClient                        // opened by DialWebSocket: our frames are masked
	wsDeflate                       // permessage-deflate negotiated
	wsHuffman                       // compress Huffman-only (the client asked for a small window)
)

func (f wsFlags) has(b wsFlags) bool { return f&b != 0 }

func (f *wsFlags) set(b wsFlags, v bool) {
	if v {
		*f |= b
	} else {
		*f &^= b
	}
}

// conn is the connection w is.
func (w *WebSocket) conn() *conn { return (*conn)(w) }

// route is the route (or the Client's) whose options w follows.
func (w *WebSocket) route() *wsRoute { return (*wsRoute)(w.aux) }

// level is the compress/flate level of w's outgoing messages.
func (w *WebSocket) level() int {
	if w.wsf.has(wsHuffman) {
		return flate.HuffmanOnly
	}
	return w.route().opts.Compression.Level
}

type wsRare struct {
	checked     int // bytes of a partial text frame whose UTF-8 was checked
	subprotocol string
	reason      string
	context     any
}

// Context returns the value set with SetContext, nil if none. Loop-only.
func (w *WebSocket) Context() any {
	if w.rare == nil {
		return nil
	}
	return w.rare.context
}

// SetContext attaches an application value to the connection (a user id, a
// room); it costs a small allocation the first time. A handler built per
// connection by the route's newHandler can keep such state in its own
// fields instead. Loop-only.
func (w *WebSocket) SetContext(v any) {
	if w.rare == nil {
		if v == nil {
			return
		}
		w.rare = &wsRare{}
	}
	w.rare.context = v
}

func (w *WebSocket) setReason(reason string) {
	if w.rare == nil {
		if reason == "" {
			return
		}
		w.rare = &wsRare{}
	}
	w.rare.reason = reason
}

// Request returns the upgrade request; valid during Open only.
func (w *WebSocket) Request() *Request {
	if l := w.l; l.openingWS == w {
		return l.openingReq
	}
	return nil
}

// Loop returns the loop the connection lives on. Goroutine-safe.
func (w *WebSocket) Loop() *Loop { return w.l }

// Subprotocol returns the negotiated subprotocol, "" if none.
func (w *WebSocket) Subprotocol() string {
	if w.rare == nil {
		return ""
	}
	return w.rare.subprotocol
}

// CloseCode is the code of the close (see OnClose).
func (w *WebSocket) CloseCode() StatusCode { return w.code }

// CloseReason is the reason of the close.
func (w *WebSocket) CloseReason() string {
	if w.rare == nil {
		return ""
	}
	return w.rare.reason
}

// BufferedAmount returns the bytes written but not yet sent. Loop-only.
func (w *WebSocket) BufferedAmount() int {
	if w.state == wsClosed || w.cf.has(cfDead) {
		return 0
	}
	return w.gc.OutboundBuffered()
}

// upgrade answers the handshake for r on route wr.
func (h *httpConn) upgrade(r *Request, wr *wsRoute) {
	hd := &r.head
	var v [4][1][]byte // one field line each on the stack; more grow on the heap
	if herr := ws13.CheckRequest(hd.Method, hd.Major, hd.Minor, hd.Values(v[0][:0], "Upgrade"), hd.Values(v[1][:0], "Connection"),
		hd.Values(v[2][:0], "Sec-WebSocket-Version"), hd.Values(v[3][:0], "Sec-WebSocket-Key")); herr != nil {
		for _, kv := range herr.Header {
			r.SetHeader(kv[0], kv[1])
		}
		r.keep = false
		r.SendError(herr.Status)
		return
	}
	if !wr.opts.CheckOrigin(r.Header("Origin"), r) {
		r.keep = false
		r.SendError(403)
		return
	}
	sub := ""
	if len(wr.opts.Subprotocols) > 0 {
		offered := ws13.ParseSubprotocols(nil, r.head.Values(nil, "Sec-WebSocket-Protocol")...)
	pick:
		for _, want := range wr.opts.Subprotocols {
			for _, o := range offered {
				if o == want {
					sub = want
					break pick
				}
			}
		}
	}
	c := r.c
	// The handler is made before the 101 is sent: if newHandler panics,
	// dispatch answers 500 instead of leaving an accepted socket with no
	// handler behind.
	handler := wr.newHandler(r)
	if handler == nil {
		// newHandler refused the upgrade: the status it set (401, 429,
		// ...) or 403.
		st := r.status
		if st < 400 {
			st = 403
		}
		r.keep = false
		r.SendError(st)
		return
	}
	ext, level, deflate := negotiateDeflate(r, wr.opts.Compression)
	// gnet copies what the socket does not take, so the loop's scratch
	// buffer serves: no garbage per handshake.
	resp := ws13.AppendResponse(c.l.scratch[:0], hd.Get("Sec-WebSocket-Key"), sub, ext, nil)
	c.l.scratch = resp
	r.finished = true
	h.req = nil
	h.upgradeReq = r
	c.l.wheel.clear(c)
	c.write(resp)
	w := newWebSocket(c, handler, wr, sub)
	w.wsf.set(wsDeflate, deflate)
	w.wsf.set(wsHuffman, deflate && level == flate.HuffmanOnly)
	w.dec.SetDeflate(deflate)
	w.open(r)
}

// newWebSocket makes c a WebSocket connection served by h.
func newWebSocket(c *conn, h WebSocketHandler, route *wsRoute, subprotocol string) *WebSocket {
	c.kind, c.aux, c.h = kindWS, unsafe.Pointer(route), h
	w := c.ws()
	if subprotocol != "" {
		w.rare = &wsRare{subprotocol: subprotocol}
	}
	return w
}

// open runs the handler's Open, with r reachable through Request (kept on
// the loop, not in every idle WebSocket), then starts the keep-alive pings.
func (w *WebSocket) open(r *Request) {
	c := w.conn()
	w.wsf.set(wsOpened, true)
	c.l.openingWS, c.l.openingReq = w, r
	w.guard(func() { w.h.Open(w) })
	c.l.openingWS, c.l.openingReq = nil, nil
	if w.state == wsOpen && w.route().opts.PingInterval > 0 {
		c.l.wheel.set(c, w.route().opts.PingInterval)
	}
}

// guard runs a handler method, turning a panic into a 1011 close.
func (w *WebSocket) guard(fn func()) {
	defer func() {
		if p := recover(); p != nil {
			w.l.log.Error("loop: panic in websocket handler", "panic", p, "stack", string(debug.Stack()))
			w.Close(CloseInternalError, "internal error")
		}
	}()
	fn()
}

func (w *WebSocket) traffic() {
	c := w.conn()
	budget := turnBytes
	for !c.cf.has(cfClosing) && !c.cf.has(cfDead) && w.state != wsClosed {
		if c.cf.has(cfInflating) {
			if !w.continueInflate() {
				c.gc.Wake(nil) // the next step after the other sockets
				return
			}
			continue
		}
		if w.need > 0 && c.gc.InboundBuffered() < int(w.need) {
			if r := w.rare; r != nil && r.checked > 0 && w.recheck(c.gc.InboundBuffered()) {
				buf, _ := c.gc.Peek(-1)
				w.checkPartial(buf)
			}
			return
		}
		buf, _ := c.gc.Peek(-1)
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
			c.gc.Wake(nil) // a large compressed message goes on next turn
			return
		}
		if budget <= 0 && c.gc.InboundBuffered() > 0 && !c.cf.has(cfClosing) {
			// Bounded work per turn: the rest is served after the loop
			// polled its other sockets (gnet calls OnTraffic again).
			c.gc.Wake(nil)
			return
		}
	}
	if c.gc.InboundBuffered() > 0 {
		c.gc.Discard(-1)
	}
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
// the loop's Options.MaxPartialBytes; over that it fails the connection
// with 1013 and returns false.
func (w *WebSocket) reserve(fl int64) bool {
	l := w.l
	if fl > 0 && l.partial-int64(w.need)+fl > l.opts.MaxPartialBytes {
		w.fail(CloseTryAgainLater, "server busy: too many large messages in flight")
		w.reserve(0)
		return false
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
		w.fail(ce.Code, ce.Reason)
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

// abort closes a slow consumer at once: what it did not read is dropped
// (that is the point: its memory), the close frame goes out only if the
// socket takes it.
func (w *WebSocket) abort(code StatusCode, reason string) {
	c := w.conn()
	w.code = code
	w.setReason(reason)
	if !w.wsf.has(wsSentClose) {
		w.wsf.set(wsSentClose, true)
		if c.gc.OutboundBuffered() == 0 {
			c.gc.Write(w.appendClose(nil, code, reason))
		}
	}
	w.state = wsClosed
	c.cf.set(cfClosing, true)
	c.l.wheel.clear(c)
	c.gc.Close()
}

// WriteMessage sends a text message. Goroutine-safe: from the loop it goes
// straight to the connection's output; from another goroutine data is copied
// and the write runs on the loop (its error is not reported; ErrLoopBacklog
// when the loop's queue of such data is over Options.MaxQueuedBytes).
func (w *WebSocket) WriteMessage(data []byte) error { return w.write(ws.OpText, data) }

// WriteString sends a text message. Goroutine-safe like WriteMessage.
func (w *WebSocket) WriteString(s string) error { return w.write(ws.OpText, []byte(s)) }

// WriteBinary sends a binary message. Goroutine-safe like WriteMessage.
func (w *WebSocket) WriteBinary(data []byte) error { return w.write(ws.OpBinary, data) }

// WriteJSON sends v encoded as JSON in a text message. Goroutine-safe.
func (w *WebSocket) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("loop: websocket JSON: %w", err)
	}
	return w.write(ws.OpText, b)
}

// Ping sends a ping with data (at most 125 bytes). Goroutine-safe.
func (w *WebSocket) Ping(data []byte) error {
	if len(data) > ws13.MaxControlPayload {
		return fmt.Errorf("loop: ping payload %d bytes > 125", len(data))
	}
	return w.write(ws.OpPing, data)
}

// SetNoDelay sets TCP_NODELAY (on by default). Loop-only.
func (w *WebSocket) SetNoDelay(v bool) error {
	if w.cf.has(cfDead) {
		return ErrWebSocketClosed
	}
	return w.gc.SetNoDelay(v)
}

func (w *WebSocket) write(op ws.OpCode, data []byte) error {
	l := w.l
	if !l.InLoop() {
		cp := append([]byte(nil), data...)
		// Bounded by Options.MaxQueuedBytes: a loop that falls behind
		// makes writers fail fast instead of queueing without limit.
		return l.addDataCallback(len(cp), func() { _ = w.write(op, cp) })
	}
	if w.state != wsOpen || w.cf.has(cfClosing) || w.cf.has(cfDead) {
		return ErrWebSocketClosed
	}
	return w.writeFrame(op, data)
}

// admit applies the route's slow-consumer policy to a write of n bytes:
// nil lets it through. Loop-only.
func (w *WebSocket) admit(n int) error {
	c := w.conn()
	o := &w.route().opts
	b := c.gc.OutboundBuffered()
	over := b > 0 && b+n > o.MaxBufferedBytes
	if !over && (b > 0 || n > o.MaxBufferedBytes) && c.l.unsentOver(n) {
		// The loop's budget is spent: only a small write into an empty
		// buffer (which the socket most likely takes whole) goes on.
		over = true
	}
	if !over {
		return nil
	}
	if o.SlowConsumer == SlowSkip {
		c.l.slowSkips.Add(1)
		return ErrSkipped
	}
	c.l.slowCloses.Add(1)
	w.abort(ClosePolicy, "slow consumer: send buffer full")
	return ErrWebSocketClosed
}

// writeControl writes a pong or ping: small, never refused.
func (w *WebSocket) writeControl(op ws.OpCode, data []byte) error {
	c := w.conn()
	if w.wsf.has(wsClient) {
		return w.writeMasked(op, data)
	}
	l := c.l
	l.scratch = ws13.AppendFrame(l.scratch[:0], true, op, data)
	return c.write(l.scratch)
}
func (w *WebSocket) writeFrame(op ws.OpCode, data []byte) error {
	c := w.conn()
	if err := w.admit(len(data) + 14); err != nil {
		return err
	}
	if w.wsf.has(wsClient) {
		return w.writeMasked(op, data)
	}
	l := c.l
	if w.wsf.has(wsDeflate) && op.IsData() && w.route().opts.Compression.compresses(len(data)) {
		var err error
		if l.scratch, err = appendDeflatedFrame(l.scratch[:0], w.level(), op, data); err != nil {
			return err
		}
		err = c.write(l.scratch)
		l.trimScratch()
		return err
	}
	if len(data) <= 16<<10 {
		l.scratch = ws13.AppendFrame(l.scratch[:0], true, op, data)
		return c.write(l.scratch)
	}
	l.scratch = ws13.AppendHeader(l.scratch[:0], true, op, len(data))
	l.iov[0], l.iov[1] = l.scratch, data
	err := c.writev(l.iov[:])
	l.iov[0], l.iov[1] = nil, nil
	return err
}

// WritePrepared sends a frame already encoded with PrepareMessage, so a
// broadcast encodes once and writes the same bytes to every client.
// Loop-only.
func (w *WebSocket) WritePrepared(p *PreparedMessage) error {
	if w.state != wsOpen || w.cf.has(cfClosing) || w.cf.has(cfDead) {
		return ErrWebSocketClosed
	}
	c := w.conn()
	if err := w.admit(len(p.frame)); err != nil {
		return err
	}
	if w.wsf.has(wsClient) {
		op, payload := p.split()
		return w.writeMasked(op, payload)
	}
	frame := p.frame
	if w.wsf.has(wsDeflate) {
		if _, payload := p.split(); w.route().opts.Compression.compresses(len(payload)) {
			var err error
			if frame, err = p.deflated(w.level()); err != nil {
				return err
			}
		}
	}
	return c.write(frame)
}

// PreparedMessage is a server frame encoded once for many connections.
// Its compressed variants (one per compression level in use) are encoded
// lazily, once, by the first WritePrepared to a connection that negotiated
// permessage-deflate.
type PreparedMessage struct {
	frame []byte
	mu    sync.Mutex // guards zframes: routes on several loops may share p
	// zframes holds the compressed frames, indexed by level+2.
	zframes [][]byte
}

// PrepareMessage encodes a text (or binary) message once. Goroutine-safe.
func PrepareMessage(typ MessageType, data []byte) *PreparedMessage {
	return &PreparedMessage{frame: ws13.AppendFrame(nil, true, ws.OpCode(typ), data)}
}

// PrepareJSON encodes v as JSON in a prepared text message (nil on error).
func PrepareJSON(v any) *PreparedMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return PrepareMessage(Text, b)
}

// Close starts the closing handshake with code and reason; OnClose follows
// once the peer answers or CloseTimeout passes. Goroutine-safe.
func (w *WebSocket) Close(code StatusCode, reason string) error {
	if err := checkClose(code, reason); err != nil {
		return err
	}
	l := w.l
	if !l.InLoop() {
		l.AddCallback(func() { _ = w.Close(code, reason) })
		return nil
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
