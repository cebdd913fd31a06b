package ws13

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestAppendRequestParsesAndPassesCheckRequest(t *testing.T) {
	key := NewKey()
	req := AppendRequest(nil, "example.com:8080", "/chat?room=1&x=%20", key,
		[]string{"chat.v2", "", "bad\r\nX: y", "chat.v1"},
		http.Header{"Origin": {"http://example.com"}, "Authorization": {"Bearer t"},
			"X-Bad": {"a\r\nInjected: 1"}, "Connection": {"close"}})
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
	req = AppendRequest(nil, "a:1", "", key, nil, map[string][]string{"host": {"b:2"}})
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

// TestAppendRequestHeaderOrder: the extra fields come in name order, so the
// same options give the same request bytes.
func TestAppendRequestHeaderOrder(t *testing.T) {
	h := http.Header{"X-B": {"2"}, "X-A": {"1", "1b"}, "Cookie": {"c=1"}}
	key := NewKey()
	first := AppendRequest(nil, "h", "/", key, nil, h)
	for range 20 {
		if got := AppendRequest(nil, "h", "/", key, nil, h); !bytes.Equal(got, first) {
			t.Fatalf("request bytes vary:\n%q\n%q", first, got)
		}
	}
	if !bytes.Contains(first, []byte("Cookie: c=1\r\nX-A: 1\r\nX-A: 1b\r\nX-B: 2\r\n\r\n")) {
		t.Fatalf("extra fields out of order: %q", first)
	}
}

func TestCheckDial(t *testing.T) {
	for _, c := range []struct {
		url, addr, uri string
		header         map[string][]string
		protos         []string
		want           error
	}{
		{url: "ws://example.com/chat?room=1", addr: "example.com:80", uri: "/chat?room=1"},
		{url: "ws://127.0.0.1:8080", addr: "127.0.0.1:8080", uri: "/"},
		{url: "ws://[::1]/x", addr: "[::1]:80", uri: "/x"},
		{url: "wss://example.com/", want: ErrURL},
		{url: "http://example.com/", want: ErrURL},
		{url: "ws:///path", want: ErrURL},
		{url: "ws://exa mple.com/", want: ErrURL},
		{url: "ws://h/", header: map[string][]string{"X-A": {"1\r\nEvil: yes"}}, want: ErrRequestHeader},
		{url: "ws://h/", header: map[string][]string{"Sec-WebSocket-Protocol": {"chat"}}, want: ErrRequestHeader},
		{url: "ws://h/", protos: []string{"chat", "chat"}, want: ErrRequestHeader},
		{url: "ws://h/", header: map[string][]string{"Origin": {"http://h"}}, protos: []string{"chat"}, addr: "h:80", uri: "/"},
	} {
		u, addr, err := CheckDial(c.url, c.header, c.protos)
		if c.want != nil {
			if !errors.Is(err, c.want) {
				t.Errorf("CheckDial(%q, %v, %q) = %v, want %v", c.url, c.header, c.protos, err, c.want)
			}
			continue
		}
		if err != nil || addr != c.addr || u.RequestURI() != c.uri {
			t.Errorf("CheckDial(%q) = %v, %q, %v; want %q, %q", c.url, u, addr, err, c.addr, c.uri)
		}
	}
}

// testResponse is a server's 101 reply as a header lookup for CheckResponse.
func testResponse(fields map[string]string) func(string) []byte {
	return func(name string) []byte {
		for k, v := range fields {
			if strings.EqualFold(k, name) {
				return []byte(v)
			}
		}
		return nil
	}
}

// TestCheckResponse: the one handshake-response check of both clients. The
// selected subprotocol comes back trimmed (the two clients' copies had
// drifted: one trimmed " chat", the other kept the space).
func TestCheckResponse(t *testing.T) {
	key := NewKey()
	accept := string(AppendAcceptKey(nil, key))
	good := func(extra ...string) map[string]string {
		m := map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	offer := ClientOffer{Key: key, Subprotocols: []string{"chat", "superchat"}}
	for _, c := range []struct {
		status int
		fields map[string]string
		offer  ClientOffer
		want   Accepted
		err    error
	}{
		{101, good(), offer, Accepted{}, nil},
		{101, good("Sec-WebSocket-Protocol", "chat"), offer, Accepted{Subprotocol: "chat"}, nil},
		{101, good("Sec-WebSocket-Protocol", " chat"), offer, Accepted{Subprotocol: "chat"}, nil},
		{101, good("Sec-WebSocket-Protocol", "superchat \t"), offer, Accepted{Subprotocol: "superchat"}, nil},
		{101, good("Sec-WebSocket-Protocol", "  "), offer, Accepted{}, nil},
		{101, good("Sec-WebSocket-Protocol", "evil"), offer, Accepted{}, ErrResponseSubprotocol},
		{101, good("Sec-WebSocket-Protocol", "chat, superchat"), offer, Accepted{}, ErrResponseSubprotocol},
		{101, good("Sec-WebSocket-Extensions", "permessage-deflate"), offer, Accepted{}, ErrResponseExtension},
		{101, good("Sec-WebSocket-Extensions", " permessage-deflate; client_no_context_takeover "),
			ClientOffer{Key: key, Extensions: []string{"permessage-deflate"}},
			Accepted{Extensions: "permessage-deflate; client_no_context_takeover"}, nil},
		{200, good(), offer, Accepted{}, ErrResponseStatus},
		{101, good("Upgrade", "h2c"), offer, Accepted{}, ErrResponseUpgrade},
		{101, good("Connection", "close"), offer, Accepted{}, ErrResponseConnection},
		{101, good("Sec-WebSocket-Accept", accept[:27]), offer, Accepted{}, ErrResponseAccept},
		{101, good(), ClientOffer{Key: NewKey()}, Accepted{}, ErrResponseAccept},
	} {
		got, err := CheckResponse(c.status, testResponse(c.fields), c.offer)
		if !errors.Is(err, c.err) || (err == nil && got != c.want) || (err != nil && got != Accepted{}) {
			t.Errorf("CheckResponse(%d, %v) = %+v, %v; want %+v, %v", c.status, c.fields, got, err, c.want, c.err)
		}
	}
}

// FuzzCheckResponse: CheckResponse never panics, accepts only a 101 whose
// Accept matches the key, and returns a subprotocol that was offered and
// carries no white space at either end.
func FuzzCheckResponse(f *testing.F) {
	key := []byte("dGhlIHNhbXBsZSBub25jZQ==")
	accept := string(AppendAcceptKey(nil, key))
	f.Add(101, "websocket", "Upgrade", accept, "chat", "")
	f.Add(101, "WebSocket", "keep-alive, upgrade", " "+accept+" ", " chat\t", "")
	f.Add(101, "websocket", "Upgrade", accept, "", "permessage-deflate; server_no_context_takeover")
	f.Add(101, "websocket", "Upgrade", accept, "chat, evil", "x-webkit-deflate-frame, permessage-deflate")
	f.Add(200, "", "", "", "", "")
	f.Add(101, "websocket,", ",upgrade,", accept[:27], "\x00", ";;,")
	f.Fuzz(func(t *testing.T, status int, upgrade, connection, acc, proto, exts string) {
		fields := map[string]string{"Upgrade": upgrade, "Connection": connection, "Sec-WebSocket-Accept": acc,
			"Sec-WebSocket-Protocol": proto, "Sec-WebSocket-Extensions": exts}
		offer := ClientOffer{Key: key, Subprotocols: []string{"chat", "v2.chat"}, Extensions: []string{"permessage-deflate"}}
		got, err := CheckResponse(status, testResponse(fields), offer)
		if err != nil {
			if got != (Accepted{}) {
				t.Fatalf("error %v with a result %+v", err, got)
			}
			return
		}
		if status != 101 || strings.Trim(acc, " \t") != accept {
			t.Fatalf("accepted status %d, accept %q", status, acc)
		}
		if got.Subprotocol != "" && got.Subprotocol != "chat" && got.Subprotocol != "v2.chat" {
			t.Fatalf("subprotocol %q was not offered", got.Subprotocol)
		}
		if strings.Trim(got.Subprotocol, " \t") != got.Subprotocol || strings.Trim(got.Extensions, " \t") != got.Extensions {
			t.Fatalf("untrimmed result %+v", got)
		}
	})
}
