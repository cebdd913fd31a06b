package ws13

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestAcceptKeyRFCExample(t *testing.T) {
	// RFC 6455 1.3: "dGhlIHNhbXBsZSBub25jZQ==" -> "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
	got := AppendAcceptKey([]byte("x"), []byte("dGhlIHNhbXBsZSBub25jZQ=="))
	if string(got) != "xs3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("AppendAcceptKey = %q", got)
	}
	// A key too long for the stack path gives the same as the short path
	// would (checked against a direct computation).
	long := []byte(strings.Repeat("k", 40))
	got = AppendAcceptKey(nil, long)
	if len(got) != 28 {
		t.Fatalf("long key: %q", got)
	}
	if a := testing.AllocsPerRun(100, func() {
		var buf [64]byte
		_ = AppendAcceptKey(buf[:0], []byte("dGhlIHNhbXBsZSBub25jZQ=="))
	}); a != 0 {
		t.Errorf("AppendAcceptKey: %v allocs", a)
	}
}

func TestCheckRequest(t *testing.T) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	type req struct {
		method                            string
		major, minor                      int
		upgrade, connection, version, key string
	}
	ok := req{"GET", 1, 1, "websocket", "Upgrade", "13", key}
	tests := []struct {
		name   string
		mod    func(*req)
		status int
	}{
		{"valid", func(*req) {}, 0},
		{"valid case and lists", func(r *req) {
			r.upgrade = "WebSocket"
			r.connection = "keep-alive, UPGRADE"
			r.version = " 13 "
			r.key = " " + key + "\t"
		}, 0},
		{"valid HTTP/2.0 version numbers", func(r *req) { r.major, r.minor = 2, 0 }, 0},
		{"valid upgrade list", func(r *req) { r.upgrade = "h2c,  websocket" }, 0},
		{"POST", func(r *req) { r.method = "POST" }, 400},
		{"lower-case get", func(r *req) { r.method = "get" }, 400},
		{"HTTP/1.0", func(r *req) { r.major, r.minor = 1, 0 }, 400},
		{"HTTP/0.9", func(r *req) { r.major, r.minor = 0, 9 }, 400},
		{"no upgrade", func(r *req) { r.upgrade = "" }, 400},
		{"upgrade other", func(r *req) { r.upgrade = "h2c" }, 400},
		{"upgrade substring", func(r *req) { r.upgrade = "websockets" }, 400},
		{"no connection", func(r *req) { r.connection = "" }, 400},
		{"connection keep-alive", func(r *req) { r.connection = "keep-alive" }, 400},
		{"connection substring", func(r *req) { r.connection = "upgraded" }, 400},
		{"no version", func(r *req) { r.version = "" }, 426},
		{"version 8", func(r *req) { r.version = "8" }, 426},
		{"version 13 list", func(r *req) { r.version = "13, 8" }, 426},
		{"no key", func(r *req) { r.key = "" }, 400},
		{"key 15 bytes", func(r *req) { r.key = base64.StdEncoding.EncodeToString(make([]byte, 15)) }, 400},
		{"key 17 bytes", func(r *req) { r.key = base64.StdEncoding.EncodeToString(make([]byte, 17)) }, 400},
		{"key not base64", func(r *req) { r.key = "!GhlIHNhbXBsZSBub25jZQ==" }, 400},
		{"key unpadded", func(r *req) { r.key = "dGhlIHNhbXBsZSBub25jZQ" }, 400},
		{"key url alphabet", func(r *req) { r.key = "_-hlIHNhbXBsZSBub25jZQ==" }, 400},
		// A "\n" in a value separates field lines of the same name.
		{"connection on two lines", func(r *req) { r.connection = "keep-alive\nUpgrade" }, 0},
		{"connection on two lines, upgrade first", func(r *req) { r.connection = "Upgrade\nkeep-alive" }, 0},
		{"connection on two lines without upgrade", func(r *req) { r.connection = "keep-alive\nclose" }, 400},
		{"upgrade on two lines", func(r *req) { r.upgrade = "h2c\nwebsocket" }, 0},
		{"key on two lines", func(r *req) { r.key = key + "\n" + key }, 400},
		{"key on two lines, second invalid", func(r *req) { r.key = key + "\nxx" }, 400},
		{"key comma-joined", func(r *req) { r.key = key + ", " + key }, 400},
		{"version on two lines differing", func(r *req) { r.version = "13\n8" }, 400},
		{"version on two lines, 8 first", func(r *req) { r.version = "8\n13" }, 426},
		{"version on two lines identical", func(r *req) { r.version = "13\n 13" }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.mod(&r)
			he := CheckRequest([]byte(r.method), r.major, r.minor, lines(r.upgrade), lines(r.connection), lines(r.version), lines(r.key))
			status := 0
			if he != nil {
				status = he.Status
			}
			if status != tt.status {
				t.Fatalf("status %d (%v), want %d", status, he, tt.status)
			}
			if status == 426 && (len(he.Header) != 1 || he.Header[0] != [2]string{"Sec-WebSocket-Version", "13"}) {
				t.Fatalf("426 header %v", he.Header)
			}
			if he != nil && !strings.HasPrefix(he.Error(), fmt.Sprintf("ws13: handshake %d: ", status)) {
				t.Fatalf("Error() = %q", he.Error())
			}
		})
	}
	up, conn, version, k := lines("websocket"), lines("keep-alive\nUpgrade"), lines("13"), lines(key)
	if a := testing.AllocsPerRun(100, func() {
		_ = CheckRequest([]byte("GET"), 1, 1, up, conn, version, k)
	}); a != 0 {
		t.Errorf("CheckRequest: %v allocs", a)
	}
}

