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
	apps := map[string]*Application{}
	for _, ph := range []string{"", "Forwarded", "x-real-ip"} {
		apps[ph] = NewApplication(AppOptions{TrustedProxies: []string{"10.0.0.0/8", "127.0.0.1"}, ProxyHeader: ph})
	}
	for _, tc := range []struct {
		mode, name, peer, headers string
		ip, host                  string
		https                     bool
	}{
		{"", "untrusted peer", "192.0.2.1", "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=6.6.6.7\r\n", "192.0.2.1", "", false},
		{"Forwarded", "untrusted peer", "192.0.2.1", "Forwarded: for=6.6.6.7;proto=https;host=evil\r\n", "192.0.2.1", "", false},
		{"x-real-ip", "untrusted peer", "192.0.2.1", "X-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n", "192.0.2.1", "", false},
		{"", "no headers", "10.1.1.1", "", "10.1.1.1", "", false},
		{"", "xff one hop", "10.1.1.1", "X-Forwarded-For: 203.0.113.5\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n", "203.0.113.5", "example.com", true},
		{"", "xff spoofed left part", "10.1.1.1", "X-Forwarded-For: 6.6.6.6, 203.0.113.5\r\n", "203.0.113.5", "", false},
		{"", "xff spoofed trusted address", "127.0.0.1", "X-Forwarded-For: 127.0.0.1, 203.0.113.5\r\n", "203.0.113.5", "", false},
		{"", "xff trusted hops skipped", "127.0.0.1", "X-Forwarded-For: 6.6.6.6, 203.0.113.5, 10.2.2.2,10.3.3.3\r\n", "203.0.113.5", "", false},
		{"", "xff lines in order", "10.1.1.1", "X-Forwarded-For: 6.6.6.6, 203.0.113.5\r\nX-Forwarded-For: 10.2.2.2\r\n", "203.0.113.5", "", false},
		{"", "xff all trusted", "10.1.1.1", "X-Forwarded-For: 10.9.9.9, 10.2.2.2\r\n", "10.9.9.9", "", false},
		{"", "xff garbage stops the walk", "10.1.1.1", "X-Forwarded-For: 6.6.6.6, unknown, 10.2.2.2\r\n", "10.2.2.2", "", false},
		{"", "xff client garbage on the left", "10.1.1.1", "X-Forwarded-For: \"x, 203.0.113.5\r\n", "203.0.113.5", "", false},
		{"", "xff with ports and v6", "10.1.1.1", "X-Forwarded-For: [2001:db8::7]:5555\r\n", "2001:db8::7", "", false},
		// The issue: a proxy that writes X-Forwarded-* passes Forwarded and
		// X-Real-IP on as the client sent them.
		{"", "spoofed forwarded ignored", "127.0.0.1", "Forwarded: for=6.6.6.6;proto=https;host=evil.example\r\nX-Forwarded-For: 203.0.113.5\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com\r\n", "203.0.113.5", "example.com", false},
		{"", "spoofed forwarded loopback ignored", "127.0.0.1", "Forwarded: for=\"[::1]\"\r\nX-Forwarded-For: 203.0.113.5\r\n", "203.0.113.5", "", false},
		{"", "forwarded alone ignored", "127.0.0.1", "Forwarded: for=127.0.0.1;proto=https;host=evil.example\r\n", "127.0.0.1", "", false},
		{"", "x-real-ip alone ignored", "10.1.1.1", "X-Real-IP: 203.0.113.9\r\n", "10.1.1.1", "", false},
		{"", "x-real-ip beside xff ignored", "10.1.1.1", "X-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.5\r\n", "203.0.113.5", "", false},
		{"", "proto list: last", "10.1.1.1", "X-Forwarded-Proto: https, http\r\n", "10.1.1.1", "", false},
		{"", "proto lines: last", "10.1.1.1", "X-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n", "10.1.1.1", "", false},
		{"", "proto wss", "10.1.1.1", "X-Forwarded-Proto: WSS\r\n", "10.1.1.1", "", true},
		{"", "host lines: last", "10.1.1.1", "X-Forwarded-Host: evil.example\r\nX-Forwarded-Host: example.com\r\n", "10.1.1.1", "example.com", false},

		{"Forwarded", "forwarded", "10.1.1.1", "Forwarded: for=6.6.6.6, for=\"[2001:db8::1]:99\";proto=https;host=\"example.com:8443\", for=10.4.4.4;proto=http;host=inner\r\nX-Forwarded-For: 198.51.100.1\r\n", "2001:db8::1", "example.com:8443", true},
		{"Forwarded", "forwarded spoofed left part", "127.0.0.1", "Forwarded: for=127.0.0.1;proto=https;host=evil.example\r\nForwarded: for=203.0.113.5;proto=http;host=example.com\r\n", "203.0.113.5", "example.com", false},
		{"Forwarded", "forwarded lines, elements in order", "10.1.1.1", "Forwarded: for=6.6.6.6, for=203.0.113.5;host=a\r\nForwarded: for=10.2.2.2;host=b\r\n", "203.0.113.5", "a", false},
		{"Forwarded", "x-forwarded ignored", "10.1.1.1", "Forwarded: for=203.0.113.5\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Real-IP: 6.6.6.7\r\n", "203.0.113.5", "", false},
		{"Forwarded", "none: the peer", "10.1.1.1", "X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.7\r\nX-Forwarded-Proto: https\r\n", "10.1.1.1", "", false},
		{"Forwarded", "without for: the peer", "10.1.1.1", "Forwarded: proto=https\r\n", "10.1.1.1", "", true},
		{"Forwarded", "element without for stops the walk", "10.1.1.1", "Forwarded: for=6.6.6.6;host=evil, proto=https, for=10.2.2.2;host=b\r\n", "10.2.2.2", "b", false},
		{"Forwarded", "client garbage on the left", "10.1.1.1", "Forwarded: for=6.6.6.6;;\"x, for=203.0.113.5;proto=https\r\n", "203.0.113.5", "", true},
		{"Forwarded", "client quote on the left", "10.1.1.1", "Forwarded: for=\"6.6.6.6, for=203.0.113.5;host=\"example.com\"\r\n", "203.0.113.5", "example.com", false},
		{"Forwarded", "malformed rightmost: the peer", "10.1.1.1", "Forwarded: for=203.0.113.5, for=6.6.6.6;;x\r\n", "10.1.1.1", "", false},
		{"Forwarded", "comma in quotes", "10.1.1.1", "Forwarded: for=203.0.113.5;host=\"a,b\"\r\n", "203.0.113.5", "a,b", false},
		{"Forwarded", "unknown", "10.1.1.1", "Forwarded: for=unknown, for=10.5.5.5;proto=https\r\n", "10.5.5.5", "", true},

		{"x-real-ip", "x-real-ip", "10.1.1.1", "X-Real-IP: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n", "203.0.113.9", "example.com", true},
		{"x-real-ip", "x-real-ip lines: last", "10.1.1.1", "X-Real-IP: 6.6.6.6\r\nX-Real-IP: 203.0.113.9\r\n", "203.0.113.9", "", false},
		{"x-real-ip", "x-real-ip list: not an address", "10.1.1.1", "X-Real-IP: 6.6.6.6, 203.0.113.9\r\n", "10.1.1.1", "", false},
		{"x-real-ip", "others ignored", "10.1.1.1", "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.7;proto=https;host=evil\r\n", "10.1.1.1", "", false},
	} {
		f := resolveHead(t, apps[tc.mode], tc.peer, tc.headers)
		if f.ip.String() != tc.ip || string(f.host) != tc.host || f.https != tc.https {
			t.Errorf("%s %s: ip %v host %q https %v; want %v %q %v", tc.mode, tc.name, f.ip, f.host, f.https, tc.ip, tc.host, tc.https)
		}
	}
}

