package http1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// diffCase is one input of the differential test against net/http.
// When the two parsers disagree on acceptance, note must explain why
// (a documented, intentional difference); otherwise the test fails.
type diffCase struct {
	in   string
	note string
}

// Documented differences (we reject, net/http accepts) unless marked otherwise:
const (
	noteBareLF   = "bare LF: RFC 9112 2.2 allows accepting it, we reject (net/http accepts)"
	noteFold     = "obs-fold: RFC 9112 5.2 allows rejecting it with 400 (net/http unfolds)"
	noteHost     = "missing Host in HTTP/1.1: RFC 9112 3.2 MUST 400 (net/http checks this only in its server)"
	noteVersion  = "version other than 1.0/1.1: 505 (net/http.ReadRequest accepts any HTTP/x.y)"
	noteTECL     = "Transfer-Encoding with Content-Length: rejected as smuggling defence (net/http drops Content-Length)"
	noteTE10     = "Transfer-Encoding in HTTP/1.0: RFC 9112 6.1 says framing is faulty (net/http ignores TE)"
	noteExpect   = "unknown Expect: 417 (net/http.ReadRequest leaves this to the server, which also answers 417)"
	noteAsterisk = "asterisk-form with a method other than OPTIONS (RFC 9112 3.2.4)"
	noteHostVal  = "invalid Host value: RFC 9112 3.2 MUST 400 (net/http checks this only in its server)"
	noteCLList   = "we ACCEPT a Content-Length list of identical values (RFC 9110 8.6 MAY); net/http rejects it"
	noteLeading  = "we ACCEPT leading empty lines (RFC 9112 2.2 SHOULD); net/http.ReadRequest rejects them (its server skips them)"
	noteUserinfo = "userinfo in the target: RFC 9110 4.2.4 SHOULD treat as an error (net/http accepts)"
	noteColonWS  = "whitespace between field name and colon: RFC 9112 5.1 MUST 400 (net/http accepts it)"
)

