package loop

// The loop-only/goroutine-safe contract of WebSocket, EventStream, Request
// and PeriodicCallback (issue 18): a loop-only method called off the loop
// returns ErrNotOnLoop and does nothing, and each Async door reports its
// real result through done, on the loop.

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/proto/ws13"
)

// TestWebSocketOffLoopClosedSocket: a closed socket's errors reach the
// caller from any goroutine. Before the split, an off-loop Close or write
// returned nil for a closed socket (the error was dropped on the loop).
func TestWebSocketOffLoopClosedSocket(t *testing.T) {
	var recs chan *wsRec
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) { recs = wsRecRoute(app, "/c", WSOptions{}, nil) })
	r := wsDialRaw(t, addr, "/c", nil)
	rec := wsRecv(t, recs, "handler")
	w := wsRecv(t, rec.openCh, "Open")
	r.write(ws13.AppendMaskedCloseFrame(nil, wsMask, 1000, ""))
	r.readClose()
	wsRecv(t, rec.closeCh, "OnClose")

	if err := w.Close(1000, ""); !errors.Is(err, ErrNotOnLoop) {
		t.Errorf("off-loop Close: %v, want ErrNotOnLoop", err)
	}
	if err := w.WriteText([]byte("x")); !errors.Is(err, ErrNotOnLoop) {
		t.Errorf("off-loop WriteText: %v, want ErrNotOnLoop", err)
	}
	for name, call := range map[string]func(func(error)) error{
		"CloseAsync": func(done func(error)) error { return w.CloseAsync(1000, "bye", done) },
		"WriteAsync": func(done func(error)) error { return w.WriteAsync(Text, []byte("x"), done) },
		"WritePreparedAsync": func(done func(error)) error {
			p, err := PrepareMessage(Binary, []byte("p"))
			if err != nil {
				t.Fatal(err)
			}
			return w.WritePreparedAsync(p, done)
		},
	} {
		res := make(chan error, 1)
		onLoop := make(chan bool, 1)
		if err := call(func(err error) { onLoop <- w.Loop().InLoop(); res <- err }); err != nil {
			t.Fatalf("%s: not queued: %v", name, err)
		}
		if err := wsRecv(t, res, name+" done"); !errors.Is(err, ErrWebSocketClosed) {
			t.Errorf("%s done: %v, want ErrWebSocketClosed", name, err)
		}
		if !<-onLoop {
			t.Errorf("%s: done not called on the loop", name)
		}
	}
	// Arguments that could never be sent are refused at once.
	if err := w.CloseAsync(1005, "", nil); err == nil {
		t.Error("CloseAsync(1005): no error")
	}
	if err := w.WriteAsync(MessageType(9), nil, nil); err == nil {
		t.Error("WriteAsync(type 9): no error")
	}
}

// TestWebSocketAsyncOpenSocket: off the loop, WriteText sends nothing,
// WriteAsync and CloseAsync send in order and report nil, and a queue over
// Options.MaxAsyncBytes refuses at once.
func TestWebSocketAsyncOpenSocket(t *testing.T) {
	var recs chan *wsRec
	_, addr := wsStartLoop(t, func(l *Loop, app *Application) { recs = wsRecRoute(app, "/c", WSOptions{}, nil) })
	c := gorillaDial(t, addr, "/c", nil)
	rec := wsRecv(t, recs, "handler")
	w := wsRecv(t, rec.openCh, "Open")

	if err := w.WriteText([]byte("lost")); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("off-loop WriteText: %v, want ErrNotOnLoop", err)
	}
	if err := w.Ping(nil); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("off-loop Ping: %v, want ErrNotOnLoop", err)
	}
	if err := w.WriteJSON(1); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("off-loop WriteJSON: %v, want ErrNotOnLoop", err)
	}
	p, err := PrepareJSON(map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WritePrepared(p); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("off-loop WritePrepared: %v, want ErrNotOnLoop", err)
	}
	res := make(chan error, 4)
	buf := []byte("one")
	if err := w.WriteAsync(Text, buf, func(err error) { res <- err }); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXX") // WriteAsync copied it
	if err := w.WritePreparedAsync(p, func(err error) { res <- err }); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteAsync(Binary, []byte{1, 2}, nil); err != nil { // nil done
		t.Fatal(err)
	}
	if err := w.CloseAsync(4003, "async", func(err error) { res <- err }); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := wsRecv(t, res, "done"); err != nil {
			t.Fatalf("done %d: %v", i, err)
		}
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"one", `{"n":1}`, "\x01\x02"} {
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	_, _, err = c.ReadMessage()
	var ce *gws.CloseError
	if !errors.As(err, &ce) || ce.Code != 4003 {
		t.Fatalf("client saw %v, want close 4003", err)
	}
}

