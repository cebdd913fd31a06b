package loop

import (
	"math/rand/v2"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// PeriodicCallback calls a function on the loop every period, on absolute
// deadlines (start + k*period) so it does not drift over hours. When the loop
// was too busy to run a tick on time, the missed ticks are skipped rather
// than run in a burst, as Tornado does.
//
// Start, Stop and IsRunning are goroutine-safe: whether it should run is
// one atomic flag, set at once by Start and Stop from any goroutine; the
// timer that follows it is loop-only state, brought in line with the flag
// on the loop (at once from the loop, by a queued callback from elsewhere).
type PeriodicCallback struct {
	l       *Loop
	fn      func()
	period  int64
	jitter  float64
	next    int64    // loop-only
	h       *Timeout // the pending tick, nil when none; loop-only
	running atomic.Bool
	tickFn  func()
	syncFn  func()
}

// Goroutine-safe.
// NewPeriodicCallback returns a stopped periodic callback.
// jitter in [0,1) spreads each deadline by ±jitter/2 of the period (0 for
// none), which keeps many processes from firing in lockstep. It panics if
// period is not positive.
func (l *Loop) NewPeriodicCallback(fn func(), period time.Duration, jitter float64) *PeriodicCallback {
	if period <= 0 {
		panic("loop: PeriodicCallback period must be positive")
	}
	p := &PeriodicCallback{l: l, fn: fn, period: int64(period), jitter: jitter}
	p.tickFn = p.tick
	p.syncFn = p.sync
	return p
}

// Goroutine-safe.
// Start starts the callback; the first call is one period from now (from
// another goroutine: from when the loop takes the request; before
// Loop.Start, from when the loop is up). Starting a started callback does
// nothing.
func (p *PeriodicCallback) Start() {
	if p.running.Swap(true) {
		return
	}
	p.apply()
}

// Goroutine-safe.
// Stop stops the callback: no call starts after Stop returns (one already
// running on the loop finishes). Stopping a stopped callback does nothing.
func (p *PeriodicCallback) Stop() {
	if !p.running.Swap(false) {
		return
	}
	p.apply()
}

// Goroutine-safe.
// IsRunning reports whether the callback is started.
func (p *PeriodicCallback) IsRunning() bool { return p.running.Load() }

// apply brings the timer in line with the flag: at once on the loop, else
// through the loop's queue (a Start and a Stop queued in any order end in
// the state of the last flag, since sync reads the flag when it runs).
func (p *PeriodicCallback) apply() {
	if p.l.InLoop() {
		p.sync()
		return
	}
	p.l.AddCallback(p.syncFn)
}

// sync arms the timer of a running callback that has none, and removes
// that of a stopped one. Loop-only.
func (p *PeriodicCallback) sync() {
	switch run := p.running.Load(); {
	case run && p.h == nil:
		p.next = p.l.now()
		p.schedule()
	case !run && p.h != nil:
		p.l.RemoveTimeout(p.h)
		p.h = nil
	}
}

// tick runs fn and schedules the next call even when fn panics (Tornado
// reschedules in finally): one bad tick must not end the schedule while
// IsRunning still says true.
func (p *PeriodicCallback) tick() {
	h := p.h
	if !p.running.Load() {
		// Stopped from another goroutine; its sync is queued. The tick
		// ran, so its timer is gone: sync must not remove it again.
		p.h = nil
		return
	}
	defer func() {
		if r := recover(); r != nil {
			p.l.log.Error("loop: panic in periodic callback", "panic", r, "stack", string(debug.Stack()))
		}
		if p.running.Load() && p.h == h { // not stopped, nor restarted by fn
			p.schedule()
		}
	}()
	p.fn()
}

// schedule advances next to the first deadline after now, skipping missed
// ones (Tornado's PeriodicCallback._update_next).
func (p *PeriodicCallback) schedule() {
	now := p.l.now()
	period := p.period
	if p.jitter > 0 {
		period = int64(float64(period) * (1 + p.jitter*(rand.Float64()-0.5)))
	}
	if p.next <= now {
		missed := (now - p.next) / period
		p.next += (missed + 1) * period
	} else {
		p.next += period
	}
	p.h = p.l.timers.add(p.next, p.tickFn)
}
