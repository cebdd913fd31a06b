package bench

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WritePlot draws results to a PNG: for idle runs with steps, the server's
// RSS (MiB) against connection count, one line per server; otherwise the
// latency CDF (log scale), one line per run.
func WritePlot(file string, rs []*Result) error {
	if len(rs) == 0 {
		return fmt.Errorf("plot: no results")
	}
	p := plot.New()
	p.Legend.Top = true
	p.Legend.Left = true
	if rs[0].Scenario == "idle" {
		p.Title.Text = "idle: server RSS against open connections"
		p.X.Label.Text = "connections"
		p.Y.Label.Text = "server RSS (MiB)"
		p.Y.Min = 0
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
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
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
