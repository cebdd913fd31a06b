package bench

import (
	"bytes"
	"strings"
	"testing"
)

// TestWriteTableReadable: a server named by its address keeps the columns
// in line with the header, float figures print without binary noise, and
// a figure the table already shows is not printed again under a second
// name (the JSON keeps every key).
func TestWriteTableReadable(t *testing.T) {
	srv, ticks := 0.35, 10.0 // 0.35 s of CPU over 10 ticks: 35 ms, but not in floats
	perTick := srv / ticks * 1000
	if perTick == 35 {
		t.Fatalf("the figure has no float noise to remove: %v", perTick)
	}
	pct := 12.5
	rs := []*Result{
		{Scenario: "push", Server: "127.0.0.1:21437", Conns: 20, Ops: 40, OpsPerS: 20,
			CPU: CPU{ServerPct: &pct, HarnessPct: 1.25},
			Extra: map[string]any{"server_cpu_per_tick_ms": perTick, "tick_p99_ms": 0.401838,
				"tick_p99": "p50 402µs p99 402µs p99.9 402µs max 489µs", "missed": 0}},
		{Scenario: "idle", Server: "gorilla", Conns: 20,
			CPU:   CPU{ServerPct: &pct},
			Extra: map[string]any{"server_idle_cpu_pct": pct, "rss_per_conn_bytes": 409.6}},
	}
	var b bytes.Buffer
	WriteTable(&b, rs)
	out := b.String()
	t.Logf("\n%s", out)
	lines := strings.Split(out, "\n")
	header := lines[0]
	col := strings.Index(header, "ops/s") + len("ops/s")
	for _, l := range lines[1:] {
		if l == "" || strings.HasPrefix(l, " ") {
			continue
		}
		// The ops/s column is right-aligned: its last digit ends where
		// the header's "ops/s" does.
		if len(l) < col || l[col-1] == ' ' || col < len(l) && l[col] != ' ' {
			t.Errorf("row out of line with the header:\n%s\n%s", header, l)
		}
	}
	for _, bad := range []string{"34.9999", "tick_p99_ms", "server_idle_cpu_pct"} {
		if strings.Contains(out, bad) {
			t.Errorf("table shows %q:\n%s", bad, out)
		}
	}
	for _, want := range []string{"server_cpu_per_tick_ms: 35\n", "rss_per_conn_bytes: 409.6\n", "tick_p99: p50 402µs", "missed: 0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	var j bytes.Buffer
	if err := rs[0].WriteJSON(&j); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(j.String(), `"tick_p99_ms":0.401838`) {
		t.Errorf("the JSON lost a key: %s", j.String())
	}
}

func TestFormatFigure(t *testing.T) {
	for v, want := range map[any]string{34.99999999999999: "35", 0.492022: "0.492", 409.6: "409.6",
		1e7: "10000000", int64(7): "7", true: "true", "p50 1ms": "p50 1ms", 0.0004: "0.0004", 0.1987122048206577: "0.199"} {
		if got := FormatFigure(v); got != want {
			t.Errorf("FormatFigure(%v) = %q, want %q", v, got, want)
		}
	}
}
