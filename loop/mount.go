package loop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
)

// Mounting: an existing net/http server routes requests to a Tornago
// Application through an http.Handler. The handler hijacks the connection
// and gives its socket to the loop (gnet's Engine.Register dups the
// descriptor and closes Go's copy), so that from then on no goroutine and
// no net/http buffer remains for it: it costs what a connection accepted
// by the loop's own listener costs. net/http has already parsed the
// request, so the handler writes its head back as bytes, followed by what
// net/http had read beyond it, and the loop's HTTP parser reads those
// before the socket: the request then runs exactly as if the loop had
// accepted it (limits, routing, upgrade, metrics, forwarded-header trust,
// since the peer is the socket's peer).

// mountConn is the gnet context of a connection a mount handler
// registers: the Application to serve it and the bytes to read first.
type mountConn struct {
	app *Application
	pre []byte
}

// Goroutine-safe. Mount returns an http.Handler through which an existing
// net/http server (a ServeMux, chi, gorilla/mux, ...) serves app on this
// loop, on the net/http server's own port. Every request routed to the
// handler is handed over to the loop with its connection: the handler
// hijacks the connection and the loop serves it from then on (that
// request, the requests that follow on the keep-alive connection, and
// the WebSocket or event stream it may become), with no goroutine or
// net/http buffer left for it. The request reaches app as net/http's
// middleware left it: its headers (an auth middleware may add or remove
// some) and r.URL.RequestURI() (so http.StripPrefix strips a mount
// prefix); middleware must neither read the body nor write to the
// response before the handler runs.
//
// A connection the loop cannot take is answered by the handler in place,
// with an error and a log record, never handed over half-way: HTTP/2 and
// TLS terminated by the net/http server (gnet reads the raw socket, so
// terminate TLS in front of the server instead) get 501, a connection
// that is not a *net.TCPConn (a unix socket, a listener wrapper such as
// netutil.LimitListener) gets 501 after the hijack, and a loop that is
// not running (not yet Ready, stopping) 503. The loop's MaxConns and
// its refusals while stopping apply to mounted connections as to
// accepted ones.
//
// Mount may be called before or after Start; it fails when app already
// serves another loop (see Listen).
func (l *Loop) Mount(app *Application) (http.Handler, error) {
	if app == nil {
		return nil, errors.New("loop: mount: nil Application")
	}
	if err := app.claim(l); err != nil {
		return nil, fmt.Errorf("loop: mount: %w", err)
	}
	return &mountHandler{l: l, app: app, registering: make(chan struct{}, mountRegistrations)}, nil
}

// mountRegistrations bounds the connections one mount handler has in
// gnet's Register at once. Each takes a goroutine of gnet's worker pool
// until the loop has opened it, and a busy loop (a connection storm)
// would otherwise grow that pool to hundreds of goroutines whose stacks
// stay in the process's RSS long after the storm.
const mountRegistrations = 2

// Goroutine-safe before Start. Mount is Loop.Mount for every loop of the
// group: setup builds each loop's Application as in Listen, and the
// handler hands each connection to the loop with the fewest open
// connections.
func (g *Group) Mount(setup func(l *Loop, i int) *Application) (http.Handler, error) {
	hs := make([]*mountHandler, len(g.loops))
	for i, l := range g.loops {
		h, err := l.Mount(setup(l, i))
		if err != nil {
			return nil, err
		}
		hs[i] = h.(*mountHandler)
	}
	if len(hs) == 1 {
		return hs[0], nil
	}
	return groupMount(hs), nil
}

type groupMount []*mountHandler

func (gm groupMount) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	best := gm[0]
	for _, h := range gm[1:] {
		if h.l.openConns.Load() < best.l.openConns.Load() {
			best = h
		}
	}
	best.ServeHTTP(w, r)
}

type mountHandler struct {
	l       *Loop
	app     *Application
	refused atomic.Int64 // connections answered in place (logged 1, 2, 4, ... times)
	// registering holds a token per connection in Register (see
	// mountRegistrations).
	registering chan struct{}
}

