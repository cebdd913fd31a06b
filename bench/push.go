package bench

import (
	"bytes"
	"fmt"
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

type pushConn struct {
	mu   sync.Mutex
	seen map[int64]uint8
}

// Push connects N clients to a pushing route and measures, over the ticks
// that started after every client was connected, each delivery's latency
// (receive time - ts), and the messages missed or duplicated per client.
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
	d := newDriver()
	defer d.Stop()
	var base, maxSeq, stop atomic.Int64
	base.Store(1 << 62)
	var bad, received atomic.Int64
	var lat latencies
	var tickMu sync.Mutex
	tickMax := map[int64]time.Duration{}
	states := make([]*pushConn, o.Conns)
	for i := range states {
		states[i] = &pushConn{seen: map[int64]uint8{}}
	}
	op := openConns(d, o.URL, o.Conns, o.Open, func(i int) handler {
		st := states[i]
		return handler{onMessage: func(c conn, data []byte) {
			now := time.Now().UnixNano()
			ts, ok1 := jsonInt(data, "ts")
			seq, ok2 := jsonInt(data, "seq")
			if !ok1 || !ok2 {
				bad.Add(1)
				return
			}
			for m := maxSeq.Load(); seq > m && !maxSeq.CompareAndSwap(m, seq); m = maxSeq.Load() {
			}
			if seq < base.Load() || (stop.Load() > 0 && seq > stop.Load()) {
				return
			}
			l := time.Duration(now - ts)
			lat.add(l)
			received.Add(1)
			tickMu.Lock()
			if l > tickMax[seq] {
				tickMax[seq] = l
			}
			tickMu.Unlock()
			st.mu.Lock()
			st.seen[seq]++
			st.mu.Unlock()
		}}
	}, p.Phase("connect", int64(o.Conns)))
	res := &Result{Scenario: "push", URL: o.URL, Client: d.Name(), Conns: len(op.live())}
	if err := invalidate(res, openCheck(o.Conns, op)); err != nil {
		op.closeAll()
		res.Errors = op.errs.Load()
		return res, err
	}
	time.Sleep(100 * time.Millisecond)
	// The first tick counted is the one after the newest seen now; wait
	// for one tick if nothing arrived yet.
	for t0 := time.Now(); maxSeq.Load() == 0 && time.Since(t0) < 5*time.Second; {
		time.Sleep(10 * time.Millisecond)
	}
	s0 := maxSeq.Load() + 1
	base.Store(s0)
	m := startCPU(o.PID)
	bar := p.Timed("push", o.Duration)
	for t0 := time.Now(); time.Since(t0) < o.Duration; time.Sleep(100 * time.Millisecond) {
		bar.Set(int64(time.Since(t0)/time.Millisecond), received.Load(), op.errs.Load()+op.closed.Load())
	}
	bar.Done()
	cpu := m.stop()
	s1 := maxSeq.Load()
	stop.Store(s1)
	time.Sleep(500 * time.Millisecond) // the last tick's stragglers
	var missed, dup, delivered int64
	live := op.live()
	for i, c := range op.conns {
		if c == nil {
			continue
		}
		st := states[i]
		st.mu.Lock()
		for s := s0; s <= s1; s++ {
			switch n := st.seen[s]; {
			case n == 0:
				missed++
			case n > 1:
				dup += int64(n - 1)
			}
			delivered += int64(min(st.seen[s], 1))
		}
		st.mu.Unlock()
	}
	op.closeAll()
	all := lat.sorted()
	res.Errors = op.errs.Load() + op.closed.Load() + bad.Load()
	res.finish(delivered, all, cpu, harnessCores())
	var ticks []time.Duration
	tickMu.Lock()
	for s := s0; s <= s1; s++ {
		ticks = append(ticks, tickMax[s])
	}
	tickMu.Unlock()
	tp := summarize(sortDur(ticks))
	res.Extra = map[string]any{"ticks": s1 - s0 + 1, "missed": missed, "duplicated": dup,
		"expected":           int64(len(live)) * (s1 - s0 + 1),
		"tick_last_delivery": tp.String(), "connect": summarize(op.lat.sorted()).String()}
	last, _ := op.lastErr.Load().(string)
	if last != "" {
		res.Extra["last_error"] = last
	}
	// Pushes come in bursts, so average CPU says little: compare each
	// side's CPU per tick with the time a tick takes to reach everyone.
	if nt := float64(s1 - s0 + 1); nt > 0 && cpu.Server != nil {
		srv, cli := *cpu.Server/nt, cpu.Harness/nt/harnessCores()
		spread := tp.P50.Seconds()
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
	expected := int64(len(live)) * (s1 - s0 + 1)
	var none error
	if delivered == 0 {
		none = fmt.Errorf("no tick delivered (is %s a pushing route?)%s", o.URL, lastErr(last))
	}
	return res, invalidate(res, aliveCheck(o.PID), none,
		tooMany("connections (closed during the run)", op.closed.Load(), int64(res.Conns), last),
		tooMany("deliveries (missed)", missed, expected, last),
		tooMany("messages (unparsable)", bad.Load(), delivered+bad.Load(), last))
}

func sortDur(s []time.Duration) []time.Duration {
	l := latencies{s: s}
	return l.sorted()
}
