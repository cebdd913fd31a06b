package http1

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// snapshot renders everything Parse produces so results of different
// feeding strategies can be compared.
func snapshot(h *Head) string {
	var b strings.Builder
	fmt.Fprintf(&b, "M=%q T=%q P=%q Q=%q(nil=%v) A=%q V=%d.%d CL=%d ch=%v ka=%v e100=%v up=%v",
		h.Method, h.Target, h.Path, h.Query, h.Query == nil, h.Authority, h.Major, h.Minor,
		h.ContentLength, h.Chunked, h.KeepAlive, h.Expect100, h.Upgrade)
	for _, f := range h.Fields {
		fmt.Fprintf(&b, " [%q: %q]", f.Name, f.Value)
	}
	return b.String()
}

func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	if err == nil {
		return 0
	}
	if err == ErrIncomplete {
		return -1
	}
	return -2
}

// parseBytewise feeds buf[:1], buf[:2], ... to one Parser. It returns the
// first non-ErrIncomplete result, or ErrIncomplete if none.
func parseBytewise(t testing.TB, buf []byte, lim Limits) (int, string, error) {
	var p Parser
	var h Head
	for k := 1; k <= len(buf); k++ {
		// Copy the prefix into a fresh array each time: the server may
		// move its buffer between calls.
		pre := buf[:k]
		if len(buf) < 4096 {
			pre = append([]byte(nil), pre...)
		}
		n, err := p.Parse(pre, lim, &h)
		if err == ErrIncomplete {
			if n != 0 {
				t.Fatalf("ErrIncomplete with n=%d", n)
			}
			continue
		}
		if err == nil {
			return n, snapshot(&h), nil
		}
		return n, "", err
	}
	return 0, "", ErrIncomplete
}

func parseWhole(buf []byte, lim Limits) (int, string, error) {
	var p Parser
	var h Head
	n, err := p.Parse(buf, lim, &h)
	if err != nil {
		return n, "", err
	}
	return n, snapshot(&h), nil
}

type parseCase struct {
	name   string
	in     string
	status int // 0: accepted; -1: incomplete; else *Error status
	lim    Limits
	check  func(t *testing.T, h *Head)
}

const host = "Host: x\r\n"