func TestParseProxyHeader(t *testing.T) {
	for _, ok := range []string{"", "X-Forwarded-For", "x-forwarded-for", "Forwarded", "X-Real-IP", "x-real-ip"} {
		if _, err := parseProxyHeader(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"X-Forwarded-Host", "forwarded-for", " Forwarded"} {
		if _, err := parseProxyHeader(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("NewApplication accepted a bad ProxyHeader")
		}
	}()
	NewApplication(AppOptions{ProxyHeader: "X-Client-IP"})
}

// The walk allocates nothing, with proxy headers or without, whichever
// family it reads.
func TestResolveForwardedNoAlloc(t *testing.T) {
	for _, tc := range []struct{ mode, hdr string }{
		{"", ""},
		{"", "X-Forwarded-For: 6.6.6.6, 203.0.113.5\r\nX-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\n"},
		{"Forwarded", "Forwarded: for=203.0.113.5;proto=https;host=example.com, for=10.1.1.2\r\n"},
		{"Forwarded", "Forwarded: for=6.6.6.6, for=10.1.1.3\r\nForwarded: for=10.1.1.2;host=\"a,b\", for=10.1.1.4\r\n"},
		{"X-Real-IP", "X-Real-IP: 203.0.113.5\r\nX-Forwarded-Host: example.com\r\n"},
	} {
		a := NewApplication(AppOptions{TrustedProxies: []string{"10.0.0.0/8"}, ProxyHeader: tc.mode})
		var p http1.Parser
		var h http1.Head
		if _, err := p.Parse([]byte("GET / HTTP/1.1\r\nHost: b\r\n"+tc.hdr+"\r\n"), http1.Limits{}.WithDefaults(), &h); err != nil {
			t.Fatal(err)
		}
		peer := netip.MustParseAddr("10.1.1.1")
		if n := testing.AllocsPerRun(100, func() {
			f := forwarded{ip: peer}
			if a.trusts(f.ip) {
				a.resolveForwarded(&f, &h)
			}
		}); n != 0 {
			t.Errorf("%s %q: %v allocations", tc.mode, tc.hdr, n)
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
		// Not the family the proxy writes (ProxyHeader defaults to
		// X-Forwarded-For): passed on from the client, so never read.
		"Forwarded": "for=6.6.6.8;proto=http;host=evil.example",
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
	upgrade := func(src, extra string) int {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := &wsRaw{t: t, c: c}
		r.br = bufio.NewReader(c)
		r.write([]byte(wsHandshake("backend:8888", "/ws", "Origin: https://public.example\r\n", extra)))
		return r.response().StatusCode
	}
	if st := upgrade("127.0.0.1", "X-Forwarded-Host: public.example\r\n"); st != 403 {
		t.Errorf("untrusted peer with a forged X-Forwarded-Host: %d, want 403", st)
	}
	if st := upgrade("127.0.0.2", "X-Forwarded-Host: public.example\r\n"); st != 101 {
		t.Errorf("trusted proxy: %d, want 101", st)
	}
	// A foreign page's host in a Forwarded the proxy passed on: refused.
	if st := upgrade("127.0.0.2", "Forwarded: host=public.example;proto=https\r\n"); st != 403 {
		t.Errorf("trusted proxy passing a client's Forwarded host: %d, want 403", st)
	}
}

// FuzzResolveForwarded: whatever a client sends, only the configured family
// counts (dropping every other field changes nothing), and the hop the
// trusted proxy appends after the client's own text, on the same line or
// a line of its own, names the client.
func FuzzResolveForwarded(f *testing.F) {
	f.Add("X-Forwarded-For: 6.6.6.6\r\nForwarded: for=127.0.0.1;proto=https\r\nX-Real-IP: ::1\r\n", `for="6.6.6.6`)
	f.Add("Forwarded: for=\"[::1]\";host=evil\r\nX-Forwarded-Host: evil\r\n", `for=6.6.6.6;;x, ,"`)
	f.Add("X-Forwarded-For: 10.1.1.1, unknown\r\nX-Forwarded-Proto: https\r\n", `proto=https;host="a,b", for=10.2.2.2`)
	apps := map[string]*Application{}
	for _, ph := range []string{"X-Forwarded-For", "Forwarded", "X-Real-IP"} {
		apps[ph] = NewApplication(AppOptions{TrustedProxies: []string{"10.0.0.0/8"}, ProxyHeader: ph})
	}
	family := map[string][]string{
		"X-Forwarded-For": {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"},
		"Forwarded":       {"Forwarded"},
		"X-Real-IP":       {"X-Real-IP", "X-Forwarded-Proto", "X-Forwarded-Host"},
	}
	peer := netip.MustParseAddr("10.1.1.1")
	resolve := func(a *Application, h *http1.Head) forwarded {
		fw := forwarded{ip: peer}
		a.resolveForwarded(&fw, h)
		return fw
	}
	same := func(x, y forwarded) bool {
		return x.ip == y.ip && x.https == y.https && string(x.host) == string(y.host)
	}
	f.Fuzz(func(t *testing.T, block, client string) {
		var p http1.Parser
		var h http1.Head
		if _, err := p.Parse([]byte("GET / HTTP/1.1\r\nHost: b\r\n"+block+"\r\n"), http1.Limits{}.WithDefaults(), &h); err != nil {
			return
		}
		for mode, a := range apps {
			got := resolve(a, &h)
			if !got.ip.IsValid() {
				t.Fatalf("%s: no address", mode)
			}
			only := http1.Head{}
			for _, fl := range h.Fields {
				for _, n := range family[mode] {
					if http1.EqualFold(fl.Name, n) {
						only.Fields = append(only.Fields, fl)
					}
				}
			}
			if want := resolve(a, &only); !same(got, want) {
				t.Fatalf("%s: %+v with the other fields, %+v without", mode, got, want)
			}
		}
		// The proxy appends the client it saw (198.51.100.7, untrusted),
		// to a line of the client's or as a line of its own; a client
		// cannot put a line break into either.
		if strings.ContainsAny(client, "\r\n") {
			return
		}
		for _, tc := range []struct{ mode, head string }{
			{"X-Forwarded-For", "X-Forwarded-For: " + client + ", 198.51.100.7\r\n"},
			{"X-Forwarded-For", "X-Forwarded-For: " + client + "\r\nX-Forwarded-For: 198.51.100.7\r\n"},
			{"Forwarded", "Forwarded: " + client + ", for=198.51.100.7;proto=https\r\n"},
			{"Forwarded", "Forwarded: " + client + "\r\nForwarded: for=198.51.100.7;proto=https\r\n"},
			{"X-Real-IP", "X-Real-IP: " + client + "\r\nX-Real-IP: 198.51.100.7\r\n"},
		} {
			var p http1.Parser
			var h http1.Head
			if _, err := p.Parse([]byte("GET / HTTP/1.1\r\nHost: b\r\n"+block+tc.head+"\r\n"), http1.Limits{}.WithDefaults(), &h); err != nil {
				continue
			}
			// The block must end in a whole field line of its own for the
			// proxy's line to be one: nothing can be appended to what is
			// not a field.
			last := h.Fields[len(h.Fields)-1]
			if !strings.HasSuffix(tc.head, string(last.Name)+": "+string(last.Value)+"\r\n") {
				continue
			}
			got := resolve(apps[tc.mode], &h)
			if got.ip.String() != "198.51.100.7" || (tc.mode == "Forwarded" && !got.https) {
				t.Fatalf("%s %q: %+v, want the proxy's hop", tc.mode, tc.head, got)
			}
		}
	})
}
