package loop

import (
	"context"
	"errors"

	"github.com/panjf2000/gnet/v2"
)

// ErrNotOnLoop is returned by a loop-only method called from another
// goroutine: it did nothing. Use its goroutine-safe counterpart (the name
// ends in Async) or run it in a callback (Loop.AddCallback).
var ErrNotOnLoop = errors.New("loop: loop-only method called off the loop")

// Goroutine-safe: the one door from other goroutines into the loop.
// AddCallback schedules fn to run on the loop. Callbacks run in the order
// they were added; one added from the loop runs after the
// current callback or handler returns, never re-entrantly. It wakes the loop
// at once through gnet's EventLoop.Execute (one wake-up per batch, however
// many callbacks are queued). Callbacks added before Start run once the loop
// is up. Callbacks added once the loop has stopped (Start has returned, or
// Stop ended a loop never started) are dropped and not kept; those queued
// during the last moments of Stop may be dropped too (Stop runs everything
// queued before its close hooks and executor finished).
func (l *Loop) AddCallback(fn func()) { _ = l.enqueue(fn, 0) }

// queued is a callback and the data bytes it holds against
// Options.MaxAsyncBytes (0 for a plain AddCallback).
type queued struct {
	fn func()
	n  int
}

// enqueue is AddCallback for fn holding n bytes of data (see
// addDataCallback). Goroutine-safe.
func (l *Loop) enqueue(fn func(), n int) error {
	l.mu.Lock()
	if l.state.Load() == stateStopped {
		l.mu.Unlock()
		return ErrStopped
	}
	if n > 0 {
		// Reserved under mu, so that dropCallbacks' reset cannot
		// interleave with a reservation.
		if l.queuedBytes.Load()+int64(n) > int64(l.opts.MaxAsyncBytes) {
			l.mu.Unlock()
			return ErrLoopBacklog
		}
		l.queuedBytes.Add(int64(n))
	}
	if len(l.queue) == 0 {
		l.st.queueSince = l.now() // the batch's oldest callback, for the lag histogram
	}
	l.queue = append(l.queue, queued{fn: fn, n: n})
	el := l.el
	wake := el != nil && !l.wakePending
	if wake {
		l.wakePending = true
	}
	l.mu.Unlock()
	if wake {
		l.post(el)
	}
	return nil
}

// post asks gnet to run drain on the loop. If the engine is shutting down the
// callbacks stay queued and are dropped with the loop.
func (l *Loop) post(el gnet.EventLoop) {
	if err := el.Execute(context.Background(), l.drainFn); err != nil {
		l.log.Debug("loop: callback not posted", "err", err)
	}
}

// dropCallbacks forgets every queued callback once the loop has stopped
// (state is stateStopped before it is called, so AddCallback drops from
// then on).
func (l *Loop) dropCallbacks() {
	l.mu.Lock()
	clear(l.queue)
	l.queue, l.spare, l.el = nil, nil, nil
	l.queuedBytes.Store(0) // what they held is dropped with them
	l.mu.Unlock()
}

// runQueued waits until the loop has run every callback queued before the
// call (they run in order), or ctx is done, or the loop ended. Off the loop.
func (l *Loop) runQueued(ctx context.Context) {
	ran := make(chan struct{})
	l.AddCallback(func() { close(ran) })
	select {
	case <-ran:
	case <-ctx.Done():
	case <-l.done:
	}
}

// setEventLoop is called on the loop once the control connection opened: from
// now on AddCallback can wake the loop.
func (l *Loop) setEventLoop(el gnet.EventLoop) {
	l.mu.Lock()
	l.el = el
	wake := len(l.queue) > 0 && !l.wakePending
	if wake {
		l.wakePending = true
	}
	l.mu.Unlock()
	if wake {
		l.post(el)
	}
}

// drain runs every queued callback; it is the gnet Runnable posted by
// AddCallback. It always returns nil: an error would make gnet log or stop.
func (l *Loop) drain(context.Context) error {
	l.enter()
	l.mu.Lock()
	q := l.queue
	l.queue = l.spare[:0]
	l.spare = nil
	l.wakePending = false
	since := l.st.queueSince
	l.mu.Unlock()
	start := l.now()
	if len(q) > 0 {
		l.st.lag.observe(start - since)
	}
	for i, it := range q {
		q[i] = queued{}
		if it.n > 0 {
			l.queuedBytes.Add(-int64(it.n))
		}
		l.safeCall(it.fn)
	}
	if len(q) > 0 {
		l.st.batch.observe(l.now() - start)
	}
	l.mu.Lock()
	if l.spare == nil {
		l.spare = q[:0]
	}
	l.mu.Unlock()
	return nil
}

// ErrLoopBacklog is returned when the loop's queue of data from other
// goroutines is over Options.MaxAsyncBytes: the loop is not keeping up
// with what other goroutines hand it, and the data was not queued.
var ErrLoopBacklog = errors.New("loop: backlog of data from other goroutines over MaxAsyncBytes")

// addDataCallback is AddCallback for a callback that holds n bytes of data
// on their way to the loop (an off-loop write's copy, a broker delivery).
// The n bytes count against Options.MaxAsyncBytes from now until fn
// starts running (or is dropped with the stopped loop). Over the budget it
// queues nothing and returns ErrLoopBacklog; on a stopped loop ErrStopped.
// Goroutine-safe.
func (l *Loop) addDataCallback(n int, fn func()) error {
	return l.enqueue(fn, max(n, 0))
}

// Goroutine-safe.
// AddDataCallback is AddCallback for fn holding n bytes of data on their
// way to the loop (a copy of a message another goroutine publishes): the n
// bytes count against Options.MaxAsyncBytes until fn starts. Over that
// budget it queues nothing and returns ErrLoopBacklog; on a stopped loop
// ErrStopped. A package beside loop (realtime) builds its own *Async doors
// with it.
func (l *Loop) AddDataCallback(n int, fn func()) error { return l.addDataCallback(n, fn) }