func TestWebSocketAsyncBacklog(t *testing.T) {
	var recs chan *wsRec
	l, addr := startTestLoopWith(t, Options{MaxAsyncBytes: 1 << 10}, func(l *Loop) *Application {
		app := NewApplication(AppOptions{})
		recs = wsRecRoute(app, "/c", WSOptions{}, nil)
		return app
	})
	_ = l
	wsDialRaw(t, addr, "/c", nil)
	rec := wsRecv(t, recs, "handler")
	w := wsRecv(t, rec.openCh, "Open")
	called := make(chan error, 1)
	if err := w.WriteAsync(Binary, make([]byte, 2<<10), func(err error) { called <- err }); !errors.Is(err, ErrLoopBacklog) {
		t.Fatalf("WriteAsync over MaxAsyncBytes: %v, want ErrLoopBacklog", err)
	}
	expectNone(t, called, 50*time.Millisecond, "done after a refused WriteAsync")
}

// TestWritePreparedNil: Prepare* return their error, and both
// WritePrepared(nil) return ErrNilPrepared. Before, PrepareJSON returned
// nil and WebSocket.WritePrepared(nil) panicked.
func TestWritePreparedNil(t *testing.T) {
	if p, err := PrepareJSON(make(chan int)); p != nil || err == nil {
		t.Errorf("PrepareJSON(chan): %v, %v", p, err)
	}
	if p, err := PrepareMessage(MessageType(0), nil); p != nil || err == nil {
		t.Errorf("PrepareMessage(type 0): %v, %v", p, err)
	}
	if p, err := PrepareEvent("a\nb", "", nil); p != nil || !errors.Is(err, ErrEventField) {
		t.Errorf("PrepareEvent(bad id): %v, %v", p, err)
	}
	var recs chan *wsRec
	var es *EventStream
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		recs = wsRecRoute(app, "/c", WSOptions{}, nil)
		app.HandleFunc("/es", func(r *Request) { es, _ = r.EventStream(EventStreamOptions{}) })
	})
	wsDialRaw(t, addr, "/c", nil)
	rec := wsRecv(t, recs, "handler")
	w := wsRecv(t, rec.openCh, "Open")
	sr := esDial(t, addr)
	sr.write([]byte("GET /es HTTP/1.1\r\nHost: x\r\n\r\n"))
	sr.head()
	res := make(chan [3]error, 1)
	l.AddCallback(func() {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("panic: %v", p)
				res <- [3]error{}
			}
		}()
		p, _ := PrepareJSON(make(chan int))
		res <- [3]error{w.WritePrepared(p), es.WritePrepared(nil), w.WritePreparedAsync(nil, nil)}
	})
	for i, err := range wsRecv(t, res, "callback") {
		if !errors.Is(err, ErrNilPrepared) {
			t.Errorf("call %d: %v, want ErrNilPrepared", i, err)
		}
	}
	if err := es.WritePreparedAsync(nil, nil); !errors.Is(err, ErrNilPrepared) {
		t.Errorf("EventStream.WritePreparedAsync(nil): %v", err)
	}
}

