package loop

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startBareLoop runs a loop with opts and no listener of the test's, and
// returns it with a function that stops it (also run at cleanup) and
// returns Stop's error.
func startBareLoop(t *testing.T, opts Options) (*Loop, func(ctx context.Context) error) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TimeoutResolution == 0 {
		opts.TimeoutResolution = 10 * time.Millisecond
	}
	l := New(opts)
	startErr := make(chan error, 1)
	go func() { startErr <- l.Start() }()
	select {
	case <-l.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("loop not ready after 5s")
	}
	var once sync.Once
	var stopErr error
	stop := func(ctx context.Context) error {
		once.Do(func() {
			stopErr = l.Stop(ctx)
			select {
			case err := <-startErr:
				if err != nil {
					t.Errorf("Start: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Start did not return after Stop")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		stop(ctx)
	})
	return l, stop
}

// doneLog records the done calls of RunInExecutor by call id.
type doneLog struct {
	mu    sync.Mutex
	calls map[int][]error
	off   []int // ids whose done ran off the loop
}

func (d *doneLog) done(l *Loop, id int) func(int, error) {
	return func(_ int, err error) {
		in := l.InLoop()
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.calls == nil {
			d.calls = map[int][]error{}
		}
		d.calls[id] = append(d.calls[id], err)
		if !in {
			d.off = append(d.off, id)
		}
	}
}

func (d *doneLog) get(id int) []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]error(nil), d.calls[id]...)
}

