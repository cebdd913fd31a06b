package loop

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/tornago/tornago/proto/ws13"
)

// TestDialRejectsBadHeader: a header that would split the request is an
// error before anything is sent.
func TestDialRejectsBadHeader(t *testing.T) {
	_, err := Dial("ws://127.0.0.1:1/x", DialOptions{Header: [][2]string{{"X-A", "1\r\nEvil: yes"}}})
	if !errors.Is(err, ws13.ErrRequestHeader) {
		t.Fatalf("err %v, want ErrRequestHeader", err)
	}
}

// TestDialRejectsUnofferedSubprotocol: a server that picks a subprotocol
// the client did not offer fails the handshake (RFC 6455 4.1).
func TestDialRejectsUnofferedSubprotocol(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		accept := ws13.AppendAcceptKey(nil, []byte(req.Header.Get("Sec-WebSocket-Key")))
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + string(accept) + "\r\nSec-WebSocket-Protocol: evil\r\n\r\n"))
		c.Read(make([]byte, 1))
	}()
	_, err = Dial("ws://"+ln.Addr().String()+"/x", DialOptions{Subprotocols: []string{"chat"}})
	if !errors.Is(err, ws13.ErrResponseSubprotocol) {
		t.Fatalf("err %v, want ErrResponseSubprotocol", err)
	}
}
