package http1

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestParseResponse(t *testing.T) {
	const ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	var h ResponseHead
	n, err := ParseResponse([]byte(ok+"\x81\x05hello"), 0, &h)
	if err != nil || n != len(ok) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if h.Status != 101 || h.Major != 1 || h.Minor != 1 || string(h.Reason) != "Switching Protocols" {
		t.Errorf("status line: %+v", h)
	}
	if string(h.Get("sec-websocket-accept")) != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" || !h.HasToken("Connection", "upgrade") || h.HasToken("Connection", "close") {
		t.Error("fields")
	}
	for k := 0; k < len(ok); k++ {
		if _, err := ParseResponse([]byte(ok[:k]), 0, &h); err != ErrIncomplete {
			t.Fatalf("prefix %d: %v", k, err)
		}
	}
	cases := []struct {
		in     string
		status int
		max    int
	}{
		{"HTTP/1.0 200 OK\r\n\r\n", 0, 0},
		{"HTTP/1.1 204\r\n\r\n", 0, 0},
		{"HTTP/1.1 204 \r\n\r\n", 0, 0},
		{"HTTP/1.1 400 Bad\tRequest\r\nX:\r\n\r\n", 0, 0},
		{"HTTP/1.1 200 OK\r\n", -1, 0},
		{"HTTP/1.1 20 OK\r\n\r\n", 502, 0},
		{"HTTP/1.1 2000 OK\r\n\r\n", 502, 0},
		{"HTTP/1.1 099 OK\r\n\r\n", 502, 0},
		{"HTTP/2.0 200 OK\r\n\r\n", 502, 0},
		{"HTTP/1.1 200 OK\n\r\n", 502, 0},
		{"HTTP/1.1 200 O\x01K\r\n\r\n", 502, 0},
		{"http/1.1 200 OK\r\n\r\n", 502, 0},
		{"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", 502, 0},
		{"HTTP/1.1 200 OK\r\n folded\r\n\r\n", 502, 0},
		{"HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 100), 502, 64},
		{"HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 100) + "\r\n\r\n", 502, 64},
	}
	for _, tc := range cases {
		_, err := ParseResponse([]byte(tc.in), tc.max, &h)
		if got := statusOf(err); got != tc.status {
			t.Errorf("%q: status %d (%v), want %d", tc.in, got, err, tc.status)
		}
	}
}

func TestParseQuery(t *testing.T) {
	inputs := []string{
		"", "a=1", "a=1&b=2&a=3", "a+b=c+d&e=%41%42", "&&a=&=b&c", "x=%zz&y=1", "a=1;b=2&c=3",
		"k=%E2%82%AC", "a=%", "%gg=1&ok=2",
	}
	for _, in := range inputs {
		want, werr := url.ParseQuery(in)
		got := map[string][]string{}
		gerr := ParseQuery(got, []byte(in))
		if (werr == nil) != (gerr == nil) {
			t.Errorf("%q: err %v, url.ParseQuery err %v", in, gerr, werr)
		}
		if !reflect.DeepEqual(url.Values(got), want) {
			t.Errorf("%q: %v, url.ParseQuery %v", in, got, want)
		}
	}
	dst := map[string][]string{"a": {"0"}}
	if err := ParseForm(dst, []byte("a=1")); err != nil || !reflect.DeepEqual(dst["a"], []string{"0", "1"}) {
		t.Errorf("append: %v %v", dst, err)
	}
}

func TestStatus(t *testing.T) {
	for code := 0; code < 1000; code++ {
		if StatusText(code) != http.StatusText(code) {
			t.Errorf("StatusText(%d) = %q, net/http %q", code, StatusText(code), http.StatusText(code))
		}
	}
	cases := map[int]string{
		200: "HTTP/1.1 200 OK\r\n",
		404: "HTTP/1.1 404 Not Found\r\n",
		101: "HTTP/1.1 101 Switching Protocols\r\n",
		599: "HTTP/1.1 599 \r\n",
		42:  "HTTP/1.1 500 Internal Server Error\r\n",
	}
	for code, want := range cases {
		if got := string(AppendStatusLine([]byte(nil), code)); got != want {
			t.Errorf("AppendStatusLine(%d) = %q, want %q", code, got, want)
		}
	}
	if got := string(AppendStatusLine([]byte("x"), 204)); got != "xHTTP/1.1 204 No Content\r\n" {
		t.Errorf("append: %q", got)
	}
	buf := make([]byte, 0, 64)
	if a := testing.AllocsPerRun(100, func() { buf = AppendStatusLine(buf[:0], 431) }); a != 0 {
		t.Errorf("allocs %v", a)
	}
}
