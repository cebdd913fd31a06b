package loop_test

import (
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
)

func TestCallLaterOrder(t *testing.T) {
	l, _ := startLoop(t, nil)
	var order []string
	done := make(chan struct{})
	onLoop(t, l, func() {
		add := func(d time.Duration, name string) {
			l.CallLater(d, func() {
				if !l.InLoop() {
					name += "(off loop)"
				}
				order = append(order, name)
			})
		}
		add(60*time.Millisecond, "c")
		add(20*time.Millisecond, "a")
		add(40*time.Millisecond, "b")
		// Ties run in the order they were added.
		at := time.Now().Add(50 * time.Millisecond)
		for _, n := range []string{"t1", "t2", "t3"} {
			l.CallAt(at, func() { order = append(order, n) })
		}
		l.CallLater(80*time.Millisecond, func() { close(done) })
	})
	<-done
	want := "a,b,t1,t2,t3,c"
	if got := strings.Join(order, ","); got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestCallLaterNotEarly(t *testing.T) {
	l, _ := startLoop(t, nil)
	start := time.Now()
	fired := make(chan time.Duration, 1)
	l.CallLater(50*time.Millisecond, func() { fired <- time.Since(start) })
	select {
	case d := <-fired:
		if d < 50*time.Millisecond {
			t.Fatalf("fired after %v, before its 50ms deadline", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("never fired")
	}
}

func TestRemoveTimeout(t *testing.T) {
	l, _ := startLoop(t, nil)
	var fired atomic.Int32
	h := l.CallLater(30*time.Millisecond, func() { fired.Add(1) })
	if n := l.Metrics().TimeoutsPending; n != 1 {
		t.Fatalf("TimeoutsPending %d, want 1", n)
	}
	l.RemoveTimeout(h)
	l.RemoveTimeout(h) // twice is a no-op
	l.RemoveTimeout(nil)
	if n := l.Metrics().TimeoutsPending; n != 0 {
		t.Fatalf("TimeoutsPending after remove %d, want 0", n)
	}
	// A timeout removed by an earlier timeout of the same batch does not run.
	var h2 *loop.Timeout
	at := time.Now().Add(20 * time.Millisecond)
	onLoop(t, l, func() {
		l.CallAt(at, func() { l.RemoveTimeout(h2) })
		h2 = l.CallAt(at, func() { fired.Add(10) })
	})
	time.Sleep(80 * time.Millisecond)
	onLoop(t, l, func() {})
	if n := fired.Load(); n != 0 {
		t.Fatalf("removed timeouts fired (%d)", n)
	}
	// Removing after it ran is harmless.
	ran := make(chan struct{})
	h3 := l.CallLater(time.Millisecond, func() { close(ran) })
	<-ran
	l.RemoveTimeout(h3)
}

func TestManyTimers(t *testing.T) {
	l, _ := startLoop(t, nil)
	const N = 100_000
	var (
		fired, wrong int
		lastAt       time.Time
		outOfOrder   int
	)
	handles := make([]*loop.Timeout, N)
	cancelled := 0
	done := make(chan struct{})
	base := time.Now().Add(time.Second) // far enough for -race to schedule and cancel
	onLoop(t, l, func() {
		for i := 0; i < N; i++ {
			at := base.Add(time.Duration(rand.IntN(200)) * time.Millisecond)
			cancel := i%3 == 0
			handles[i] = l.CallAt(at, func() {
				if cancel {
					wrong++
				}
				if at.Before(lastAt) {
					outOfOrder++
				}
				lastAt = at
				fired++
			})
		}
	})
	if n := l.Metrics().TimeoutsPending; n != N {
		t.Fatalf("TimeoutsPending %d, want %d", n, N)
	}
	// Cancel a third of them from another goroutine.
	for i := 0; i < N; i += 3 {
		l.RemoveTimeout(handles[i])
		cancelled++
	}
	if n := l.Metrics().TimeoutsPending; n != N-cancelled {
		t.Fatalf("TimeoutsPending %d, want %d", n, N-cancelled)
	}
	l.CallAt(base.Add(300*time.Millisecond), func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("timers did not complete")
	}
	if fired != N-cancelled || wrong != 0 || outOfOrder != 0 {
		t.Fatalf("fired %d (want %d), cancelled ones fired %d, out of order %d", fired, N-cancelled, wrong, outOfOrder)
	}
	if n := l.Metrics().TimeoutsPending; n != 0 {
		t.Fatalf("TimeoutsPending %d after all fired", n)
	}
}

func TestPeriodicCallbackSchedule(t *testing.T) {
	l, _ := startLoop(t, nil)
	const period = 40 * time.Millisecond
	var (
		ticks []time.Duration
		start time.Time
		pc    *loop.PeriodicCallback
	)
	done := make(chan struct{})
	onLoop(t, l, func() {
		pc = l.NewPeriodicCallback(func() {
			ticks = append(ticks, time.Since(start))
			if len(ticks) == 5 {
				pc.Stop()
				l.CallLater(3*period, func() { close(done) }) // no tick after Stop
			}
		}, period, 0)
		start = time.Now()
		pc.Start()
		pc.Start() // idempotent
		if !pc.IsRunning() {
			t.Error("IsRunning false after Start")
		}
	})
	<-done
	if len(ticks) != 5 {
		t.Fatalf("%d ticks, want 5 (ticks after Stop?): %v", len(ticks), ticks)
	}
	for k, d := range ticks {
		want := time.Duration(k+1) * period
		// Absolute deadlines: never early, and (on an idle loop) not much late.
		if d < want-time.Millisecond || d > want+30*time.Millisecond {
			t.Fatalf("tick %d at %v, want ~%v (all: %v)", k+1, d, want, ticks)
		}
	}
}

func TestPeriodicCallbackSkipsMissedTicks(t *testing.T) {
	l, _ := startLoop(t, nil)
	const period = 50 * time.Millisecond
	var (
		ticks    []time.Time
		blockEnd time.Time
		pc       *loop.PeriodicCallback
	)
	done := make(chan struct{})
	onLoop(t, l, func() {
		pc = l.NewPeriodicCallback(func() {
			ticks = append(ticks, time.Now())
			if len(ticks) == 2 {
				// Block the loop for 3.5 periods in a separate callback.
				l.AddCallback(func() {
					time.Sleep(period * 7 / 2)
					blockEnd = time.Now()
				})
			}
		}, period, 0)
		pc.Start()
		l.CallLater(11*period, func() { pc.Stop(); close(done) })
	})
	<-done
	// Ticks due during the block: at most one runs late; the rest are
	// skipped rather than run in a burst.
	burst := 0
	for _, tk := range ticks {
		if !tk.Before(blockEnd) && tk.Sub(blockEnd) < period/3 {
			burst++
		}
	}
	if burst != 1 {
		t.Fatalf("%d ticks right after the loop unblocked, want 1 (missed ticks must be skipped)", burst)
	}
	// Without the block there would be 11 ticks in 11 periods (the last one
	// ties with the stop timer and runs first); 2 are skipped.
	if n := len(ticks); n < 7 || n > 9 {
		t.Fatalf("%d ticks in 11 periods with 3.5 blocked, want 7..9", n)
	}
	// No gap check between consecutive ticks: deadlines are absolute (as in
	// Tornado), so a tick that ran late on a busy machine is legitimately
	// followed by the next one soon after. The burst count above is what
	// tells skipped ticks from replayed ones.
}
