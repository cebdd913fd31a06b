// Package bench is Tornago's load harness: scenarios that work against any
// RFC 6455 server and report the server's memory and CPU from /proc next to
// the harness's own CPU.
package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// IdleOptions configures the idle scenario.
type IdleOptions struct {
	URL string // any WebSocket route that keeps the connection open
	// Transport is what each idle client holds (IdleTransports): "" or
	// "ws", a WebSocket on URL; "sse", a GET /sse stream; "long-poll", a
	// POST /update-message parked after the chat's head (polled again
	// when the server's timeout answers it). For the last two URL names
	// the server (http://host:port) and every connection is held in this
	// process (at most MaxPerProc).
	Transport string
	Conns     int // N, default 1000
	PID       int // server PID: RSS, threads and CPU from /proc, summed over its process tree
	// Steps are intermediate connection counts at which RSS is recorded
	// (e.g. 2000,5000,10000); N is always the last step.
	Steps []int
	// Hold is how long connections are held idle for the CPU reading.
	// Hold > the server's ping interval (25 s for Tornago) includes the
	// keep-alive pings, which the client answers. Default 10s.
	Hold time.Duration
	// MaxPerProc is how many connections one process opens (open-file cap
	// 20,000 here); the rest go to child processes started with
	// ChildCommand. Default 19000.
	MaxPerProc int
	// ChildCommand builds the command of a child process opening n
	// connections from source addresses starting at srcBase; nil = this
	// executable with "idle-child" arguments (cmd/tornago-bench).
	ChildCommand func(n, srcBase int) *exec.Cmd
	Open         OpenOptions
	Progress     Progress
	// RSS reads the server's resident set in bytes; nil sums
	// /proc/*/status over the PID's process tree. Tests inject one to play a shrinking server.
	RSS func(pid int) int64
}

// IdleStep is the server's RSS at a connection count.
type IdleStep struct {
	Conns        int      `json:"conns"`
	RSS          int64    `json:"rss_bytes"`
	BytesPerConn *float64 `json:"rss_per_conn_bytes,omitempty"` // nil when the RSS shrank
	Threads      int      `json:"threads"`
}

// Idle opens N connections at a bounded rate, holds them, and reports the
// server's resident memory per connection ((RSS after - RSS before) / N),
// its threads, its CPU while idle, connect latency percentiles and errors.
func Idle(o IdleOptions) (*Result, error) {
	if o.Conns <= 0 {
		o.Conns = 1000
	}
	if o.Hold <= 0 {
		o.Hold = 10 * time.Second
	}
	if o.MaxPerProc <= 0 {
		o.MaxPerProc = 19000
	}
	switch o.Transport {
	case "", "ws":
	case "sse", "long-poll":
		return idleHTTP(o)
	default:
		return nil, fmt.Errorf("idle: unknown transport %q (known: %v)", o.Transport, IdleTransports)
	}
	if err := CheckPID(o.PID, o.URL); err != nil {
		return nil, &InvalidError{"idle", err.Error()}
	}
	sample := o.RSS
	if sample == nil {
		sample = treeRSS
	}
	measured := o.PID > 0
	p := orNoProgress(o.Progress)
	local := min(o.Conns, o.MaxPerProc)
	steps := []int{}
	for _, s := range o.Steps {
		if s > 0 && s < local {
			steps = append(steps, s)
		}
	}
	sort.Ints(steps)
	steps = append(steps, local)
	d := newDriver()
	defer d.Stop()
	res := &Result{Scenario: "idle", URL: o.URL, Client: d.Name()}
	var rss0 int64
	thr0 := treeThreads(o.PID)
	if measured {
		rss0 = settledRSS(func() int64 { return sample(o.PID) })
		res.Steps = []IdleStep{{Conns: 0, RSS: rss0, Threads: thr0}}
	}
	// lowest is the smallest RSS seen after the baseline: below it, the
	// server gave back memory it held before the run, and (after - before)
	// no longer measures what the connections cost.
	lowest := rss0
	var ops []*opened
	var lat []time.Duration
	var errs int64
	prev := 0
	record := func(n int) {
		if !measured {
			return
		}
		time.Sleep(time.Second) // let the server settle (GC, kernel buffers)
		r := sample(o.PID)
		lowest = min(lowest, r)
		st := IdleStep{Conns: n, RSS: r, Threads: treeThreads(o.PID)}
		if n > 0 {
			per := float64(r-rss0) / float64(n)
			st.BytesPerConn = &per
		}
		res.Steps = append(res.Steps, st)
	}
	for _, s := range steps {
		opt := o.Open
		op := openConns(d, o.URL, s-prev, opt, func(int) handler { return handler{} },
			p.Phase(fmt.Sprintf("connect %d", s), int64(s-prev)))
		ops = append(ops, op)
		errs += op.errs.Load()
		lat = append(lat, op.lat.sorted()...)
		prev = s
		live := 0
		for _, op := range ops {
			live += len(op.live())
		}
		if live == 0 {
			res.Errors = errs
			return res, invalidate(res, openCheck(s, op))
		}
		record(live)
	}
	// Children for the connections one process cannot hold.
	var children []*exec.Cmd
	var stdins []io.Closer
	defer func() {
		for _, in := range stdins {
			in.Close()
		}
		for _, c := range children {
			done := make(chan struct{})
			go func() { c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				c.Process.Kill()
			}
		}
	}()
	childConns := 0
	srcPer := max(o.Open.Src, 1+o.MaxPerProc/20000)
	for left, k := o.Conns-local, 1; left > 0; k++ {
		n := min(left, o.MaxPerProc)
		left -= n
		var cmd *exec.Cmd
		if o.ChildCommand != nil {
			cmd = o.ChildCommand(n, k*srcPer)
		} else {
			exe, err := os.Executable()
			if err != nil {
				return res, fmt.Errorf("idle child: %w", err)
			}
			cmd = exec.Command(exe, "idle-child", "-url", o.URL, "-n", strconv.Itoa(n),
				"-src", strconv.Itoa(srcPer), "-srcbase", strconv.Itoa(k*srcPer))
		}
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return res, fmt.Errorf("idle child: %w", err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return res, fmt.Errorf("idle child: %w", err)
		}
		if err := cmd.Start(); err != nil {
			return res, fmt.Errorf("idle child: %w", err)
		}
		children = append(children, cmd)
		stdins = append(stdins, in)
		line, err := bufio.NewReader(out).ReadString('\n')
		var got, bad int
		if _, e := fmt.Sscanf(strings.TrimSpace(line), "ready %d %d", &got, &bad); err != nil || e != nil {
			return res, fmt.Errorf("idle child %d: no ready line (%q): %v %v", k, line, err, e)
		}
		childConns += got
		errs += int64(bad)
	}
	live := 0
	for _, op := range ops {
		live += len(op.live())
	}
	if childConns > 0 {
		record(live + childConns)
	}
	var kids []int
	for _, c := range children {
		kids = append(kids, c.Process.Pid)
	}
	cpu, rss1 := holdIdle(p, o.Hold, o.PID, measured, sample, &lowest, kids...)
	var closed int64
	for _, op := range ops {
		closed += op.closed.Load()
	}
	res.Conns = live + childConns
	res.Errors = errs + closed
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.finish(0, lat, cpu, harnessCores())
	res.Pace = ""
	res.Extra = map[string]any{"closed_while_held": closed, "hold_s": o.Hold.Seconds()}
	var shrank error
	if measured {
		shrank = idleMemory(res, o.PID, rss0, rss1, lowest, thr0, cpu, res.Conns)
	}
	last := ""
	for _, op := range ops {
		if e, ok := op.lastErr.Load().(string); ok {
			last = e
		}
		op.closeAll()
	}
	if last != "" {
		res.Extra["last_error"] = last
	}
	return res, invalidate(res, aliveCheck(o.PID), shrank,
		tooMany("connections", errs, int64(o.Conns), last),
		tooMany("connections (closed while held)", closed, int64(res.Conns)+closed, last))
}

