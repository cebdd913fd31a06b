package loop

import "errors"

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
