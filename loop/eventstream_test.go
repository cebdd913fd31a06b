package loop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- a client side: raw chunked reading and an event parser ----

// sseEvent is one dispatched event, or a comment (comment set).
type sseEvent struct {
	id, event, data string
	retry           string
	comment         bool
}

// sseParser follows the HTML standard's interpretation of an event
// stream: lines end in LF, CRLF or CR; a blank line dispatches; a line
// starting with ':' is a comment (reported, for the heartbeat tests);
// "field: value" strips one space after the colon.
type sseParser struct {
	buf     []byte
	id, ev  string
	data    []string
	hasData bool
}

// feed adds bytes and returns the events (and comments) completed.
func (p *sseParser) feed(b []byte) []sseEvent {
	p.buf = append(p.buf, b...)
	var out []sseEvent
	for {
		i := bytes.IndexAny(p.buf, "\r\n")
		if i < 0 {
			return out
		}
		if p.buf[i] == '\r' && i+1 == len(p.buf) {
			return out // a CR may be the start of a CRLF
		}
		line := string(p.buf[:i])
		n := i + 1
		if p.buf[i] == '\r' && p.buf[i+1] == '\n' {
			n++
		}
		p.buf = p.buf[n:]
		switch {
		case line == "":
			if p.hasData {
				out = append(out, sseEvent{id: p.id, event: p.ev, data: strings.Join(p.data, "\n")})
			}
			p.ev, p.data, p.hasData = "", nil, false
		case line[0] == ':':
			out = append(out, sseEvent{comment: true, data: line[1:]})
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "id":
				p.id = v
			case "event":
				p.ev = v
			case "data":
				p.data = append(p.data, v)
				p.hasData = true
			case "retry":
				out = append(out, sseEvent{retry: v})
			}
		}
	}
}

// esRaw is a raw HTTP client connection reading a streamed response.
type esRaw struct {
	*wsRaw
	tp *textproto.Reader
}

func esDial(t *testing.T, addr string) *esRaw {
	r := wsDialTCP(t, addr)
	return &esRaw{wsRaw: r, tp: textproto.NewReader(r.br)}
}

// head reads a status line and headers.
func (r *esRaw) head() (string, textproto.MIMEHeader) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, err := r.tp.ReadLine()
	if err != nil {
		r.t.Fatalf("status line: %v", err)
	}
	h, err := r.tp.ReadMIMEHeader()
	if err != nil {
		r.t.Fatalf("headers: %v", err)
	}
	return status, h
}

// chunk reads one chunk; nil for the last one (after its trailer CRLF).
func (r *esRaw) chunk() []byte {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := r.tp.ReadLine()
	if err != nil {
		r.t.Fatalf("chunk size: %v", err)
	}
	n, err := strconv.ParseUint(line, 16, 32)
	if err != nil {
		r.t.Fatalf("chunk size %q: %v", line, err)
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r.br, b); err != nil {
		r.t.Fatalf("chunk of %d: %v", n, err)
	}
	if string(b[n:]) != "\r\n" {
		r.t.Fatalf("chunk not followed by CRLF: %q", b[n:])
	}
	if n == 0 {
		return nil
	}
	return b[:n]
}

// expectEOF reads until EOF, failing on any byte.
func (r *esRaw) expectEOF() {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := r.br.ReadByte()
	if err == nil {
		r.t.Fatalf("read %q, want EOF", b)
	}
	if ne := (net.Error)(nil); errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatal("no EOF within 5 s")
	}
}

// esLoop starts a loop whose application setup fills, recording every
// stream-close notification on closed.
func esLoop(t *testing.T, opts Options, setup func(l *Loop, app *Application)) (*Loop, string, chan *EventStream) {
	t.Helper()
	closed := make(chan *EventStream, 64)
	if opts.TimeoutResolution == 0 {
		opts.TimeoutResolution = 10 * time.Millisecond
	}
	l, addr := startTestLoopWith(t, opts, func(l *Loop) *Application {
		app := NewApplication(AppOptions{})
		app.HandleFunc("/plain", func(r *Request) { r.Write("ok") })
		l.onEventStreamClose(func(es *EventStream) {
			if !es.Closed() {
				t.Errorf("observer: stream not Closed")
			}
			closed <- es
		})
		setup(l, app)
		return app
	})
	return l, addr, closed
}

