package loop

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tornago/tornago/proto/http1"
)

// Handler serves one HTTP request (Go's net/http shape, Tornado's
// RequestHandler semantics). It runs on the loop. If it returns without
// calling r.Finish and without r.Async, the response is finished for it.
type Handler interface {
	Serve(r *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(r *Request)

// Loop-only. Serve calls f(r).
func (f HandlerFunc) Serve(r *Request) { f(r) }

// Methods dispatches on the request method, Tornado's get/post/... entry
// points. A method without a function gets 405 with an Allow header; HEAD
// falls back to Get with the body suppressed.
type Methods struct {
	Get, Post, Put, Delete, Patch, Options func(r *Request)
}

// Loop-only. Serve implements Handler.
func (m Methods) Serve(r *Request) {
	var fn func(*Request)
	switch r.Method {
	case "GET", "HEAD":
		fn = m.Get
	case "POST":
		fn = m.Post
	case "PUT":
		fn = m.Put
	case "DELETE":
		fn = m.Delete
	case "PATCH":
		fn = m.Patch
	case "OPTIONS":
		fn = m.Options
	}
	if fn == nil {
		allow := ""
		for _, p := range []struct {
			n string
			f func(*Request)
		}{{"GET", m.Get}, {"HEAD", m.Get}, {"POST", m.Post}, {"PUT", m.Put}, {"DELETE", m.Delete}, {"PATCH", m.Patch}, {"OPTIONS", m.Options}} {
			if p.f != nil {
				if allow != "" {
					allow += ", "
				}
				allow += p.n
			}
		}
		r.SetHeader("Allow", allow)
		r.SendError(405)
		return
	}
	fn(r)
}

// AppOptions configures an Application. The zero value is ready; each field
// documents its default.
type AppOptions struct {
	// Limits bounds request lines (414, default 8 KiB), heads (431, default
	// 64 KiB) and bodies (413, default 10 MiB).
	Limits http1.Limits
	// HeaderTimeout closes with 408 a connection whose request head (or body)
	// does not complete in time: the slowloris defence. Default: 10s.
	HeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no request in flight.
	// Default: 60s.
	IdleTimeout time.Duration
	// ServerHeader is sent as Server on every response. Default: "Tornago".
	ServerHeader string
	// AccessLog, when set, is called on the loop once per answered
	// request (error answers too, and WebSocket upgrades as 101), after
	// the response was written; a request that could not be parsed has no
	// entry. Keep it quick: it runs on
	// the loop. Default: nil, no access log.
	AccessLog func(AccessEntry)
	// MaxUnsentPerConn bounds the response bytes one connection may have
	// unsent before the loop stops reading its next pipelined request; it
	// reads again once half of them went out. One response is always
	// written whole, so this bounds a pipelining client that does not read
	// to about one response plus this. It is also the bound of a streamed
	// response (Request.Flush): a Flush past it closes the connection as
	// a slow consumer's (an event stream has its own,
	// EventStreamOptions.MaxUnsentPerConn). Default: 1 MiB.
	MaxUnsentPerConn int
	// MaxHeldInputPerConn bounds the input one connection may send while
	// a request of it is in flight after its handler returned (a long
	// poll, a streamed response, an event stream): such input is
	// pipelined and waits in gnet's inbound buffer until that request
	// finishes, for as long as a stream lasts. Past it the loop discards
	// the input and closes the connection: a parked request is answered
	// 400 with the reason, an event stream gets a comment with the reason
	// and its clean end, another streamed response is cut (no last
	// chunk). Counted in Metrics().HeldInputCloses; all connections
	// together are bounded by Options.MaxHeldInputTotal. Browsers never
	// pipeline; a client that does may queue a few small requests behind
	// a long poll. Default: 4 KiB.
	MaxHeldInputPerConn int
	// TrustedProxies lists the reverse proxies (IPs or CIDR prefixes, such
	// as "127.0.0.1" or "10.0.0.0/8") whose proxy headers are believed:
	// from such a peer, Request.RemoteIP, Scheme and Host report the
	// client's address, scheme and host from the headers ProxyHeader names
	// (Tornado's xheaders), and from no other. Default: none, every proxy
	// header is ignored. NewApplication panics on an entry that is neither
	// an IP nor a prefix.
	TrustedProxies []string
	// ProxyHeader names the one header family a trusted proxy writes, so
	// the only one read; a header of another family is the client's, passed
	// on by a proxy that does not know it, and is ignored:
	//
	//   - "X-Forwarded-For" (the default, ""): the client is the rightmost
	//     address of X-Forwarded-For (field lines in order) that is not a
	//     trusted proxy, the one the proxy appended; the scheme and host are
	//     the last value of X-Forwarded-Proto and X-Forwarded-Host, which the
	//     proxy must set (overwrite) or remove. Forwarded and X-Real-IP are
	//     not read. nginx ($proxy_add_x_forwarded_for), HAProxy (option
	//     forwardfor), Caddy, Traefik and cloud load balancers.
	//   - "Forwarded" (RFC 7239): the same walk over the for= of Forwarded's
	//     elements from the right; proto= and host= come from the element
	//     that named the client, which a trusted proxy appended. An element
	//     without an address in for= (or malformed) stops the walk at the
	//     last address known. X-Forwarded-* and X-Real-IP are not read.
	//   - "X-Real-IP": the client is X-Real-IP (the last field line) as is,
	//     for a single proxy that overwrites it (Tornado's nginx recipe);
	//     scheme and host as for X-Forwarded-For.
	//
	// A trusted peer that sends no usable address is itself the client.
	// The name is case-insensitive; NewApplication panics on another.
	ProxyHeader string
}

func (o AppOptions) withDefaults() AppOptions {
	o.Limits = o.Limits.WithDefaults()
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.ServerHeader == "" {
		o.ServerHeader = "Tornago"
	}
	if o.MaxUnsentPerConn <= 0 {
		o.MaxUnsentPerConn = 1 << 20
	}
	if o.MaxHeldInputPerConn <= 0 {
		o.MaxHeldInputPerConn = 4 << 10
	}
	return o
}

// Application is a route table (Tornado's tornado.web.Application): regular
// expressions matched against the whole path, in the order added, capture
// groups passed to the handler as path arguments. Unmatched paths get 404.
// Add routes before Start. An Application serves one Loop: it keeps
// loop-only free lists and route counters, so give each Loop its own
// (Loop.Listen refuses an Application that already serves another loop).
type Application struct {
	owner   atomic.Pointer[Loop] // the loop it serves, from its first Listen
	opts    AppOptions
	routes  []route
	trusted []netip.Prefix // AppOptions.TrustedProxies, parsed
	proxyHd proxyHeader    // AppOptions.ProxyHeader, parsed

	// Free lists of per-connection HTTP state, touched only on the loop
	// goroutine. Reusing them (with the header slices' capacity) keeps a
	// WebSocket upgrade from leaving ~2 KiB of garbage behind, and garbage
	// is what lets the heap, and so RSS, grow past the live connections.
	freeHC  []*httpConn
	freeReq []*Request

	wsStats routeList // the WebSocket routes' counters (stats.go)
}

// maxFree bounds each free list: enough for a burst of handshakes, small
// enough that a burst's peak is not kept for ever.
const maxFree = 256

func (a *Application) newHTTPConn() *httpConn {
	if n := len(a.freeHC); n > 0 {
		h := a.freeHC[n-1]
		a.freeHC = a.freeHC[:n-1]
		return h
	}
	return &httpConn{app: a}
}

// releaseHTTPConn recycles h once nothing refers to it any more: the
// connection was upgraded or closed with no request in flight.
func (a *Application) releaseHTTPConn(h *httpConn) {
	if r := h.upgradeReq; r != nil {
		h.upgradeReq = nil
		a.releaseRequest(r)
	}
	if len(a.freeHC) >= maxFree || h.req != nil {
		return
	}
	fields := h.head.Fields[:0]
	*h = httpConn{app: a}
	h.head.Fields = fields
	a.freeHC = append(a.freeHC, h)
}

func (a *Application) newRequest() *Request {
	if n := len(a.freeReq); n > 0 {
		r := a.freeReq[n-1]
		a.freeReq = a.freeReq[:n-1]
		return r
	}
	return &Request{}
}

// releaseRequest recycles an upgrade request: Request documents that it
// is valid during Open only, so after Open nothing may use it.
func (a *Application) releaseRequest(r *Request) {
	if len(a.freeReq) >= maxFree {
		return
	}
	fields, raw, hdr := r.head.Fields[:0], r.raw[:0], r.hdr[:0]
	*r = Request{}
	r.head.Fields, r.raw, r.hdr = fields, raw, hdr
	a.freeReq = append(a.freeReq, r)
}

type route struct {
	re *regexp.Regexp
	h  Handler
}

// Goroutine-safe.
// NewApplication returns an empty application. Give each Loop its own: its
// routes are then added before Start or on that loop.
func NewApplication(opts AppOptions) *Application {
	trusted, err := parseTrustedProxies(opts.TrustedProxies)
	if err != nil {
		panic(err.Error())
	}
	ph, err := parseProxyHeader(opts.ProxyHeader)
	if err != nil {
		panic(err.Error())
	}
	return &Application{opts: opts.withDefaults(), trusted: trusted, proxyHd: ph}
}

// Loop-only, or before Start. Handle adds a route. pattern is anchored at
// both ends ("/user/([0-9]+)"). It panics on an invalid pattern, like
// regexp.MustCompile.
func (a *Application) Handle(pattern string, h Handler) {
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		panic(fmt.Sprintf("loop: route %q: %v", pattern, err))
	}
	a.routes = append(a.routes, route{re: re, h: h})
}

// Loop-only, or before Start. HandleFunc adds a route served by a function.
func (a *Application) HandleFunc(pattern string, fn func(r *Request)) {
	a.Handle(pattern, HandlerFunc(fn))
}

func (a *Application) match(path string) (Handler, []string) {
	for _, rt := range a.routes {
		if rt.re.NumSubexp() == 0 { // MatchString allocates nothing
			if rt.re.MatchString(path) {
				return rt.h, nil
			}
			continue
		}
		if m := rt.re.FindStringSubmatch(path); m != nil {
			return rt.h, m[1:]
		}
	}
	return nil, nil
}

// errAppShared is why a second loop cannot listen with an Application.
var errAppShared = errors.New("this Application already serves another Loop; give each Loop its own (e.g. build it in Group.Listen's setup)")

// claim makes l the loop a serves, or fails if a serves another one: its
// free lists and route counters are touched without locks by its loop.
// Goroutine-safe.
func (a *Application) claim(l *Loop) error {
	if a.owner.CompareAndSwap(nil, l) || a.owner.Load() == l {
		return nil
	}
	return errAppShared
}

func (a *Application) serveConn(c *conn) {
	h := a.newHTTPConn()
	c.kind, c.aux = kindHTTP, unsafe.Pointer(h)
	c.l.wheel.set(c, a.opts.IdleTimeout)
}
