package http1

import (
	"strings"
	"testing"
)

// A typical browser navigation request: ~400 bytes, 10 header fields.
const browserGET = "GET /articles/2024/index.html?utm_source=news&page=2 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=abc123; theme=dark\r\n" +
	"Upgrade-Insecure-Requests: 1\r\n" +
	"Sec-Fetch-Dest: document\r\n" +
	"Sec-Fetch-Mode: navigate\r\n" +
	"\r\n"

const smallPOST = "POST /api/v1/items HTTP/1.1\r\n" +
	"Host: api.example.com\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Length: 27\r\n" +
	"\r\n"

func benchParse(b *testing.B, req string) {
	buf := []byte(req)
	var p Parser
	var h Head
	lim := Limits{}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(buf, lim, &h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	b.Run("browserGET", func(b *testing.B) { benchParse(b, browserGET) })
	b.Run("smallPOST", func(b *testing.B) { benchParse(b, smallPOST) })
	b.Run("browserGET-bytewise", func(b *testing.B) {
		buf := []byte(browserGET)
		var p Parser
		var h Head
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		for b.Loop() {
			for k := 1; k <= len(buf); k++ {
				_, err := p.Parse(buf[:k], Limits{}, &h)
				if err != nil && err != ErrIncomplete {
					b.Fatal(err)
				}
			}
		}
	})
}

func BenchmarkChunked(b *testing.B) {
	var sb strings.Builder
	for i := 0; i < 16; i++ {
		sb.WriteString("400\r\n")
		sb.WriteString(strings.Repeat("x", 0x400))
		sb.WriteString("\r\n")
	}
	sb.WriteString("0\r\n\r\n")
	buf := []byte(sb.String())
	out := make([]byte, 0, 16<<10)
	var d ChunkedDecoder
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		d.Reset()
		n, o, done, err := d.Decode(buf, out[:0], 0)
		if err != nil || !done || n != len(buf) || len(o) != 16<<10 {
			b.Fatal(n, done, err)
		}
	}
}
