package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"
)

// latencies collects samples from any goroutine.
type latencies struct {
	mu sync.Mutex
	s  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.s = append(l.s, d)
	l.mu.Unlock()
}

// Percentiles summarises a set of latencies.
type Percentiles struct {
	N    int           `json:"n"`
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

func (p Percentiles) String() string {
	return fmt.Sprintf("p50 %v p99 %v p99.9 %v max %v", round(p.P50), round(p.P99), round(p.P999), round(p.Max))
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// sorted returns a sorted copy of the samples.
func (l *latencies) sorted() []time.Duration {
	l.mu.Lock()
	s := append([]time.Duration(nil), l.s...)
	l.mu.Unlock()
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

func summarize(s []time.Duration) Percentiles {
	p := Percentiles{N: len(s)}
	if len(s) == 0 {
		return p
	}
	at := func(q float64) time.Duration { return s[int(float64(len(s)-1)*q)] }
	p.P50, p.P99, p.P999, p.Max = at(0.50), at(0.99), at(0.999), s[len(s)-1]
	return p
}

// Result is one scenario run: the common fields plus the scenario's own
// figures in Extra. It is printed as one JSON line for scripts.
type Result struct {
	Scenario string          `json:"scenario"`
	Server   string          `json:"server,omitempty"`
	URL      string          `json:"url"`
	Client   string          `json:"client"`
	Conns    int             `json:"conns"`
	Errors   int64           `json:"errors"`
	Ops      int64           `json:"ops"` // messages, deliveries or upgrades
	OpsPerS  float64         `json:"ops_per_s"`
	CPUPerOp *float64        `json:"server_cpu_per_op_us,omitempty"` // nil: not measured (no -pid)
	Latency  Percentiles     `json:"latency"`
	CPU      CPU             `json:"cpu"`
	Pace     string          `json:"pace"`
	Extra    map[string]any  `json:"extra,omitempty"`
	Samples  []time.Duration `json:"-"` // sorted latencies, for plots
	Steps    []IdleStep      `json:"steps,omitempty"`
	Machine  Machine         `json:"machine"`
	// Invalid, when set, is why the run could not measure what it
	// reports (the scenario also returned an *InvalidError).
	Invalid string `json:"invalid,omitempty"`
}

func (r *Result) finish(ops int64, lat []time.Duration, cpu CPU, harnessCores float64) {
	r.Ops = ops
	r.CPU = cpu
	r.Samples = lat
	r.Latency = summarize(lat)
	if cpu.Wall > 0 {
		r.OpsPerS = float64(ops) / cpu.Wall
	}
	if ops > 0 && cpu.Server != nil {
		v := *cpu.Server / float64(ops) * 1e6
		r.CPUPerOp = &v
	}
	r.Machine = thisMachine()
	r.Pace = cpu.Pace(harnessCores)
}

// finishSet is finish with latencies that may have come from several
// processes.
func (r *Result) finishSet(ops int64, lat latSet, cpu CPU, harnessCores float64) {
	r.finish(ops, nil, cpu, harnessCores)
	r.Samples = lat.sorted()
	if lat.h != nil {
		r.Latency = lat.h.summary()
	} else {
		r.Latency = summarize(r.Samples)
	}
}

// WriteJSON writes r as one line; latency is absent when nothing was
// timed.
func (r *Result) WriteJSON(w io.Writer) error {
	type plain Result // without methods
	out := struct {
		*plain
		Latency *Percentiles `json:"latency,omitempty"`
	}{plain: (*plain)(r)}
	if r.Latency.N > 0 {
		out.Latency = &r.Latency
	}
	b, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("result json: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// WriteTable writes a human summary of results side by side. The scenario
// and server columns are as wide as their longest entry, so that a server
// named by its address does not push the figures out of line.
func WriteTable(w io.Writer, rs []*Result) {
	sw, vw := len("scenario"), 10
	for _, r := range rs {
		sw, vw = max(sw, len(r.Scenario)), max(vw, len(r.Server))
	}
	fmt.Fprintf(w, "%-*s %-*s %7s %7s %10s %12s %11s %10s %10s %10s %8s %8s\n",
		sw, "scenario", vw, "server", "conns", "errors", "ops", "ops/s", "srv us/op", "p50", "p99", "max", "srv CPU%", "cli CPU%")
	for _, r := range rs {
		p50, p99, pmax := "n/a", "n/a", "n/a"
		if r.Latency.N > 0 {
			p50, p99, pmax = round(r.Latency.P50).String(), round(r.Latency.P99).String(), round(r.Latency.Max).String()
		}
		fmt.Fprintf(w, "%-*s %-*s %7d %7d %10d %12.0f %11s %10s %10s %10s %8s %8.1f\n",
			sw, r.Scenario, vw, r.Server, r.Conns, r.Errors, r.Ops, r.OpsPerS, FormatOrNA(r.CPUPerOp, "%.2f"),
			p50, p99, pmax, FormatOrNA(r.CPU.ServerPct, "%.1f"), r.CPU.HarnessPct)
		if r.Invalid != "" {
			fmt.Fprintf(w, "    INVALID: %s\n", r.Invalid)
		}
		for _, k := range sortedKeys(r.Extra) {
			if tableRepeats[k] {
				continue
			}
			fmt.Fprintf(w, "    %s: %s\n", k, FormatFigure(r.Extra[k]))
		}
		if r.CPU.ServerProcs > 1 || r.CPU.ServerProcsGone > 0 || r.CPU.HarnessProcs > 1 {
			fmt.Fprintf(w, "    processes: server %d (%d gone during the run), harness %d\n",
				r.CPU.ServerProcs, r.CPU.ServerProcsGone, r.CPU.HarnessProcs)
		}
		if r.Pace != "" {
			fmt.Fprintf(w, "    pace: %s\n", r.Pace)
		}
	}
}

// tableRepeats are the extra figures WriteTable leaves out because the
// table already shows them under another name: the millisecond copies of
// a summary line ("tick_p99: p50 … max …") and the idle CPU of the srv
// CPU% column. The JSON keeps them (compare and scale read them).
var tableRepeats = map[string]bool{
	"tick_p50_ms": true, "tick_p99_ms": true, "tick_p99_max_ms": true,
	"tick_last_delivery_max_ms": true,
	"last_delivery_p50_ms":      true, "last_delivery_p99_ms": true,
	"server_idle_cpu_pct": true,
}

// Goroutine-safe. FormatFigure formats a figure for people: a float with at most three
// decimals, or three significant digits below 1, and no trailing zeros (35,
// not 34.99999999999999; 0.492, not 0.492022), anything else as %v.
func FormatFigure(v any) string {
	switch f := v.(type) {
	case float64:
		if math.Abs(f) < 1 {
			return strconv.FormatFloat(f, 'g', 3, 64) // 0.0004 stays 0.0004
		}
		return strconv.FormatFloat(math.Round(f*1000)/1000, 'f', -1, 64)
	case float32:
		return FormatFigure(float64(f))
	}
	return fmt.Sprint(v)
}

// FormatOrNA formats a measured figure, or "n/a" for one not measured.
func FormatOrNA(p *float64, format string) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *p)
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Progress reports the long phases of a run.
type Progress interface {
	// Phase starts a counted phase: Set's done counts toward total (the
	// connections opened of those asked for).
	Phase(name string, total int64) ProgressBar
	// Timed starts a phase that lasts d: Set's done is the elapsed
	// milliseconds and ops the operations completed so far (messages
	// echoed, deliveries, upgrades), so the bar can show their rate.
	Timed(name string, d time.Duration) ProgressBar
}

// ProgressBar is one phase's bar; Set is goroutine-safe.
type ProgressBar interface {
	Set(done, ops, errs int64)
	Done()
}

type noProgress struct{}

func (noProgress) Phase(string, int64) ProgressBar         { return noProgress{} }
func (noProgress) Timed(string, time.Duration) ProgressBar { return noProgress{} }
func (noProgress) Set(int64, int64, int64)                 {}
func (noProgress) Done()                                   {}

func orNoProgress(p Progress) Progress {
	if p == nil {
		return noProgress{}
	}
	return p
}
