package bench

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestServerVariant(t *testing.T) {
	for _, tc := range []struct {
		name, base string
		args       []string
		bad        bool
	}{
		{"tornago", "tornago", nil, false},
		{"gorilla", "gorilla", nil, false},
		{"tornago-loops4", "tornago", []string{"-loops", "4"}, false},
		{"tornago-procs0", "tornago", []string{"-procs", "0"}, false},
		{"tornago-procs2-loops8", "tornago", []string{"-procs", "2", "-loops", "8"}, false},
		{"tornago-mount", "tornago", []string{"-mount"}, false},
		{"tornago-mount-loops2", "tornago", []string{"-mount", "-loops", "2"}, false},
		{"tornago-loopsx", "", nil, true},
		{"tornago-fast", "", nil, true},
	} {
		base, args, err := ServerVariant(tc.name)
		if (err != nil) != tc.bad || base != tc.base || !slices.Equal(args, tc.args) {
			t.Errorf("ServerVariant(%q) = %q %v %v", tc.name, base, args, err)
		}
	}
}

// TestWriteScale: one row per server in the order run, medians over the
// repetitions, ratios to the first server, push's tick p99 and the notes
// of a run that did not keep up.
func TestWriteScale(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	mk := func(srv string, ops, perOp float64, p99 time.Duration, tickP99 float64) *Result {
		return &Result{Scenario: "push", Server: srv, Conns: 19000, OpsPerS: ops, CPUPerOp: f(perOp),
			Latency: Percentiles{N: 10, P50: p99 / 2, P99: p99}, CPU: CPU{ServerPct: f(50), HarnessPct: 30, ServerProcs: 1},
			Extra: map[string]any{"tick_p99_ms": tickP99, "missed": int64(0), "duplicated": int64(0), "keeps_up": true}}
	}
	rs := []*Result{
		mk("tornago-loops1", 19000, 10, 100*time.Millisecond, 90),
		mk("tornago-loops2", 19000, 10.5, 60*time.Millisecond, 50),
		mk("tornago-loops1", 18000, 12, 120*time.Millisecond, 95),
		mk("tornago-loops2", 19000, 11.5, 50*time.Millisecond, 45),
		mk("tornago-loops1", 19000, 11, 110*time.Millisecond, 92),
		mk("tornago-loops2", 17000, 11, 70*time.Millisecond, 55),
	}
	rs[5].Extra["keeps_up"], rs[5].Extra["ticks_late"] = false, 3
	var out strings.Builder
	WriteScale(&out, rs)
	s := out.String()
	lines := strings.Split(s, "\n")
	var l1, l2 string
	for _, l := range lines {
		if strings.HasPrefix(l, "tornago-loops1 ") {
			l1 = l
		}
		if strings.HasPrefix(l, "tornago-loops2 ") {
			l2 = l
		}
	}
	// loops1: median us/op 11, p99 110 ms; loops2: 11 (1.00x), 60 ms (0.55x).
	for _, want := range []string{"11.00", "1.00", "110.00", "92.0"} {
		if !strings.Contains(l1, want) {
			t.Errorf("loops1 row lacks %q: %q", want, l1)
		}
	}
	for _, want := range []string{"11.00", "60.00", "0.55", "50.0"} {
		if !strings.Contains(l2, want) {
			t.Errorf("loops2 row lacks %q: %q", want, l2)
		}
	}
	if !strings.Contains(s, "push: median of 3 run(s) per server; (x) = ratio to tornago-loops1") || !strings.Contains(s, "ticks late: 3") {
		t.Errorf("table:\n%s", s)
	}
}

func TestServerTree(t *testing.T) {
	for _, tc := range []struct{ name, server, tree, label string }{
		{"tornago", "tornago", "", "tornago"},
		{"tornago@/work/baseline", "tornago", "/work/baseline", "tornago@baseline"},
		{"tornago-loops2@/work/baseline/", "tornago-loops2", "/work/baseline", "tornago-loops2@baseline"},
		{"gorilla@", "gorilla", "", "gorilla"},
	} {
		server, tree, label := ServerTree(tc.name)
		if server != tc.server || tree != tc.tree || label != tc.label {
			t.Errorf("ServerTree(%q) = %q %q %q, want %q %q %q", tc.name, server, tree, label, tc.server, tc.tree, tc.label)
		}
	}
}
