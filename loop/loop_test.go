package loop_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
)

// startLoop runs a loop serving app (nil: an empty application) on a free
// loopback port and stops it when the test ends (see startTestLoop in
// helpers_test.go). It returns the loop and "127.0.0.1:PORT".
func startLoop(t testing.TB, app *loop.Application) (*loop.Loop, string) {
	t.Helper()
	if app == nil {
		app = loop.NewApplication(loop.AppOptions{})
	}
	return loop.StartTestLoop(t, nil, func(*loop.Loop) *loop.Application { return app })
}

// onLoop runs fn on the loop and waits for it.
func onLoop(t testing.TB, l *loop.Loop, fn func()) {
	t.Helper()
	done := make(chan struct{})
	l.AddCallback(func() { defer close(done); fn() })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("callback did not run within 5s")
	}
}

// dial opens a raw connection with a 5s deadline.
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// readResp reads one response from br and its whole body.
func readResp(t testing.TB, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// expectEOF asserts the server closes the connection (nothing more to read).
func expectEOF(t testing.TB, br *bufio.Reader) {
	t.Helper()
	rest, err := io.ReadAll(br)
	if err != nil && !isReset(err) {
		t.Fatalf("expected close, got %v", err)
	}
	if len(rest) != 0 {
		t.Fatalf("expected close, got extra bytes %q", rest)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func TestAddCallbackConcurrent(t *testing.T) {
	l, _ := startLoop(t, nil)
	const G, N = 50, 200
	var (
		running int    // mutated only in callbacks: >1 means two ran at once
		ran     int    // callbacks run
		last    [G]int // last sequence number seen per goroutine
		bad     []string
	)
	for g := range last {
		last[g] = -1
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < N; i++ {
				l.AddCallback(func() {
					running++
					if running != 1 {
						bad = append(bad, fmt.Sprintf("concurrent callbacks: %d", running))
					}
					if !l.InLoop() {
						bad = append(bad, "callback not on the loop")
					}
					if last[g] != i-1 {
						bad = append(bad, fmt.Sprintf("goroutine %d: got %d after %d", g, i, last[g]))
					}
					last[g] = i
					ran++
					running--
				})
			}
		}()
	}
	close(start)
	wg.Wait()
	// Every callback above was added before this one: FIFO means all ran.
	onLoop(t, l, func() {})
	if ran != G*N {
		t.Fatalf("ran %d callbacks, want %d", ran, G*N)
	}
	if len(bad) > 0 {
		t.Fatalf("%d violations, first: %s", len(bad), bad[0])
	}
	if l.InLoop() {
		t.Fatal("InLoop true on the test goroutine")
	}
}

func TestAddCallbackFromCallbackRunsAfter(t *testing.T) {
	l, _ := startLoop(t, nil)
	var order []string
	done := make(chan struct{})
	l.AddCallback(func() {
		order = append(order, "outer start")
		l.AddCallback(func() {
			order = append(order, "inner")
			close(done)
		})
		time.Sleep(10 * time.Millisecond) // the inner one must still wait
		order = append(order, "outer end")
	})
	<-done
	want := "outer start,outer end,inner"
	if got := strings.Join(order, ","); got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestAddCallbackBeforeStart(t *testing.T) {
	l := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond})
	ran := make(chan bool, 1)
	l.AddCallback(func() { ran <- l.InLoop() })
	go l.Start()
	<-l.Ready()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
	}()
	select {
	case in := <-ran:
		if !in {
			t.Fatal("callback added before Start did not run on the loop")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("callback added before Start never ran")
	}
}

func TestCallbackPanicDoesNotStopLoop(t *testing.T) {
	l, _ := startLoop(t, nil)
	l.AddCallback(func() { panic("boom") })
	ok := false
	onLoop(t, l, func() { ok = true })
	if !ok {
		t.Fatal("loop stopped after a panicking callback")
	}
}

func TestRunInExecutor(t *testing.T) {
	l, _ := startLoop(t, nil)
	type res struct {
		v        int
		err      error
		inLoop   bool
		workLoop bool
	}
	got := make(chan res, 1)
	var workInLoop bool
	l.AddCallback(func() {
		loop.RunInExecutor(l, func() (int, error) {
			workInLoop = l.InLoop()
			time.Sleep(20 * time.Millisecond) // blocking work off the loop
			return 42, nil
		}, func(v int, err error) {
			got <- res{v, err, l.InLoop(), workInLoop}
		})
	})
	select {
	case r := <-got:
		if r.v != 42 || r.err != nil {
			t.Fatalf("done(%d, %v), want (42, nil)", r.v, r.err)
		}
		if !r.inLoop {
			t.Fatal("done did not run on the loop")
		}
		if r.workLoop {
			t.Fatal("work ran on the loop")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("done never called")
	}

	errc := make(chan error, 1)
	loop.RunInExecutor(l, func() (string, error) { panic("work failed") },
		func(_ string, err error) { errc <- err })
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "work failed") {
			t.Fatalf("panic in work gave %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("done never called after a panic")
	}
}
