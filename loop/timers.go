package loop

import (
	"container/heap"
	"sync"
	"time"
)

// Timeout is a handle on a callback scheduled with CallLater or CallAt.
// It has no methods: pass it to Loop.RemoveTimeout, from any goroutine.
type Timeout struct {
	when  int64 // loop clock
	seq   uint64
	fn    func()
	index int // position in the heap, -1 when not pending
}

// timers is a min-heap of Timeouts owned by the loop, guarded by a mutex so
// that CallLater and RemoveTimeout are goroutine-safe. One Go timer is armed
// for the earliest deadline; when it fires it posts runDue to the loop.
type timers struct {
	l       *Loop
	mu      sync.Mutex
	h       timerHeap
	seq     uint64
	wake    *time.Timer
	armedAt int64
	due     []*Timeout
	runFn   func()
}

func (t *timers) init(l *Loop) {
	t.l = l
	t.runFn = t.runDue
	t.wake = time.AfterFunc(time.Hour, func() { l.AddCallback(t.runFn) })
	t.wake.Stop()
	t.armedAt = -1
}

// Goroutine-safe.
// CallAt runs fn on the loop at time at (or soon after).
func (l *Loop) CallAt(at time.Time, fn func()) *Timeout {
	return l.timers.add(int64(at.Sub(l.epoch)), fn)
}

// Goroutine-safe.
// CallLater runs fn on the loop after d.
func (l *Loop) CallLater(d time.Duration, fn func()) *Timeout {
	return l.timers.add(l.now()+int64(d), fn)
}

// Goroutine-safe.
// RemoveTimeout cancels a pending timeout; it is a no-op when the timeout
// already ran or was removed.
func (l *Loop) RemoveTimeout(h *Timeout) {
	if h == nil {
		return
	}
	t := &l.timers
	t.mu.Lock()
	if h.index >= 0 {
		heap.Remove(&t.h, h.index)
		h.index = -1
	}
	h.fn = nil
	t.mu.Unlock()
}

// pendingTimeouts returns the number of pending timeouts (published as
// Metrics().TimeoutsPending). Any goroutine.
func (l *Loop) pendingTimeouts() int {
	l.timers.mu.Lock()
	defer l.timers.mu.Unlock()
	return len(l.timers.h)
}

func (t *timers) add(when int64, fn func()) *Timeout {
	h := &Timeout{when: when, fn: fn}
	t.mu.Lock()
	t.seq++
	h.seq = t.seq
	heap.Push(&t.h, h)
	if t.h[0] == h {
		t.arm()
	}
	t.mu.Unlock()
	return h
}

// arm resets the wake-up timer to the earliest deadline. Called with mu held.
func (t *timers) arm() {
	if len(t.h) == 0 {
		return
	}
	when := t.h[0].when
	if t.armedAt == when {
		return
	}
	t.armedAt = when
	d := time.Duration(when - t.l.now())
	if d < 0 {
		d = 0
	}
	t.wake.Reset(d)
}

// runDue runs every timeout whose deadline passed, in deadline order (ties in
// the order they were added). Loop-only.
func (t *timers) runDue() {
	now := t.l.now()
	t.mu.Lock()
	due := t.due[:0]
	for len(t.h) > 0 && t.h[0].when <= now {
		h := heap.Pop(&t.h).(*Timeout)
		due = append(due, h)
	}
	t.armedAt = -1
	t.arm()
	t.mu.Unlock()
	for i, h := range due {
		t.mu.Lock()
		fn := h.fn // RemoveTimeout from an earlier callback in this batch wins
		h.fn = nil
		t.mu.Unlock()
		if fn != nil {
			t.l.safeCall(fn)
		}
		due[i] = nil
	}
	t.due = due[:0]
}

type timerHeap []*Timeout

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].when != h[j].when {
		return h[i].when < h[j].when
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*Timeout)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.index = -1
	*h = old[:n-1]
	return t
}
