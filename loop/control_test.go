package loop

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var discardLog = slog.New(slog.DiscardHandler)

// startAsync runs l.Start on a goroutine and returns its result channel.
func startAsync(l *Loop) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- l.Start() }()
	return ch
}

// stopWithin calls l.Stop(ctx with timeout d) and fails the test when it
// has not returned by d plus a second.
func stopWithin(t *testing.T, l *Loop, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ch := make(chan error, 1)
	go func() { ch <- l.Stop(ctx) }()
	select {
	case err := <-ch:
		return err
	case <-time.After(d + time.Second):
		t.Fatalf("Stop(ctx %v) did not return", d)
		return nil
	}
}

// When the control connection cannot be opened (here: its listener fails),
// Start stops the engine and returns why, and Stop returns within its ctx.
// Before, Start ran on without callbacks or timers and Stop blocked for
// ever on Ready.
func TestControlFailureFailsStart(t *testing.T) {
	l := New(Options{Logger: discardLog})
	l.ctrlFault = func() error { return errors.New("injected control listener failure") }
	if err := l.Listen(freePort(t), NewApplication(AppOptions{})); err != nil {
		t.Fatal(err)
	}
	started := startAsync(l)
	select {
	case err := <-started:
		if err == nil || !strings.Contains(err.Error(), "injected") {
			t.Fatalf("Start: %v, want the control failure", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return after its control connection failed")
	}
	if err := stopWithin(t, l, time.Second); err != nil {
		t.Fatalf("Stop after the failed Start: %v", err)
	}
}

// Stop honours its ctx while the loop is not ready yet (the control
// connection is late), and the loop still stops once it comes up.
func TestStopBeforeReadyHonoursCtx(t *testing.T) {
	l := New(Options{Logger: discardLog})
	release := make(chan struct{})
	l.ctrlFault = func() error { <-release; return nil }
	if err := l.Listen(freePort(t), NewApplication(AppOptions{})); err != nil {
		t.Fatal(err)
	}
	started := startAsync(l)
	for l.state.Load() != stateRunning {
		time.Sleep(time.Millisecond)
	}
	if err := stopWithin(t, l, 200*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop: %v, want its deadline", err)
	}
	close(release)
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not stop once it came up")
	}
}

// A second Stop while the first still waits for connections returns when
// its own ctx is done, not when the first Stop's is.
func TestSecondStopHonoursItsCtx(t *testing.T) {
	inHandler := make(chan struct{})
	l, addr := startTestLoop(t, nil, func(l *Loop) *Application {
		app := NewApplication(AppOptions{})
		app.HandleFunc("/hang", func(r *Request) {
			r.Async() // never finished: Stop waits for it until its ctx
			close(inHandler)
		})
		return app
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
	<-inHandler
	ctx1, cancel1 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel1()
	first := make(chan error, 1)
	go func() { first <- l.Stop(ctx1) }()
	for l.state.Load() != stateStopping {
		time.Sleep(time.Millisecond)
	}
	begin := time.Now()
	if err := stopWithin(t, l, 200*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Stop: %v, want its deadline", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("second Stop took %v", d)
	}
	cancel1()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("first Stop did not return")
	}
}

// A client that pipelines more requests than one turn serves, right after
// Listen, makes the loop kick its next turn before the control connection
// is up: kick read l.ctrlPeer while openControl wrote it (go test -race).
// The window is short, so 32 loops try at once (and Stop costs gnet's
// 500 ms shutdown poll, paid once when they stop together).
func TestPipelineBeforeReady(t *testing.T) {
	const n, loops = 40, 32
	var req strings.Builder
	for range n {
		req.WriteString("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	var wg sync.WaitGroup
	for run := range loops {
		wg.Go(func() {
			l := New(Options{Logger: discardLog, TimeoutResolution: 10 * time.Millisecond})
			app := NewApplication(AppOptions{})
			app.HandleFunc("/", func(r *Request) { r.Write("ok") })
			addr := freePort(t)
			if err := l.Listen(addr, app); err != nil {
				t.Error(err)
				return
			}
			started := startAsync(l)
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				if err := l.Stop(ctx); err != nil {
					t.Errorf("run %d: Stop: %v", run, err)
				}
				if err := <-started; err != nil {
					t.Errorf("run %d: Start: %v", run, err)
				}
			}()
			var c net.Conn
			deadline := time.Now().Add(5 * time.Second)
			for {
				var err error
				if c, err = net.Dial("tcp", addr); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("run %d: %v", run, err)
					return
				}
				runtime.Gosched()
			}
			defer c.Close()
			io.WriteString(c, req.String())
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			for i := range n {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Errorf("run %d: response %d: %v", run, i, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
}

// AddOnStop is goroutine-safe (as net/http's RegisterOnShutdown): hooks
// added from several goroutines at once all run on the loop during Stop
// (go test -race flagged the unlocked append), and once Stop ran them it
// returns ErrStopped.
func TestAddOnStopConcurrent(t *testing.T) {
	l := New(Options{Logger: discardLog})
	if err := l.Listen(freePort(t), NewApplication(AppOptions{})); err != nil {
		t.Fatal(err)
	}
	started := startAsync(l)
	<-l.Ready()
	const n = 8
	ran := make(chan bool, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := l.AddOnStop(func() { ran <- l.InLoop() }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := stopWithin(t, l, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	<-started
	close(ran)
	count := 0
	for onLoop := range ran {
		if !onLoop {
			t.Error("a close hook ran off the loop")
		}
		count++
	}
	if count != n {
		t.Fatalf("%d hooks ran, want %d", count, n)
	}
	if err := l.AddOnStop(func() {}); !errors.Is(err, ErrStopped) {
		t.Fatalf("AddOnStop after Stop: %v, want ErrStopped", err)
	}
}
