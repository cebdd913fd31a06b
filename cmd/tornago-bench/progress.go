package main

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/tornago/tornago/bench"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"
)

// mpbProgress draws one bar per long phase on stderr: done / target, rate
// and errors for counted phases (connections opened), elapsed time and the
// operation rate for timed ones.
type mpbProgress struct{ p *mpb.Progress }

func newProgress() *mpbProgress {
	return newProgressTo(os.Stderr, os.Getenv(forceBarsEnv) != "")
}

// forceBarsEnv, set to anything, draws the bars (redrawn in place with
// ANSI sequences) also when stderr is not a terminal: a pipe, a file, a CI
// log. Without it mpb draws on a terminal only.
const forceBarsEnv = "TORNAGO_BENCH_FORCE_BARS"

// barWidth is the width of the bar itself; lineWidth that of a whole line
// (name, counters, bar, rate) where no terminal width is known.
const (
	barWidth  = 40
	lineWidth = 120
)

// newProgressTo draws on f. A terminal that reports a width of 0 (a pty
// whose size was never set: some CI runners, script(1), docker exec
// without -t sizing) would make mpb draw nothing at all, so there f is
// handed to mpb as a plain writer with lineWidth columns, redrawn as with
// force.
func newProgressTo(f *os.File, force bool) *mpbProgress {
	var out io.Writer = f
	if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col == 0 {
		out, force = struct{ io.Writer }{f}, true // not an *os.File: mpb does not ask its size
	}
	return &mpbProgress{p: mpb.New(mpb.WithOutput(out), mpb.WithRefreshRate(200*time.Millisecond),
		mpb.WithWidth(lineWidth), mpb.ContainerOptional(mpb.WithAutoRefresh(), force))}
}

func (m *mpbProgress) Wait() { m.p.Wait() }

type mpbBar struct {
	b    *mpb.Bar
	ops  atomic.Int64
	errs atomic.Int64
	t0   time.Time
	took atomic.Int64 // phase duration in ns once Done, so the rate stops moving
}

// elapsed is the phase's running time, frozen once Done.
func (b *mpbBar) elapsed() time.Duration {
	if d := b.took.Load(); d > 0 {
		return time.Duration(d)
	}
	return time.Since(b.t0)
}

// Phase draws a counted phase: "connect   1181 / 6000 [===>---]   2986/s err 0".
func (m *mpbProgress) Phase(name string, total int64) bench.ProgressBar {
	mb := &mpbBar{t0: time.Now()}
	mb.add(m, name, total, decor.CountersNoUnit("%d / %d"), func(s decor.Statistics) string {
		sec := mb.elapsed().Seconds()
		if sec <= 0 {
			return ""
		}
		return fmt.Sprintf("%6.0f/s err %d", float64(s.Current)/sec, mb.errs.Load())
	})
	return mb
}

// Timed draws a phase of fixed length: "echo   3.2 s / 10 s [==>---]   61234 ops/s err 0".
func (m *mpbProgress) Timed(name string, d time.Duration) bench.ProgressBar {
	mb := &mpbBar{t0: time.Now()}
	counter := decor.Any(func(s decor.Statistics) string {
		return fmt.Sprintf("%5.1f s / %.0f s", float64(s.Current)/1000, d.Seconds())
	})
	mb.add(m, name, int64(d/time.Millisecond), counter, func(decor.Statistics) string {
		sec := mb.elapsed().Seconds()
		ops := mb.ops.Load()
		if sec <= 0 || ops == 0 {
			return fmt.Sprintf("err %d", mb.errs.Load())
		}
		return fmt.Sprintf("%8.0f ops/s err %d", float64(ops)/sec, mb.errs.Load())
	})
	return mb
}

func (mb *mpbBar) add(m *mpbProgress, name string, total int64, counter decor.Decorator, rate func(decor.Statistics) string) {
	// A bar made with a positive total completes only when current
	// reaches it; timed phases and failed connections may stop short, so
	// the total is set afterwards and Done completes the bar explicitly.
	mb.b = m.p.AddBar(0, mpb.BarWidth(barWidth),
		mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-14s ", name)), counter),
		mpb.AppendDecorators(decor.Any(rate)),
	)
	mb.b.SetTotal(total, false)
}

func (b *mpbBar) Set(done, ops, errs int64) {
	b.ops.Store(ops)
	b.errs.Store(errs)
	b.b.SetCurrent(done)
}

func (b *mpbBar) Done() {
	b.took.Store(int64(time.Since(b.t0)))
	b.b.SetTotal(-1, true)
}
