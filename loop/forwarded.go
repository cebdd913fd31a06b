package loop

// Tornado's xheaders: behind a reverse proxy the TCP peer is the proxy, and
// the client's address, scheme and host arrive in headers that anyone can
// send. They are believed only when the peer is one of
// AppOptions.TrustedProxies.

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/tornago/tornago/proto/http1"
)

// parseTrustedProxies turns AppOptions.TrustedProxies into prefixes: an IP
// is a one-address prefix, IPv4-mapped addresses are unmapped so that they
// match the IPv4 peers a dual-stack listener reports.
func parseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("loop: trusted proxy %q: %w", s, err)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("loop: trusted proxy %q: %w", s, err)
		}
		ip = ip.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

func (a *Application) trusts(ip netip.Addr) bool {
	for _, p := range a.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// forwarded is what a request's proxy headers say, resolved once.
type forwarded struct {
	done  bool
	https bool
	ip    netip.Addr // the client: the peer, or the forwarded address
	host  []byte     // the public host from a trusted proxy; nil: none
}

// peerIP is the TCP peer's address, unmapped; invalid once the connection
// is gone.
func (r *Request) peerIP() netip.Addr {
	if r.c == nil || r.c.gc == nil || r.c.cf.has(cfDead) {
		return netip.Addr{}
	}
	if ta, ok := r.c.gc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// resolve reads the proxy headers on the first call. Without a trusted
// peer it looks at no header, so a server with no TrustedProxies pays a
// peer-address read and nothing else.
func (r *Request) resolve() *forwarded {
	f := &r.fwd
	if f.done {
		return f
	}
	f.done = true
	f.ip = r.peerIP()
	var a *Application
	if r.hc != nil {
		a = r.hc.app
	}
	if a == nil || len(a.trusted) == 0 || !f.ip.IsValid() || !a.trusts(f.ip) {
		return f
	}
	a.resolveForwarded(f, &r.head)
	return f
}

// proxyHeader is the header family a trusted proxy writes
// (AppOptions.ProxyHeader).
type proxyHeader uint8

const (
	proxyXForwardedFor proxyHeader = iota
	proxyForwarded
	proxyXRealIP
)

func parseProxyHeader(s string) (proxyHeader, error) {
	switch {
	case s == "" || strings.EqualFold(s, "X-Forwarded-For"):
		return proxyXForwardedFor, nil
	case strings.EqualFold(s, "Forwarded"):
		return proxyForwarded, nil
	case strings.EqualFold(s, "X-Real-IP"):
		return proxyXRealIP, nil
	}
	return 0, fmt.Errorf("loop: proxy header %q: want X-Forwarded-For, Forwarded or X-Real-IP", s)
}

// resolveForwarded fills f from the headers of a request whose peer f.ip
// is trusted, reading only the family AppOptions.ProxyHeader names. A
// proxy appends to or overwrites its own family and passes every other
// header on as the client wrote it, so reading a second family (a
// fallback, a preference) would let the client choose: behind nginx, which
// never touches Forwarded, a client's "Forwarded: for=127.0.0.1" was
// believed.
//
// The client is found walking the hops from the right, the end our own
// proxy wrote, past every trusted address: the first untrusted one is the
// client (whatever it wrote further left is its own claim). When every hop
// is trusted, the leftmost is the client; a hop that is not an address
// ("unknown", an obfuscated name, garbage) stops the walk at the last
// address known.
func (a *Application) resolveForwarded(f *forwarded, h *http1.Head) {
	switch a.proxyHd {
	case proxyForwarded:
		a.forwardedRFC(f, h)
		return
	case proxyXRealIP:
		// The last line: a proxy that adds instead of replacing puts its
		// own after the client's.
		if v := lastLine(h, "X-Real-IP"); v != nil {
			if ip, ok := http1.ParseNode(http1.TrimOWS(v)); ok {
				f.ip = ip
			}
		}
	default:
		a.forwardedFor(f, h)
	}
	if p := lastValue(h, "X-Forwarded-Proto"); p != nil {
		f.https = isHTTPS(p)
	}
	if fh := lastValue(h, "X-Forwarded-Host"); len(fh) > 0 {
		f.host = fh
	}
}

// forwardedRFC walks Forwarded's elements from the right, each parsed on
// its own, so that a malformed element the client wrote on the left does
// not make the whole field (and the proxy's element with it) ignored,
// which would leave the proxy's own address as the client's. proto= and
// host= come from the element that named the client (it describes the
// request the client sent), or the rightmost when it names none.
func (a *Application) forwardedRFC(f *forwarded, h *http1.Head) {
	var chosen http1.ForwardedElement
	have := false
walk:
	for i := len(h.Fields) - 1; i >= 0; i-- {
		if !http1.EqualFold(h.Fields[i].Name, "Forwarded") {
			continue
		}
		rest := h.Fields[i].Value
		for len(rest) > 0 {
			var raw []byte
			raw, rest = lastElement(rest)
			var ebuf [2]http1.ForwardedElement
			es, err := http1.ParseForwarded(ebuf[:0], raw)
			if err != nil || len(es) > 1 {
				break walk
			}
			if len(es) == 0 {
				continue // an empty element: ", ,"
			}
			if !have {
				chosen, have = es[0], true
			}
			ip, ok := http1.ParseNode(es[0].For)
			if !ok {
				break walk
			}
			f.ip, chosen = ip, es[0]
			if !a.trusts(ip) {
				break walk
			}
		}
	}
	if chosen.Proto != nil {
		f.https = isHTTPS(chosen.Proto)
	}
	if len(chosen.Host) > 0 {
		f.host = chosen.Host
	}
}

// lastElement splits the last forwarded-element off a Forwarded field
// value: what follows the last comma outside a quoted string, with rest
// the bytes before that comma (nil when none is left). Quotes are paired
// from the right, where the trusted proxy wrote; a quoted-pair (\") is not
// recognised, as no for/proto/host value needs one, so an element holding
// one fails to parse and stops the walk.
func lastElement(v []byte) (elem, rest []byte) {
	quoted := false
	for i := len(v) - 1; i >= 0; i-- {
		switch v[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				return v[i+1:], v[:i]
			}
		}
	}
	return v, nil
}

// forwardedFor sets f.ip from X-Forwarded-For: the walk over its list,
// last field line last (as a proxy appending a line of its own leaves
// them). Nothing else: without the header the peer is the client.
func (a *Application) forwardedFor(f *forwarded, h *http1.Head) {
	for i := len(h.Fields) - 1; i >= 0; i-- {
		fl := &h.Fields[i]
		if !http1.EqualFold(fl.Name, "X-Forwarded-For") {
			continue
		}
		rest := fl.Value
		for len(rest) > 0 {
			var item []byte
			item, rest = http1.LastToken(rest)
			if len(item) == 0 {
				break
			}
			ip, ok := http1.ParseNode(item)
			if !ok {
				return
			}
			f.ip = ip
			if !a.trusts(ip) {
				return
			}
		}
	}
}

// lastLine is the value of the last field line of name, nil when absent.
func lastLine(h *http1.Head, name string) []byte {
	for i := len(h.Fields) - 1; i >= 0; i-- {
		if http1.EqualFold(h.Fields[i].Name, name) {
			return h.Fields[i].Value
		}
	}
	return nil
}

// lastValue is the last element of the last field line of name (a proxy
// chain appends), nil when absent.
func lastValue(h *http1.Head, name string) []byte {
	for i := len(h.Fields) - 1; i >= 0; i-- {
		if http1.EqualFold(h.Fields[i].Name, name) {
			v, _ := http1.LastToken(h.Fields[i].Value)
			return v
		}
	}
	return nil
}

func isHTTPS(proto []byte) bool {
	return http1.EqualFold(proto, "https") || http1.EqualFold(proto, "wss")
}

// Loop-only.
// RemoteIP is the client's IP address without the port: the TCP peer's,
// or, when the peer is one of AppOptions.TrustedProxies, the address the
// header AppOptions.ProxyHeader names gives (X-Forwarded-For by default;
// see there for the walk). "" once the connection is gone.
func (r *Request) RemoteIP() string {
	if ip := r.resolve().ip; ip.IsValid() {
		return ip.String()
	}
	return ""
}

// Loop-only.
// Scheme is "https" when a trusted proxy says the client used TLS
// (X-Forwarded-Proto: https or wss, or Forwarded proto= when
// AppOptions.ProxyHeader is "Forwarded"), else "http": Tornago itself
// speaks plain HTTP.
func (r *Request) Scheme() string {
	if r.resolve().https {
		return "https"
	}
	return "http"
}

// Loop-only.
// Host is the host (and port, if not the default) the client asked for:
// from a trusted proxy's X-Forwarded-Host (Forwarded host= when
// AppOptions.ProxyHeader is "Forwarded"), else the
// absolute-form target's authority, else the Host header. The default
// WebSocket origin check compares the Origin against it.
func (r *Request) Host() string {
	if h := r.resolve().host; h != nil {
		return string(h)
	}
	if r.head.Authority != nil {
		return string(r.head.Authority)
	}
	return string(r.head.Get("Host"))
}
