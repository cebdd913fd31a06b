package bench

import (
	"encoding/json"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// benchBinary is cmd/tornago-bench, built once per test run (beside the
// servers' binaries): the children of a spread scenario are its
// scenario-child.
func benchBinary(t *testing.T) string {
	t.Helper()
	bin, err := build(moduleRoot(t), "./cmd/tornago-bench", "tornago-bench", &syncWriter{})
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// spreadOver is a SpreadOptions forcing children of at most per
// connections each.
func spreadOver(t *testing.T, per int) SpreadOptions {
	bin := benchBinary(t)
	return SpreadOptions{MaxPerProc: per, Command: func() *exec.Cmd { return exec.Command(bin, "scenario-child") }}
}

// TestSpreadOverChildren: with a cap of 50 connections per process, push,
// broadcast, echo and handshake run in 2-3 children, and the merged
// figures count every client once: nothing missed or duplicated, every
// expected delivery made, the children's CPU in the harness's.
func TestSpreadOverChildren(t *testing.T) {
	s := startServer(t, "tornago", 18745)
	open := OpenOptions{Rate: 1000}

	r, err := Push(PushOptions{URL: s.URL("/clock"), Conns: 120, Duration: 2500 * time.Millisecond, PID: s.PID, Open: open, Spread: spreadOver(t, 50)})
	checkRun(t, r, err, 120)
	if r.CPU.HarnessProcs != 4 || !strings.Contains(r.Client, "x 3 processes") {
		t.Fatalf("push: harness processes %d, client %q; want 3 children", r.CPU.HarnessProcs, r.Client)
	}
	ticks := r.Extra["ticks"].(int64)
	if r.Extra["missed"].(int64) != 0 || r.Extra["duplicated"].(int64) != 0 || ticks < 2 || r.Extra["clock_sources"].(int) != 1 {
		t.Fatalf("push: %v", r.Extra)
	}
	if want := 120 * ticks; r.Ops != want || r.Extra["expected"].(int64) != want || int64(r.Latency.N) != want {
		t.Fatalf("push delivered %d (latencies %d), want %d", r.Ops, r.Latency.N, want)
	}
	if r.Extra["keeps_up"] != true || r.Extra["tick_p99_ms"].(float64) <= 0 {
		t.Fatalf("push ticks: %v", r.Extra)
	}

	r, err = Broadcast(BroadcastOptions{URL: s.URL("/ws"), Conns: 120, Duration: time.Second, PID: s.PID, Open: open, Spread: spreadOver(t, 50)})
	checkRun(t, r, err, 120)
	if r.CPU.HarnessProcs != 4 || r.Extra["missed"].(int64) != 0 || r.Extra["duplicated"].(int64) != 0 ||
		r.Extra["broadcasts"].(int) < 2 || r.Extra["stalled_windows"].(int64) != 0 || r.Extra["last_delivery_p99_ms"].(float64) <= 0 {
		t.Fatalf("broadcast: procs %d extra %v", r.CPU.HarnessProcs, r.Extra)
	}
	// Every broadcast sent while measuring reached all 120 clients.
	if b := int64(r.Extra["broadcasts"].(int)); r.Ops > 120*b || r.Ops < 120*(b-int64(r.Extra["window"].(int))) {
		t.Fatalf("broadcast: %d deliveries for %d broadcasts to 120", r.Ops, b)
	}

	r, err = Echo(EchoOptions{URL: s.URL("/echo"), Conns: 60, Duration: time.Second, PID: s.PID, Open: open, Spread: spreadOver(t, 25)})
	checkRun(t, r, err, 60)
	if r.CPU.HarnessProcs != 4 || int64(r.Latency.N) < r.Ops {
		t.Fatalf("echo: procs %d, %d echoes, %d latencies", r.CPU.HarnessProcs, r.Ops, r.Latency.N)
	}

	sp := spreadOver(t, 50)
	sp.Procs = 2
	r, err = Handshake(HandshakeOptions{URL: s.URL("/echo"), Workers: 4, Duration: 500 * time.Millisecond, PID: s.PID, Spread: sp})
	checkRun(t, r, err, 4)
	if r.CPU.HarnessProcs != 3 {
		t.Fatalf("handshake: procs %d", r.CPU.HarnessProcs)
	}
}

// TestSpreadChildFailsLoudly: a child that dies before it is ready makes
// the run fail with an error naming it, not hang.
func TestSpreadChildFailsLoudly(t *testing.T) {
	sp := SpreadOptions{MaxPerProc: 5, Command: func() *exec.Cmd { return exec.Command("/bin/sh", "-c", "exit 3") }}
	_, err := Push(PushOptions{URL: "ws://127.0.0.1:1/clock", Conns: 10, Duration: time.Second, Spread: sp})
	// It may die before reading its spec or after.
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("err = %v", err)
	}
}

// TestHist: percentiles read from a histogram stay within its 1.6%
// resolution of the exact ones; merging and a JSON round trip keep them.
func TestHist(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var a, b []time.Duration
	for i := 0; i < 20000; i++ {
		a = append(a, time.Duration(rng.ExpFloat64()*float64(2*time.Millisecond)))
		b = append(b, time.Duration(50*time.Microsecond)+time.Duration(rng.IntN(int(40*time.Millisecond))))
	}
	exact := summarize(sortDur(append(append([]time.Duration{}, a...), b...)))
	ja, _ := json.Marshal(rawSet(a))
	var back latSet
	if err := json.Unmarshal(ja, &back); err != nil {
		t.Fatal(err)
	}
	got := mergeLat(back, rawSet(b)).summary()
	near := func(name string, g, w time.Duration) {
		if d := float64(g-w) / float64(w); d > 1.0/histSub || d < -1.0/histSub {
			t.Errorf("%s = %v, exact %v", name, g, w)
		}
	}
	if got.N != exact.N || got.Max != exact.Max {
		t.Fatalf("n %d max %v, want %d %v", got.N, got.Max, exact.N, exact.Max)
	}
	near("p50", got.P50, exact.P50)
	near("p99", got.P99, exact.P99)
	near("p99.9", got.P999, exact.P999)
	for _, v := range []int64{0, 1, 63, 64, 127, 128, 1000, 1 << 40} {
		if hv := histValue(histBucket(v)); float64(hv-v) > float64(v)/histSub+1 || hv < v-int64(float64(v)/histSub)-1 {
			t.Errorf("bucket of %d is worth %d", v, hv)
		}
	}
	if raw := mergeLat(rawSet(a), rawSet(b)); raw.h != nil || raw.summary() != exact {
		t.Errorf("raw samples of one process are not kept exact")
	}
}

// TestMergePushClocks: two clocks (two loops, each its own seq; one
// restarted at seq 1), clients spread over two processes: each client is
// expected to get every tick of its own clock, a missing one is missed, a
// second copy a duplicate, and a tick delivered after the next started is
// late.
func TestMergePushClocks(t *testing.T) {
	const s = int64(time.Second)
	base := int64(1_700_000_000) * s
	lat := func(ms ...int) latSet {
		var l []time.Duration
		for _, m := range ms {
			l = append(l, time.Duration(m)*time.Millisecond)
		}
		return rawSet(sortDur(l))
	}
	// Clock A ticks at base, base+1s, base+2s; clock B (restarted: seq 1,
	// 2) at base+0.5s, base+1.5s.
	a0, a1, a2, b0, b1 := base, base+s, base+2*s, base+s/2, base+3*s/2
	p1 := pushPart{
		Ticks: map[int64]pushTick{a0: {1, lat(1, 2)}, a1: {2, lat(1, 1)}, a2: {3, lat(2, 1200)}, b0: {1, lat(3)}},
		// two A clients got everything, one B client missed b1.
		Groups: []pushGroup{{Ticks: []int64{a0, a1, a2}, Conns: 2, Distinct: 6}, {Ticks: []int64{b0}, Conns: 1, Distinct: 1}},
		Silent: 1,
	}
	p2 := pushPart{
		Ticks:  map[int64]pushTick{b0: {1, lat(4, 4)}, b1: {2, lat(5)}, a1: {2, lat(7)}},
		Groups: []pushGroup{{Ticks: []int64{b0, b1}, Conns: 1, Distinct: 2, Dups: 1}, {Ticks: []int64{a1}, Conns: 1, Distinct: 1}},
	}
	m := mergePush([]pushPart{p1, p2})
	if m.sources != 2 || len(m.ticks) != 5 {
		t.Fatalf("sources %d ticks %d, want 2 clocks, 5 ticks", m.sources, len(m.ticks))
	}
	// A: 3 clients x 3 ticks; B: 2 clients x 2 ticks; the silent client
	// misses the largest clock's 3.
	if m.expected != 9+4+3 || m.distinct != 10 || m.missed != 6 || m.dups != 1 {
		t.Fatalf("expected %d distinct %d missed %d dups %d", m.expected, m.distinct, m.missed, m.dups)
	}
	if m.late != 1 || m.last.Max != 1200*time.Millisecond {
		t.Fatalf("late %d last %v: the 1.2 s tick ran into the next", m.late, m.last)
	}
	if m.lat.count() != 11 {
		t.Fatalf("latencies %d, want 11 (10 first deliveries, 1 duplicate)", m.lat.count())
	}
}
