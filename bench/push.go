package bench

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// PushOptions configures the push scenario.
type PushOptions struct {
	// URL is a route that pushes {"ts": UnixNano, "seq": N} to every client
	// on each tick, like Tornago's /clock.
	URL      string
	Conns    int           // N, default 1000
	Duration time.Duration // measured window after all are connected, default 10s
	PID      int
	Open     OpenOptions
	Spread   SpreadOptions
	Progress Progress
}

// jsonInt finds "key": <int> in a flat JSON object without allocating.
func jsonInt(data []byte, key string) (int64, bool) {
	i := bytes.Index(data, []byte(`"`+key+`":`))
	if i < 0 {
		return 0, false
	}
	j := i + len(key) + 3
	for j < len(data) && data[j] == ' ' {
		j++
	}
	k := j
	for k < len(data) && data[k] >= '0' && data[k] <= '9' {
		k++
	}
	v, err := strconv.ParseInt(string(data[j:k]), 10, 64)
	return v, err == nil
}

// A tick is known by its ts: every client of one clock gets the same
// message. Servers with several clocks (tornago -loops or -procs may run
// one per loop or process, each with its own seq, and a restarted child
// starts again at seq 1) are told apart without knowing them: ticks that
// reached a common client are of one clock. A client is expected to get
// every tick of its clock that started inside the measured window.

// pushPart is one process's share of a push run.
type pushPart struct {
	Ticks  map[int64]pushTick `json:"ticks"` // by ts
	Groups []pushGroup        `json:"groups"`
	Silent int                `json:"silent"` // live clients that got no tick in the window
	Bad    int64              `json:"bad"`    // unparsable messages
	Conn   connStats          `json:"conn"`
}

// pushTick is one tick's deliveries.
type pushTick struct {
	Seq int64  `json:"seq"`
	Lat latSet `json:"lat"`
}

// pushGroup is the clients of one process that share a clock.
type pushGroup struct {
	Ticks    []int64 `json:"ticks"` // every ts any of them got
	Conns    int     `json:"conns"`
	Distinct int64   `json:"distinct"` // (client, tick) pairs delivered
	Dups     int64   `json:"dups"`     // deliveries beyond the first
}

