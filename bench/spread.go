package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

// One harness process holds at most ~19,900 connections (open-file cap
// 20,000 here) and the loop client drives them from one goroutine, so a
// scenario with more connections, or one that needs more than a core of
// client, spreads them over child processes: each opens its share from its
// own source addresses, reports its opening, and on "stop" sends back its
// measurements, which this process merges (counts summed, latencies as
// histograms). With one process the connections stay in this process and
// the figures are exactly those of the single-process harness.

// SpreadOptions spread a scenario's connections over harness processes.
type SpreadOptions struct {
	// MaxPerProc is the most connections (or handshake workers) one
	// harness process holds. Default 19000.
	MaxPerProc int
	// Procs is how many harness processes hold the connections, at least
	// (more when MaxPerProc asks for it); 0 = as few as MaxPerProc allows.
	// With one, this process holds them; with two or more, child
	// processes hold them all and this one coordinates and measures.
	Procs int
	// Command builds a child's command, which must run Child on its
	// stdin and stdout (tornago-bench scenario-child); nil = this
	// executable with the argument "scenario-child".
	Command func() *exec.Cmd
}

// DefaultMaxPerProc is SpreadOptions.MaxPerProc's default: below the
// 20,000 open files one process may have here, with room for the rest.
const DefaultMaxPerProc = 19000

// procs is how many processes hold n connections.
func (s SpreadOptions) procs(n int) int {
	per := s.MaxPerProc
	if per <= 0 {
		per = DefaultMaxPerProc
	}
	return max(s.Procs, (n+per-1)/per, 1)
}

// childSpec is what a child is asked to do (its first stdin line).
type childSpec struct {
	Scenario string      `json:"scenario"`
	URL      string      `json:"url"`
	Conns    int         `json:"conns"` // connections, or handshake workers
	Open     OpenOptions `json:"open"`
	Client   string      `json:"client"`
	Size     int         `json:"size,omitempty"` // echo
	Src      int         `json:"src,omitempty"`  // handshake's source addresses
}

// openInfo is the outcome of one process's opening phase.
type openInfo struct {
	Asked     int    `json:"asked"`
	Opened    int    `json:"opened"`
	Errors    int64  `json:"errors"`
	LastError string `json:"last_error,omitempty"`
	Connect   latSet `json:"connect"`
}

func infoOf(asked int, op *opened) openInfo {
	last, _ := op.lastErr.Load().(string)
	return openInfo{Asked: asked, Opened: len(op.live()), Errors: op.errs.Load(), LastError: last, Connect: rawSet(op.lat.sorted())}
}

// connStats are a process's connection failures by the end of a run.
type connStats struct {
	Errors    int64  `json:"errors"` // failed to open
	Closed    int64  `json:"closed"` // closed by the other side during the run
	LastError string `json:"last_error,omitempty"`
}

func statsOf(op *opened) connStats {
	last, _ := op.lastErr.Load().(string)
	return connStats{Errors: op.errs.Load(), Closed: op.closed.Load(), LastError: last}
}

func sumStats(cs []connStats) connStats {
	var s connStats
	for _, c := range cs {
		s.Errors += c.Errors
		s.Closed += c.Closed
		if c.LastError != "" {
			s.LastError = c.LastError
		}
	}
	return s
}

// event is what a worker tells the coordinator during a run: "progress"
// (A opened, B failed so far) or "done" (broadcast A reached every one of
// this process's connections).
type event struct {
	Kind string
	A, B int64
}

// worker is the side of a scenario that holds connections, in this
// process or in a child: start and stop bound the measured phase (stop
// takes the counts at once), result is the side's figures once the
// stragglers have arrived, close closes its connections.
type worker interface {
	start(t0 int64)
	stop(t1 int64)
	result() any
	close()
}