// esOnLoop runs fn on the loop and waits for it.
func esOnLoop(t *testing.T, l *Loop, fn func()) {
	t.Helper()
	done := make(chan struct{})
	l.AddCallback(func() { defer close(done); fn() })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("callback did not run")
	}
}

// TestEventStreamRawChunked reads the raw chunked stream: the headers, the
// retry field, one chunk per event, multi-line data split on every kind of
// line break, the last chunk on Close, and then a second request on the
// same keep-alive connection.
func TestEventStreamRawChunked(t *testing.T) {
	got := make(chan *EventStream, 1)
	l, addr, closed := esLoop(t, Options{}, func(l *Loop, app *Application) {
		app.HandleFunc("/events", func(r *Request) {
			es, err := r.EventStream(EventStreamOptions{Retry: 2 * time.Second, Heartbeat: -1})
			if err != nil {
				t.Errorf("EventStream: %v", err)
				return
			}
			if err := es.Send("1", "", []byte("hello")); err != nil {
				t.Errorf("Send: %v", err)
			}
			if err := es.Send("2", "multi", []byte("a\nb\r\nc\rd\n")); err != nil {
				t.Errorf("Send: %v", err)
			}
			if err := es.Send("x\ny", "", nil); !errors.Is(err, ErrEventField) {
				t.Errorf("Send with LF in id: %v, want ErrEventField", err)
			}
			if err := es.Send("", "a\rb", nil); !errors.Is(err, ErrEventField) {
				t.Errorf("Send with CR in event: %v, want ErrEventField", err)
			}
			got <- es
		})
	})
	c := esDial(t, addr)
	c.write([]byte("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"))
	status, h := c.head()
	if status != "HTTP/1.1 200 OK" {
		t.Fatalf("status %q", status)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
		"X-Accel-Buffering": "no", "Transfer-Encoding": "chunked", "Content-Length": "", "Connection": ""} {
		if v := h.Get(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	if b := c.chunk(); string(b) != "retry: 2000\n\n" {
		t.Fatalf("first chunk %q, want the retry field", b)
	}
	var p sseParser
	want := []sseEvent{{id: "1", data: "hello"}, {id: "2", event: "multi", data: "a\nb\nc\nd\n"}}
	for i, w := range want {
		b := c.chunk() // one chunk per event, each complete
		evs := p.feed(b)
		if len(evs) != 1 || evs[0] != w {
			t.Fatalf("chunk %d %q: events %+v, want %+v", i, b, evs, w)
		}
	}
	es := wsRecv(t, got, "stream")
	var m Metrics
	esOnLoop(t, l, func() { m = l.Metrics() })
	if m.OpenEventStreams != 1 {
		t.Errorf("OpenEventStreams = %d, want 1", m.OpenEventStreams)
	}
	esOnLoop(t, l, func() {
		es.Close()
		if !es.Closed() {
			t.Error("Closed false after Close")
		}
		if err := es.Send("", "", []byte("late")); !errors.Is(err, ErrStreamClosed) {
			t.Errorf("Send after Close: %v, want ErrStreamClosed", err)
		}
	})
	if b := c.chunk(); b != nil {
		t.Fatalf("after Close: chunk %q, want the last chunk", b)
	}
	if wsRecv(t, closed, "close notification") != es {
		t.Fatal("observer got another stream")
	}
	// The connection is kept alive and serves the next request.
	c.write([]byte("GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("second request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("second request: %d %q", resp.StatusCode, body)
	}
	esOnLoop(t, l, func() { m = l.Metrics() })
	if m.OpenEventStreams != 0 || m.PendingAsync != 0 {
		t.Errorf("after Close: OpenEventStreams %d, PendingAsync %d, want 0", m.OpenEventStreams, m.PendingAsync)
	}
}

// TestFlushChunked: each Flush reaches the client before the handler
// produces the next piece (the test asks for it only after reading the
// first), Finish sends the rest and the last chunk, and Go's client reads
// the whole body; the connection then serves another request.
func TestFlushChunked(t *testing.T) {
	reqs := make(chan *Request, 1)
	l, addr, _ := esLoop(t, Options{}, func(l *Loop, app *Application) {
		app.HandleFunc("/flush", func(r *Request) {
			r.SetHeader("Content-Type", "text/plain")
			r.Write("part1")
			if err := r.Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
			reqs <- r
		})
	})
	c := esDial(t, addr)
	c.write([]byte("GET /flush HTTP/1.1\r\nHost: x\r\n\r\n"))
	if _, h := c.head(); h.Get("Transfer-Encoding") != "chunked" {
		t.Fatalf("Transfer-Encoding %q", h.Get("Transfer-Encoding"))
	}
	if b := c.chunk(); string(b) != "part1" {
		t.Fatalf("first chunk %q", b)
	}
	r := wsRecv(t, reqs, "request")
	esOnLoop(t, l, func() {
		r.Write("part2")
		if err := r.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		if err := r.Flush(); err != nil { // nothing new: no empty chunk (it would end the body)
			t.Errorf("empty Flush: %v", err)
		}
	})
	if b := c.chunk(); string(b) != "part2" {
		t.Fatalf("second chunk %q", b)
	}
	esOnLoop(t, l, func() {
		r.Write("tail")
		r.Finish()
		if err := r.Flush(); !errors.Is(err, ErrFinished) {
			t.Errorf("Flush after Finish: %v", err)
		}
	})
	if b := c.chunk(); string(b) != "tail" {
		t.Fatalf("third chunk %q", b)
	}
	if b := c.chunk(); b != nil {
		t.Fatalf("want the last chunk, got %q", b)
	}

	// Go's client, twice on one connection.
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for i := 0; i < 2; i++ {
		done := make(chan string, 1)
		go func() {
			r := wsRecv(t, reqs, "request")
			l.AddCallback(func() { r.Write("+more"); r.Finish() })
			done <- ""
		}()
		resp, err := hc.Get("http://" + addr + "/flush")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		<-done
		if err != nil || string(body) != "part1+more" || len(resp.TransferEncoding) != 1 {
			t.Fatalf("net/http: %q %v (transfer encoding %v)", body, err, resp.TransferEncoding)
		}
	}
}

// TestEventStreamNetHTTP reads events with Go's client as they are sent;
// when the client goes away the stream is closed and the observer told.
func TestEventStreamNetHTTP(t *testing.T) {
	streams := make(chan *EventStream, 1)
	l, addr, closed := esLoop(t, Options{}, func(l *Loop, app *Application) {
		app.HandleFunc("/events", func(r *Request) {
			es, err := r.EventStream(EventStreamOptions{})
			if err != nil {
				t.Errorf("EventStream: %v", err)
				return
			}
			streams <- es
		})
	})
	resp, err := http.Get("http://" + addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	es := wsRecv(t, streams, "stream")
	var p sseParser
	buf := make([]byte, 4096)
	for i := 1; i <= 3; i++ {
		l.AddCallback(func() {
			if err := es.Send(strconv.Itoa(i), "tick", fmt.Appendf(nil, "n=%d\nline two", i)); err != nil {
				t.Errorf("Send: %v", err)
			}
		})
		var evs []sseEvent
		deadline := time.Now().Add(5 * time.Second)
		for len(evs) == 0 && time.Now().Before(deadline) {
			n, err := resp.Body.Read(buf)
			if err != nil {
				t.Fatalf("read event %d: %v", i, err)
			}
			evs = p.feed(buf[:n])
		}
		want := sseEvent{id: strconv.Itoa(i), event: "tick", data: fmt.Sprintf("n=%d\nline two", i)}
		if len(evs) != 1 || evs[0] != want {
			t.Fatalf("event %d: %+v, want %+v", i, evs, want)
		}
	}
	resp.Body.Close() // the client leaves
	if wsRecv(t, closed, "close notification") != es {
		t.Fatal("observer got another stream")
	}
	esOnLoop(t, l, func() {
		if !es.Closed() {
			t.Error("stream not closed after the client left")
		}
		if err := es.Send("", "", []byte("x")); !errors.Is(err, ErrStreamClosed) {
			t.Errorf("Send after the client left: %v", err)
		}
		if n := l.Metrics().OpenEventStreams; n != 0 {
			t.Errorf("OpenEventStreams = %d after the client left", n)
		}
	})
}

// TestEventStreamHTTP10: an HTTP/1.0 client gets the events unframed, with
// Connection: close, and the stream ends with the connection.
func TestEventStreamHTTP10(t *testing.T) {
	l, addr, closed := esLoop(t, Options{}, func(l *Loop, app *Application) {
		app.HandleFunc("/events", func(r *Request) {
			es, err := r.EventStream(EventStreamOptions{Heartbeat: -1})
			if err != nil {
				t.Errorf("EventStream: %v", err)
				return
			}
			es.Send("1", "", []byte("one"))
			es.WritePrepared(preparedEvent("2", "", []byte("two\nlines")))
			l.CallLater(20*time.Millisecond, func() {
				es.Send("3", "", []byte("three"))
				es.Close()
			})
		})
	})
	c := esDial(t, addr)
	c.write([]byte("GET /events HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
	status, h := c.head()
	if !strings.HasPrefix(status, "HTTP/1.1 200") || h.Get("Connection") != "close" || h.Get("Transfer-Encoding") != "" || h.Get("Content-Length") != "" {
		t.Fatalf("head: %q %v", status, h)
	}
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	body, err := io.ReadAll(c.br) // until the close
	if err != nil {
		t.Fatalf("read until close: %v", err)
	}
	var p sseParser
	evs := p.feed(body)
	want := []sseEvent{{id: "1", data: "one"}, {id: "2", data: "two\nlines"}, {id: "3", data: "three"}}
	if fmt.Sprint(evs) != fmt.Sprint(want) {
		t.Fatalf("events %+v, want %+v (body %q)", evs, want, body)
	}
	wsRecv(t, closed, "close notification")
	_ = l
}

// TestEventStreamHeartbeat: an idle stream gets comment lines, a busy one
// does not need them (events count as output), and events still arrive.
func TestEventStreamHeartbeat(t *testing.T) {
	streams := make(chan *EventStream, 1)
	l, addr, _ := esLoop(t, Options{}, func(l *Loop, app *Application) {
		app.HandleFunc("/events", func(r *Request) {
			es, _ := r.EventStream(EventStreamOptions{Heartbeat: 40 * time.Millisecond})
			streams <- es
		})
	})
	c := esDial(t, addr)
	c.write([]byte("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.head()
	es := wsRecv(t, streams, "stream")
	var p sseParser
	start := time.Now()
	hb := 0
	for hb < 3 {
		for _, ev := range p.feed(c.chunk()) {
			if !ev.comment || ev.data != " hb" {
				t.Fatalf("idle stream: got %+v, want a heartbeat", ev)
			}
			hb++
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("3 heartbeats took %v with a 40ms period", d)
	}
	l.AddCallback(func() { es.Send("7", "", []byte("event between heartbeats")) })
	deadline := time.Now().Add(5 * time.Second)
	for seen := false; !seen; {
		if time.Now().After(deadline) {
			t.Fatal("event not seen")
		}
		for _, ev := range p.feed(c.chunk()) {
			if !ev.comment {
				if ev.id != "7" || ev.data != "event between heartbeats" {
					t.Fatalf("event %+v", ev)
				}
				seen = true
			}
		}
	}
}

// TestEventStreamLastEventID: the Last-Event-ID header, else the
// lastEventId query argument.
func TestEventStreamLastEventID(t *testing.T) {
	_, addr, _ := esLoop(t, Options{}, func(l *Loop, app *Application) {
		app.HandleFunc("/events", func(r *Request) {
			es, _ := r.EventStream(EventStreamOptions{})
			es.Send("", "", []byte("last="+es.LastEventID()))
			if es.Request() != r {
				t.Error("Request() is not the stream's request")
			}
			es.Close()
		})
	})
	for _, tc := range []struct{ target, header, want string }{
		{"/events", "Last-Event-ID: 42\r\n", "last=42"},
		{"/events?lastEventId=7", "", "last=7"},
		{"/events?lastEventId=7", "Last-Event-ID: E-9\r\n", "last=E-9"},
		{"/events", "", "last="},
	} {
		c := esDial(t, addr)
		c.write([]byte("GET " + tc.target + " HTTP/1.1\r\nHost: x\r\n" + tc.header + "\r\n"))
		c.head()
		var p sseParser
		evs := p.feed(c.chunk())
		if len(evs) != 1 || evs[0].data != tc.want {
			t.Errorf("%s %q: %+v, want data %q", tc.target, tc.header, evs, tc.want)
		}
	}
}

// TestFlushHEAD: HEAD gets the headers GET would (chunked framing, no
// body), the request is finished by the Flush, and the connection serves
// its next request; an event stream on HEAD is closed at once.
func TestFlushHEAD(t *testing.T) {
	_, addr, closed := esLoop(t, Options{}, func(l *Loop, app *Application) {
		app.HandleFunc("/flush", func(r *Request) {
			r.Write("body that HEAD must not see")
			if err := r.Flush(); err != nil {
				t.Errorf("Flush on HEAD: %v", err)
			}
			if err := r.Write("more"); !errors.Is(err, ErrFinished) {
				t.Errorf("Write after HEAD's Flush: %v, want ErrFinished", err)
			}
			if err := r.Flush(); !errors.Is(err, ErrFinished) {
				t.Errorf("second Flush on HEAD: %v, want ErrFinished", err)
			}
		})
		app.HandleFunc("/events", func(r *Request) {
			es, err := r.EventStream(EventStreamOptions{})
			if err != nil || !es.Closed() {
				t.Errorf("EventStream on HEAD: %v, closed %v", err, es != nil && es.Closed())
			}
			if err := es.Send("", "", []byte("x")); !errors.Is(err, ErrStreamClosed) {
				t.Errorf("Send on HEAD's stream: %v", err)
			}
		})
	})
	c := esDial(t, addr)
	for _, path := range []string{"/flush", "/events"} {
		c.write([]byte("HEAD " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"))
		status, h := c.head()
		if !strings.HasPrefix(status, "HTTP/1.1 200") || h.Get("Transfer-Encoding") != "chunked" || h.Get("Connection") != "" {
			t.Fatalf("HEAD %s: %q %v", path, status, h)
		}
	}
	wsRecv(t, closed, "close notification of HEAD's stream")
	c.write([]byte("GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("request after HEAD: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "ok" {
		t.Fatalf("request after HEAD: %q (bytes of the HEAD body leaked?)", body)
	}
}

// TestEventStreamSlowConsumer: a client that never reads, sent large
// events, is closed past its bound (Send returns ErrSlowConsumer, the
// observer and StreamSlowConsumerCloses see it) while a canary stream beside it
// receives every event promptly.
func TestEventStreamSlowConsumer(t *testing.T) {
	const bound = 64 << 10
	var mu sync.Mutex
	var streams []*EventStream
	opened := make(chan struct{}, 2)
	l, addr, closed := esLoop(t, Options{SocketSendBuffer: 16 << 10}, func(l *Loop, app *Application) {
		app.HandleFunc("/events", func(r *Request) {
			es, _ := r.EventStream(EventStreamOptions{MaxUnsentPerConn: bound, Heartbeat: -1})
			mu.Lock()
			streams = append(streams, es)
			mu.Unlock()
			opened <- struct{}{}
		})
	})
	// The slow client: a small receive buffer, never read.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.(*net.TCPConn).SetReadBuffer(4 << 10)
	slow.Write([]byte("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"))
	wsRecv(t, opened, "slow stream")
	canary := esDial(t, addr)
	canary.write([]byte("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"))
	canary.head()
	wsRecv(t, opened, "canary stream")
	mu.Lock()
	slowES, canaryES := streams[0], streams[1]
	mu.Unlock()

	// The canary reads on its own goroutine and reports each event's id.
	ids := make(chan string, 1024)
	go func() {
		var p sseParser
		buf := make([]byte, 64<<10)
		for {
			canary.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := canary.br.Read(buf)
			for _, ev := range p.feed(buf[:n]) {
				ids <- ev.id
			}
			if err != nil {
				close(ids)
				return
			}
		}
	}()
	data := bytes.Repeat([]byte("x"), 16<<10)
	var slowErr error
	sent := 0
	for i := 1; i <= 400 && slowErr == nil; i++ {
		p := preparedEvent(strconv.Itoa(i), "big", data)
		esOnLoop(t, l, func() {
			if err := canaryES.WritePrepared(p); err != nil {
				t.Errorf("canary write %d: %v", i, err)
			}
			slowErr = slowES.WritePrepared(p)
		})
		sent = i
		// The canary has each event within a second of its write.
		select {
		case id := <-ids:
			if id != strconv.Itoa(i) {
				t.Fatalf("canary: event %q, want %d", id, i)
			}
		case <-time.After(time.Second):
			t.Fatalf("canary: event %d not received within 1 s", i)
		}
	}
	if !errors.Is(slowErr, ErrSlowConsumer) || !errors.Is(slowErr, ErrStreamClosed) {
		t.Fatalf("after %d events of 16 KiB: slow stream's error %v, want ErrSlowConsumer", sent, slowErr)
	}
	// Bound 64 KiB + socket buffers (16 KiB send, ~4 KiB receive, doubled by
	// the kernel): far under 400 events' 6.4 MiB.
	t.Logf("slow consumer closed after %d events", sent)
	if sent > 20 {
		t.Errorf("slow consumer closed only after %d events of 16 KiB", sent)
	}
	if wsRecv(t, closed, "slow stream's close notification") != slowES {
		t.Fatal("observer got another stream")
	}
	if m := l.Metrics(); m.StreamSlowConsumerCloses != 1 || m.SlowConsumerCloses != 0 {
		// An event stream is not a WebSocket: it has its own count.
		t.Errorf("StreamSlowConsumerCloses = %d, want 1; SlowConsumerCloses (WebSockets) = %d, want 0", m.StreamSlowConsumerCloses, m.SlowConsumerCloses)
	}
	// The slow socket is closed: reading drains what the kernel holds, then
	// ends (EOF or reset) without the last chunk.
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	t0 := time.Now()
	all, err := io.ReadAll(slow)
	t.Logf("slow: read %d bytes until %v in %v", len(all), err, time.Since(t0))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("slow consumer's connection still open")
	}
	if bytes.HasSuffix(all, []byte("0\r\n\r\n")) {
		t.Error("slow consumer's stream ended with the last chunk: it must look cut")
	}
	// The canary goes on.
	esOnLoop(t, l, func() {
		if err := canaryES.Send("after", "", []byte("still here")); err != nil {
			t.Errorf("canary after: %v", err)
		}
	})
	select {
	case id := <-ids:
		if id != "after" {
			t.Fatalf("canary: %q", id)
		}
	case <-time.After(time.Second):
		t.Fatal("canary: no event after the slow consumer's close")
	}
}

// TestEventStreamStop: Stop ends open streams cleanly (complete events,
// then the last chunk, then EOF) at once, not after a grace period, and
// returns quickly.
func TestEventStreamStop(t *testing.T) {
	opened := make(chan *EventStream, 2)
	l, addr, closed := esLoop(t, Options{}, func(l *Loop, app *Application) {
		app.HandleFunc("/events", func(r *Request) {
			es, _ := r.EventStream(EventStreamOptions{})
			es.Send("1", "", []byte("before stop"))
			opened <- es
		})
	})
	c := esDial(t, addr)
	c.write([]byte("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.head()
	c10 := esDial(t, addr)
	c10.write([]byte("GET /events HTTP/1.0\r\n\r\n"))
	c10.head()
	wsRecv(t, opened, "stream")
	wsRecv(t, opened, "stream")
	var p sseParser
	if evs := p.feed(c.chunk()); len(evs) != 1 || evs[0].data != "before stop" {
		t.Fatalf("before Stop: %+v", evs)
	}
	start := time.Now()
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- l.Stop(ctx)
	}()
	if b := c.chunk(); b != nil {
		t.Fatalf("after Stop: chunk %q, want the last chunk", b)
	}
	c.expectEOF()
	c.c.Close()
	c10.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	body, err := io.ReadAll(c10.br)
	if err != nil || string(body) != "id: 1\ndata: before stop\n\n" {
		t.Fatalf("HTTP/1.0 stream at Stop: %q %v", body, err)
	}
	c10.c.Close()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return")
	}
	if d := time.Since(start); d > 900*time.Millisecond { // under the 1 s grace of other async requests
		t.Fatalf("Stop took %v", d)
	}
	wsRecv(t, closed, "close notification")
	wsRecv(t, closed, "close notification")
}

// TestEventStreamEncoding checks the encoder against the parser on edge
// cases; FuzzEventEncoding does the same on random input.
func TestEventStreamEncoding(t *testing.T) {
	for _, tc := range []struct{ id, event, data string }{
		{"", "", ""}, {"1", "", "x"}, {"", "e", "a\r\n\r\nb"}, {"", "", "\n"}, {"", "", "\r"},
		{"", "", " leading space"}, {"", "", "data: nested"}, {"é", "ü", "ünïcode"},
	} {
		checkEventRoundTrip(t, tc.id, tc.event, []byte(tc.data))
	}
	if _, err := PrepareEvent("a\rb", "", nil); !errors.Is(err, ErrEventField) {
		t.Error("PrepareEvent accepted CR")
	}
	if _, err := PrepareEvent("a\x00", "", nil); !errors.Is(err, ErrEventField) {
		t.Error("PrepareEvent accepted NUL")
	}
	if _, err := PrepareEvent("", "x\n", nil); !errors.Is(err, ErrEventField) {
		t.Error("PrepareEvent accepted CR, LF or NUL")
	}
}

func checkEventRoundTrip(t testing.TB, id, event string, data []byte) {
	p, err := PrepareEvent(id, event, data)
	if err != nil {
		return
	}
	var ps sseParser
	evs := ps.feed(p.body)
	norm := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data))
	if len(evs) != 1 || evs[0].id != id || evs[0].event != event || evs[0].data != norm {
		t.Fatalf("(%q, %q, %q) encoded %q parsed as %+v", id, event, data, p.body, evs)
	}
	// The chunk frames exactly the body.
	size, rest, _ := bytes.Cut(p.chunk, []byte("\r\n"))
	n, err := strconv.ParseUint(string(size), 16, 32)
	if err != nil || int(n) != len(p.body) || !bytes.Equal(rest, append(append([]byte(nil), p.body...), "\r\n"...)) {
		t.Fatalf("chunk %q does not frame body %q", p.chunk, p.body)
	}
}

func FuzzEventEncoding(f *testing.F) {
	f.Add("1", "msg", []byte("a\nb\r\nc\rd"))
	f.Add("", "", []byte(""))
	f.Fuzz(func(t *testing.T, id, event string, data []byte) {
		if strings.ContainsAny(id, "\r\n\x00") || strings.ContainsAny(event, "\r\n") {
			if _, err := PrepareEvent(id, event, data); err == nil {
				t.Fatal("accepted an invalid field")
			}
			return
		}
		// The parser strips one leading space of a field's value, and the
		// encoder writes "id: " + id: a value starting with a space keeps it.
		checkEventRoundTrip(t, id, event, data)
	})
}
