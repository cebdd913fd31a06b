package http1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

func fuzzLimits(maxLine, maxHead int) Limits {
	// Keep limits small and non-negative so the fuzzer can reach them.
	if maxLine < 0 {
		maxLine = -maxLine
	}
	if maxHead < 0 {
		maxHead = -maxHead
	}
	return Limits{MaxRequestLine: maxLine % 4096, MaxHeaderBytes: maxHead % 8192}
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		if len(tc.in) < 4096 {
			f.Add([]byte(tc.in), tc.lim.MaxRequestLine, tc.lim.MaxHeaderBytes)
		}
	}
	for _, tc := range diffCases {
		f.Add([]byte(tc.in), 0, 0)
	}
	f.Add([]byte(strings.Join(pipelineInputs, "")), 0, 0)
	f.Fuzz(func(t *testing.T, data []byte, maxLine, maxHead int) {
		lim := fuzzLimits(maxLine, maxHead)
		var p Parser
		var h Head
		n, err := p.Parse(data, lim, &h)
		if n < 0 || n > len(data) {
			t.Fatalf("n = %d, len %d", n, len(data))
		}
		if (n > 0) != (err == nil) {
			t.Fatalf("n = %d with err %v", n, err)
		}
		if err != nil && err != ErrIncomplete {
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("unexpected error type %T", err)
			}
			switch e.Status {
			case 400, 414, 417, 431, 501, 505:
			default:
				t.Fatalf("unexpected status %d", e.Status)
			}
		}
		whole := ""
		if err == nil {
			whole = snapshot(&h)
			if !bytes.HasSuffix(data[:n], []byte("\r\n\r\n")) {
				t.Fatalf("head does not end with CRLFCRLF")
			}
			// The head alone parses the same; one byte less is incomplete.
			var p2 Parser
			var h2 Head
			if n2, err2 := p2.Parse(data[:n], lim, &h2); n2 != n || err2 != nil || snapshot(&h2) != whole {
				t.Fatalf("head alone: n=%d err=%v", n2, err2)
			}
			if _, err2 := p2.Parse(data[:n-1], lim, &h2); err2 != ErrIncomplete {
				t.Fatalf("head minus one byte: %v", err2)
			}
		}
		// Byte-at-a-time feeding gives the same result.
		bn, bs, berr := parseBytewise(t, data, lim)
		if bn != n || bs != whole || statusOf(berr) != statusOf(err) {
			t.Fatalf("bytewise (%d, %v, %s) != whole (%d, %v, %s)", bn, berr, bs, n, err, whole)
		}
		// Differential: if net/http also accepts the (CRLF-only) head, the
		// fields must agree. We only get here with CRLF-only heads, since
		// we reject bare LF.
		if err == nil {
			head := data[:n]
			req, herr := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
			if herr == nil {
				if diffs := compareWithNetHTTP(&h, req); len(diffs) > 0 {
					t.Fatalf("%q:\n%s", head, strings.Join(diffs, "\n"))
				}
			}
		}
	})
}

func FuzzChunked(f *testing.F) {
	for _, tc := range chunkCases {
		f.Add([]byte(tc.in), tc.max)
	}
	f.Fuzz(func(t *testing.T, data []byte, max int64) {
		if max < 0 {
			max = 0
		}
		var d ChunkedDecoder
		prefix := []byte("pre")
		n, out, done, err := d.Decode(data, prefix[:3:3], max)
		if n < 0 || n > len(data) {
			t.Fatalf("n = %d, len %d", n, len(data))
		}
		if !bytes.HasPrefix(out, prefix) {
			t.Fatalf("dst prefix lost: %q", out)
		}
		limit := max
		if limit <= 0 {
			limit = DefaultMaxBodyBytes
		}
		if int64(len(out)-3) > limit {
			t.Fatalf("decoded %d bytes, limit %d", len(out)-3, limit)
		}
		if err != nil && err != ErrIncomplete {
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("unexpected error type %T", err)
			}
			switch e.Status {
			case 400, 413, 431:
			default:
				t.Fatalf("unexpected status %d", e.Status)
			}
		}
		if err == nil && !done && n != len(data) {
			t.Fatalf("not done, no error, but consumed %d of %d", n, len(data))
		}
		if len(data) <= 4096 {
			bn, bout, bdone, berr := decodeBytewise(data, max)
			if statusOf(berr) != statusOf(err) || bdone != done || !bytes.Equal(bout, out[3:]) || (done && bn != n) {
				t.Fatalf("bytewise (%d %q %v %v) != whole (%d %q %v %v)", bn, bout, bdone, berr, n, out[3:], done, err)
			}
		}
		if done && err == nil && !bytes.Contains(data[:n], []byte(" ;")) && !bytes.Contains(data[:n], []byte("\t;")) {
			want, herr := io.ReadAll(httputil.NewChunkedReader(bufio.NewReader(bytes.NewReader(data[:n]))))
			if herr == nil && !bytes.Equal(want, out[3:]) {
				t.Fatalf("body %q, net/http %q", out[3:], want)
			}
		}
	})
}
