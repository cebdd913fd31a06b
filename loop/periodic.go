package loop

import (
	"math/rand/v2"
	"runtime/debug"
	"time"
)

// PeriodicCallback calls a function on the loop every period, on absolute
// deadlines (start + k*period) so it does not drift over hours. When the loop
// was too busy to run a tick on time, the missed ticks are skipped rather
// than run in a burst, as Tornado does.
type PeriodicCallback struct {
	l       *Loop
	fn      func()
	period  int64
	jitter  float64
	next    int64
	h       *Timeout
	running bool
	tickFn  func()
}

// NewPeriodicCallback returns a stopped periodic callback. jitter in [0,1)
// spreads each deadline by ±jitter/2 of the period (0 for none), which keeps
// many processes from firing in lockstep. Goroutine-safe.
func (l *Loop) NewPeriodicCallback(fn func(), period time.Duration, jitter float64) *PeriodicCallback {
	if period <= 0 {
		panic("loop: PeriodicCallback period must be positive")
	}
	p := &PeriodicCallback{l: l, fn: fn, period: int64(period), jitter: jitter}
	p.tickFn = p.tick
	return p
}

// Start starts the callback; the first call is one period from now. Loop-only
// (from another goroutine wrap it in AddCallback).
func (p *PeriodicCallback) Start() {
	if p.running {
		return
	}
	p.running = true
	p.next = p.l.now()
	p.schedule()
}

// Stop stops the callback; no call happens after Stop returns. Loop-only.
func (p *PeriodicCallback) Stop() {
	p.running = false
	p.l.RemoveTimeout(p.h)
	p.h = nil
}

// IsRunning reports whether the callback is started. Loop-only.
func (p *PeriodicCallback) IsRunning() bool { return p.running }

// tick runs fn and schedules the next call even when fn panics (Tornado
// reschedules in finally): one bad tick must not end the schedule while
// IsRunning still says true.
func (p *PeriodicCallback) tick() {
	if !p.running {
		return
	}
	h := p.h
	defer func() {
		if r := recover(); r != nil {
			p.l.log.Error("loop: panic in periodic callback", "panic", r, "stack", string(debug.Stack()))
		}
		if p.running && p.h == h { // not stopped, nor restarted by fn
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
