package loop

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The interim 100 Continue goes through conn.write like every response,
// so what the socket did not take is counted in the unsent total
// (Metrics().UnsentBytes) and watched until it drains. Here the socket's
// kernel buffer is full while gnet's own buffer is empty (the client does
// not read), so the 25 bytes stay in gnet's buffer: before, they were
// written around the accounting and the loop never counted them.
func TestContinueCountedAsUnsent(t *testing.T) {
	filled := make(chan struct{})
	l, addr := startTestLoopWith(t, Options{TimeoutResolution: 10 * time.Millisecond, SocketSendBuffer: 16 << 10}, func(l *Loop) *Application {
		app := NewApplication(AppOptions{})
		app.HandleFunc("/fill", func(r *Request) {
			r.Write("ok")
			c := r.c
			// Once the response went out, fill the kernel's send buffer
			// behind gnet's back, leaving gnet's buffer empty.
			l.AddCallback(func() {
				chunk := make([]byte, 4096)
				for {
					if _, err := unix.Write(c.gc.Fd(), chunk); err != nil {
						break // EAGAIN: the kernel buffer is full
					}
				}
				close(filled)
			})
		})
		app.HandleFunc("/post", func(r *Request) { r.Write("posted") })
		return app
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(c, "GET /fill HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-filled:
	case <-time.After(5 * time.Second):
		t.Fatal("the socket was not filled")
	}
	time.Sleep(20 * time.Millisecond) // polls see the conn drained
	io.WriteString(c, "POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")

	// The exact unsent total, counted on the loop, against what the
	// loop publishes after its next polls.
	exact := func() int64 {
		ch := make(chan int64, 1)
		l.AddCallback(func() {
			var n int64
			l.wheel.each(func(c *conn) { n += int64(c.gc.OutboundBuffered()) })
			ch <- n
		})
		return <-ch
	}
	deadline := time.Now().Add(2 * time.Second)
	for exact() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the 100 Continue never waited in gnet's buffer")
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // several watch polls
	want, got := exact(), l.Metrics().UnsentBytes
	if got != want {
		t.Fatalf("UnsentBytes = %d, want %d (the bytes in gnet's buffers)", got, want)
	}
}