// lines splits s at "\n" into field values, one per field line; "" is an
// absent field (nil).
func lines(s string) [][]byte {
	if s == "" {
		return nil
	}
	var out [][]byte
	for _, l := range strings.Split(s, "\n") {
		out = append(out, []byte(l))
	}
	return out
}

func TestAppendResponse(t *testing.T) {
	got := AppendResponse(nil, []byte("dGhlIHNhbXBsZSBub25jZQ=="), "chat", "", [][2]string{{"X-Id", "7"}, {"X-Bad", "a\r\nInjected: 1"}, {"Bad:Name", "v"}})
	want := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
		"Sec-WebSocket-Protocol: chat\r\n" +
		"X-Id: 7\r\n" +
		"\r\n"
	if string(got) != want {
		t.Fatalf("AppendResponse:\n%q\nwant\n%q", got, want)
	}
	got = AppendResponse([]byte("pre"), []byte("dGhlIHNhbXBsZSBub25jZQ=="), "", "permessage-deflate", nil)
	if !bytes.HasPrefix(got, []byte("preHTTP/1.1 101")) || !bytes.HasSuffix(got, []byte("Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")) ||
		bytes.Contains(got, []byte("Sec-WebSocket-Protocol")) {
		t.Fatalf("AppendResponse with extensions: %q", got)
	}
	buf := make([]byte, 0, 512)
	if a := testing.AllocsPerRun(100, func() {
		buf = AppendResponse(buf[:0], []byte("dGhlIHNhbXBsZSBub25jZQ=="), "chat", "", nil)
	}); a != 0 {
		t.Errorf("AppendResponse: %v allocs", a)
	}
}

func TestParseSubprotocols(t *testing.T) {
	got := ParseSubprotocols([]string{"x"}, []byte("chat, superchat"), []byte(""), []byte(" ,v2.mqtt ,,\tjson "))
	want := []string{"x", "chat", "superchat", "v2.mqtt", "json"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ParseSubprotocols = %q, want %q", got, want)
	}
	if got := ParseSubprotocols(nil); got != nil {
		t.Fatalf("no values: %q", got)
	}
}

