package bench

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server is a server process started by StartServers.
type Server struct {
	Name string
	Host string // 127.0.0.1:port
	PID  int
	cmd  *exec.Cmd
}

// URL is ws://host + path.
func (s *Server) URL(path string) string { return "ws://" + s.Host + path }

// built remembers binaries built by this process (one build per package).
var (
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildDir string // one temporary directory per process
)

// ServerNames are the servers StartServers knows. Tornago also comes in
// variants named for its flags: tornago-loops4 is tornago -loops 4,
// tornago-procs2 is tornago -procs 2, tornago-procs2-loops4 both, and
// tornago-mount is tornago -mount (the demo served through a net/http
// server with loop.Mount; tornago-mount-loops2 with -loops 2). Any of
// them may name another source tree after an @ (see ServerTree):
// tornago@/work/baseline is Tornago built from /work/baseline, so that one
// run compares two versions (before and after a change).
var ServerNames = []string{"tornago", "gorilla", "tornado", "gnetws"}

// ServerTree splits a server name into the server (and variant) to build,
// the module root to build it from ("" for the run's own root) and the
// label its results carry: "tornago-loops2@/work/baseline" is
// tornago-loops2 from /work/baseline, labelled "tornago-loops2@baseline"
// (the tree's last path element).
func ServerTree(name string) (server, tree, label string) {
	server, tree, ok := strings.Cut(name, "@")
	if !ok || tree == "" {
		return server, "", server
	}
	if abs, err := filepath.Abs(tree); err == nil {
		tree = abs
	}
	return server, tree, server + "@" + filepath.Base(tree)
}

// ServerVariant splits a server name into the server and its extra flags:
// "tornago-loops4" is tornago with -loops 4 (see ServerNames).
func ServerVariant(name string) (base string, args []string, err error) {
	rest, ok := strings.CutPrefix(name, "tornago-")
	if !ok {
		return name, nil, nil
	}
	for _, part := range strings.Split(rest, "-") {
		if part == "mount" {
			// Through a net/http server with loop.Mount (cmd/tornago -mount).
			args = append(args, "-mount")
			continue
		}
		var flag string
		for _, f := range []string{"loops", "procs"} {
			if strings.HasPrefix(part, f) {
				flag = f
			}
		}
		n, err := strconv.Atoi(strings.TrimPrefix(part, flag))
		if flag == "" || err != nil || n < 0 {
			return "", nil, fmt.Errorf("server %q: want tornago-loopsN, tornago-procsN, tornago-procsN-loopsM or tornago-mount (-loopsN)", name)
		}
		args = append(args, "-"+flag, strconv.Itoa(n))
	}
	return "tornago", args, nil
}

