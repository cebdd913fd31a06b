package loop

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrExecutorFull is reported when RunInExecutor's queue is full.
var ErrExecutorFull = errors.New("loop: executor queue full")

// executor is RunInExecutor's bounded pool. mu orders submissions against
// stop: a send holds it shared, stop holds it alone while it closes jobs,
// so no send ever meets a closed channel.
type executor struct {
	l       *Loop
	mu      sync.RWMutex
	closed  bool // under mu
	jobs    chan execJob
	workers int
	once    sync.Once
	running sync.WaitGroup // workers alive
}

// execJob is one RunInExecutor call: run does the work and queues done,
// cancel queues done with err instead.
type execJob interface {
	run()
	cancel(err error)
}

func (e *executor) init(l *Loop, workers, queue int) {
	e.l = l
	e.workers = workers
	e.jobs = make(chan execJob, queue)
}

func (e *executor) start() {
	e.running.Add(e.workers)
	for i := 0; i < e.workers; i++ {
		go func() {
			defer e.running.Done()
			for j := range e.jobs {
				if e.isClosed() {
					j.cancel(ErrStopped) // queued when Stop came
					continue
				}
				j.run()
			}
		}()
	}
}

func (e *executor) isClosed() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.closed
}

// submit queues j, or says why it cannot.
func (e *executor) submit(j execJob) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return ErrStopped
	}
	e.once.Do(e.start) // under mu: stop cannot wait on running before the workers count
	select {
	case e.jobs <- j:
		return nil
	default:
		return ErrExecutorFull
	}
}

// stop refuses new work, gives every queued job done(ErrStopped) and waits
// until the running ones finish or ctx is done. The dones it causes are
// queued on the loop; Stop runs them before the engine goes. Called by
// Stop, off the loop.
func (e *executor) stop(ctx context.Context) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	close(e.jobs)
	e.mu.Unlock()
	// Workers stuck in long work cannot drain the queue: do it here too
	// (each job is received once, by whoever gets it).
	for j := range e.jobs {
		j.cancel(ErrStopped)
	}
	idle := make(chan struct{})
	go func() { e.running.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-ctx.Done():
	}
}

// abandon is stop without waiting for running work: for a loop that ended
// without Stop's sequence (the engine failed, or it never started). The
// dones it causes are dropped with the stopped loop; the workers end once
// their current work returns.
func (e *executor) abandon() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.stop(ctx)
}

type typedJob[T any] struct {
	l    *Loop
	work func() (T, error)
	done func(T, error)
}

func (j *typedJob[T]) run() {
	var (
		v   T
		err error
	)
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("loop: executor work panicked: %v", r)
			}
		}()
		v, err = j.work()
	}()
	j.l.AddCallback(func() { j.done(v, err) })
}

func (j *typedJob[T]) cancel(err error) {
	j.l.AddCallback(func() {
		var zero T
		j.done(zero, err)
	})
}

// Goroutine-safe, also before Start (done then runs once the loop is up).
// RunInExecutor runs work on the loop's bounded worker pool (Tornado's
// run_in_executor) and then done(result, err) on the loop, so a handler
// never blocks the reactor.
//
// done runs exactly once, on the loop, for every call made before Stop has
// finished, with:
//   - work's result; a panic in work is returned as an error;
//   - ErrExecutorFull when ExecutorQueue calls are already waiting;
//   - ErrStopped when Stop came before work started: work is then skipped.
//
// Stop waits for work already running until its ctx is done, and runs the
// dones of all that finished before the loop ends. done is never called
// once the loop has fully stopped: not for a call made after Stop returned,
// nor for work still running when Stop gave up on it.
func RunInExecutor[T any](l *Loop, work func() (T, error), done func(T, error)) {
	j := &typedJob[T]{l: l, work: work, done: done}
	if err := l.exec.submit(j); err != nil {
		j.cancel(err)
	}
}
