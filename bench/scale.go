package bench

import (
	"fmt"
	"io"
	"strings"
)

// WriteScale prints the scaling table of a sweep (tornago-bench scale):
// per scenario, one row per server in the order first run (tornago-loops1,
// tornago-loops2, ...), with the median over its runs of throughput,
// server CPU per operation (per delivered message for push and broadcast),
// p50 and p99 latency, and their ratios to the first row's.
func WriteScale(w io.Writer, rs []*Result) {
	var scenarios []string
	by := map[string]map[string][]*Result{}
	order := map[string][]string{}
	for _, r := range rs {
		if by[r.Scenario] == nil {
			scenarios = append(scenarios, r.Scenario)
			by[r.Scenario] = map[string][]*Result{}
		}
		if by[r.Scenario][r.Server] == nil {
			order[r.Scenario] = append(order[r.Scenario], r.Server)
		}
		by[r.Scenario][r.Server] = append(by[r.Scenario][r.Server], r)
	}
	ops := func(r *Result) (float64, bool) { return r.OpsPerS, true }
	perOp := func(r *Result) (float64, bool) {
		if r.CPUPerOp == nil {
			return 0, false
		}
		return *r.CPUPerOp, true
	}
	p50 := func(r *Result) (float64, bool) { return ms(r.Latency.P50), r.Latency.N > 0 }
	p99 := func(r *Result) (float64, bool) { return ms(r.Latency.P99), r.Latency.N > 0 }
	srvPct := func(r *Result) (float64, bool) {
		if r.CPU.ServerPct == nil {
			return 0, false
		}
		return *r.CPU.ServerPct, true
	}
	cliPct := func(r *Result) (float64, bool) { return r.CPU.HarnessPct, true }
	extra := extraFigure
	if len(rs) > 0 {
		m := rs[0].Machine
		fmt.Fprintf(w, "\nscaling on %d cores (GOMAXPROCS %d), kernel %s, %s\n", m.Cores, m.GOMAXPROCS, m.Kernel, m.GoVersion)
	}
	for _, sc := range scenarios {
		names := order[sc]
		ref := by[sc][names[0]]
		// The scenario's own worst-case figure: a tick's or a broadcast's
		// time to reach its last client.
		tailName, tail := "", func(*Result) (float64, bool) { return 0, false }
		switch sc {
		case "push":
			tailName, tail = "tick p99 ms", extra("tick_p99_ms")
		case "broadcast":
			tailName, tail = "last dlv p99", extra("last_delivery_p99_ms")
		}
		fmt.Fprintf(w, "\n%s: median of %d run(s) per server; (x) = ratio to %s\n", sc, len(ref), names[0])
		fmt.Fprintf(w, "%-22s %7s %11s %6s %10s %6s %9s %9s %6s %12s %8s %8s %6s %7s %5s\n",
			"server", "conns", "ops/s", "(x)", "us/op", "(x)", "p50 ms", "p99 ms", "(x)", tailName, "srv CPU%", "cli CPU%", "procs", "missed", "dup")
		for _, n := range names {
			runs := by[sc][n]
			cell := func(get func(*Result) (float64, bool), format string) string {
				st := spread(runs, get)
				if st.n == 0 {
					return "n/a"
				}
				return fmt.Sprintf(format, st.med)
			}
			ratio := func(get func(*Result) (float64, bool)) string {
				a, b := spread(runs, get), spread(ref, get)
				if a.n == 0 || b.n == 0 || b.med == 0 {
					return "-"
				}
				return fmt.Sprintf("%.2f", a.med/b.med)
			}
			r0 := runs[0]
			fmt.Fprintf(w, "%-22s %7d %11s %6s %10s %6s %9s %9s %6s %12s %8s %8s %6d %7s %5s\n",
				n, r0.Conns, cell(ops, "%.0f"), ratio(ops), cell(perOp, "%.2f"), ratio(perOp),
				cell(p50, "%.2f"), cell(p99, "%.2f"), ratio(p99), cell(tail, "%.1f"),
				cell(srvPct, "%.0f"), cell(cliPct, "%.0f"), r0.CPU.ServerProcs,
				cell(extra("missed"), "%.0f"), cell(extra("duplicated"), "%.0f"))
			var notes []string
			for _, r := range runs {
				if r.Invalid != "" {
					notes = append(notes, "INVALID: "+r.Invalid)
				}
				if r.Pace != "" && !strings.HasPrefix(r.Pace, "neither") {
					notes = append(notes, "pace: "+r.Pace)
				}
				if v, ok := r.Extra["keeps_up"].(bool); ok && !v {
					notes = append(notes, fmt.Sprintf("ticks late: %v", r.Extra["ticks_late"]))
				}
			}
			for _, note := range dedupe(notes) {
				fmt.Fprintf(w, "    %s\n", note)
			}
		}
	}
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