var parseCases = []parseCase{
	{name: "simple GET", in: "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "method", h.Method, "GET")
		eq(t, "path", h.Path, "/")
		if h.Query != nil || h.ContentLength != -1 || !h.KeepAlive || h.Chunked || h.Major != 1 || h.Minor != 1 {
			t.Errorf("bad head %s", snapshot(h))
		}
		eq(t, "host", h.Get("host"), "example.com")
	}},
	{name: "query and fragment", in: "GET /a/b%20c?x=1&y=2#frag HTTP/1.1\r\n" + host + "\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "target", h.Target, "/a/b%20c?x=1&y=2#frag")
		eq(t, "path", h.Path, "/a/b%20c")
		eq(t, "query", h.Query, "x=1&y=2")
	}},
	{name: "empty query", in: "GET /?  HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "empty query ok", in: "GET /? HTTP/1.1\r\n" + host + "\r\n", check: func(t *testing.T, h *Head) {
		if h.Query == nil || len(h.Query) != 0 {
			t.Errorf("query = %q nil=%v", h.Query, h.Query == nil)
		}
	}},
	{name: "HTTP/1.0 no host", in: "GET / HTTP/1.0\r\n\r\n", check: func(t *testing.T, h *Head) {
		if h.KeepAlive || h.Minor != 0 {
			t.Errorf("bad %s", snapshot(h))
		}
	}},
	{name: "HTTP/1.0 keep-alive", in: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", check: func(t *testing.T, h *Head) {
		if !h.KeepAlive {
			t.Error("want keep-alive")
		}
	}},
	{name: "HTTP/1.0 keep-alive, close", in: "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", check: func(t *testing.T, h *Head) {
		if h.KeepAlive {
			t.Error("want close")
		}
	}},
	{name: "HTTP/1.1 close", in: "GET / HTTP/1.1\r\n" + host + "Connection: foo, CLOSE\r\n\r\n", check: func(t *testing.T, h *Head) {
		if h.KeepAlive {
			t.Error("want close")
		}
	}},
	{name: "leading empty lines", in: "\r\n\r\nGET / HTTP/1.1\r\n" + host + "\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "method", h.Method, "GET")
	}},
	{name: "leading bare LF", in: "\nGET / HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "leading CR garbage", in: "\rGET / HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "incomplete", in: "GET / HTTP/1.1\r\n" + host, status: -1},
	{name: "incomplete CR", in: "GET / HTTP/1.1\r\n" + host + "\r", status: -1},
	{name: "only CRLFs", in: "\r\n\r\n\r", status: -1},
	{name: "empty", in: "", status: -1},

	// Request line.
	{name: "bare LF request line", in: "GET / HTTP/1.1\n" + host + "\r\n", status: 400},
	{name: "bare LF header", in: "GET / HTTP/1.1\r\nHost: x\n\r\n", status: 400},
	{name: "bare LF end", in: "GET / HTTP/1.1\r\nHost: x\r\n\n", status: 400},
	{name: "CR inside request line", in: "GET /\r HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "two spaces", in: "GET  / HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "tab separator", in: "GET\t/ HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "trailing space", in: "GET / HTTP/1.1 \r\n" + host + "\r\n", status: 400},
	{name: "no version", in: "GET /\r\n" + host + "\r\n", status: 400},
	{name: "empty method", in: " / HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "method not token", in: "G(T / HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "extension method", in: "PURGE-X / HTTP/1.1\r\n" + host + "\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "method", h.Method, "PURGE-X")
	}},
	{name: "lowercase http", in: "GET / http/1.1\r\n" + host + "\r\n", status: 400},
	{name: "HTTP/1.10", in: "GET / HTTP/1.10\r\n" + host + "\r\n", status: 400},
	{name: "HTTP/1", in: "GET / HTTP/1\r\n" + host + "\r\n", status: 400},
	{name: "HTTP/2.0", in: "GET / HTTP/2.0\r\n" + host + "\r\n", status: 505},
	{name: "HTTP/0.9", in: "GET / HTTP/0.9\r\n\r\n", status: 505},
	{name: "HTTP/1.2", in: "GET / HTTP/1.2\r\n" + host + "\r\n", status: 505},
	{name: "HTTP/x.y", in: "GET / HTTP/x.y\r\n" + host + "\r\n", status: 400},
	{name: "control char in target", in: "GET /a\x01b HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "DEL in target", in: "GET /a\x7fb HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "bad pct in path", in: "GET /%zz HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "short pct in path", in: "GET /a% HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "bad pct in query is kept", in: "GET /a?%zz HTTP/1.1\r\n" + host + "\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "query", h.Query, "%zz")
	}},
	{name: "relative target", in: "GET foo HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "asterisk OPTIONS", in: "OPTIONS * HTTP/1.1\r\n" + host + "\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "path", h.Path, "*")
	}},
	{name: "asterisk GET", in: "GET * HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "absolute-form", in: "GET http://example.com:8080/p/q?z=1 HTTP/1.1\r\n" + host + "\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "authority", h.Authority, "example.com:8080")
		eq(t, "path", h.Path, "/p/q")
		eq(t, "query", h.Query, "z=1")
	}},
	{name: "absolute-form no path", in: "GET http://example.com HTTP/1.1\r\n" + host + "\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "authority", h.Authority, "example.com")
		eq(t, "path", h.Path, "")
	}},
	{name: "absolute-form bad authority", in: "GET http://exa\"mple.com/ HTTP/1.1\r\n" + host + "\r\n", status: 400},
	{name: "CONNECT authority-form", in: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "authority", h.Authority, "example.com:443")
		if h.Path != nil {
			t.Errorf("path = %q", h.Path)
		}
	}},

	// Header fields.
	{name: "OWS trimmed", in: "GET / HTTP/1.1\r\nHost:\t x \t\r\nX-A:b\r\nX-Empty:\r\nX-Sp:   \r\n\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "host", h.Get("HOST"), "x")
		eq(t, "x-a", h.Get("x-a"), "b")
		if v := h.Get("x-empty"); v == nil || len(v) != 0 {
			t.Errorf("x-empty = %q (nil=%v)", v, v == nil)
		}
		eq(t, "x-sp", h.Get("x-sp"), "")
		if h.Get("x-missing") != nil {
			t.Error("missing field not nil")
		}
	}},
	{name: "inner whitespace kept", in: "GET / HTTP/1.1\r\n" + host + "X: a  b\tc\r\n\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "x", h.Get("x"), "a  b\tc")
	}},
	{name: "obs-text value", in: "GET / HTTP/1.1\r\n" + host + "X: caf\xc3\xa9\r\n\r\n", check: func(t *testing.T, h *Head) {
		eq(t, "x", h.Get("x"), "caf\xc3\xa9")
	}},
	{name: "repeated fields", in: "GET / HTTP/1.1\r\n" + host + "Accept: a\r\naccept: b\r\nACCEPT: c\r\n\r\n", check: func(t *testing.T, h *Head) {
		vs := h.Values(nil, "Accept")
		if len(vs) != 3 || string(vs[0]) != "a" || string(vs[2]) != "c" {
			t.Errorf("values = %q", vs)
		}
		if len(h.Fields) != 4 {
			t.Errorf("fields = %d", len(h.Fields))
		}
	}},
	{name: "space before colon", in: "GET / HTTP/1.1\r\n" + host + "X-A : b\r\n\r\n", status: 400},
	{name: "tab before colon", in: "GET / HTTP/1.1\r\n" + host + "X-A\t: b\r\n\r\n", status: 400},
	{name: "no colon", in: "GET / HTTP/1.1\r\n" + host + "X-A b\r\n\r\n", status: 400},
	{name: "empty name", in: "GET / HTTP/1.1\r\n" + host + ": b\r\n\r\n", status: 400},
	{name: "name not token", in: "GET / HTTP/1.1\r\n" + host + "X(A): b\r\n\r\n", status: 400},
	{name: "obs-fold", in: "GET / HTTP/1.1\r\n" + host + "X-A: b\r\n c\r\n\r\n", status: 400},
	{name: "obs-fold tab", in: "GET / HTTP/1.1\r\n" + host + "X-A: b\r\n\tc\r\n\r\n", status: 400},
	{name: "whitespace after request line", in: "GET / HTTP/1.1\r\n " + host + "\r\n", status: 400},
	{name: "NUL in value", in: "GET / HTTP/1.1\r\n" + host + "X: a\x00b\r\n\r\n", status: 400},
	{name: "CR in value", in: "GET / HTTP/1.1\r\n" + host + "X: a\rb\r\n\r\n", status: 400},
	{name: "DEL in value", in: "GET / HTTP/1.1\r\n" + host + "X: a\x7fb\r\n\r\n", status: 400},
	{name: "missing host", in: "GET / HTTP/1.1\r\nX: y\r\n\r\n", status: 400},
	{name: "empty host ok", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n"},
	{name: "two hosts", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", status: 400},
	{name: "host with port", in: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"},
	{name: "host bad port", in: "GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n", status: 400},
	{name: "host userinfo", in: "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", status: 400},
	{name: "bad host", in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", status: 400},

	// Content-Length.
	{name: "CL", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 42\r\n\r\n", check: func(t *testing.T, h *Head) {
		if h.ContentLength != 42 {
			t.Errorf("CL = %d", h.ContentLength)
		}
	}},
	{name: "CL zero", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", check: func(t *testing.T, h *Head) {
		if h.ContentLength != 0 {
			t.Errorf("CL = %d", h.ContentLength)
		}
	}},
	{name: "CL list identical", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5, 5\r\n\r\n", check: func(t *testing.T, h *Head) {
		if h.ContentLength != 5 {
			t.Errorf("CL = %d", h.ContentLength)
		}
	}},
	{name: "CL two fields identical", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\ncontent-length: 5\r\n\r\n", check: func(t *testing.T, h *Head) {
		if h.ContentLength != 5 {
			t.Errorf("CL = %d", h.ContentLength)
		}
	}},
	{name: "CL list differing", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5, 6\r\n\r\n", status: 400},
	{name: "CL two fields differing", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", status: 400},
	{name: "CL negative", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n", status: 400},
	{name: "CL plus", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: +1\r\n\r\n", status: 400},
	{name: "CL hex", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 0x10\r\n\r\n", status: 400},
	{name: "CL empty", in: "POST / HTTP/1.1\r\n" + host + "Content-Length:\r\n\r\n", status: 400},
	{name: "CL empty element", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5,\r\n\r\n", status: 400},
	{name: "CL inner space", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 1 2\r\n\r\n", status: 400},
	{name: "CL max int64", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 9223372036854775807\r\n\r\n", check: func(t *testing.T, h *Head) {
		if h.ContentLength != 1<<63-1 {
			t.Errorf("CL = %d", h.ContentLength)
		}
	}},
	{name: "CL overflow", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 9223372036854775808\r\n\r\n", status: 400},
	{name: "CL huge", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999999\r\n\r\n", status: 400},

	// Transfer-Encoding.
	{name: "chunked", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n", check: func(t *testing.T, h *Head) {
		if !h.Chunked || h.ContentLength != -1 {
			t.Errorf("bad %s", snapshot(h))
		}
	}},
	{name: "Chunked mixed case", in: "POST / HTTP/1.1\r\n" + host + "transfer-encoding: ChUnKeD\r\n\r\n"},
	{name: "TE and CL", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", status: 400},
	{name: "CL and TE", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
	{name: "TE gzip", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\n", status: 501},
	{name: "TE gzip, chunked", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n", status: 501},
	{name: "TE chunked, gzip", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, gzip\r\n\r\n", status: 501},
	{name: "TE identity", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: identity\r\n\r\n", status: 501},
	{name: "TE chunked twice", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, chunked\r\n\r\n", status: 400},
	{name: "TE two fields", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
	{name: "TE empty", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding:\r\n\r\n", status: 400},
	{name: "TE HTTP/1.0", in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
	{name: "TE with params", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked;q=1\r\n\r\n", status: 501},

	// Expect.
	{name: "expect 100", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nExpect: 100-Continue\r\n\r\n", check: func(t *testing.T, h *Head) {
		if !h.Expect100 {
			t.Error("want Expect100")
		}
	}},
	{name: "expect 100 HTTP/1.0 ignored", in: "POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", check: func(t *testing.T, h *Head) {
		if h.Expect100 {
			t.Error("Expect100 on HTTP/1.0")
		}
	}},
	{name: "expect other", in: "POST / HTTP/1.1\r\n" + host + "Expect: 200-ok\r\n\r\n", status: 417},
	{name: "expect list", in: "POST / HTTP/1.1\r\n" + host + "Expect: 100-continue, foo\r\n\r\n", status: 417},

	// Upgrade.
	{name: "websocket upgrade", in: "GET /ws HTTP/1.1\r\n" + host + "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", check: func(t *testing.T, h *Head) {
		if !h.Upgrade || !h.HasToken("connection", "UPGRADE") || !h.HasToken("Upgrade", "websocket") || h.HasToken("connection", "close") {
			t.Errorf("bad %s", snapshot(h))
		}
	}},
	{name: "upgrade without connection token", in: "GET /ws HTTP/1.1\r\n" + host + "Upgrade: websocket\r\n\r\n", check: func(t *testing.T, h *Head) {
		if h.Upgrade {
			t.Error("Upgrade without Connection: upgrade")
		}
	}},
	{name: "connection upgrade without upgrade", in: "GET /ws HTTP/1.1\r\n" + host + "Connection: upgrade\r\n\r\n", check: func(t *testing.T, h *Head) {
		if h.Upgrade {
			t.Error("Upgrade without Upgrade field")
		}
	}},

	// Limits.
	{name: "414", in: "GET /" + strings.Repeat("a", 100) + " HTTP/1.1\r\n" + host + "\r\n", lim: Limits{MaxRequestLine: 50}, status: 414},
	{name: "414 incomplete", in: "GET /" + strings.Repeat("a", 100), lim: Limits{MaxRequestLine: 50}, status: 414},
	{name: "414 default", in: "GET /" + strings.Repeat("a", DefaultMaxRequestLine), status: 414},
	{name: "request line exactly at limit", in: "GET /" + strings.Repeat("a", 36) + " HTTP/1.1\r\n" + host + "\r\n", lim: Limits{MaxRequestLine: 50}},
	{name: "request line one over limit", in: "GET /" + strings.Repeat("a", 37) + " HTTP/1.1\r\n" + host + "\r\n", lim: Limits{MaxRequestLine: 50}, status: 414},
	{name: "431", in: "GET / HTTP/1.1\r\n" + host + "X: " + strings.Repeat("a", 200) + "\r\n\r\n", lim: Limits{MaxHeaderBytes: 100}, status: 431},
	{name: "431 incomplete", in: "GET / HTTP/1.1\r\n" + host + "X: " + strings.Repeat("a", 200), lim: Limits{MaxHeaderBytes: 100}, status: 431},
	{name: "431 many fields", in: "GET / HTTP/1.1\r\n" + strings.Repeat(host, 8000), status: 431},
	{name: "431 default", in: "GET / HTTP/1.1\r\n" + host + "X: " + strings.Repeat("a", DefaultMaxHeaderBytes) + "\r\n\r\n", status: 431},
	{name: "431 leading CRLFs", in: strings.Repeat("\r\n", 60) + "GET / HTTP/1.1\r\n" + host + "\r\n", lim: Limits{MaxHeaderBytes: 100}, status: 431},
	{name: "431 before 414 when tighter", in: "GET /" + strings.Repeat("a", 300), lim: Limits{MaxHeaderBytes: 100, MaxRequestLine: 200}, status: 431},
	{name: "head exactly at limit", in: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", lim: Limits{MaxHeaderBytes: 27}},
	{name: "head one over limit", in: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", lim: Limits{MaxHeaderBytes: 26}, status: 431},
}

func eq(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	if string(got) != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func TestParseTable(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			var h Head
			buf := []byte(tc.in)
			n, err := p.Parse(buf, tc.lim, &h)
			if got := statusOf(err); got != tc.status {
				t.Fatalf("status = %d (err %v), want %d", got, err, tc.status)
			}
			if (err == nil) != (n > 0) {
				t.Fatalf("n = %d with err %v", n, err)
			}
			if err == nil {
				if !strings.HasSuffix(tc.in[:n], "\r\n\r\n") {
					t.Errorf("n = %d does not end at the blank line", n)
				}
				if tc.check != nil {
					tc.check(t, &h)
				}
			}
			// Same result when fed a byte at a time.
			bn, bs, berr := parseBytewise(t, buf, tc.lim)
			wn, ws, werr := parseWhole(buf, tc.lim)
			if bn != wn || bs != ws || statusOf(berr) != statusOf(werr) {
				t.Errorf("bytewise (%d, %v, %s) != whole (%d, %v, %s)", bn, berr, bs, wn, werr, ws)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Status: 431, Reason: "too big"}
	if e.Error() != "http1: 431 too big" {
		t.Errorf("got %q", e.Error())
	}
	var p Parser
	var h Head
	_, err := p.Parse([]byte("GET / HTTP/3.0\r\n"), Limits{}, &h)
	var he *Error
	if !errors.As(err, &he) || he.Status != 505 {
		t.Errorf("err = %v", err)
	}
}

func TestLimitsWithDefaults(t *testing.T) {
	l := Limits{}.WithDefaults()
	if l.MaxRequestLine != 8<<10 || l.MaxHeaderBytes != 64<<10 || l.MaxBodyBytes != 10<<20 {
		t.Errorf("defaults = %+v", l)
	}
	l = Limits{MaxRequestLine: 1, MaxHeaderBytes: 2, MaxBodyBytes: 3}.WithDefaults()
	if l.MaxRequestLine != 1 || l.MaxHeaderBytes != 2 || l.MaxBodyBytes != 3 {
		t.Errorf("explicit = %+v", l)
	}
}

// TestParseParserReset checks that a Parser is reusable after success and
// after an error, and that Reset discards partial progress.
func TestParserReuse(t *testing.T) {
	var p Parser
	var h Head
	if _, err := p.Parse([]byte("GET /aaaa"), Limits{}, &h); err != ErrIncomplete {
		t.Fatal(err)
	}
	p.Reset()
	n, err := p.Parse([]byte("GET /b HTTP/1.1\r\nHost: y\r\n\r\n"), Limits{}, &h)
	if err != nil || string(h.Path) != "/b" || n != 28 {
		t.Fatalf("n=%d err=%v %s", n, err, snapshot(&h))
	}
	if _, err := p.Parse([]byte("GET / HTTP/1.1\nHost: y\r\n\r\n"), Limits{}, &h); statusOf(err) != 400 {
		t.Fatal(err)
	}
	if _, err := p.Parse([]byte("GET /c HTTP/1.1\r\nHost: y\r\n\r\n"), Limits{}, &h); err != nil || string(h.Path) != "/c" {
		t.Fatal(err)
	}
	// A shrinking buffer (contract violation) must not panic.
	if _, err := p.Parse([]byte("GET /c HTTP/1.1\r\nHost: y\r\n"), Limits{}, &h); err != ErrIncomplete {
		t.Fatal(err)
	}
	if _, err := p.Parse([]byte("GET"), Limits{}, &h); err != ErrIncomplete {
		t.Fatal(err)
	}
}

var pipelineInputs = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /x?y=z HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAccept: text/html\r\nConnection: keep-alive\r\n\r\n",
	"\r\nPOST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n",
	"GET /old HTTP/1.0\r\nUser-Agent: t\r\n\r\n",
	"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	browserGET,
	smallPOST,
}

func TestPipelined(t *testing.T) {
	all := strings.Join(pipelineInputs, "")
	buf := []byte(all)
	var p Parser
	var h Head
	off := 0
	for i, want := range pipelineInputs {
		n, err := p.Parse(buf[off:], Limits{}, &h)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if n != len(want) {
			t.Fatalf("request %d: n = %d, want %d", i, n, len(want))
		}
		_, ws, _ := parseWhole([]byte(want), Limits{})
		if got := snapshot(&h); got != ws {
			t.Errorf("request %d:\n got %s\nwant %s", i, got, ws)
		}
		off += n
	}
	if _, err := p.Parse(buf[off:], Limits{}, &h); err != ErrIncomplete || off != len(buf) {
		t.Fatalf("tail: err=%v off=%d", err, off)
	}

	// Byte-at-a-time over the whole pipelined stream, consuming as we go.
	off, idx := 0, 0
	for end := 1; end <= len(buf); end++ {
		n, err := p.Parse(buf[off:end], Limits{}, &h)
		if err == ErrIncomplete {
			continue
		}
		if err != nil {
			t.Fatalf("bytewise request %d: %v", idx, err)
		}
		if n != len(pipelineInputs[idx]) {
			t.Fatalf("bytewise request %d: n = %d", idx, n)
		}
		off += n
		idx++
	}
	if idx != len(pipelineInputs) {
		t.Fatalf("parsed %d requests", idx)
	}
}

// TestBytewiseLinear checks that a large head fed one byte at a time is
// scanned in linear time: the total number of bytes examined must stay
// within a small multiple of the head size (measured via p.scan moves).
func TestBytewiseLinear(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 30000) + "\r\n" + strings.Repeat("Y: b\r\n", 2000) + "\r\n"
	buf := []byte(head)
	var p Parser
	var h Head
	examined := 0
	for k := 1; k <= len(buf); k++ {
		before := p.scan
		n, err := p.Parse(buf[:k], Limits{}, &h)
		if err == ErrIncomplete {
			examined += p.scan - before
			continue
		}
		if err != nil || n != len(buf) {
			t.Fatalf("n=%d err=%v", n, err)
		}
		if len(h.Fields) != 2002 {
			t.Fatalf("fields = %d", len(h.Fields))
		}
	}
	if examined > len(buf) {
		t.Fatalf("scanned %d bytes for a %d byte head", examined, len(buf))
	}
}

func TestParseZeroAllocs(t *testing.T) {
	buf := []byte(browserGET + smallPOST)
	var p Parser
	var h Head
	lim := Limits{}
	// Warm up Fields.
	if _, err := p.Parse(buf, lim, &h); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		n, err := p.Parse(buf, lim, &h)
		if err != nil {
			panic(err)
		}
		if _, err := p.Parse(buf[n:], lim, &h); err != nil {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs = %v", allocs)
	}
	bad := []byte("GET / HTTP/1.1\r\nX : y\r\n\r\n")
	allocs = testing.AllocsPerRun(100, func() { _, _ = p.Parse(bad, lim, &h) })
	if allocs != 0 {
		t.Fatalf("error path allocs = %v", allocs)
	}
}

func TestHeadHelpers(t *testing.T) {
	var p Parser
	var h Head
	in := "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive ,, Upgrade\r\nconnection: TE\r\nUpgrade: websocket\r\nX-List: a,b\r\nx-list: c\r\n\r\n"
	if _, err := p.Parse([]byte(in), Limits{}, &h); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"keep-alive", "UPGRADE", "te"} {
		if !h.HasToken("Connection", tok) {
			t.Errorf("missing token %q", tok)
		}
	}
	if h.HasToken("Connection", "keep") || h.HasToken("Connection", "pgrade") {
		t.Error("partial token matched")
	}
	if h.HasToken("Missing", "x") {
		t.Error("token in missing field")
	}
	vs := h.Values([][]byte{[]byte("pre")}, "x-list")
	if len(vs) != 3 || string(vs[1]) != "a,b" || string(vs[2]) != "c" {
		t.Errorf("values = %q", vs)
	}
	if !h.Upgrade {
		t.Error("want Upgrade")
	}
	c := cap(h.Fields)
	h.Reset()
	if len(h.Fields) != 0 || cap(h.Fields) != c || h.ContentLength != -1 || h.Method != nil {
		t.Errorf("Reset: %s cap %d", snapshot(&h), cap(h.Fields))
	}
}
