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

// resolveForwarded fills f from the headers of a request whose peer f.ip
// is trusted. Forwarded (RFC 7239) wins over the X-Forwarded-* family;
// a malformed Forwarded is ignored whole.
//
// The client is found walking the hops from the right, the end our own
// proxy wrote, past every trusted address: the first untrusted one is the
// client (whatever it wrote further left is its own claim). When every hop
// is trusted, the leftmost is the client; a hop that is not an address
// ("unknown", an obfuscated name, garbage) stops the walk at the last
// address known.
func (a *Application) resolveForwarded(f *forwarded, h *http1.Head) {
	var vbuf [2][]byte
	if fv := h.Values(vbuf[:0], "Forwarded"); len(fv) > 0 {
		var ebuf [8]http1.ForwardedElement
		if es, err := http1.ParseForwarded(ebuf[:0], fv...); err == nil && len(es) > 0 {
			chosen := len(es) - 1
			found := false
			for i := len(es) - 1; i >= 0; i-- {
				if es[i].For == nil {
					continue
				}
				ip, ok := http1.ParseNode(es[i].For)
				if !ok {
					break
				}
				chosen, found, f.ip = i, true, ip
				if !a.trusts(ip) {
					break
				}
			}
			e := es[chosen]
			if e.Proto != nil {
				f.https = isHTTPS(e.Proto)
			} else if p := lastValue(h, "X-Forwarded-Proto"); p != nil {
				f.https = isHTTPS(p)
			}
			if len(e.Host) > 0 {
				f.host = e.Host
			} else if fh := lastValue(h, "X-Forwarded-Host"); len(fh) > 0 {
				f.host = fh
			}
			if found {
				return
			}
			a.forwardedFor(f, h)
			return
		}
	}
	a.forwardedFor(f, h)
	if p := lastValue(h, "X-Forwarded-Proto"); p != nil {
		f.https = isHTTPS(p)
	}
	if fh := lastValue(h, "X-Forwarded-Host"); len(fh) > 0 {
		f.host = fh
	}
}

// forwardedFor sets f.ip from X-Forwarded-For (the same walk over its
// list, last field line last), else from X-Real-IP.
func (a *Application) forwardedFor(f *forwarded, h *http1.Head) {
	seen := false
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
			f.ip, seen = ip, true
			if !a.trusts(ip) {
				return
			}
		}
	}
	if seen {
		return
	}
	if ip, ok := http1.ParseNode(h.Get("X-Real-IP")); ok {
		f.ip = ip
	}
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
// proxy headers give (Forwarded for=, else X-Forwarded-For, else
// X-Real-IP; see AppOptions.TrustedProxies for the walk). "" once the
// connection is gone.
func (r *Request) RemoteIP() string {
	if ip := r.resolve().ip; ip.IsValid() {
		return ip.String()
	}
	return ""
}

// Loop-only.
// Scheme is "https" when a trusted proxy says the client used TLS
// (Forwarded proto=, else X-Forwarded-Proto: https or wss), else "http":
// Tornago itself speaks plain HTTP.
func (r *Request) Scheme() string {
	if r.resolve().https {
		return "https"
	}
	return "http"
}

// Loop-only.
// Host is the host (and port, if not the default) the client asked for:
// from a trusted proxy's Forwarded host= or X-Forwarded-Host, else the
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
