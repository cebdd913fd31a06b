package http1

import (
	"bytes"
	"testing"
)

// splitList is the reference for NextToken: split at every comma, trim OWS,
// drop empty elements.
func splitList(v []byte) [][]byte {
	var out [][]byte
	for _, e := range bytes.Split(v, []byte{','}) {
		if e = bytes.Trim(e, " \t"); len(e) > 0 {
			out = append(out, e)
		}
	}
	return out
}

func tokens(v []byte) [][]byte {
	var out [][]byte
	for len(v) > 0 {
		var item []byte
		if item, v = NextToken(v); len(item) == 0 {
			break
		}
		out = append(out, item)
	}
	return out
}

func TestNextToken(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a", []string{"a"}},
		{" a ", []string{"a"}},
		{"keep-alive, Upgrade", []string{"keep-alive", "Upgrade"}},
		{",,a,\t, b ,", []string{"a", "b"}},
		{" , ", nil},
		{"a b, c\td", []string{"a b", "c\td"}},
		{"permessage-deflate; client_max_window_bits, x", []string{"permessage-deflate; client_max_window_bits", "x"}},
	} {
		got := tokens([]byte(c.in))
		if len(got) != len(c.want) {
			t.Errorf("%q: %q, want %q", c.in, got, c.want)
			continue
		}
		for i := range got {
			if string(got[i]) != c.want[i] {
				t.Errorf("%q: %q, want %q", c.in, got, c.want)
			}
		}
	}
	// The item is empty only at the end, and rest is nil after the last
	// element.
	if item, rest := NextToken([]byte("a")); string(item) != "a" || rest != nil {
		t.Errorf(`NextToken("a") = %q, %q`, item, rest)
	}
	if item, rest := NextToken([]byte(", ,")); item != nil || rest != nil {
		t.Errorf(`NextToken(", ,") = %q, %q`, item, rest)
	}
	v := []byte("keep-alive, , Upgrade")
	if a := testing.AllocsPerRun(100, func() { _ = HasToken([][]byte{v}, "upgrade") }); a != 0 {
		t.Errorf("HasToken: %v allocs", a)
	}
}

func TestHasToken(t *testing.T) {
	vals := [][]byte{[]byte("keep-alive"), []byte(" , UPGRADE ")}
	for _, c := range []struct {
		token string
		want  bool
	}{
		{"upgrade", true},
		{"Upgrade", true},
		{"keep-alive", true},
		{"close", false},
		{"", false},
		{"upgrad", false},
	} {
		if got := HasToken(vals, c.token); got != c.want {
			t.Errorf("HasToken(%q, %q) = %v", vals, c.token, got)
		}
	}
	if HasToken(nil, "upgrade") {
		t.Error("HasToken(nil) = true")
	}
	// Head.HasToken looks at every field line of the name too.
	var p Parser
	var h Head
	h.Reset()
	in := "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	if _, err := p.Parse([]byte(in), Limits{}, &h); err != nil {
		t.Fatal(err)
	}
	if !h.HasToken("connection", "upgrade") || !HasToken(h.Values(nil, "Connection"), "UPGRADE") || !h.Upgrade || !h.KeepAlive {
		t.Fatalf("two Connection lines: HasToken %v, Upgrade %v, KeepAlive %v", h.HasToken("connection", "upgrade"), h.Upgrade, h.KeepAlive)
	}
}

// FuzzNextToken checks NextToken against splitting at every comma, and
// HasToken against comparing those elements with strings.EqualFold.
func FuzzNextToken(f *testing.F) {
	f.Add([]byte("keep-alive, Upgrade"), "upgrade")
	f.Add([]byte(",, a ,\t,b,"), "b")
	f.Add([]byte(" , "), "")
	f.Add([]byte("chunked,gzip"), "CHUNKED")
	f.Fuzz(func(t *testing.T, v []byte, token string) {
		want := splitList(v)
		got := tokens(v)
		if len(got) != len(want) {
			t.Fatalf("%q: %q, want %q", v, got, want)
		}
		found := token != "" && asciiLower([]byte("x")) == asciiLower([]byte(token))
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%q: %q, want %q", v, got, want)
			}
			found = found || token != "" && asciiLower(got[i]) == asciiLower([]byte(token))
		}
		if h := HasToken([][]byte{[]byte("x"), v}, token); h != found {
			t.Fatalf("HasToken(%q, %q) = %v, want %v", v, token, h, found)
		}
	})
}

// asciiLower lower-cases ASCII letters only (strings.ToLower would also
// fold non-ASCII, e.g. the Kelvin sign, which HTTP tokens do not).
func asciiLower(b []byte) string {
	out := []byte(string(b))
	for i, c := range out {
		if 'A' <= c && c <= 'Z' {
			out[i] = c + 'a' - 'A'
		}
	}
	return string(out)
}
