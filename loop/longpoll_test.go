package loop_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
)

func TestLongPoll(t *testing.T) {
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleFunc(`/poll`, func(r *loop.Request) {
		r.Async()
		r.Loop().CallLater(50*time.Millisecond, func() {
			r.Write(map[string]string{"event": "ready"})
			if err := r.Finish(); err != nil {
				t.Errorf("Finish: %v", err)
			}
			if err := r.Finish(); err != loop.ErrFinished {
				t.Errorf("second Finish: %v, want ErrFinished", err)
			}
		})
	})
	_, addr := startLoop(t, app)
	start := time.Now()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, body := get(t, c, "http://"+addr+"/poll")
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Fatalf("answered after %v, before the timer", el)
	}
	if resp.StatusCode != 200 || body != `{"event":"ready"}` {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	// The connection is reused for a second poll.
	if _, body := get(t, c, "http://"+addr+"/poll"); body != `{"event":"ready"}` {
		t.Fatalf("second poll %q", body)
	}
}

func TestLongPollClientGone(t *testing.T) {
	app := loop.NewApplication(loop.AppOptions{})
	var (
		waiter  *loop.Request
		entered = make(chan struct{})
		gone    = make(chan struct{})
	)
	app.HandleFunc(`/poll`, func(r *loop.Request) {
		r.Async()
		waiter = r
		r.OnConnectionClose(func() {
			if !r.Loop().InLoop() {
				t.Error("OnConnectionClose off the loop")
			}
			close(gone)
		})
		close(entered)
	})
	app.HandleFunc(`/index`, func(r *loop.Request) { r.Write("Hello world") })
	l, addr := startLoop(t, app)
	c := dial(t, addr)
	io.WriteString(c, "GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	c.Close()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("OnConnectionClose not called")
	}
	var finishErr error
	var wasGone bool
	onLoop(t, l, func() {
		wasGone = waiter.Gone()
		waiter.Write("late")
		finishErr = waiter.Finish()
	})
	if !wasGone || finishErr != nil {
		t.Fatalf("Gone %v, Finish after the client left: %v", wasGone, finishErr)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	if _, body := get(t, hc, "http://"+addr+"/index"); body != "Hello world" {
		t.Fatalf("after the gone client: %q", body)
	}
}

func TestGracefulStopFinishesAsync(t *testing.T) {
	app := loop.NewApplication(loop.AppOptions{})
	entered := make(chan struct{})
	app.HandleFunc(`/poll`, func(r *loop.Request) {
		r.Async()
		close(entered)
		r.Loop().CallLater(200*time.Millisecond, func() { r.Write("finished"); r.Finish() })
	})
	l, addr := startLoop(t, app)
	hooked := make(chan bool, 1)
	l.AddCallback(func() { l.AddOnStop(func() { hooked <- l.InLoop() }) })

	c := dial(t, addr)
	io.WriteString(c, "GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	idle := dial(t, addr) // an idle keep-alive connection is closed at once
	// The loop must have accepted it before Stop: one accepted during the
	// drain reads a 503 instead.
	for deadline := time.Now().Add(5 * time.Second); l.Metrics().OpenConns < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the idle connection was not accepted")
		}
		time.Sleep(time.Millisecond)
	}

	stopped := make(chan error, 1)
	stopStart := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- l.Stop(ctx)
	}()
	expectEOF(t, bufio.NewReader(idle))
	select {
	case <-l.Done():
		t.Fatal("Start returned while a request was in flight")
	default:
	}
	br := bufio.NewReader(c)
	resp, body := readResp(t, br, "GET")
	if resp.StatusCode != 200 || body != "finished" || !resp.Close {
		t.Fatalf("%d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	expectEOF(t, br)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return")
	}
	if el := time.Since(stopStart); el < 150*time.Millisecond {
		t.Fatalf("Stop returned after %v, before the request finished", el)
	}
	select {
	case <-l.Done():
	default:
		t.Fatal("Stop returned before Start")
	}
	select {
	case in := <-hooked:
		if !in {
			t.Fatal("close hook off the loop")
		}
	default:
		t.Fatal("close hook did not run")
	}
}
