package loop

import (
	"compress/flate"
	"errors"
	"runtime/debug"
	"time"

	"github.com/tornago/tornago/proto/ws13"
)

// ErrWebSocketClosed is returned by writes on a closed or closing WebSocket
// (Tornado's WebSocketClosedError).
var ErrWebSocketClosed = errors.New("loop: websocket closed")

// StatusCode is a WebSocket close code (RFC 6455 7.4): ws13's, so the loop,
// both WebSocket clients and the protocol layer share one type.
type StatusCode = ws13.StatusCode

// Close codes used by the loop (ws13's; see there for the RFC's words).
const (
	CloseNormal         = ws13.CloseNormal
	CloseGoingAway      = ws13.CloseGoingAway
	CloseProtocolError  = ws13.CloseProtocolError
	CloseNoStatus       = ws13.CloseNoStatus
	CloseAbnormal       = ws13.CloseAbnormal
	CloseInvalidPayload = ws13.CloseInvalidPayload
	ClosePolicy         = ws13.ClosePolicy
	CloseTooBig         = ws13.CloseTooBig
	CloseInternalError  = ws13.CloseInternalError
	CloseTryAgainLater  = ws13.CloseTryAgainLater
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
	// one closes with 1009 (TooBigCode). Default: 10 MiB (Tornado's).
	MaxMessageSize int64
	// TooBigCode, when not 0, is the close code of a message over
	// MaxMessageSize instead of 1009: an application protocol that
	// documents its own code for commands too large (the client
	// protocol's 3505) keeps it whatever the size. Default: 1009.
	TooBigCode StatusCode
	// PingInterval sends a ping this often to detect half-open peers
	// (Tornado's websocket_ping_interval). It costs one timing-wheel entry
	// per connection, no timer or goroutine. Default: 25s (under the 60 s
	// idle cut of common proxies); negative disables.
	PingInterval time.Duration
	// PingTimeout closes a connection whose peer did not answer a ping
	// with a pong within this long. Only a pong counts: messages and other
	// input do not prove the peer reads what it is sent. The connection is
	// closed without a close frame (OnClose sees 1006, reason "ping
	// timeout"). Default: 20s.
	PingTimeout time.Duration
	// CloseTimeout bounds the wait for the peer's close frame after ours.
	// Default: 5s.
	CloseTimeout time.Duration
	// MaxUnsentPerConn bounds unsent output per connection (Centrifuge's
	// default; uWebSockets' is 64 KiB). A write that would exceed it is a
	// slow consumer's: SlowConsumer says what happens. A write into an
	// empty buffer is accepted whatever its size while the loop is under
	// Options.MaxUnsentTotal, so one message larger than the bound (up to
	// MaxMessageSize for an echo) still reaches a client that reads; over
	// the loop's bound only writes up to MaxUnsentPerConn are. A Hub's
	// replay (SubscribeSince) goes at the client's pace within half of
	// it, whatever the history's size. Memory: up to this many bytes per
	// connection that does not read.
	// Default: 1 MiB.
	MaxUnsentPerConn int
	// SlowConsumer is the policy for a client whose unsent output is over
	// MaxUnsentPerConn (or the loop's MaxUnsentTotal). Default: SlowClose.
	SlowConsumer SlowConsumerPolicy
	// MessageTimeout bounds the time from a message's first byte to its
	// last (a large frame in flight, fragments being assembled): past it
	// the connection is closed with 1008. Pings wait while a message is in
	// flight (a peer cannot answer them mid-frame). Raise it for large
	// uploads over slow links. Default: 20s.
	MessageTimeout time.Duration
	// CheckOrigin decides whether to accept a browser's Origin. Default:
	// only the same host as Request.Host (the Host header, or the public
	// host a trusted proxy reports), or no Origin header at all
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

// Goroutine-safe.
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
	if o.MaxUnsentPerConn <= 0 {
		o.MaxUnsentPerConn = 1 << 20
	}
	if o.MessageTimeout <= 0 {
		o.MessageTimeout = 20 * time.Second
	}
	if o.CheckOrigin == nil {
		o.CheckOrigin = sameOrigin
	}
	o.Compression = o.Compression.withDefaults()
	return o
}

