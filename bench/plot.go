package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WritePlot draws results to a PNG: for idle runs with steps, the server's
// RSS (MiB) against connection count, one line per server; for transports
// runs, bar charts of bytes per message, p99, server CPU per message and
// requests per minute, one bar per transport; otherwise the latency CDF
// (log scale), one line per run.
func WritePlot(file string, rs []*Result) error {
	if len(rs) == 0 {
		return fmt.Errorf("plot: no results")
	}
	// The README's commands write into bench/plots/, absent from a fresh
	// checkout (PNGs are not tracked).
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("plot %s: %w", file, err)
	}
	if rs[0].Scenario == "transports" {
		return writeTransportsPlot(file, rs)
	}
	p := plot.New()
	p.Legend.Top = true
	p.Legend.Left = true
	if rs[0].Scenario == "idle" {
		p.Title.Text = "idle: server RSS against open connections"
		p.X.Label.Text = "connections"
		p.Y.Label.Text = "server RSS (MiB)"
		p.Y.Min = 0
		p.X.Tick.Marker = ticks125{}
		p.Y.Tick.Marker = ticks125{}
		for i, r := range rs {
			pts := plotter.XYs{}
			for _, s := range r.Steps {
				pts = append(pts, plotter.XY{X: float64(s.Conns), Y: float64(s.RSS) / (1 << 20)})
			}
			if err := addLine(p, i, label(r), pts); err != nil {
				return err
			}
		}
	} else {
		p.Title.Text = rs[0].Scenario + ": latency CDF"
		p.X.Label.Text = "latency (ms, log scale)"
		p.Y.Label.Text = "fraction of samples <= x"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = logTicks125{}
		p.Y.Tick.Marker = ticks125{}
		p.Y.Min, p.Y.Max = 0, 1
		for i, r := range rs {
			s := r.Samples
			if len(s) == 0 {
				continue
			}
			pts := plotter.XYs{}
			step := max(1, len(s)/1000)
			for k := 0; k < len(s); k += step {
				pts = append(pts, plotter.XY{X: math.Max(float64(s[k])/1e6, 1e-3), Y: float64(k+1) / float64(len(s))})
			}
			pts = append(pts, plotter.XY{X: math.Max(float64(s[len(s)-1])/1e6, 1e-3), Y: 1})
			if err := addLine(p, i, label(r), pts); err != nil {
				return err
			}
		}
	}
	p.Add(plotter.NewGrid())
	if err := p.Save(8*vg.Inch, 5*vg.Inch, file); err != nil {
		return fmt.Errorf("plot %s: %w", file, err)
	}
	return nil
}

func label(r *Result) string {
	if r.Server != "" {
		return fmt.Sprintf("%s (%d conns)", r.Server, r.Conns)
	}
	return fmt.Sprintf("%s (%d conns)", r.URL, r.Conns)
}

func addLine(p *plot.Plot, i int, name string, pts plotter.XYs) error {
	l, err := plotter.NewLine(pts)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(2)
	if l.Color == nil {
		l.Color = color.Black
	}
	p.Add(l)
	p.Legend.Add(name, l)
	if sc, err := plotter.NewScatter(pts); err == nil && len(pts) < 20 {
		sc.Color = l.Color
		p.Add(sc)
	}
	return nil
}

// ticks125 labels every major tick at a 1-2-5 step (0.1, 0.2, 0.5, 1, 2,
// 5, ...) chosen for 4 to 10 ticks over the axis: the default marker labels
// only every other tick.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: fmtTick(lo)}}
	}
	step := step125((hi - lo) / 5)
	var ts []plot.Tick
	for v := math.Ceil(lo/step-1e-9) * step; v <= hi+step*1e-9; v += step {
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		ts = append(ts, plot.Tick{Value: v, Label: fmtTick(v)})
		for k := 1; k < 5; k++ { // minor ticks
			if m := v + step*float64(k)/5; m <= hi {
				ts = append(ts, plot.Tick{Value: m})
			}
		}
	}
	return ts
}

// step125 is the smallest 1, 2 or 5 times a power of ten that is >= x.
func step125(x float64) float64 {
	e := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*e >= x*(1-1e-9) {
			return m * e
		}
	}
	return 10 * e
}

func fmtTick(v float64) string {
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// logTicks125 labels 1, 2 and 5 in every decade of a log axis.
type logTicks125 struct{}

func (logTicks125) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 {
		lo = 1e-3
	}
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		d := math.Pow(10, e)
		for m := 1; m < 10; m++ {
			v := float64(m) * d
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = fmtTick(v)
			}
			ts = append(ts, t)
		}
	}
	return ts
}