// newWorker opens spec's connections and returns the worker holding them.
func newWorker(spec childSpec, emit func(event), bar ProgressBar) (worker, openInfo, error) {
	switch spec.Scenario {
	case "echo":
		w, info := newEchoWorker(spec, bar)
		return w, info, nil
	case "push":
		w, info := newPushWorker(spec, bar)
		return w, info, nil
	case "broadcast":
		w, info := newBroadcastWorker(spec, emit, bar)
		return w, info, nil
	case "handshake":
		w, info := newHandshakeWorker(spec)
		return w, info, nil
	}
	return nil, openInfo{}, fmt.Errorf("scenario child: unknown scenario %q", spec.Scenario)
}

// side is one process holding a share of the connections.
type side struct {
	w    worker     // in this process, or
	c    *childProc // in a child
	info openInfo
}

// openSides opens spec.Conns connections over k processes (spread's
// choice): this one when k is 1, else k children started in parallel,
// each with its share, 1/k of the opening rate and source addresses of
// its own. emit hears every side's events (from any goroutine).
func openSides(spec childSpec, spread SpreadOptions, emit func(event), bar ProgressBar) ([]*side, error) {
	k := spread.procs(spec.Conns)
	if k == 1 {
		w, info, err := newWorker(spec, emit, bar)
		if err != nil {
			return nil, err
		}
		return []*side{{w: w, info: info}}, nil
	}
	asked := spec.Open
	spec.Open.defaults(spec.Conns) // the whole run's rate and timeout
	// One address pair has ~28k ephemeral ports, shared by every process:
	// each child gets source addresses of its own.
	per := (spec.Conns + k - 1) / k
	srcPer := max(asked.Src, 1+per/20000)
	if spec.Scenario == "handshake" {
		srcPer = max(spec.Src, 1)
	}
	if 1+k*srcPer > 254 {
		return nil, fmt.Errorf("%s: %d processes × %d source addresses exceed 127.0.0.1..127.0.0.254", spec.Scenario, k, srcPer)
	}
	prog := &spreadProgress{bar: bar, done: make([]int64, k), errs: make([]int64, k)}
	ss := make([]*side, k)
	for i := range k {
		cs := spec
		cs.Conns = spec.Conns/k + btoi(i < spec.Conns%k)
		// The children open their connections one after another, each at
		// the whole rate (as idle's do): eleven processes dialing at once
		// on two cores starved each other into handshake timeouts (31,000
		// of 200,000 connections failed; one at a time, none did).
		// 127.0.0.1 stays the parent's (its /receive triggers and probes):
		// a child filling its ports made the trigger fail with
		// EADDRNOTAVAIL.
		cs.Open.Src, cs.Open.SrcBase = srcPer, 1+i*srcPer
		cs.Src = srcPer
		c, err := startChild(spread, cs, func(e event) {
			if e.Kind == "progress" {
				prog.set(i, e.A, e.B)
				return
			}
			emit(e)
		})
		if err != nil {
			closeSides(ss)
			return nil, err
		}
		ss[i] = &side{c: c}
		line, err := c.await("ready ", spec.Open.Timeout+30*time.Second)
		if err == nil {
			err = json.Unmarshal([]byte(line), &ss[i].info)
		}
		if err != nil {
			closeSides(ss)
			return nil, fmt.Errorf("%s child %d (pid %d): %w", spec.Scenario, i, c.cmd.Process.Pid, err)
		}
		prog.set(i, int64(ss[i].info.Opened+int(ss[i].info.Errors)), ss[i].info.Errors)
	}
	if bar != nil {
		bar.Done()
	}
	return ss, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// spreadProgress sums the children's opening progress into one bar.
type spreadProgress struct {
	mu         sync.Mutex
	bar        ProgressBar
	done, errs []int64
}

func (p *spreadProgress) set(i int, done, errs int64) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done[i], p.errs[i] = done, errs
	var d, e int64
	for k := range p.done {
		d, e = d+p.done[k], e+p.errs[k]
	}
	p.bar.Set(d, 0, e)
}

