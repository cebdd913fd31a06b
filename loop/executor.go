package loop

import (
	"errors"
	"fmt"
	"sync"
)

// ErrExecutorFull is reported when RunInExecutor's queue is full.
var ErrExecutorFull = errors.New("loop: executor queue full")

type executor struct {
	l       *Loop
	jobs    chan func()
	workers int
	once    sync.Once
	stopped sync.Once
}

func (e *executor) init(l *Loop, workers, queue int) {
	e.l = l
	e.workers = workers
	e.jobs = make(chan func(), queue)
}

func (e *executor) start() {
	for i := 0; i < e.workers; i++ {
		go func() {
			for job := range e.jobs {
				job()
			}
		}()
	}
}

func (e *executor) stop() { e.stopped.Do(func() { e.once.Do(func() {}); close(e.jobs) }) }

// RunInExecutor runs work on the loop's bounded worker pool (Tornado's
// run_in_executor) and then done(result, err) on the loop, so a handler never
// blocks the reactor. A panic in work is returned as an error. When the queue
// is full, done gets ErrExecutorFull. Goroutine-safe.
func RunInExecutor[T any](l *Loop, work func() (T, error), done func(T, error)) {
	e := &l.exec
	e.once.Do(e.start)
	job := func() {
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
			v, err = work()
		}()
		l.AddCallback(func() { done(v, err) })
	}
	defer func() {
		if recover() != nil { // queue closed by Stop
			var zero T
			l.AddCallback(func() { done(zero, ErrStopped) })
		}
	}()
	select {
	case e.jobs <- job:
	default:
		var zero T
		l.AddCallback(func() { done(zero, ErrExecutorFull) })
	}
}