// ServeHTTP hands the connection of r over to the loop. It runs on
// net/http's goroutine for the connection, which ends when it returns.
func (h *mountHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l := h.l
	if r.ProtoMajor != 1 {
		h.refuse(w, http.StatusNotImplemented, "tornago: a mounted Tornago route serves HTTP/1.x only (this is "+r.Proto+")", nil)
		return
	}
	if r.TLS != nil {
		h.refuse(w, http.StatusNotImplemented, "tornago: a mounted Tornago route cannot take a connection whose TLS the net/http server terminates; terminate TLS in front of the server", nil)
		return
	}
	if _, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); !ok {
		h.refuse(w, http.StatusNotImplemented, "tornago: a mounted Tornago route serves TCP connections only", nil)
		return
	}
	if !l.running() {
		w.Header().Set("Retry-After", "1")
		h.refuse(w, http.StatusServiceUnavailable, "tornago: the loop is not running", nil)
		return
	}
	pre := appendRequestHead(make([]byte, 0, 512), r)
	if len(pre) > h.app.opts.Limits.MaxHeaderBytes {
		// net/http's own bound (Server.MaxHeaderBytes, 1 MB by default) is
		// wider than the loop's: answer as the loop would, without the
		// hand-over (and, as the loop, without a log record: the client's
		// fault).
		w.Header().Set("Connection", "close")
		http.Error(w, http.StatusText(http.StatusRequestHeaderFieldsTooLarge), http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		h.refuse(w, http.StatusNotImplemented, "tornago: the connection cannot be taken over", err)
		return
	}
	// What net/http read beyond the head: a body, pipelined requests, the
	// first bytes of a client that did not wait for the 101.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		pre = append(pre, b...)
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		h.refuseRaw(nc, 501, fmt.Sprintf("tornago: a mounted Tornago route needs a *net.TCPConn, the server's listener gives %T", nc))
		return
	}
	if l.opts.SocketSendBuffer > 0 {
		// As gnet sets it on the sockets it accepts (Options.SocketSendBuffer).
		_ = tc.SetWriteBuffer(l.opts.SocketSendBuffer)
	}
	ctx := gnet.NewContext(gnet.NewNetConnContext(context.Background(), tc), &mountConn{app: h.app, pre: pre})
	h.registering <- struct{}{}
	defer func() { <-h.registering }()
	ch, err := l.eng.Register(ctx)
	if err != nil {
		h.refuseRaw(tc, 503, "tornago: the loop is not running")
		return
	}
	// gnet dups the descriptor and closes tc, whatever the result. A loop
	// that stops before it took the connection never answers: the
	// connection then goes with the loop.
	select {
	case res := <-ch:
		if res.Err != nil {
			l.log.Error("loop: mount: register a connection", "err", res.Err, "remote", r.RemoteAddr)
		}
	case <-l.done:
	}
}

// running reports whether the loop takes connections. Goroutine-safe.
func (l *Loop) running() bool {
	select {
	case <-l.ready: // l.eng is set before ready is closed
	default:
		return false
	}
	return l.state.Load() == stateRunning && l.ctrlPeer != nil
}

// refuse answers r in place, before any hijack.
func (h *mountHandler) refuse(w http.ResponseWriter, status int, msg string, err error) {
	h.logRefusal(msg, err)
	http.Error(w, msg, status)
}

// refuseRaw answers on a hijacked connection that the loop cannot take.
func (h *mountHandler) refuseRaw(nc net.Conn, status int, msg string) {
	h.logRefusal(msg, nil)
	body := msg + "\n"
	_, _ = io.WriteString(nc, "HTTP/1.1 "+strconv.Itoa(status)+" "+http.StatusText(status)+"\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body)
	_ = nc.Close()
}

func (h *mountHandler) logRefusal(msg string, err error) {
	if n := h.refused.Add(1); n&(n-1) == 0 {
		h.l.log.Error("loop: mount: connection not handed over", "reason", msg, "err", err, "refused", n)
	}
}

// appendRequestHead writes r's request line and headers as the loop's
// parser reads them. net/http moved Host and Transfer-Encoding out of
// r.Header; header values it parsed hold no CR or LF, and values a
// middleware set with them are dropped rather than let split the head.
func appendRequestHead(b []byte, r *http.Request) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.URL.RequestURI()...)
	b = append(b, " HTTP/1."...)
	b = strconv.AppendInt(b, int64(r.ProtoMinor), 10)
	b = append(b, "\r\n"...)
	if r.Host != "" && validHeaderValue(r.Host) {
		b = append(b, "Host: "...)
		b = append(b, r.Host...)
		b = append(b, "\r\n"...)
	}
	for k, vs := range r.Header {
		if !validHeaderValue(k) {
			continue
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				continue
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if len(r.TransferEncoding) > 0 {
		b = append(b, "Transfer-Encoding: "...)
		for i, te := range r.TransferEncoding {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, te...)
		}
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' || s[i] == 0 {
			return false
		}
	}
	return true
}

// prefixed is a mounted connection's gnet.Conn while the bytes the mount
// handler gave (the request head and what net/http had read) are not all
// consumed: Peek, Discard and InboundBuffered read them before gnet's
// buffer. Once they are consumed the conn goes back to gnet's own
// gnet.Conn, so an idle mounted connection costs nothing more. Loop-only.
type prefixed struct {
	gnet.Conn
	c   *conn
	buf []byte
}

// absorb moves gnet's buffered input behind buf, so that Peek returns one
// slice.
func (p *prefixed) absorb() {
	if n := p.Conn.InboundBuffered(); n > 0 {
		b, _ := p.Conn.Peek(n)
		p.buf = append(p.buf, b...)
		_, _ = p.Conn.Discard(n)
	}
}

func (p *prefixed) InboundBuffered() int { return len(p.buf) + p.Conn.InboundBuffered() }

func (p *prefixed) Peek(n int) ([]byte, error) {
	if len(p.buf) == 0 {
		return p.Conn.Peek(n)
	}
	p.absorb()
	if n <= 0 {
		return p.buf, nil
	}
	if n > len(p.buf) {
		return nil, io.ErrShortBuffer
	}
	return p.buf[:n], nil
}

func (p *prefixed) Discard(n int) (int, error) {
	if len(p.buf) == 0 {
		return p.Conn.Discard(n)
	}
	if n >= 0 && n < len(p.buf) {
		p.buf = p.buf[n:]
		return n, nil
	}
	m := len(p.buf)
	p.buf = nil
	if p.c.gc == gnet.Conn(p) {
		p.c.gc = p.Conn
	}
	if n < 0 {
		k, err := p.Conn.Discard(-1)
		return m + k, err
	}
	if n == m {
		return m, nil
	}
	k, err := p.Conn.Discard(n - m)
	return m + k, err
}
