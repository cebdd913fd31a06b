package loop

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tornago/tornago/proto/http1"
)

func TestParseTrustedProxies(t *testing.T) {
	ps, err := parseTrustedProxies([]string{"127.0.0.1", " 10.0.0.0/8 ", "::1", "::ffff:192.0.2.0/120", "fe80::1%eth0"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	if s := strings.Join(got, " "); s != "127.0.0.1/32 10.0.0.0/8 ::1/128 192.0.2.0/24 fe80::1/128" {
		t.Fatalf("%s", s)
	}
	for _, bad := range []string{"", "10.0.0.0/33", "proxy.example", "1.2.3.4:80"} {
		if _, err := parseTrustedProxies([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("NewApplication accepted a bad TrustedProxies entry")
		}
	}()
	NewApplication(AppOptions{TrustedProxies: []string{"nonsense"}})
}

// resolveHead runs the header walk on a parsed request head, trusting
// 10.0.0.0/8 and 127.0.0.1.
func resolveHead(t testing.TB, a *Application, peer string, headers string) forwarded {
	t.Helper()
	var p http1.Parser
	var h http1.Head
	raw := []byte("GET / HTTP/1.1\r\nHost: backend\r\n" + headers + "\r\n")
	if _, err := p.Parse(raw, http1.Limits{}.WithDefaults(), &h); err != nil {
		t.Fatalf("parse %q: %v", headers, err)
	}
	f := forwarded{ip: netip.MustParseAddr(peer)}
	if a.trusts(f.ip) {
		a.resolveForwarded(&f, &h)
	}
	return f
}

func TestResolveForwarded(t *testing.T) {
	a := NewApplication(AppOptions{TrustedProxies: []string{"10.0.0.0/8", "127.0.0.1"}})
	for _, tc := range []struct {
		name, peer, headers string
		ip, host            string
		https               bool
	}{
		{"untrusted peer", "192.0.2.1", "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=6.6.6.7\r\n", "192.0.2.1", "", false},
		{"no headers", "10.1.1.1", "", "10.1.1.1", "", false},
		{"xff one hop", "10.1.1.1", "X-Forwarded-For: 203.0.113.5\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n", "203.0.113.5", "example.com", true},
		{"xff spoofed left part", "10.1.1.1", "X-Forwarded-For: 6.6.6.6, 203.0.113.5\r\n", "203.0.113.5", "", false},
		{"xff trusted hops skipped", "127.0.0.1", "X-Forwarded-For: 6.6.6.6, 203.0.113.5, 10.2.2.2,10.3.3.3\r\n", "203.0.113.5", "", false},
		{"xff lines in order", "10.1.1.1", "X-Forwarded-For: 203.0.113.5\r\nX-Forwarded-For: 10.2.2.2\r\n", "203.0.113.5", "", false},
		{"xff all trusted", "10.1.1.1", "X-Forwarded-For: 10.9.9.9, 10.2.2.2\r\n", "10.9.9.9", "", false},
		{"xff garbage stops the walk", "10.1.1.1", "X-Forwarded-For: 6.6.6.6, unknown, 10.2.2.2\r\n", "10.2.2.2", "", false},
		{"xff with ports and v6", "10.1.1.1", "X-Forwarded-For: [2001:db8::7]:5555\r\n", "2001:db8::7", "", false},
		{"x-real-ip", "10.1.1.1", "X-Real-IP: 203.0.113.9\r\n", "203.0.113.9", "", false},
		{"xff beats x-real-ip", "10.1.1.1", "X-Real-IP: 203.0.113.9\r\nX-Forwarded-For: 203.0.113.5\r\n", "203.0.113.5", "", false},
		{"proto list: last", "10.1.1.1", "X-Forwarded-Proto: https, http\r\n", "10.1.1.1", "", false},
		{"proto wss", "10.1.1.1", "X-Forwarded-Proto: WSS\r\n", "10.1.1.1", "", true},
		{"forwarded", "10.1.1.1", "Forwarded: for=6.6.6.6, for=\"[2001:db8::1]:99\";proto=https;host=\"example.com:8443\", for=10.4.4.4;proto=http;host=inner\r\nX-Forwarded-For: 198.51.100.1\r\n", "2001:db8::1", "example.com:8443", true},
		{"forwarded without for", "10.1.1.1", "Forwarded: proto=https\r\nX-Forwarded-For: 198.51.100.1\r\n", "198.51.100.1", "", true},
		{"forwarded malformed: ignored", "10.1.1.1", "Forwarded: for=6.6.6.6;;x\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\n", "198.51.100.1", "", true},
		{"forwarded unknown", "10.1.1.1", "Forwarded: for=unknown, for=10.5.5.5;proto=https\r\n", "10.5.5.5", "", true},
	} {
		f := resolveHead(t, a, tc.peer, tc.headers)
		if f.ip.String() != tc.ip || string(f.host) != tc.host || f.https != tc.https {
			t.Errorf("%s: ip %v host %q https %v; want %v %q %v", tc.name, f.ip, f.host, f.https, tc.ip, tc.host, tc.https)
		}
	}
}

// The walk allocates nothing, with proxy headers or without.
func TestResolveForwardedNoAlloc(t *testing.T) {
	a := NewApplication(AppOptions{TrustedProxies: []string{"10.0.0.0/8"}})
	for _, hdr := range []string{"", "X-Forwarded-For: 6.6.6.6, 203.0.113.5\r\nX-Forwarded-Proto: https\r\n",
		"Forwarded: for=203.0.113.5;proto=https;host=example.com, for=10.1.1.2\r\n"} {
		var p http1.Parser
		var h http1.Head
		if _, err := p.Parse([]byte("GET / HTTP/1.1\r\nHost: b\r\n"+hdr+"\r\n"), http1.Limits{}.WithDefaults(), &h); err != nil {
			t.Fatal(err)
		}
		peer := netip.MustParseAddr("10.1.1.1")
		if n := testing.AllocsPerRun(100, func() {
			f := forwarded{ip: peer}
			if a.trusts(f.ip) {
				a.resolveForwarded(&f, &h)
			}
		}); n != 0 {
			t.Errorf("%q: %v allocations", hdr, n)
		}
	}
}

type whoAmI struct {
	IP, Scheme, Host, RemoteAddr string
}

// clientFrom is an HTTP client whose connections leave from the loopback
// address src, so one server sees a trusted and an untrusted peer.
func clientFrom(src string) *http.Client {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext:       func(ctx context.Context, n, a string) (net.Conn, error) { return d.DialContext(ctx, n, a) },
		DisableKeepAlives: true,
	}}
}

// TestXHeadersOverSockets: spoofed proxy headers from an untrusted peer are
// ignored, the same from a trusted one are used, by RemoteIP, Scheme, Host
// and the default WebSocket origin check alike.
func TestXHeadersOverSockets(t *testing.T) {
	_, addr := startTestLoop(t, nil, func(l *Loop) *Application {
		app := NewApplication(AppOptions{TrustedProxies: []string{"127.0.0.2"}})
		app.HandleFunc("/who", func(r *Request) {
			r.Write(whoAmI{r.RemoteIP(), r.Scheme(), r.Host(), r.RemoteAddr()})
		})
		app.HandleWebSocket("/ws", wsEchoRoute(WSOptions{}), WSOptions{})
		return app
	})
	spoof := map[string]string{
		"X-Forwarded-For":   "6.6.6.6, 203.0.113.5",
		"X-Real-IP":         "6.6.6.7",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "public.example",
	}
	who := func(src string) whoAmI {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/who", nil)
		req.Host = "backend:8888"
		for k, v := range spoof {
			req.Header.Set(k, v)
		}
		resp, err := clientFrom(src).Do(req)
		if err != nil {
			t.Fatalf("from %s: %v", src, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var w whoAmI
		if err := json.Unmarshal(b, &w); err != nil {
			t.Fatalf("from %s: %q: %v", src, b, err)
		}
		return w
	}
	if w := who("127.0.0.1"); w.IP != "127.0.0.1" || w.Scheme != "http" || w.Host != "backend:8888" || !strings.HasPrefix(w.RemoteAddr, "127.0.0.1:") {
		t.Errorf("untrusted peer: %+v, want its headers ignored", w)
	}
	if w := who("127.0.0.2"); w.IP != "203.0.113.5" || w.Scheme != "https" || w.Host != "public.example" || !strings.HasPrefix(w.RemoteAddr, "127.0.0.2:") {
		t.Errorf("trusted peer: %+v, want the forwarded client", w)
	}

	// Origin check: a browser on https://public.example reaches the backend
	// through the proxy with the proxy's Host line.
	upgrade := func(src string) int {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := &wsRaw{t: t, c: c}
		r.br = bufio.NewReader(c)
		r.write([]byte(wsHandshake("backend:8888", "/ws", "Origin: https://public.example\r\n", "X-Forwarded-Host: public.example\r\n")))
		return r.response().StatusCode
	}
	if st := upgrade("127.0.0.1"); st != 403 {
		t.Errorf("untrusted peer with a forged X-Forwarded-Host: %d, want 403", st)
	}
	if st := upgrade("127.0.0.2"); st != 101 {
		t.Errorf("trusted proxy: %d, want 101", st)
	}
}
