package loop

// Accepting a WebSocket: the upgrade of an HTTP request (RFC 6455 4.2), the
// origin check, and the handler's Open.

import (
	"compress/flate"
	"net/url"
	"strings"
	"unsafe"

	"github.com/tornago/tornago/proto/ws13"
)

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
		wr.countRejected(herr.Status)
		r.SendError(herr.Status)
		return
	}
	if !wr.opts.CheckOrigin(r.Header("Origin"), r) {
		r.keep = false
		wr.countRejected(403)
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
		wr.countRejected(st)
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
	if h.app.opts.AccessLog != nil {
		c.l.safeCall(func() { h.accessLog(r, 101, 0) })
	}
	w := newWebSocket(c, handler, wr, sub)
	wr.countUpgraded(c.l)
	w.wsf.set(wsDeflate, deflate)
	w.wsf.set(wsHuffman, deflate && level == flate.HuffmanOnly)
	w.dec.SetDeflate(deflate)
	w.open(r)
}

// sameOrigin is the default origin check: a browser's Origin must name the
// host the request was for, r.Host(), which is the public host a trusted
// proxy reports rather than the proxy's own Host line to its upstream.
// (Tornado's check_origin compares the hosts too, not the schemes.)
func sameOrigin(origin string, r *Request) bool {
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host())
}

// newWebSocket makes c a WebSocket connection served by h.
func newWebSocket(c *conn, h WebSocketHandler, route *wsRoute, subprotocol string) *WebSocket {
	c.kind, c.aux, c.h = kindWS, unsafe.Pointer(route), h
	bump(&c.l.st.openWS, 1)
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