func TestClientHandshake(t *testing.T) {
	key := NewKey()
	if len(key) != 24 {
		t.Fatalf("NewKey length %d", len(key))
	}
	if CheckRequest([]byte("GET"), 1, 1, lines("websocket"), lines("Upgrade"), lines("13"), [][]byte{key}) != nil {
		t.Fatal("NewKey not accepted by CheckRequest")
	}
	if k2 := NewKey(); bytes.Equal(key, k2) {
		t.Fatal("NewKey repeated")
	}
	accept := AppendAcceptKey(nil, key)
	if err := checkResponseHead(101, []byte("websocket"), []byte("Upgrade"), accept, key); err != nil {
		t.Fatalf("valid response: %v", err)
	}
	if err := checkResponseHead(101, []byte("WebSocket"), []byte("keep-alive, upgrade"), append([]byte(" "), accept...), key); err != nil {
		t.Fatalf("valid response, case and space: %v", err)
	}
	other := AppendAcceptKey(nil, NewKey())
	for _, c := range []struct {
		status                      int
		upgrade, connection, accept []byte
		want                        error
	}{
		{200, []byte("websocket"), []byte("Upgrade"), accept, ErrResponseStatus},
		{101, nil, []byte("Upgrade"), accept, ErrResponseUpgrade},
		{101, []byte("h2c"), []byte("Upgrade"), accept, ErrResponseUpgrade},
		{101, []byte("websocket"), []byte("close"), accept, ErrResponseConnection},
		{101, []byte("websocket"), []byte("Upgrade"), nil, ErrResponseAccept},
		{101, []byte("websocket"), []byte("Upgrade"), other, ErrResponseAccept},
		{101, []byte("websocket"), []byte("Upgrade"), accept[:27], ErrResponseAccept},
	} {
		if err := checkResponseHead(c.status, c.upgrade, c.connection, c.accept, key); !errors.Is(err, c.want) {
			t.Errorf("checkResponseHead(%d, %q, %q, %q): %v, want %v", c.status, c.upgrade, c.connection, c.accept, err, c.want)
		}
	}
	// Masks are random: 1000 draws of 32 bits are all distinct with
	// overwhelming probability.
	seen := map[[4]byte]bool{}
	for range 1000 {
		m := NewMask()
		if seen[m] {
			t.Fatalf("NewMask repeated %x", m)
		}
		seen[m] = true
	}
}

func FuzzHandshake(f *testing.F) {
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ==")
	f.Add("POST", 1, 0, "", "", "", "")
	f.Add("GET", 1, 1, "WebSocket, h2c", "keep-alive,upgrade", "8", "AAAAAAAAAAAAAAAAAAAAAA==")
	f.Add("GET", -1, 99, ",,,", " , ", "13 ", "====================\xff\xff==")
	f.Add("GET", 1, 1, "websocket", "keep-alive\nUpgrade", "13\n13", "dGhlIHNhbXBsZSBub25jZQ==\ndGhlIHNhbXBsZSBub25jZQ==")
	f.Fuzz(func(t *testing.T, method string, major, minor int, upgrade, connection, version, key string) {
		// A "\n" separates field lines of the same name.
		he := CheckRequest([]byte(method), major, minor, lines(upgrade), lines(connection), lines(version), lines(key))
		if he == nil {
			if method != "GET" || major < 1 || (major == 1 && minor < 1) {
				t.Fatalf("accepted %q HTTP/%d.%d", method, major, minor)
			}
			if strings.Contains(key, "\n") {
				t.Fatalf("accepted a key on two lines: %q", key)
			}
			raw, err := base64.StdEncoding.DecodeString(strings.Trim(key, " \t"))
			if err != nil || len(raw) != 16 {
				t.Fatalf("accepted key %q", key)
			}
			for _, v := range strings.Split(version, "\n") {
				if strings.Trim(v, " \t") != "13" {
					t.Fatalf("accepted version %q", version)
				}
			}
			if !strings.Contains(strings.ToLower(connection), "upgrade") || !strings.Contains(strings.ToLower(upgrade), "websocket") {
				t.Fatalf("accepted Upgrade %q, Connection %q", upgrade, connection)
			}
			resp := AppendResponse(nil, []byte(key), "", "", nil)
			if !bytes.HasSuffix(resp, []byte("\r\n\r\n")) {
				t.Fatalf("response %q", resp)
			}
			return
		}
		if he.Status != 400 && he.Status != 426 {
			t.Fatalf("status %d", he.Status)
		}
		_ = he.Error()
		_ = ParseSubprotocols(nil, []byte(upgrade), []byte(connection))
		_ = checkResponseHead(101, []byte(upgrade), []byte(connection), []byte(version), []byte(key))
	})
}
