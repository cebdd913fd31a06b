package bench

import (
	"fmt"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// transportPanel is one bar chart of the transports plot.
type transportPanel struct {
	title, unit string
	get         func(*Result) (float64, bool)
}

// writeTransportsPlot draws the transports runs as bar charts side by
// side, one bar per transport: client bytes on the wire per delivered
// message, p99 delivery latency, server CPU per delivered message (when
// measured) and HTTP requests per minute. A transport without a figure
// gets no bar.
func writeTransportsPlot(file string, rs []*Result) error {
	panels := []transportPanel{
		{"bytes on the wire / message", "bytes", extraFigure("wire_bytes_per_delivered")},
		{"p99 delivery latency", "ms", always(func(r *Result) float64 { return float64(r.Latency.P99) / 1e6 })},
		{"server CPU / message", "us", func(r *Result) (float64, bool) {
			if r.CPUPerOp == nil {
				return 0, false
			}
			return *r.CPUPerOp, true
		}},
		{"HTTP requests / minute", "requests", extraFigure("http_requests_per_min")},
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Server
		if t, ok := r.Extra["transport"].(string); ok {
			names[i] = t
		}
	}
	var row []*plot.Plot
	for k, pn := range panels {
		vals := make(plotter.Values, len(rs))
		any := false
		for i, r := range rs {
			if v, ok := pn.get(r); ok {
				vals[i], any = v, true
			}
		}
		if !any {
			continue
		}
		p := plot.New()
		p.Title.Text = pn.title
		p.Y.Label.Text = pn.unit
		p.Y.Min = 0
		p.Y.Tick.Marker = ticks125{}
		bars, err := plotter.NewBarChart(vals, vg.Points(22))
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		bars.Color = plotutil.Color(k)
		bars.LineStyle.Width = 0
		p.Add(bars)
		p.Add(plotter.NewGrid())
		p.NominalX(names...)
		p.X.Tick.Label.Rotation = 0.5
		p.X.Tick.Label.XAlign = draw.XRight
		row = append(row, p)
	}
	if len(row) == 0 {
		return fmt.Errorf("plot: no transports figure to draw")
	}
	w, h := vg.Length(len(row))*3*vg.Inch, 4*vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96))
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: len(row), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{row}, t, dc)
	for i, p := range row {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot %s: %w", file, err)
	}
	return nil
}