// settledRSS is the server's RSS once it holds still: readings 250 ms apart
// until two in a row differ by less than 64 KiB (at most 5 s), so that a
// server still giving back memory from an earlier run is not measured
// against a baseline it is about to fall below.
func settledRSS(sample func() int64) int64 {
	prev := sample()
	for t0 := time.Now(); time.Since(t0) < 5*time.Second; {
		time.Sleep(250 * time.Millisecond)
		v := sample()
		if d := v - prev; d < 64<<10 && d > -64<<10 {
			return v
		}
		prev = v
	}
	return prev
}

// IdleChild is the child-process side of Idle: open n connections, write
// "ready OPENED ERRORS\n" to out, hold them until in reaches EOF.
func IdleChild(url string, n int, opt OpenOptions, in io.Reader, out io.Writer) error {
	d := newDriver()
	defer d.Stop()
	op := openConns(d, url, n, opt, func(int) handler { return handler{} }, nil)
	if _, err := fmt.Fprintf(out, "ready %d %d\n", len(op.live()), op.errs.Load()); err != nil {
		return fmt.Errorf("idle child: %w", err)
	}
	io.Copy(io.Discard, in)
	op.closeAll()
	return nil
}

// idleMemory records an idle run's memory figures in res.Extra: RSS before
// and after, threads, idle CPU, and RSS per connection, or the error that
// invalidates it when the server's RSS shrank below the baseline during
// the run (a server reused from an earlier run giving memory back).
func idleMemory(res *Result, pid int, rss0, rss1, lowest int64, thr0 int, cpu CPU, conns int) error {
	res.Extra["rss_before_bytes"], res.Extra["rss_after_bytes"] = rss0, rss1
	res.Extra["threads_before"], res.Extra["threads_after"] = thr0, treeThreads(pid)
	if cpu.ServerPct != nil {
		res.Extra["server_idle_cpu_pct"] = *cpu.ServerPct
	}
	// Below 1 MiB a shrink is the allocator's noise (seen: a few KiB on a
	// gorilla server under -race), not a server that gave back a previous
	// run's memory.
	const shrinkNoise = 1 << 20
	if rss0-lowest > shrinkNoise {
		shrank := fmt.Errorf("RSS per connection is invalid: server RSS shrank by %.1f MB during the run: start a fresh server",
			float64(rss0-lowest)/1e6)
		res.Extra["rss_per_conn_invalid"] = shrank.Error()
		for i := range res.Steps {
			res.Steps[i].BytesPerConn = nil
		}
		return shrank
	}
	if conns > 0 {
		res.Extra["rss_per_conn_bytes"] = float64(rss1-rss0) / float64(conns)
	}
	return nil
}

// holdIdle holds the idle connections for hold, showing progress, and
// returns the server's CPU over the hold and its RSS after it (0 when not
// measured), lowering lowest to it.
func holdIdle(p Progress, hold time.Duration, pid int, measured bool, sample func(int) int64, lowest *int64, kids ...int) (CPU, int64) {
	m := startCPU(pid, kids...)
	bar := p.Timed("hold", hold)
	for t0 := time.Now(); time.Since(t0) < hold; time.Sleep(200 * time.Millisecond) {
		bar.Set(int64(time.Since(t0)/time.Millisecond), 0, 0)
	}
	bar.Done()
	cpu := m.stop()
	var rss int64
	if measured {
		rss = sample(pid)
		*lowest = min(*lowest, rss)
	}
	return cpu, rss
}