var diffCases = []diffCase{
	{in: "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"},
	{in: browserGET},
	{in: smallPOST + strings.Repeat("b", 27)},
	{in: "GET /a/b%20c/%2F?x=1&y=%zz HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET /? HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET //double/slash HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n"},
	{in: "GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"},
	{in: "GET http://[::1]:80/p HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET http:/foo HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET urn:x?q HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET http://h:abc/ HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET http://%41/ HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET http://a@b/ HTTP/1.1\r\nHost: h\r\n\r\n", note: noteUserinfo},
	{in: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"},
	{in: "CONNECT /rpc HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET / HTTP/1.0\r\n\r\n"},
	{in: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"},
	{in: "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"},
	{in: "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n"},
	{in: "GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\naccept: b\r\nX-Empty:\r\nX-Sp: \t v  \t\r\n\r\n"},
	{in: "GET / HTTP/1.1\r\nHost: h\r\nX-Obs: caf\xc3\xa9\r\nx_under: 1\r\n\r\n"},
	{in: "GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n"},
	{in: "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 000\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n3;ext=1\r\nabc\r\n2 \r\nde\r\n0\r\nTrailer-A: x\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx"},

	// Both reject.
	{in: "GET / HTTP/1.1\r\nHost: h\r\nX-A : b\r\n\r\n", note: noteColonWS},
	{in: "GET / HTTP/1.1\r\nHost: h\r\nX(A): b\r\n\r\n"},
	{in: "GET / HTTP/1.1\r\nHost: h\r\nnocolon\r\n\r\n"},
	{in: "GET / HTTP/1.1\r\n Host: h\r\n\r\n"},
	{in: "G(T / HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET  / HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET foo HTTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET / HTTP/x.y\r\nHost: h\r\n\r\n"},
	{in: "GET / FTP/1.1\r\nHost: h\r\n\r\n"},
	{in: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},

	// Documented differences.
	{in: "GET / HTTP/1.1\nHost: h\n\n", note: noteBareLF},
	{in: "GET / HTTP/1.1\r\nHost: h\n\r\n", note: noteBareLF},
	{in: "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", note: noteFold},
	{in: "GET / HTTP/1.1\r\n\r\n", note: noteHost},
	{in: "GET / HTTP/1.2\r\nHost: h\r\n\r\n", note: noteVersion},
	{in: "GET / HTTP/2.0\r\nHost: h\r\n\r\n", note: noteVersion},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", note: noteTECL},
	{in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", note: noteTE10},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", note: noteExpect},
	{in: "GET * HTTP/1.1\r\nHost: h\r\n\r\n", note: noteAsterisk},
	{in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", note: noteHostVal},
	{in: "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n"},
	{in: "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n"},
	{in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello", note: noteCLList},
	{in: "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", note: noteLeading},
}

// compareWithNetHTTP reports differences between our head and net/http's
// request for the same CRLF-only input that both accepted.
func compareWithNetHTTP(h *Head, req *http.Request) []string {
	var diffs []string
	d := func(what string, ours, theirs any) {
		diffs = append(diffs, what+": ours "+strings.TrimSpace(strings.ReplaceAll(fmtAny(ours), "\n", " "))+
			", net/http "+fmtAny(theirs))
	}
	if string(h.Method) != req.Method {
		d("method", string(h.Method), req.Method)
	}
	if string(h.Target) != req.RequestURI {
		d("target", string(h.Target), req.RequestURI)
	}
	if h.Major != req.ProtoMajor || h.Minor != req.ProtoMinor {
		d("version", [2]int{h.Major, h.Minor}, [2]int{req.ProtoMajor, req.ProtoMinor})
	}
	// net/http does not recognise fragments in request targets.
	if !bytes.ContainsRune(h.Target, '#') {
		p, err := url.PathUnescape(string(h.Path))
		if err != nil {
			d("path unescape", err, nil)
		} else if p != req.URL.Path {
			d("path", p, req.URL.Path)
		}
		if string(h.Query) != req.URL.RawQuery {
			d("query", string(h.Query), req.URL.RawQuery)
		}
	}
	// Headers: canonical names, values in order. net/http removes
	// Transfer-Encoding, collapses repeated identical Content-Length fields
	// and may add Cache-Control for "Pragma: no-cache".
	ours := map[string][]string{}
	for _, f := range h.Fields {
		k := textproto.CanonicalMIMEHeaderKey(string(f.Name))
		ours[k] = append(ours[k], string(f.Value))
	}
	for k, vs := range ours {
		switch k {
		case "Transfer-Encoding", "Content-Length", "Host":
			continue // compared below
		}
		if !slices.Equal(vs, req.Header[k]) {
			d("header "+k, vs, req.Header[k])
		}
	}
	for k, vs := range req.Header {
		switch k {
		case "Content-Length":
			continue
		case "Cache-Control":
			if ours[k] == nil && h.HasToken("Pragma", "no-cache") {
				continue
			}
		}
		if ours[k] == nil {
			d("extra header "+k, nil, vs)
		}
	}
	wantHost := string(h.Authority)
	if wantHost == "" {
		wantHost = string(h.Get("Host"))
	}
	if wantHost != req.Host {
		d("host", wantHost, req.Host)
	}
	cl := h.ContentLength
	if cl == -1 && !h.Chunked {
		cl = 0 // net/http: a request without framing headers has no body
	}
	if cl != req.ContentLength {
		d("content-length", cl, req.ContentLength)
	}
	if h.Chunked != slices.Equal(req.TransferEncoding, []string{"chunked"}) {
		d("chunked", h.Chunked, req.TransferEncoding)
	}
	if !h.KeepAlive != req.Close {
		d("close", !h.KeepAlive, req.Close)
	}
	return diffs
}

func fmtAny(v any) string {
	switch v := v.(type) {
	case string:
		return `"` + v + `"`
	case nil:
		return "<nil>"
	}
	return strings.TrimSpace(strings.Trim(fmtSprint(v), "\n"))
}

func TestNetHTTPDifferential(t *testing.T) {
	for _, tc := range diffCases {
		in := []byte(tc.in)
		var p Parser
		var h Head
		n, err := p.Parse(in, Limits{}, &h)
		if err == ErrIncomplete {
			t.Errorf("%q: incomplete", tc.in)
			continue
		}
		req, herr := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		ourOK, theirOK := err == nil, herr == nil
		switch {
		case ourOK && theirOK:
			if tc.note != "" {
				t.Errorf("%q: both accept but case is noted as a difference (%s)", tc.in, tc.note)
			}
			for _, s := range compareWithNetHTTP(&h, req) {
				t.Errorf("%q: %s", tc.in, s)
			}
			// Body: Content-Length or chunked must decode to the same bytes.
			want, rerr := io.ReadAll(req.Body)
			if rerr != nil {
				t.Errorf("%q: net/http body: %v", tc.in, rerr)
				continue
			}
			var got []byte
			rest := in[n:]
			if h.Chunked {
				var dec ChunkedDecoder
				m, out, done, derr := dec.Decode(rest, nil, 0)
				if derr != nil || !done || m != len(rest) {
					t.Errorf("%q: chunked decode m=%d done=%v err=%v", tc.in, m, done, derr)
				}
				got = out
			} else if h.ContentLength > 0 {
				got = rest[:h.ContentLength]
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%q: body %q, net/http %q", tc.in, got, want)
			}
		case ourOK != theirOK:
			if tc.note == "" {
				t.Errorf("%q: ours err=%v, net/http err=%v, and no documented reason", tc.in, err, herr)
			} else {
				t.Logf("%q: known difference (%s): ours err=%v, net/http err=%v", tc.in, tc.note, err, herr)
			}
		default:
			if tc.note != "" {
				t.Errorf("%q: both reject but case is noted as a difference (%s)", tc.in, tc.note)
			}
		}
	}
}

func fmtSprint(v any) string { return fmt.Sprint(v) }
