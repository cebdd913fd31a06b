package main

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/tornago/tornago/bench"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// mpbProgress draws one bar per long phase on stderr: done / target, rate
// and errors (connections opened, or elapsed milliseconds of a timed phase).
type mpbProgress struct{ p *mpb.Progress }

func newProgress() *mpbProgress {
	return &mpbProgress{p: mpb.New(mpb.WithOutput(os.Stderr), mpb.WithRefreshRate(200*time.Millisecond), mpb.WithWidth(40), mpb.ContainerOptional(mpb.WithAutoRefresh(), os.Getenv("TORNAGO_BENCH_FORCE_BARS") != ""))}
}

func (m *mpbProgress) Wait() { m.p.Wait() }

type mpbBar struct {
	b    *mpb.Bar
	errs atomic.Int64
	t0   time.Time
	took atomic.Int64 // phase duration in ns once Done, so the rate stops moving
}

func (m *mpbProgress) Phase(name string, total int64) bench.ProgressBar {
	mb := &mpbBar{t0: time.Now()}
	// A bar made with a positive total completes only when current
	// reaches it; timed phases and failed connections may stop short, so
	// the total is set afterwards and Done completes the bar explicitly.
	mb.b = m.p.AddBar(0,
		mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-14s ", name)), decor.CountersNoUnit("%d / %d")),
		mpb.AppendDecorators(
			decor.Any(func(s decor.Statistics) string {
				sec := time.Since(mb.t0).Seconds()
				if d := mb.took.Load(); d > 0 {
					sec = time.Duration(d).Seconds()
				}
				if sec <= 0 {
					return ""
				}
				return fmt.Sprintf("%6.0f/s err %d", float64(s.Current)/sec, mb.errs.Load())
			})),
	)
	mb.b.SetTotal(total, false)
	return mb
}

func (b *mpbBar) Set(done, errs int64) {
	b.errs.Store(errs)
	b.b.SetCurrent(done)
}

func (b *mpbBar) Done() {
	b.took.Store(int64(time.Since(b.t0)))
	b.b.SetTotal(-1, true)
}
