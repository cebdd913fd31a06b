package ws13

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"testing"
)

func TestAppendRequestParsesAndPassesCheckRequest(t *testing.T) {
	key := NewKey()
	req := AppendRequest(nil, "example.com:8080", "/chat?room=1&x=%20", key,
		[]string{"chat.v2", "", "bad\r\nX: y", "chat.v1"},
		[][2]string{{"Origin", "http://example.com"}, {"Authorization", "Bearer t"},
			{"X-Bad", "a\r\nInjected: 1"}, {"Connection", "close"}})
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(req)))
	if err != nil {
		t.Fatalf("net/http cannot parse %q: %v", req, err)
	}
	if r.Method != "GET" || r.RequestURI != "/chat?room=1&x=%20" || r.Host != "example.com:8080" {
		t.Fatalf("request line/host: %s %s %s", r.Method, r.RequestURI, r.Host)
	}
	if got := r.Header.Get("Sec-WebSocket-Protocol"); got != "chat.v2, chat.v1" {
		t.Errorf("protocols = %q", got)
	}
	if r.Header.Get("Origin") != "http://example.com" || r.Header.Get("Authorization") != "Bearer t" {
		t.Errorf("extra headers lost: %v", r.Header)
	}
	if r.Header.Get("X-Bad") != "" || r.Header.Get("Injected") != "" {
		t.Errorf("unsafe header sent: %v", r.Header)
	}
	if v := r.Header.Values("Connection"); len(v) != 1 || v[0] != "Upgrade" {
		t.Errorf("reserved Connection overridden: %q", v)
	}
	values := func(name string) (out [][]byte) {
		for _, v := range r.Header.Values(name) {
			out = append(out, []byte(v))
		}
		return out
	}
	if herr := CheckRequest([]byte(r.Method), r.ProtoMajor, r.ProtoMinor, values("Upgrade"), values("Connection"),
		values("Sec-WebSocket-Version"), values("Sec-WebSocket-Key")); herr != nil {
		t.Fatalf("CheckRequest rejects our own request: %v", herr)
	}
	// An extra Host replaces the default, and an empty URI becomes "/".
	req = AppendRequest(nil, "a:1", "", key, nil, [][2]string{{"host", "b:2"}})
	r, err = http.ReadRequest(bufio.NewReader(bytes.NewReader(req)))
	if err != nil || r.Host != "b:2" || r.RequestURI != "/" || r.Header.Get("Sec-WebSocket-Protocol") != "" {
		t.Fatalf("host override: %v %q", err, req)
	}
}

func TestCheckRequestHeader(t *testing.T) {
	for _, c := range []struct {
		name, value string
		ok          bool
	}{
		{"Origin", "http://x", true},
		{"Host", "x:1", true},
		{"X-Token", "", true},
		{"", "v", false},
		{"Bad Name", "v", false},
		{"X", "a\rb", false},
		{"X", "a\nb", false},
		{"X", "a\x00b", false},
		{"sec-websocket-key", "k", false},
		{"Sec-WebSocket-Protocol", "p", false},
		{"Sec-WebSocket-Extensions", "permessage-deflate", false},
		{"UPGRADE", "websocket", false},
	} {
		err := CheckRequestHeader(c.name, c.value)
		if (err == nil) != c.ok {
			t.Errorf("CheckRequestHeader(%q, %q) = %v", c.name, c.value, err)
		}
		if err != nil && !errors.Is(err, ErrRequestHeader) {
			t.Errorf("error does not wrap ErrRequestHeader: %v", err)
		}
	}
}

func TestCheckResponseSubprotocolAndExtensions(t *testing.T) {
	offered := []string{"a", "b"}
	for _, c := range []struct {
		got string
		ok  bool
	}{{"", true}, {" b ", true}, {"a", true}, {"c", false}, {"a, b", false}, {"A", false}} {
		err := CheckResponseSubprotocol([]byte(c.got), offered)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrResponseSubprotocol)) {
			t.Errorf("subprotocol %q: %v", c.got, err)
		}
	}
	if err := CheckResponseSubprotocol([]byte("a"), nil); err == nil {
		t.Error("a subprotocol was accepted although none was offered")
	}
	for _, c := range []struct {
		got     string
		offered []string
		ok      bool
	}{
		{"", nil, true},
		{" , ", nil, true},
		{"permessage-deflate", nil, false},
		{"permessage-deflate; client_max_window_bits", []string{"permessage-deflate"}, true},
		{"Permessage-Deflate, x-other", []string{"permessage-deflate"}, false},
	} {
		err := CheckResponseExtensions([]byte(c.got), c.offered)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrResponseExtension)) {
			t.Errorf("extensions %q offered %q: %v", c.got, c.offered, err)
		}
	}
}

func TestCheckSubprotocols(t *testing.T) {
	for _, c := range []struct {
		list []string
		ok   bool
	}{
		{nil, true},
		{[]string{"chat", "v2.json"}, true},
		{[]string{""}, false},
		{[]string{"a b"}, false},
		{[]string{"a,b"}, false},
		{[]string{"a", "a"}, false},
		{[]string{"é"}, false},
	} {
		if err := CheckSubprotocols(c.list); (err == nil) != c.ok {
			t.Errorf("CheckSubprotocols(%q) = %v", c.list, err)
		}
	}
}