// Push connects N clients to a pushing route and measures, over the ticks
// that started while measuring, each delivery's latency (receive time -
// ts), each tick's latency percentiles and time to its last delivery,
// whether ticks keep up (a tick still being delivered when the next one
// starts), and the messages missed or duplicated per client.
func Push(o PushOptions) (*Result, error) {
	if o.Conns <= 0 {
		o.Conns = 1000
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if err := CheckPID(o.PID, o.URL); err != nil {
		return nil, &InvalidError{"push", err.Error()}
	}
	p := orNoProgress(o.Progress)
	spec := childSpec{Scenario: "push", URL: o.URL, Conns: o.Conns, Open: o.Open, Client: ClientKind}
	ss, err := openSides(spec, o.Spread, func(event) {}, p.Phase("connect", int64(o.Conns)))
	if err != nil {
		return nil, err
	}
	defer closeSides(ss)
	info := mergeOpen(ss)
	res := &Result{Scenario: "push", URL: o.URL, Client: clientName(len(ss)), Conns: info.Opened}
	if err := invalidate(res, info.check()); err != nil {
		res.Errors = info.Errors
		return res, err
	}
	time.Sleep(100 * time.Millisecond)
	m := startCPU(o.PID, childPIDs(ss)...)
	if err := startSides(ss, time.Now().UnixNano()); err != nil {
		return res, err
	}
	bar := p.Timed("push", o.Duration)
	for t0 := time.Now(); time.Since(t0) < o.Duration; time.Sleep(100 * time.Millisecond) {
		bar.Set(int64(time.Since(t0)/time.Millisecond), localOps(ss), 0)
	}
	err = stopSides(ss, time.Now().UnixNano())
	cpu := m.stop()
	bar.Done()
	if err != nil {
		return res, err
	}
	parts, err := collectSides[pushPart](ss)
	if err != nil {
		return res, err
	}
	a := mergePush(parts)
	st := a.conn
	res.Errors = st.Errors + st.Closed + a.bad
	res.finishSet(a.distinct, a.lat, cpu, spreadCores(len(ss)))
	res.Extra = map[string]any{"ticks": int64(len(a.ticks)), "missed": a.missed, "duplicated": a.dups,
		"expected": a.expected, "clock_sources": a.sources,
		"tick_last_delivery": a.last.String(), "tick_p50": a.p50.String(), "tick_p99": a.p99.String(),
		"tick_p50_ms": ms(a.p50.P50), "tick_p99_ms": ms(a.p99.P50), "tick_p99_max_ms": ms(a.p99.Max),
		"tick_last_delivery_max_ms": ms(a.last.Max), "ticks_late": a.late, "keeps_up": a.late == 0,
		"connect": info.Connect.summary().String()}
	if a.silent > 0 {
		res.Extra["silent_conns"] = a.silent
	}
	if st.LastError != "" {
		res.Extra["last_error"] = st.LastError
	}
	// Pushes come in bursts, so average CPU says little: compare each
	// side's CPU per tick with the time a tick takes to reach everyone.
	if nt := float64(len(a.ticks)) / float64(max(a.sources, 1)); nt > 0 && cpu.Server != nil {
		srv, cli := *cpu.Server/nt, cpu.Harness/nt/spreadCores(len(ss))
		spread := a.last.P50.Seconds()
		res.Extra["server_cpu_per_tick_ms"] = srv * 1000
		res.Extra["harness_cpu_per_tick_ms"] = cli * 1000
		switch {
		case spread <= 0:
		case srv >= 0.6*spread && srv >= cli:
			res.Pace = "server (its CPU per tick is most of the tick's delivery spread)"
		case cli >= 0.6*spread:
			res.Pace = "client (its CPU per tick is most of the tick's delivery spread)"
		default:
			res.Pace = "neither (delivery spread well above either side's CPU per tick)"
		}
	}
	var none error
	if a.distinct == 0 {
		none = fmt.Errorf("no tick delivered (is %s a pushing route?)%s", o.URL, lastErr(st.LastError))
	}
	return res, invalidate(res, aliveCheck(o.PID), none,
		tooMany("connections (closed during the run)", st.Closed, int64(res.Conns), st.LastError),
		tooMany("deliveries (missed)", a.missed, a.expected, st.LastError),
		tooMany("messages (unparsable)", a.bad, a.distinct+a.bad, st.LastError))
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// pushTotals are the merged figures of every process.
type pushTotals struct {
	ticks                 map[int64]pushTick
	lat                   latSet
	distinct, dups, bad   int64
	expected, missed      int64
	sources, silent, late int
	last, p50, p99        Percentiles // over ticks: time to last delivery, p50, p99
	conn                  connStats
}

// mergePush joins the processes' ticks, finds the clocks (ticks that
// reached a common client), and counts each client's expected ticks as
// all the ticks of its clock.
func mergePush(parts []pushPart) pushTotals {
	a := pushTotals{ticks: map[int64]pushTick{}}
	var cs []connStats
	byTick := map[int64][]latSet{}
	u := unionFind{}
	for _, pt := range parts {
		for ts, t := range pt.Ticks {
			byTick[ts] = append(byTick[ts], t.Lat)
			a.ticks[ts] = pushTick{Seq: t.Seq}
			u.find(ts)
		}
		for _, g := range pt.Groups {
			if len(g.Ticks) == 0 {
				continue
			}
			for _, ts := range g.Ticks[1:] {
				u.union(g.Ticks[0], ts)
			}
		}
		a.silent += pt.Silent
		a.bad += pt.Bad
		cs = append(cs, pt.Conn)
	}
	a.conn = sumStats(cs)
	var all []latSet
	for ts, ls := range byTick {
		t := a.ticks[ts]
		t.Lat = mergeLat(ls...)
		a.ticks[ts] = t
		all = append(all, t.Lat)
	}
	a.lat = mergeLat(all...)
	clocks := map[int64][]int64{} // root -> its ticks
	for ts := range a.ticks {
		r := u.find(ts)
		clocks[r] = append(clocks[r], ts)
	}
	a.sources = len(clocks)
	biggest := 0
	for _, ticks := range clocks {
		biggest = max(biggest, len(ticks))
	}
	for _, pt := range parts {
		for _, g := range pt.Groups {
			if len(g.Ticks) == 0 {
				continue
			}
			n := int64(len(clocks[u.find(g.Ticks[0])]))
			a.expected += int64(g.Conns) * n
			a.distinct += g.Distinct
			a.dups += g.Dups
		}
	}
	a.expected += int64(a.silent) * int64(biggest)
	a.missed = a.expected - a.distinct
	var last, p50, p99 []time.Duration
	for _, ticks := range clocks {
		sort.Slice(ticks, func(i, j int) bool { return ticks[i] < ticks[j] })
		period := time.Second
		if len(ticks) > 1 {
			gaps := make([]time.Duration, 0, len(ticks)-1)
			for i := 1; i < len(ticks); i++ {
				gaps = append(gaps, time.Duration(ticks[i]-ticks[i-1]))
			}
			period = sortDur(gaps)[len(gaps)/2]
		}
		for i, ts := range ticks {
			s := a.ticks[ts].Lat.summary()
			last, p50, p99 = append(last, s.Max), append(p50, s.P50), append(p99, s.P99)
			next := ts + int64(period)
			if i+1 < len(ticks) {
				next = ticks[i+1]
			}
			if ts+int64(s.Max) > next {
				a.late++
			}
		}
	}
	a.last, a.p50, a.p99 = summarize(sortDur(last)), summarize(sortDur(p50)), summarize(sortDur(p99))
	return a
}

// unionFind joins tick timestamps into clocks.
type unionFind map[int64]int64

func (u unionFind) find(x int64) int64 {
	p, ok := u[x]
	if !ok {
		u[x] = x
		return x
	}
	if p == x {
		return x
	}
	r := u.find(p)
	u[x] = r
	return r
}

func (u unionFind) union(a, b int64) {
	ra, rb := u.find(a), u.find(b)
	if ra != rb {
		u[ra] = rb
	}
}

// pushWorker holds one process's push clients.
type pushWorker struct {
	d       driver
	op      *opened
	t0, t1  atomic.Int64 // the window by ts; 0: not started, open-ended
	bad     atomic.Int64
	counted atomic.Int64
	mu      sync.Mutex
	ticks   map[int64]*rawTick
	conns   []*pushConn
}

type rawTick struct {
	seq int64
	lat []time.Duration
}

type pushConn struct {
	mu   sync.Mutex
	seen map[int64]uint8 // by ts
}

func newPushWorker(spec childSpec, bar ProgressBar) (*pushWorker, openInfo) {
	w := &pushWorker{d: newDriver(), ticks: map[int64]*rawTick{}, conns: make([]*pushConn, spec.Conns)}
	for i := range w.conns {
		w.conns[i] = &pushConn{seen: map[int64]uint8{}}
	}
	w.op = openConns(w.d, spec.URL, spec.Conns, spec.Open, func(i int) handler {
		st := w.conns[i]
		return handler{onMessage: func(c conn, data []byte) {
			now := time.Now().UnixNano()
			ts, ok1 := jsonInt(data, "ts")
			seq, ok2 := jsonInt(data, "seq")
			if !ok1 || !ok2 {
				w.bad.Add(1)
				return
			}
			if t0, t1 := w.t0.Load(), w.t1.Load(); t0 == 0 || ts < t0 || (t1 > 0 && ts > t1) {
				return
			}
			w.mu.Lock()
			t := w.ticks[ts]
			if t == nil {
				t = &rawTick{seq: seq}
				w.ticks[ts] = t
			}
			t.lat = append(t.lat, time.Duration(now-ts))
			w.mu.Unlock()
			st.mu.Lock()
			st.seen[ts]++
			st.mu.Unlock()
			w.counted.Add(1)
		}}
	}, bar)
	return w, infoOf(spec.Conns, w.op)
}

func (w *pushWorker) start(t0 int64) { w.t0.Store(t0) }

func (w *pushWorker) stop(t1 int64) { w.t1.Store(t1) }

func (w *pushWorker) progress() int64 { return w.counted.Load() }

func (w *pushWorker) result() any {
	settle(w.counted.Load)
	pt := pushPart{Ticks: map[int64]pushTick{}, Bad: w.bad.Load(), Conn: statsOf(w.op)}
	w.mu.Lock()
	for ts, t := range w.ticks {
		pt.Ticks[ts] = pushTick{Seq: t.seq, Lat: rawSet(sortDur(t.lat))}
	}
	w.mu.Unlock()
	u := unionFind{}
	var seen []map[int64]uint8
	for i, c := range w.op.conns {
		if c == nil {
			continue
		}
		st := w.conns[i]
		st.mu.Lock()
		s := make(map[int64]uint8, len(st.seen))
		for ts, n := range st.seen {
			s[ts] = n
		}
		st.mu.Unlock()
		if len(s) == 0 {
			pt.Silent++
			continue
		}
		var first int64
		for ts := range s {
			if first == 0 {
				first = ts
			}
			u.union(first, ts)
		}
		seen = append(seen, s)
	}
	groups := map[int64]*pushGroup{}
	for _, s := range seen {
		var g *pushGroup
		for ts, n := range s {
			if g == nil {
				r := u.find(ts)
				if g = groups[r]; g == nil {
					g = &pushGroup{}
					groups[r] = g
				}
				g.Conns++
			}
			g.Distinct++
			g.Dups += int64(n - 1)
		}
	}
	for ts := range pt.Ticks {
		if g := groups[u.find(ts)]; g != nil {
			g.Ticks = append(g.Ticks, ts)
		}
	}
	for _, g := range groups {
		pt.Groups = append(pt.Groups, *g)
	}
	return pt
}

func (w *pushWorker) close() {
	w.op.closeAll()
	w.d.Stop()
}

// settle waits for the stragglers of a measured phase: at least 500 ms,
// then until count has not moved for 300 ms (at most 10 s).
func settle(count func() int64) {
	time.Sleep(500 * time.Millisecond)
	last, quiet := count(), time.Now()
	for t0 := time.Now(); time.Since(t0) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
		if c := count(); c != last {
			last, quiet = c, time.Now()
		} else if time.Since(quiet) >= 300*time.Millisecond {
			return
		}
	}
}

func sortDur(s []time.Duration) []time.Duration {
	l := latencies{s: s}
	return l.sorted()
}
