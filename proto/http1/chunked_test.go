package http1

import (
	"bufio"
	"bytes"
	"io"
	"net/http/httputil"
	"strings"
	"testing"
)

type chunkCase struct {
	in     string
	want   string // decoded body
	n      int    // bytes consumed when done (-1: len(in))
	status int    // 0 ok, -1 incomplete, else *Error status
	max    int64
}

var chunkCases = []chunkCase{
	{in: "0\r\n\r\n", want: "", n: -1},
	{in: "5\r\nhello\r\n0\r\n\r\n", want: "hello", n: -1},
	{in: "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", want: "hello world", n: -1},
	{in: "A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", want: "0123456789abcdefghij", n: -1},
	{in: "005\r\nhello\r\n000\r\n\r\n", want: "hello", n: -1},
	{in: "5;name=value;x\r\nhello\r\n0;last\r\n\r\n", want: "hello", n: -1},
	{in: "5 ; a=\"q\"\r\nhello\r\n0\r\n\r\n", want: "hello", n: -1},
	{in: "5\t\r\nhello\r\n0\r\n\r\n", want: "hello", n: -1},
	{in: "5\r\nhello\r\n0\r\nExpires: never\r\nX-Trailer: a b\r\n\r\n", want: "hello", n: -1},
	{in: "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", want: "hello", n: 15},
	{in: "5\r\nhel", want: "hel", status: -1},
	{in: "5\r\nhello\r\n0\r\n", want: "hello", status: -1},
	{in: "", status: -1},

	{in: "\r\n", status: 400},
	{in: "x\r\n", status: 400},
	{in: "-5\r\n", status: 400},
	{in: " 5\r\n", status: 400},
	{in: "0x5\r\nhello\r\n", status: 400},
	{in: "5\nhello\r\n", status: 400},
	{in: "5\r\rhello", status: 400},
	{in: "5\r\nhelloX\r\n", status: 400},
	{in: "5\r\nhello\rX", status: 400},
	{in: "5\r\nhello\n0\r\n\r\n", status: 400},
	{in: "5;a\x00b\r\nhello\r\n", status: 400},
	{in: "5;a\nhello\r\n", status: 400},
	{in: "0\r\nBad Trailer: x\r\n\r\n", status: 400},
	{in: "0\r\n: x\r\n\r\n", status: 400},
	{in: "0\r\nX: a\x01\r\n\r\n", status: 400},
	{in: "0\r\nX: a\n\r\n", status: 400},
	{in: "0\r\n\rX", status: 400},
	{in: "00000000000000001\r\n", status: 400}, // 17 digits
	{in: "ffffffffffffffff\r\n", status: 413},
	{in: "6\r\n", status: 413, max: 5},
	{in: "3\r\nabc\r\n3\r\n", status: 413, max: 5},
	{in: "5\r\nhello\r\n0\r\n\r\n", want: "hello", n: -1, max: 5},
	{in: "1;" + strings.Repeat("e", 5000) + "\r\n", status: 400},
	{in: "0\r\n" + strings.Repeat("X: y\r\n", 20000) + "\r\n", status: 431},
}

func TestChunkedTable(t *testing.T) {
	for _, tc := range chunkCases {
		want := tc.n
		if want == -1 {
			want = len(tc.in)
		}
		// Whole buffer.
		var d ChunkedDecoder
		n, out, done, err := d.Decode([]byte(tc.in), nil, tc.max)
		st := statusOf(err)
		if err == nil && !done {
			st = -1
		}
		if st != tc.status {
			t.Errorf("%.40q: status %d (err %v, done %v), want %d", tc.in, st, err, done, tc.status)
			continue
		}
		if err == nil && done && n != want {
			t.Errorf("%.40q: n = %d, want %d", tc.in, n, want)
		}
		if err == nil && string(out) != tc.want {
			t.Errorf("%.40q: out = %q, want %q", tc.in, out, tc.want)
		}
		if err == nil && !done && n != len(tc.in) {
			t.Errorf("%.40q: incomplete but consumed only %d", tc.in, n)
		}
		// Byte at a time, discarding consumed bytes as the server does.
		bn, bout, bdone, berr := decodeBytewise([]byte(tc.in), tc.max)
		if statusOf(berr) != statusOf(err) || bdone != done || string(bout) != string(out) || (done && bn != n) {
			t.Errorf("%.40q: bytewise (%d %q %v %v) != whole (%d %q %v %v)", tc.in, bn, bout, bdone, berr, n, out, done, err)
		}
	}
}

// decodeBytewise feeds in one byte at a time into a pending buffer from
// which consumed bytes are removed, like an event loop would.
func decodeBytewise(in []byte, max int64) (int, []byte, bool, error) {
	var d ChunkedDecoder
	var pending, out []byte
	total := 0
	for i := 0; i < len(in); i++ {
		pending = append(pending, in[i])
		n, o, done, err := d.Decode(pending, out, max)
		out = o
		if n > len(pending) || n < 0 {
			panic("n out of range")
		}
		pending = pending[n:]
		total += n
		if err != nil || done {
			return total, out, done, err
		}
	}
	return total, out, false, nil
}

func TestChunkedDoneIsSticky(t *testing.T) {
	var d ChunkedDecoder
	n, _, done, err := d.Decode([]byte("0\r\n\r\nrest"), nil, 0)
	if n != 5 || !done || err != nil || !d.Done() {
		t.Fatal(n, done, err)
	}
	n, out, done, err := d.Decode([]byte("rest"), []byte("x"), 0)
	if n != 0 || !done || err != nil || string(out) != "x" {
		t.Fatal(n, done, err, out)
	}
	d.Reset()
	if d.Done() {
		t.Fatal("Done after Reset")
	}
}

// TestChunkedVsNetHTTP compares decoded bodies with net/http's chunked
// reader (httputil.NewChunkedReader).
func TestChunkedVsNetHTTP(t *testing.T) {
	for _, tc := range chunkCases {
		in := []byte(tc.in)
		var d ChunkedDecoder
		n, out, done, err := d.Decode(in, nil, 0)
		want, herr := io.ReadAll(httputil.NewChunkedReader(bufio.NewReader(bytes.NewReader(in))))
		if err == nil && done {
			// Exception: RFC 9112 7.1.1 allows BWS before ";" in a chunk
			// extension; net/http's chunked reader rejects it.
			if herr != nil && !strings.Contains(tc.in, " ;") {
				t.Errorf("%.40q: we accept, net/http: %v", tc.in, herr)
			} else if herr == nil && !bytes.Equal(out, want) {
				t.Errorf("%.40q: %q vs net/http %q", tc.in, out, want)
			}
			_ = n
		}
	}
}

func TestChunkedZeroAllocs(t *testing.T) {
	buf := []byte("5\r\nhello\r\n6\r\n world\r\n0\r\nX: y\r\n\r\n")
	out := make([]byte, 0, 64)
	var d ChunkedDecoder
	allocs := testing.AllocsPerRun(100, func() {
		d.Reset()
		if _, _, done, err := d.Decode(buf, out[:0], 0); !done || err != nil {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs = %v", allocs)
	}
}
