package http1

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func fmtElems(es []ForwardedElement) string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString(" | ")
		}
		for _, p := range []struct {
			n string
			v []byte
		}{{"for", e.For}, {"by", e.By}, {"host", e.Host}, {"proto", e.Proto}} {
			if p.v != nil {
				fmt.Fprintf(&b, "%s=%s;", p.n, p.v)
			}
		}
	}
	return b.String()
}

func TestParseForwarded(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string // "ERR" for ErrForwarded
	}{
		{[]string{`for=192.0.2.43`}, `for=192.0.2.43;`},
		{[]string{`For="[2001:db8:cafe::17]:4711"`}, `for=[2001:db8:cafe::17]:4711;`},
		{[]string{`for=192.0.2.60;proto=http;by=203.0.113.43`}, `for=192.0.2.60;by=203.0.113.43;proto=http;`},
		{[]string{`for=192.0.2.43, for=198.51.100.17`}, `for=192.0.2.43; | for=198.51.100.17;`},
		{[]string{`for=192.0.2.43`, `for=198.51.100.17;host="example.com:8443";proto=https`}, `for=192.0.2.43; | for=198.51.100.17;host=example.com:8443;proto=https;`},
		{[]string{`for=unknown; proto=https`}, `for=unknown;proto=https;`}, // OWS around ';' accepted
		{[]string{`for=_hidden, for=_SEVKISEK`}, `for=_hidden; | for=_SEVKISEK;`},
		{[]string{`for=1.2.3.4:80`}, `for=1.2.3.4:80;`}, // unquoted ':' accepted
		{[]string{`, ,for=1.2.3.4,,`}, `for=1.2.3.4;`},
		{[]string{`ext=1;for=1.2.3.4`}, `for=1.2.3.4;`},
		{[]string{`host=""`}, `host=;`},
		{[]string{`for="a\"b"`}, `for=a\"b;`},
		{[]string{``}, ``},
		{[]string{`for`}, `ERR`},
		{[]string{`for=`}, `ERR`},
		{[]string{`=1.2.3.4`}, `ERR`},
		{[]string{`for="1.2.3.4`}, `ERR`},
		{[]string{`for="1.2.3.4\`}, `ERR`},
		{[]string{`for=1.2.3.4 proto=http`}, `ERR`},
		{[]string{`for=1.2.3.4;for=5.6.7.8`}, `ERR`},
		{[]string{`for=1.2.3.4"x"`}, `ERR`},
		{[]string{`for="a` + "\x01" + `"`}, `ERR`},
		{[]string{`for=1.2.3.4`, `for=(`}, `ERR`},
	} {
		vals := make([][]byte, len(tc.in))
		for i, s := range tc.in {
			vals[i] = []byte(s)
		}
		pre := []ForwardedElement{{For: []byte("keep")}}
		got, err := ParseForwarded(pre, vals...)
		if tc.want == "ERR" {
			if err != ErrForwarded || len(got) != 1 {
				t.Errorf("%q: got %q, %v; want ErrForwarded and dst unchanged", tc.in, fmtElems(got), err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if s := fmtElems(got[1:]); s != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, s, tc.want)
		}
	}
}

func TestLastToken(t *testing.T) {
	var got []string
	v := []byte(" 1.1.1.1 ,, 2.2.2.2,3.3.3.3 , ")
	for len(v) > 0 {
		var item []byte
		item, v = LastToken(v)
		if len(item) == 0 {
			break
		}
		got = append(got, string(item))
	}
	if strings.Join(got, "|") != "3.3.3.3|2.2.2.2|1.1.1.1" {
		t.Fatalf("%q", got)
	}
	if item, rest := LastToken([]byte(" , ")); len(item) != 0 || len(rest) != 0 {
		t.Fatalf("%q %q", item, rest)
	}
}

func TestParseNode(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":               "192.0.2.1",
		"192.0.2.1:8080":          "192.0.2.1",
		"2001:db8::1":             "2001:db8::1",
		"[2001:db8::1]":           "2001:db8::1",
		"[2001:db8::1]:443":       "2001:db8::1",
		"::ffff:10.0.0.1":         "10.0.0.1",
		"[::ffff:10.0.0.1]:1":     "10.0.0.1",
		"unknown":                 "",
		"_hidden":                 "",
		"":                        "",
		"192.0.2.1:":              "",
		"192.0.2.1:x":             "",
		"192.0.2.1:1234567":       "",
		"[192.0.2.1]":             "",
		"[2001:db8::1":            "",
		"[2001:db8::1]x":          "",
		"fe80::1%eth0":            "",
		"[fe80::1%eth0]":          "",
		"2001:db8::1:80:":         "",
		"300.1.1.1":               "",
		"1.2.3.4, 5.6.7.8":        "",
		strings.Repeat("1", 65):   "",
		"[2001:db8::1]:443:1":     "",
		"2001:db8::1]":            "",
		"::1":                     "::1",
		"0000:0000:0000::0001:80": "::1:80",
	} {
		ip, ok := ParseNode([]byte(in))
		got := ""
		if ok {
			got = ip.String()
		}
		if got != want || ok != (want != "") {
			t.Errorf("ParseNode(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}

func TestForwardedNoAlloc(t *testing.T) {
	v := [][]byte{[]byte(`for=192.0.2.43;proto=https;host=example.com, for="[2001:db8::1]:4711"`)}
	var buf [4]ForwardedElement
	xff := []byte("203.0.113.9, 10.0.0.1")
	n := testing.AllocsPerRun(100, func() {
		es, err := ParseForwarded(buf[:0], v...)
		if err != nil || len(es) != 2 {
			t.Fatal(err, len(es))
		}
		if _, ok := ParseNode(es[1].For); !ok {
			t.Fatal("node")
		}
		rest := xff
		for len(rest) > 0 {
			var item []byte
			item, rest = LastToken(rest)
			if _, ok := ParseNode(item); !ok {
				t.Fatal("xff node")
			}
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per run, want 0", n)
	}
}

func FuzzForwarded(f *testing.F) {
	for _, s := range []string{
		`for=192.0.2.43`, `For="[2001:db8:cafe::17]:4711"`, `for=192.0.2.60;proto=http;by=203.0.113.43`,
		`for=192.0.2.43, for=198.51.100.17;host="example.com:8443"`, `for="a\"b"`, `for=;`, `,;,`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		es, err := ParseForwarded(nil, data, data)
		if !bytes.Equal(in, data) {
			t.Fatal("input modified")
		}
		if err != nil {
			if len(es) != 0 {
				t.Fatalf("error with %d elements", len(es))
			}
		} else if len(es)%2 != 0 {
			t.Fatalf("two copies of one value gave %d elements", len(es))
		}
		for _, e := range es {
			for _, p := range [][]byte{e.For, e.By, e.Host, e.Proto} {
				if p != nil && !bytes.Contains(data, p) {
					t.Fatalf("value %q not from the input", p)
				}
			}
			if ip, ok := ParseNode(e.For); ok && !ip.IsValid() {
				t.Fatalf("ok with invalid address from %q", e.For)
			}
		}
		// Every list element and node parse, on arbitrary input.
		rest := data
		for len(rest) > 0 {
			var item []byte
			item, rest = LastToken(rest)
			if len(item) == 0 {
				break
			}
			if ip, ok := ParseNode(item); ok {
				if ip.Is4In6() || ip.Zone() != "" {
					t.Fatalf("ParseNode(%q) = %v", item, ip)
				}
				if back, err := netip.ParseAddr(ip.String()); err != nil || back != ip {
					t.Fatalf("ParseNode(%q) = %v does not round-trip", item, ip)
				}
			}
		}
	})
}