// wsRoute is the Handler a WebSocket route installs; dispatch upgrades.
type wsRoute struct {
	newHandler func(r *Request) WebSocketHandler
	opts       WSOptions
	lim        ws13.Limits
	st         *routeStats // nil for dialed WebSockets
}

func (wr *wsRoute) Serve(r *Request) { r.hc.upgrade(r, wr) }

// Loop-only, or before Start.
// HandleWebSocket adds a WebSocket route. newHandler is called for each
// upgrade (on the loop) and returns the connection's handler; it may return
// one shared stateless value to save memory. It refuses the upgrade by
// returning nil: the client gets the status newHandler set with
// r.SetStatus (401, 429, ...) or 403, and no 101. r is valid until Open
// returns: it is recycled for a later request then, so copy what you need.
func (a *Application) HandleWebSocket(pattern string, newHandler func(r *Request) WebSocketHandler, opts WSOptions) {
	o := opts.withDefaults()
	a.Handle(pattern, &wsRoute{newHandler: newHandler, opts: o, lim: ws13.Limits{MaxMessage: o.MaxMessageSize}, st: a.wsStats.add(pattern)})
}

const (
	wsOpen uint8 = iota
	wsClosing
	wsClosed
)

// WebSocket is one WebSocket connection. Its methods are loop-only unless
// their first doc line says goroutine-safe: the writes (WriteText,
// WriteBinary, WriteJSON, WritePrepared, Ping) and Close return
// ErrNotOnLoop from another goroutine and do nothing; WriteAsync,
// WritePreparedAsync and CloseAsync are their goroutine-safe doors, which
// report the real result on the loop.
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
	wsSeen                          // a pong arrived since the last ping (only a pong counts)
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

// writable reports whether messages may still be written: the handshake is
// done and no close has started. Loop-only.
func (w *WebSocket) writable() bool {
	return w.state == wsOpen && !w.cf.has(cfClosing) && !w.cf.has(cfDead)
}

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

// Loop-only.
// Context returns the value set with SetContext, nil if none.
func (w *WebSocket) Context() any {
	if w.rare == nil {
		return nil
	}
	return w.rare.context
}

// Loop-only.
// SetContext attaches an application value to the connection (a user id, a
// room); it costs a small allocation the first time. A handler built per
// connection by the route's newHandler can keep such state in its own
// fields instead.
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

// Loop-only.
// Request returns the upgrade request; valid during Open only.
func (w *WebSocket) Request() *Request {
	if l := w.l; l.openingWS == w {
		return l.openingReq
	}
	return nil
}

// Goroutine-safe.
// Loop returns the loop the connection lives on.
func (w *WebSocket) Loop() *Loop { return w.l }

// Loop-only.
// Subprotocol returns the negotiated subprotocol, "" if none.
func (w *WebSocket) Subprotocol() string {
	if w.rare == nil {
		return ""
	}
	return w.rare.subprotocol
}

// Loop-only.
// CloseCode is the code of the close (see OnClose).
func (w *WebSocket) CloseCode() StatusCode { return w.code }

// Loop-only.
// CloseReason is the reason of the close.
func (w *WebSocket) CloseReason() string {
	if w.rare == nil {
		return ""
	}
	return w.rare.reason
}

// Loop-only.
// BufferedAmount returns the bytes written but not yet sent.
func (w *WebSocket) BufferedAmount() int {
	if w.state == wsClosed || w.cf.has(cfDead) {
		return 0
	}
	return w.gc.OutboundBuffered()
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

// Loop-only.
// SetNoDelay sets TCP_NODELAY (on by default).
func (w *WebSocket) SetNoDelay(v bool) error {
	if w.cf.has(cfDead) {
		return ErrWebSocketClosed
	}
	return w.gc.SetNoDelay(v)
}
