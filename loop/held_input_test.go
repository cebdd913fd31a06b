package loop

// Input held behind a request in flight (issue 19 item 6): what a client
// pipelines behind a long poll or a stream waits in gnet's inbound buffer
// for as long as that request lasts, so it is bounded per connection
// (AppOptions.MaxHeldInputPerConn) and per loop (Options.MaxHeldInputTotal).

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// heapInuse is the heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestHeldInputBehindEventStreams: clients that pipeline 256 KiB behind an
// event stream each get a comment saying why and the stream's clean end,
// the server's heap does not grow by what they sent, and a canary stream
// and a canary request beside them are served.
func TestHeldInputBehindEventStreams(t *testing.T) {
	const attackers = 200
	var mu sync.Mutex
	var streams []*EventStream
	l, addr := httpApp(t, Options{TimeoutResolution: 10 * time.Millisecond}, func(l *Loop, app *Application) {
		app.HandleFunc("/sse", func(r *Request) {
			es, err := r.EventStream(EventStreamOptions{Heartbeat: -1})
			if err == nil {
				mu.Lock()
				streams = append(streams, es)
				mu.Unlock()
			}
		})
		app.HandleFunc("/hello", func(r *Request) { r.Write("hi") })
	})

	canary, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer canary.Close()
	io.WriteString(canary, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
	cbr := bufio.NewReader(canary)
	canary.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(cbr, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("canary stream: %v", err)
	}
	waitFor(t, "the canary stream", func() bool { return l.Metrics().OpenEventStreams == 1 })

	before := heapInuse()
	pipelined := []byte(strings.Repeat("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 256<<10/32))
	conns := make([]net.Conn, attackers)
	var wrote sync.WaitGroup
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		wrote.Add(1)
		go func() {
			defer wrote.Done()
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
			c.Write(pipelined) // fails once the server discarded and closed
		}()
	}
	wrote.Wait()
	time.Sleep(100 * time.Millisecond) // the server reads what the sockets hold
	grew := int64(heapInuse()) - int64(before)
	t.Logf("heap in use: %d KiB before, %+d KiB with %d clients that pipelined %d KiB each behind an event stream",
		before>>10, grew>>10, attackers, len(pipelined)>>10)
	if grew > 16<<20 {
		t.Errorf("the heap grew by %d MiB: the pipelined input is held", grew>>20)
	}

	// The canary request is served at once.
	start := time.Now()
	resp, err := http.Get("http://" + addr + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("canary request took %v", d)
	}

	// Every attacker reads the reason and the stream's end, then EOF.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("attacker %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("attacker %d: the stream did not end cleanly: %v (read %q)", i, err, body)
		}
		if want := ": closing: more than 4096 bytes sent behind a request in flight\n\n"; string(body) != want {
			t.Fatalf("attacker %d: body %q, want %q", i, body, want)
		}
	}
	waitFor(t, "the attackers counted out", func() bool {
		m := l.Metrics()
		return m.HeldInputCloses == attackers && m.HeldInputBytes == 0 && m.OpenEventStreams == 1
	})

	// The canary stream still gets events.
	l.AddCallback(func() {
		mu.Lock()
		defer mu.Unlock()
		streams[0].Send("", "", []byte("alive"))
	})
	canary.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := cbr.ReadString('\n')
		if err != nil {
			t.Fatalf("canary stream: %v", err)
		}
		if strings.Contains(line, "data: alive") {
			break
		}
	}
}

// TestHeldInputBehindLongPoll: a parked request with more than the bound
// pipelined behind it is answered 400 with the reason and closed, and its
// handler learns it; a streamed response is cut; small pipelined requests
// behind a long poll are still served in order once it finishes.
func TestHeldInputBehindLongPoll(t *testing.T) {
	gone := make(chan struct{}, 1)
	l, addr := httpApp(t, Options{TimeoutResolution: 10 * time.Millisecond}, func(l *Loop, app *Application) {
		app.HandleFunc("/wait", func(r *Request) {
			r.Async()
			r.OnConnectionClose(func() { gone <- struct{}{} })
		})
		app.HandleFunc("/quick", func(r *Request) {
			r.Async()
			l.CallLater(500*time.Millisecond, func() { r.Write("quick"); r.Finish() })
		})
		app.HandleFunc("/download", func(r *Request) {
			r.Write("part one")
			r.Flush() // and never finished
		})
		app.HandleFunc("/hello", func(r *Request) { r.Write("hi") })
	})

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, strings.Repeat("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 8<<10/32))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "more than 4096 bytes sent behind a request in flight") {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the 400: %v, want EOF", err)
	}
	c.Close() // the server lingers until the client closes
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("OnConnectionClose did not run")
	}

	// A streamed body is cut, not ended: the client sees it truncated.
	d, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	io.WriteString(d, "GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	io.WriteString(d, strings.Repeat("x", 8<<10))
	d.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(d), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	if err != io.ErrUnexpectedEOF || string(body) != "part one" {
		t.Fatalf("download: %q, %v; want a truncated body", body, err)
	}

	// Small pipelined requests behind a long poll wait and are served.
	k, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	io.WriteString(k, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(20 * time.Millisecond)
	io.WriteString(k, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "HeldInputBytes 64 while two requests wait", func() bool { return l.Metrics().HeldInputBytes == 64 })
	kr := bufio.NewReader(k)
	for i, want := range []string{"quick", "hi", "hi"} {
		k.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(kr, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != want {
			t.Fatalf("response %d: %q, want %q", i, body, want)
		}
	}
	if m := l.Metrics(); m.HeldInputBytes != 0 || m.HeldInputCloses != 2 {
		t.Errorf("HeldInputBytes %d, HeldInputCloses %d; want 0, 2", m.HeldInputBytes, m.HeldInputCloses)
	}
}

// TestHeldInputTotal: the loop-wide budget closes the connection whose
// held input would pass it, and only that one.
func TestHeldInputTotal(t *testing.T) {
	l, addr := httpApp(t, Options{TimeoutResolution: 10 * time.Millisecond, MaxHeldInputTotal: 5000}, func(l *Loop, app *Application) {
		app.HandleFunc("/wait", func(r *Request) { r.Async() })
	})
	partial := "GET /wait HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 3000) // a head still arriving
	open := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(50 * time.Millisecond)
		io.WriteString(c, partial)
		return c
	}
	a := open()
	waitFor(t, "the first connection's held input", func() bool { return l.Metrics().HeldInputBytes == int64(len(partial)) })
	b := open()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "input budget") {
		t.Fatalf("second connection: %d %q", resp.StatusCode, body)
	}
	a.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := a.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the first connection was answered or closed: %v", err)
	}
	if m := l.Metrics(); m.HeldInputCloses != 1 || m.HeldInputBytes != int64(len(partial)) {
		t.Fatalf("HeldInputCloses %d, HeldInputBytes %d", m.HeldInputCloses, m.HeldInputBytes)
	}
}