// TestRunInExecutorStop: Stop reaches RunInExecutor's queue. Work queued
// but not started gets done(ErrStopped) on the loop before Stop returns;
// work running when Stop begins has until Stop's ctx to finish and its
// done runs before Stop returns; goroutines calling RunInExecutor while
// Stop runs do not race with it (go test -race) and no done runs twice.
func TestRunInExecutorStop(t *testing.T) {
	const queued = 8
	l, stop := startBareLoop(t, Options{ExecutorWorkers: 2, ExecutorQueue: queued})
	var log doneLog
	stuck := make(chan struct{})   // job 0: still running when Stop gives up
	release := make(chan struct{}) // job 1: released by a close hook
	defer close(stuck)
	started := make(chan int, 2)
	RunInExecutor(l, func() (int, error) { started <- 0; <-stuck; return 0, nil }, log.done(l, 0))
	RunInExecutor(l, func() (int, error) { started <- 1; <-release; return 1, nil }, log.done(l, 1))
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("executor workers did not start the first two jobs")
		}
	}
	ran := make(chan int, queued)
	for id := 2; id < 2+queued; id++ {
		RunInExecutor(l, func() (int, error) { ran <- id; return id, nil }, log.done(l, id))
	}
	onLoop(l, func() int { l.AddOnStop(func() { close(release) }); return 0 })

	// Racing callers, ids from 1000 on.
	var racing sync.WaitGroup
	var nextID atomic.Int64
	nextID.Store(1000)
	stopped := make(chan struct{})
	for range 4 {
		racing.Add(1)
		go func() {
			defer racing.Done()
			for {
				select {
				case <-stopped:
					return
				default:
				}
				id := int(nextID.Add(1))
				RunInExecutor(l, func() (int, error) { return id, nil }, log.done(l, id))
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := stop(ctx)
	close(stopped)
	racing.Wait()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop: %v", err)
	}

	if got := log.get(0); len(got) != 0 {
		t.Errorf("job 0 (still running when the loop stopped): done called %v, want never", got)
	}
	if got := log.get(1); len(got) != 1 || got[0] != nil {
		t.Errorf("job 1 (finished during Stop): done got %v, want exactly one nil", got)
	}
	for id := 2; id < 2+queued; id++ {
		got := log.get(id)
		if len(got) != 1 {
			t.Errorf("job %d (queued when Stop ran): done called %d times %v, want once", id, len(got), got)
			continue
		}
		// A free worker may have taken it just before Stop: then it ran.
		if got[0] != nil && !errors.Is(got[0], ErrStopped) {
			t.Errorf("job %d: done(%v), want ErrStopped", id, got[0])
		}
	}
	log.mu.Lock()
	for id, errs := range log.calls {
		if len(errs) > 1 {
			t.Errorf("call %d: done ran %d times: %v", id, len(errs), errs)
		}
	}
	if len(log.off) > 0 {
		t.Errorf("done ran off the loop for calls %v", log.off)
	}
	log.mu.Unlock()
}

// TestRunInExecutorQueueFull: with one worker busy and the queue full,
// the next call gets ErrExecutorFull; the others complete. Conditions,
// not sleeps, order the steps.
func TestRunInExecutorQueueFull(t *testing.T) {
	l, _ := startBareLoop(t, Options{ExecutorWorkers: 1, ExecutorQueue: 1})
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	results := make(chan error, 3)
	work := func() (int, error) { started <- struct{}{}; <-release; return 1, nil }
	done := func(_ int, err error) { results <- err }
	RunInExecutor(l, work, done) // taken by the worker
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the worker did not take the first job")
	}
	RunInExecutor(l, work, done) // queued
	RunInExecutor(l, work, done) // full
	select {
	case err := <-results:
		if !errors.Is(err, ErrExecutorFull) {
			t.Fatalf("got %v, want ErrExecutorFull", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ErrExecutorFull")
	}
	close(release)
	for i := 0; i < 2; i++ {
		select {
		case err := <-results:
			if err != nil {
				t.Fatalf("job %d: %v", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("jobs did not finish")
		}
	}
}

// TestAddCallbackAfterStopDropped: callbacks added once the loop has
// stopped are dropped, as documented, and not kept in memory; a callback
// added before Start still runs (TestAddCallbackBeforeStart).
func TestAddCallbackAfterStopDropped(t *testing.T) {
	l, stop := startBareLoop(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	var ran atomic.Int32
	for range 1000 {
		big := make([]byte, 1<<10)
		l.AddCallback(func() { ran.Add(int32(len(big))) })
	}
	l.mu.Lock()
	n := len(l.queue)
	l.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d callbacks kept after the loop stopped, want 0 (dropped)", n)
	}
	if ran.Load() != 0 {
		t.Fatal("a callback ran after the loop stopped")
	}
	// On a loop stopped before it ever started, too.
	l2 := New(Options{Logger: slog.New(slog.DiscardHandler)})
	l2.AddCallback(func() {})
	if err := l2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	l2.AddCallback(func() {})
	l2.mu.Lock()
	n = len(l2.queue)
	l2.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d callbacks kept by a loop stopped before Start, want 0", n)
	}
}

// TestPeriodicCallbackSurvivesPanic: a panic in fn is logged with its
// stack and the schedule goes on (Tornado reschedules in finally).
func TestPeriodicCallbackSurvivesPanic(t *testing.T) {
	var logs lockedBuf
	l, _ := startBareLoop(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	var calls atomic.Int32
	var pc *PeriodicCallback
	onLoop(l, func() int {
		pc = l.NewPeriodicCallback(func() {
			if calls.Add(1) == 1 {
				panic("first tick fails")
			}
		}, 10*time.Millisecond, 0)
		pc.Start()
		return 0
	})
	for deadline := time.Now().Add(5 * time.Second); calls.Load() < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls in 5 s with a 10 ms period: one panic stopped the schedule (IsRunning %v)",
				calls.Load(), onLoop(l, func() bool { return pc.IsRunning() }))
		}
	}
	if !onLoop(l, func() bool { return pc.IsRunning() }) {
		t.Error("IsRunning false after a panic")
	}
	onLoop(l, func() int { pc.Stop(); return 0 })
	out := logs.String()
	if !strings.Contains(out, "first tick fails") || !strings.Contains(out, "stack=") {
		t.Errorf("panic not logged with its stack: %q", out)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  []byte
}

func (b *lockedBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	return len(p), nil
}

func (b *lockedBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

// TestRunInExecutorBeforeStart: a call before Start has its done run on the
// loop once it is up.
func TestRunInExecutorBeforeStart(t *testing.T) {
	l := New(Options{Logger: slog.New(slog.DiscardHandler), TimeoutResolution: 10 * time.Millisecond})
	got := make(chan bool, 1)
	RunInExecutor(l, func() (int, error) { return 7, nil }, func(v int, err error) { got <- v == 7 && err == nil && l.InLoop() })
	go l.Start()
	<-l.Ready()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
	}()
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("done got the wrong result or ran off the loop")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("done of a call made before Start never ran")
	}
}

// TestPeriodicCallbackRestartInsideFn: Stop then Start inside fn leaves one
// schedule, not two (tick must not schedule again after fn restarted it).
func TestPeriodicCallbackRestartInsideFn(t *testing.T) {
	l, _ := startBareLoop(t, Options{})
	pending := make(chan int, 1)
	var pc *PeriodicCallback
	first := true
	onLoop(l, func() int {
		pc = l.NewPeriodicCallback(func() {
			if first {
				first = false
				pc.Stop()
				pc.Start()
				l.AddCallback(func() { pending <- l.Metrics().TimeoutsPending; pc.Stop() })
			}
		}, time.Hour/2, 0)
		pc.Start()
		// The first tick, now rather than in half an hour.
		l.RemoveTimeout(pc.h)
		pc.h = l.timers.add(l.now(), pc.tickFn)
		return 0
	})
	if n := wsRecv(t, pending, "TimeoutsPending"); n != 1 {
		t.Fatalf("%d timeouts pending after a restart inside fn, want 1", n)
	}
}