// StartServers builds (go build into a temporary directory) and starts the
// named servers from the module at root on ports basePort, basePort+1, ...;
// pinCPU, if not empty, runs them under taskset -c pinCPU. Stop them with
// StopServers (by PID).
func StartServers(root string, names []string, basePort int, pinCPU string, logTo io.Writer) ([]*Server, error) {
	var out []*Server
	for i, name := range names {
		s, err := StartServer(root, name, basePort+i, ServerOptions{PinCPU: pinCPU}, logTo)
		if err != nil {
			StopServers(out)
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// ServerOptions are the knobs StartServer applies to a server process.
type ServerOptions struct {
	PinCPU string // taskset -c PinCPU when not empty
	// NoFile, when > 0, starts the server with RLIMIT_NOFILE (soft and
	// hard) set to it: the attack scenario's descriptor storm.
	NoFile int
	// Args are extra flags for the server (tornago, gorilla, gnetws).
	Args []string
	// Env are extra NAME=value variables for the server's environment
	// (secrets go here, never in Args: argv is public).
	Env []string
}

// StartServer builds (once per process and tree) and starts one named
// server on 127.0.0.1:port; stop it with StopServers. A name with @tree
// (ServerTree) is built from that tree instead of root, and its Server's
// Name is the label.
func StartServer(root, name string, port int, o ServerOptions, logTo io.Writer) (*Server, error) {
	if !procStats {
		// compare and scale start servers to measure them.
		return nil, fmt.Errorf("start %s: %w", name, errNoProc)
	}
	name, tree, label := ServerTree(name)
	if tree != "" {
		if _, err := os.Stat(filepath.Join(tree, "go.mod")); err != nil {
			return nil, fmt.Errorf("start %s: no Go module at %s: %w", label, tree, err)
		}
		root = tree
	}
	sport := strconv.Itoa(port)
	// A port someone else listens on would make the harness measure
	// the wrong process.
	if err := waitPortFree("127.0.0.1:"+sport, 60*time.Second); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	base, variant, err := ServerVariant(name)
	if err != nil {
		return nil, fmt.Errorf("start servers: %w", err)
	}
	var argv []string
	switch base {
	case "tornago", "gorilla", "gnetws":
		pkg := "./cmd/tornago"
		if base != "tornago" {
			pkg = "./bench/refserver/" + base
		}
		bin, err := build(root, pkg, base, logTo)
		if err != nil {
			return nil, err
		}
		argv = append(append([]string{bin, "-port", sport}, variant...), o.Args...)
	case "tornado":
		argv = []string{"/usr/bin/python3", filepath.Join(root, "bench/refserver/tornado/server.py"), "--port", sport}
	default:
		return nil, fmt.Errorf("start servers: unknown server %q (known: %v)", name, ServerNames)
	}
	if o.NoFile > 0 {
		// Both limits: Go raises the soft limit to the hard one at start.
		// exec keeps the PID, so -pid still names the server.
		argv = append([]string{"/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, o.NoFile)}, argv...)
	}
	if o.PinCPU != "" {
		argv = append([]string{"taskset", "-c", o.PinCPU}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logTo, logTo
	if len(o.Env) > 0 {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &Server{Name: label, Host: "127.0.0.1:" + sport, PID: cmd.Process.Pid, cmd: cmd}
	if err := waitListening(s.Host, 15*time.Second); err != nil {
		StopServers([]*Server{s})
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if !processAlive(s.PID) || rss(s.PID) == 0 {
		StopServers([]*Server{s})
		return nil, fmt.Errorf("start %s: process %d is not running", name, s.PID)
	}
	return s, nil
}

// build compiles pkg under root once per process and returns the binary.
func build(root, pkg, name string, logTo io.Writer) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[root+pkg]; ok {
		return bin, nil
	}
	if buildDir == "" {
		var err error
		if buildDir, err = os.MkdirTemp("", "tornago-bench-"); err != nil {
			return "", fmt.Errorf("start servers: %w", err)
		}
	}
	// One directory per build: tornago and tornago@/other/tree both build
	// ./cmd/tornago, and the process keeps its name (ps, CheckPID).
	dir := filepath.Join(buildDir, strconv.Itoa(len(built)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	bin := filepath.Join(dir, name)
	b := exec.Command("go", "build", "-o", bin, pkg)
	b.Dir, b.Stderr = root, logTo
	if err := b.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	built[root+pkg] = bin
	return bin, nil
}

// waitPortFree waits until host can be bound: the sockets of a server the
// previous run stopped with thousands of connections may hold the port for
// a few seconds (LAST_ACK) after the process exited.
func waitPortFree(host string, d time.Duration) error {
	t0 := time.Now()
	for {
		ln, err := net.Listen("tcp", host)
		if err == nil {
			ln.Close()
			return nil
		}
		if time.Since(t0) > d {
			return fmt.Errorf("port %s is not free after %v: %w", host, d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitListening(host string, d time.Duration) error {
	for t0 := time.Now(); time.Since(t0) < d; time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", host, time.Second); err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("%s not listening after %v", host, d)
}

// StopServers sends SIGTERM to each server's PID, waits up to 10 s, then
// kills it.
func StopServers(ss []*Server) {
	for _, s := range ss {
		s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-done
		}
	}
}

// Compare runs one scenario reps times against each server, alternating
// servers within each repetition so that drifts of the machine hit all of
// them alike. pause separates runs (sockets in TIME_WAIT, GC).
func Compare(ss []*Server, reps int, pause time.Duration, run func(s *Server) (*Result, error), each func(*Result)) ([]*Result, error) {
	var rs []*Result
	for rep := 0; rep < max(reps, 1); rep++ {
		for _, s := range ss {
			r, err := run(s)
			if err != nil {
				return rs, fmt.Errorf("compare %s: %w", s.Name, err)
			}
			r.Server = s.Name
			rs = append(rs, r)
			if each != nil {
				each(r)
			}
			time.Sleep(pause)
		}
	}
	return rs, nil
}

// metric is one figure to compare, taken from a Result; ok is false when
// the run did not measure it.
type metric struct {
	name  string
	get   func(*Result) (v float64, ok bool)
	lower bool // lower is better
}

func always(f func(*Result) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) { return f(r), true }
}

// extraFigure reads the numeric figure k of a result's Extra.
func extraFigure(k string) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		switch v := r.Extra[k].(type) {
		case float64:
			return v, true
		case int64:
			return float64(v), true
		case int:
			return float64(v), true
		}
		return 0, false
	}
}

func metricsFor(scenario string) []metric {
	extra := extraFigure
	cpuPerOp := func(r *Result) (float64, bool) {
		if r.CPUPerOp == nil {
			return 0, false
		}
		return *r.CPUPerOp, true
	}
	switch scenario {
	case "transports":
		return []metric{{"wire B/msg", extra("wire_bytes_per_delivered"), true},
			{"p50 ms", always(func(r *Result) float64 { return float64(r.Latency.P50) / 1e6 }), true},
			{"p99 ms", always(func(r *Result) float64 { return float64(r.Latency.P99) / 1e6 }), true},
			{"srv CPU us/msg", cpuPerOp, true},
			{"conns/min", extra("conns_per_min"), true},
			{"requests/min", extra("http_requests_per_min"), true},
			{"lost", extra("lost"), true},
			{"repeated", extra("repeated"), true}}
	case "history":
		return []metric{{"RSS/message B", extra("rss_per_message_bytes"), true},
			{"overhead B", extra("overhead_per_message_bytes"), true}}
	case "idle":
		return []metric{{"RSS/conn B", extra("rss_per_conn_bytes"), true},
			{"idle CPU %", extra("server_idle_cpu_pct"), true},
			{"threads", extra("threads_after"), true},
			{"connect p99 ms", always(func(r *Result) float64 { return float64(r.Latency.P99) / 1e6 }), true}}
	}
	ms := []metric{{"ops/s", always(func(r *Result) float64 { return r.OpsPerS }), false},
		{"srv CPU us/op", cpuPerOp, true},
		{"p50 ms", always(func(r *Result) float64 { return float64(r.Latency.P50) / 1e6 }), true},
		{"p99 ms", always(func(r *Result) float64 { return float64(r.Latency.P99) / 1e6 }), true},
		{"errors", always(func(r *Result) float64 { return float64(r.Errors) }), true}}
	switch scenario {
	case "push":
		ms = append(ms, metric{"tick p99 ms", extra("tick_p99_ms"), true}, metric{"tick last ms", extra("tick_last_delivery_max_ms"), true},
			metric{"ticks late", extra("ticks_late"), true})
	case "broadcast":
		ms = append(ms, metric{"last dlv p99 ms", extra("last_delivery_p99_ms"), true})
	}
	if scenario == "push" || scenario == "broadcast" {
		ms = append(ms, metric{"missed", extra("missed"), true}, metric{"duplicated", extra("duplicated"), true})
	}
	return ms
}

// WriteRatios prints, per server, the median of each figure over its runs,
// its ratio to the first server's (Tornago's), and the min and max over the
// runs (-reps) so that the spread is seen beside the ratio. Figures a run
// did not measure are left out; none measured prints n/a.
func WriteRatios(w io.Writer, rs []*Result) {
	if len(rs) == 0 {
		return
	}
	var names []string
	by := map[string][]*Result{}
	for _, r := range rs {
		if _, ok := by[r.Server]; !ok {
			names = append(names, r.Server)
		}
		by[r.Server] = append(by[r.Server], r)
	}
	ms := metricsFor(rs[0].Scenario)
	fmt.Fprintf(w, "\n%s: median (this server / %s) [min..max] of %d run(s) each\n", rs[0].Scenario, names[0], len(by[names[0]]))
	fmt.Fprintf(w, "%-16s", "")
	for _, n := range names {
		fmt.Fprintf(w, " %36s", n)
	}
	fmt.Fprintln(w)
	for _, m := range ms {
		fmt.Fprintf(w, "%-16s", m.name)
		ref := spread(by[names[0]], m.get)
		for _, n := range names {
			st := spread(by[n], m.get)
			if st.n == 0 {
				fmt.Fprintf(w, " %36s", "n/a")
				continue
			}
			ratio := "-"
			if ref.n > 0 && ref.med != 0 {
				ratio = fmt.Sprintf("%.2fx", st.med/ref.med)
			}
			fmt.Fprintf(w, " %36s", fmt.Sprintf("%.2f (%s) [%.2f..%.2f]", st.med, ratio, st.min, st.max))
		}
		fmt.Fprintln(w)
	}
}

// stats are the min, median and max of a figure over n runs.
type stats struct {
	n             int
	min, med, max float64
}

func spread(rs []*Result, get func(*Result) (float64, bool)) stats {
	v := make([]float64, 0, len(rs))
	for _, r := range rs {
		if x, ok := get(r); ok {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return stats{}
	}
	sort.Float64s(v)
	return stats{n: len(v), min: v[0], med: v[len(v)/2], max: v[len(v)-1]}
}