// start begins every side's measured phase at t0 (UnixNano).
func startSides(ss []*side, t0 int64) error {
	for _, s := range ss {
		if s.w != nil {
			s.w.start(t0)
		} else if err := s.c.send(fmt.Sprintf("start %d", t0)); err != nil {
			return err
		}
	}
	return nil
}

// stopSides ends every side's measured phase at t1: each takes its
// counts now; collectSides then waits for their figures.
func stopSides(ss []*side, t1 int64) error {
	for _, s := range ss {
		if s.w != nil {
			s.w.stop(t1)
		} else if err := s.c.send(fmt.Sprintf("stop %d", t1)); err != nil {
			return err
		}
	}
	return nil
}

// collectSides is each side's figures (type R: what the scenario's worker
// returns) once its stragglers arrived.
func collectSides[R any](ss []*side) ([]R, error) {
	out := make([]R, len(ss))
	errs := make([]error, len(ss))
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.w != nil {
				out[i] = s.w.result().(R)
				return
			}
			line, err := s.c.await("result ", 2*time.Minute)
			if err == nil {
				err = json.Unmarshal([]byte(line), &out[i])
			}
			if err != nil {
				errs[i] = fmt.Errorf("child %d (pid %d) result: %w", i, s.c.cmd.Process.Pid, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// localOps is the operations so far of the sides in this process (for the
// progress bar; children report theirs only at the end).
func localOps(ss []*side) int64 {
	var n int64
	for _, s := range ss {
		if p, ok := s.w.(interface{ progress() int64 }); ok {
			n += p.progress()
		}
	}
	return n
}

// clientName names the client of a run over k harness processes.
func clientName(k int) string {
	name := "tornago-loop"
	if ClientKind == "gorilla" {
		name = "gorilla-goroutines"
	}
	if k > 1 {
		name = fmt.Sprintf("%s x %d processes", name, k)
	}
	return name
}

// spreadCores is how many cores k harness processes can use.
func spreadCores(k int) float64 {
	return min(harnessCores()*float64(k), float64(runtime.NumCPU()))
}

// closeSides closes every side's connections (children close theirs at
// EOF on stdin and exit) and waits for the children.
func closeSides(ss []*side) {
	var wg sync.WaitGroup
	for _, s := range ss {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.w != nil {
				s.w.close()
			} else {
				s.c.close()
			}
		}()
	}
	wg.Wait()
}

// childPIDs are the harness children among ss (their CPU is the harness's).
func childPIDs(ss []*side) []int {
	var out []int
	for _, s := range ss {
		if s.c != nil {
			out = append(out, s.c.cmd.Process.Pid)
		}
	}
	return out
}

// mergeOpen sums the sides' openings.
func mergeOpen(ss []*side) openInfo {
	var in openInfo
	var lat []latSet
	for _, s := range ss {
		in.Asked += s.info.Asked
		in.Opened += s.info.Opened
		in.Errors += s.info.Errors
		if s.info.LastError != "" {
			in.LastError = s.info.LastError
		}
		lat = append(lat, s.info.Connect)
	}
	in.Connect = mergeLat(lat...)
	return in
}

// check is openCheck for merged sides: none open, or too many failed,
// makes the run invalid.
func (in openInfo) check() error {
	if in.Opened == 0 {
		return fmt.Errorf("no connection opened (%d asked)%s", in.Asked, lastErr(in.LastError))
	}
	return tooMany("connections", int64(in.Asked-in.Opened), int64(in.Asked), in.LastError)
}

// childProc is a running harness child.
type childProc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex // serialises writes to in
	in    io.WriteCloser
	lines chan string // everything but events, closed at EOF
}

func startChild(spread SpreadOptions, spec childSpec, emit func(event)) (*childProc, error) {
	var cmd *exec.Cmd
	if spread.Command != nil {
		cmd = spread.Command()
	} else {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("%s child: %w", spec.Scenario, err)
		}
		cmd = exec.Command(exe, "scenario-child")
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%s child: %w", spec.Scenario, err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s child: %w", spec.Scenario, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s child: %w", spec.Scenario, err)
	}
	c := &childProc{cmd: cmd, in: in, lines: make(chan string, 4)}
	go func() {
		defer close(c.lines)
		r := bufio.NewReaderSize(out, 1<<16)
		for {
			line, err := r.ReadString('\n')
			line = strings.TrimSuffix(line, "\n")
			if ev, ok := strings.CutPrefix(line, "event "); ok {
				var e event
				if _, err := fmt.Sscanf(ev, "%s %d %d", &e.Kind, &e.A, &e.B); err == nil {
					emit(e)
				}
			} else if line != "" {
				c.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	b, _ := json.Marshal(spec)
	if err := c.send(string(b)); err != nil {
		c.close()
		return nil, fmt.Errorf("%s child: exited at start (%s; its stderr is above): %w", spec.Scenario, cmd.ProcessState, err)
	}
	return c, nil
}

func (c *childProc) send(line string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		return fmt.Errorf("child %d: %w", c.cmd.Process.Pid, err)
	}
	return nil
}

// await is the child's next line, which must start with prefix (returned
// without it).
func (c *childProc) await(prefix string, d time.Duration) (string, error) {
	select {
	case line, ok := <-c.lines:
		if !ok {
			return "", fmt.Errorf("exited before saying %q (its stderr is above)", strings.TrimSpace(prefix))
		}
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			return "", fmt.Errorf("said %.200q, want %q", line, strings.TrimSpace(prefix))
		}
		return rest, nil
	case <-time.After(d):
		return "", fmt.Errorf("no %q after %v", strings.TrimSpace(prefix), d)
	}
}

func (c *childProc) close() {
	c.mu.Lock()
	c.in.Close()
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// Child is the child-process side of a spread scenario (tornago-bench
// scenario-child): it reads a childSpec line from in, opens the
// connections, writes "ready INFO", then obeys "start T0" and "stop T1"
// (answering "result FIGURES"), writes "event KIND A B" lines at any
// time, and closes its connections when in reaches EOF.
func Child(in io.Reader, out io.Writer) error {
	r := bufio.NewReader(in)
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("scenario child: no spec: %w", err)
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(line), &spec); err != nil {
		return fmt.Errorf("scenario child: spec: %w", err)
	}
	if spec.Client != "" {
		ClientKind = spec.Client
	}
	var mu sync.Mutex
	var werr error
	write := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := fmt.Fprintf(out, format+"\n", a...); err != nil && werr == nil {
			werr = err
		}
	}
	emit := func(e event) { write("event %s %d %d", e.Kind, e.A, e.B) }
	w, info, err := newWorker(spec, emit, &childBar{emit: emit})
	if err != nil {
		return err
	}
	defer w.close()
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("scenario child: %w", err)
	}
	write("ready %s", b)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break // EOF: the parent is done with us
		}
		var t int64
		switch {
		case strings.HasPrefix(line, "start "):
			fmt.Sscanf(line, "start %d", &t)
			w.start(t)
		case strings.HasPrefix(line, "stop "):
			fmt.Sscanf(line, "stop %d", &t)
			w.stop(t)
			b, err := json.Marshal(w.result())
			if err != nil {
				return fmt.Errorf("scenario child: %w", err)
			}
			write("result %s", b)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return werr
}

// childBar sends a child's opening progress to the parent, at most every
// 250 ms.
type childBar struct {
	emit func(event)
	mu   sync.Mutex
	last time.Time
}

func (b *childBar) Set(done, _, errs int64) {
	b.mu.Lock()
	send := time.Since(b.last) >= 250*time.Millisecond
	if send {
		b.last = time.Now()
	}
	b.mu.Unlock()
	if send {
		b.emit(event{Kind: "progress", A: done, B: errs})
	}
}

func (b *childBar) Done() {}
