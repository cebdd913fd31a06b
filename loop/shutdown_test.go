package loop

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestStopReachesEveryConnection: Stop finds connections wherever the wheel
// keeps them (a WebSocket without pings has no deadline and waits on the
// idle list, one with pings sits in a slot, a keep-alive HTTP connection
// and a silent one wait for their timeouts) and ends each: WebSockets get
// 1001 and the TCP close once they answer, HTTP connections are closed.
func TestStopReachesEveryConnection(t *testing.T) {
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		app.HandleWebSocket("/noping", wsEchoRoute(WSOptions{}), WSOptions{PingInterval: -1})
		app.HandleWebSocket("/ping", wsEchoRoute(WSOptions{}), WSOptions{PingInterval: time.Hour})
		app.HandleFunc("/hello", func(r *Request) { r.Write("hi") })
	})
	var wss []*wsRaw
	for i := 0; i < 3; i++ {
		wss = append(wss, wsDialRaw(t, addr, "/noping", nil), wsDialRaw(t, addr, "/ping", nil))
	}
	keepAlive := wsDialTCP(t, addr)
	keepAlive.write([]byte("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err := http.ReadResponse(keepAlive.br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("keep-alive request: %v %v", resp, err)
	}
	resp.Body.Close()
	silent := wsDialTCP(t, addr)
	// Each echo proves its connection is open before Stop.
	for _, r := range wss {
		r.send(true, ws.OpText, []byte("x"))
		if f := r.mustFrame(); string(f.payload) != "x" {
			t.Fatalf("echo before Stop: %q", f.payload)
		}
	}
	if n := l.openConns.Load(); n != 8 {
		t.Fatalf("open connections = %d, want 8", n)
	}

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- l.Stop(ctx)
	}()
	for i, r := range wss {
		f := r.mustFrame()
		if f.op != ws.OpClose || len(f.payload) < 2 {
			t.Fatalf("websocket %d: got op %v %q, want a close frame", i, f.op, f.payload)
		}
		if code := StatusCode(binary.BigEndian.Uint16(f.payload)); code != CloseGoingAway {
			t.Fatalf("websocket %d: close code %d, want 1001", i, code)
		}
		r.send(true, ws.OpClose, f.payload[:2])
		r.expectEOF()
	}
	for _, r := range []*wsRaw{keepAlive, silent} {
		r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := bufio.NewReader(r.c).ReadByte()
		var ne net.Error
		switch {
		case err == nil:
			t.Fatalf("HTTP connection: read %q after Stop, want EOF", n)
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatal("HTTP connection still open 5 s after Stop")
		}
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return")
	}
}