// TestEventStreamOffLoop: Send and Close off the loop do nothing and say
// so; SendAsync and CloseAsync run on the loop and report there.
func TestEventStreamOffLoop(t *testing.T) {
	streams := make(chan *EventStream, 1)
	_, addr, closed := esLoop(t, Options{}, func(l *Loop, app *Application) {
		app.HandleFunc("/es", func(r *Request) {
			es, err := r.EventStream(EventStreamOptions{Heartbeat: -1})
			if err != nil {
				t.Error(err)
				return
			}
			streams <- es
		})
	})
	r := esDial(t, addr)
	r.write([]byte("GET /es HTTP/1.1\r\nHost: x\r\n\r\n"))
	r.head()
	es := wsRecv(t, streams, "stream")
	if err := es.Send("", "", []byte("lost")); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("off-loop Send: %v, want ErrNotOnLoop", err)
	}
	if err := es.Close(); !errors.Is(err, ErrNotOnLoop) {
		t.Fatalf("off-loop Close: %v, want ErrNotOnLoop", err)
	}
	if err := es.SendAsync("1\n", "", nil, nil); !errors.Is(err, ErrEventField) {
		t.Fatalf("SendAsync(bad id): %v, want ErrEventField", err)
	}
	res := make(chan error, 3)
	data := []byte("async")
	if err := es.SendAsync("7", "", data, func(err error) { res <- err }); err != nil {
		t.Fatal(err)
	}
	copy(data, "XXXXX")
	if err := es.CloseAsync(func(err error) { res <- err }); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := wsRecv(t, res, "done"); err != nil {
			t.Fatalf("done %d: %v", i, err)
		}
	}
	if got := string(r.chunk()); got != "id: 7\ndata: async\n\n" {
		t.Fatalf("event %q", got)
	}
	if r.chunk() != nil {
		t.Fatal("no last chunk after CloseAsync")
	}
	wsRecv(t, closed, "stream-close observer")
	if err := es.SendAsync("", "", []byte("late"), func(err error) { res <- err }); err != nil {
		t.Fatal(err)
	}
	if err := wsRecv(t, res, "late done"); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("SendAsync after close: %v, want ErrStreamClosed", err)
	}
}

// TestRequestOffLoop: a Request's sending methods refuse to run off the
// loop; the request is then finished from the loop as usual.
func TestRequestOffLoop(t *testing.T) {
	reqs := make(chan *Request, 1)
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		app.HandleFunc("/a", func(r *Request) { r.Async(); reqs <- r })
	})
	c := wsDialTCP(t, addr)
	c.write([]byte("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"))
	r := wsRecv(t, reqs, "request")
	for name, err := range map[string]error{
		"Write":       r.Write("x"),
		"Flush":       r.Flush(),
		"Finish":      r.Finish(),
		"SendError":   r.SendError(500),
		"Redirect":    r.Redirect("/b", false),
		"EventStream": func() error { _, err := r.EventStream(EventStreamOptions{}); return err }(),
	} {
		if !errors.Is(err, ErrNotOnLoop) {
			t.Errorf("off-loop %s: %v, want ErrNotOnLoop", name, err)
		}
	}
	l.AddCallback(func() { r.Write("done"); r.Finish() })
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || string(body) != "done" {
		t.Fatalf("got %d %q %v, want 200 \"done\"", resp.StatusCode, body, err)
	}
}

// TestPeriodicCallbackOffLoop: Start and Stop from another goroutine. The
// callback used to write its schedule off the loop (a data race that
// -race reports).
func TestPeriodicCallbackOffLoop(t *testing.T) {
	l, _ := wsStartLoop(t, func(*Loop, *Application) {})
	pending := func() (n int) {
		onLoopWait(t, l, func() { n = l.Metrics().TimeoutsPending })
		return n
	}
	base := pending()
	var n atomic.Int64
	pc := l.NewPeriodicCallback(func() { n.Add(1) }, time.Millisecond, 0)
	pc.Start()
	pc.Start() // idempotent
	if !pc.IsRunning() {
		t.Fatal("not running after Start")
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d ticks in 5 s", n.Load())
		}
		time.Sleep(time.Millisecond)
	}
	pc.Stop()
	after := n.Load()
	time.Sleep(30 * time.Millisecond)
	if got := n.Load(); got > after+1 || pc.IsRunning() {
		t.Fatalf("ticks after Stop: %d -> %d (running %v)", after, got, pc.IsRunning())
	}
	// Start, Stop and Start again at once, off the loop: one schedule,
	// not two.
	pc.Start()
	pc.Stop()
	pc.Start()
	for from := n.Load(); n.Load() < from+3; {
		time.Sleep(time.Millisecond)
	}
	if got := pending() - base; got != 1 {
		t.Fatalf("%d timeouts of the callback pending, want 1", got)
	}
	pc.Stop()
	if got := pending() - base; got != 0 {
		t.Fatalf("%d timeouts of the callback pending after Stop", got)
	}
}

// prepared is PrepareMessage for a type the test knows is valid.
func prepared(typ MessageType, data []byte) *PreparedMessage {
	p, err := PrepareMessage(typ, data)
	if err != nil {
		panic(err)
	}
	return p
}

// preparedEvent is PrepareEvent for fields the test knows are valid.
func preparedEvent(id, event string, data []byte) *PreparedEvent {
	p, err := PrepareEvent(id, event, data)
	if err != nil {
		panic(err)
	}
	return p
}
