package http1_test

import (
	"fmt"

	"github.com/tornago/tornago/proto/http1"
)

// Parse two pipelined requests from one buffer, using n to advance.
func ExampleParser_Parse() {
	buf := []byte("GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello" +
		"GET /c HTTP/1.1\r\nHo")
	var p http1.Parser
	var h http1.Head
	for {
		n, err := p.Parse(buf, http1.Limits{}, &h)
		if err == http1.ErrIncomplete {
			fmt.Printf("incomplete, %d bytes buffered\n", len(buf))
			break
		}
		if err != nil {
			fmt.Println("error:", err) // answer err.(*http1.Error).Status and close
			break
		}
		fmt.Printf("%s path=%s query=%q cl=%d keep-alive=%v\n", h.Method, h.Path, h.Query, h.ContentLength, h.KeepAlive)
		buf = buf[n:]
		if h.ContentLength > 0 {
			fmt.Printf("body=%s\n", buf[:h.ContentLength])
			buf = buf[h.ContentLength:]
		}
	}
	// Output:
	// GET path=/a query="x=1" cl=-1 keep-alive=true
	// POST path=/b query="" cl=5 keep-alive=false
	// body=hello
	// incomplete, 19 bytes buffered
}
