// Command tornago-bench points load at any RFC 6455 server and reports the
// server's memory and CPU (from /proc/PID) next to latency, throughput and
// the harness's own CPU. Scenarios: idle, echo, push, broadcast, handshake,
// transports; compare runs one of them against Tornago and the reference
// servers (gorilla/websocket, Tornado, a bare gnet+gobwas/ws echo server)
// started by the harness itself.
//
//	tornago-bench echo -url ws://127.0.0.1:8888/echo -c 1000 -size 64 -d 10s -pid PID
//	tornago-bench compare -scenario idle -n 10000 -steps 2000,5000
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tornago/tornago/bench"
)

const usage = `usage: tornago-bench SCENARIO [flags]
scenarios:
  idle       -url -n N -pid PID [-steps 2000,5000] [-hold 10s]   RSS/conn, idle CPU, connect latency
  echo       -url -c C -size S -d D -pid PID                     messages/s, latency, server CPU/message
  push       -url ws://host/clock -n N -d D -pid PID             per-tick delivery latency, missed, duplicated
  broadcast  -url ws://host/ws -n N -d D -pid PID                delivered messages/s (triggers /receive?msg=)
  handshake  -url -c C -d D -pid PID                             upgrades/s, server CPU per upgrade
  transports -url http://host -n N -d D -pid PID                 short poll vs long poll vs WebSocket
  compare    -scenario S [-servers tornago,gorilla,tornado,gnetws] [-reps 1] [-pin] [scenario flags without -url/-pid]
common: -plot FILE.png  -client loop|gorilla  -rate R (connections/s)  -src K (source addresses)
each run prints a table (stdout) and one JSON line per run (stdout, prefixed "JSON ").
`

type flags struct {
	fs                *flag.FlagSet
	url, plot, client string
	n, c, size, pid   int
	rate, src, window int
	d, hold           time.Duration
	steps             string
	scenario, servers string
	reps, port        int
	pin               bool
	root              string
	srcbase           int
	perProc           int
	progress          bool
}

func parse(name string, args []string) *flags {
	f := &flags{fs: flag.NewFlagSet(name, flag.ExitOnError)}
	fs := f.fs
	fs.StringVar(&f.url, "url", "", "server URL (ws://host:port/route; http://host:port for transports)")
	fs.IntVar(&f.n, "n", 1000, "connections (idle, push, broadcast, transports)")
	fs.IntVar(&f.c, "c", 0, "connections for echo (default 1000) or workers for handshake (default 8)")
	fs.IntVar(&f.size, "size", 64, "message size in bytes (echo)")
	fs.IntVar(&f.pid, "pid", 0, "server PID for RSS and CPU from /proc (0 = not measured)")
	fs.IntVar(&f.rate, "rate", 2000, "connections opened per second")
	fs.IntVar(&f.src, "src", 0, "spread source addresses over 127.0.0.1..127.0.0.K (default 1 per 20k connections)")
	fs.IntVar(&f.srcbase, "srcbase", 0, "first source address offset (idle-child)")
	fs.IntVar(&f.perProc, "per-proc", 19000, "idle: connections per harness process; more go to child processes")
	fs.IntVar(&f.window, "window", 4, "broadcasts in flight (broadcast)")
	fs.DurationVar(&f.d, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&f.hold, "hold", 10*time.Second, "idle hold time for the CPU reading (> 25 s includes Tornago's pings)")
	fs.StringVar(&f.steps, "steps", "", "idle: comma-separated connection counts at which RSS is also recorded")
	fs.StringVar(&f.plot, "plot", "", "write a PNG: latency CDF, or RSS against connections for idle")
	fs.StringVar(&f.client, "client", "loop", "client: loop (loop-driven, no goroutine per connection) or gorilla")
	fs.StringVar(&f.scenario, "scenario", "echo", "compare: scenario to run")
	fs.StringVar(&f.servers, "servers", "tornago,gorilla,tornado", "compare: servers to start")
	fs.IntVar(&f.reps, "reps", 1, "compare: repetitions (servers alternate within each)")
	fs.IntVar(&f.port, "port", 18880, "compare: first port")
	fs.BoolVar(&f.pin, "pin", false, "compare: servers on CPU 0 (taskset), the harness on CPU 1")
	fs.StringVar(&f.root, "root", "", "compare: module root to build from (default: found from the working directory)")
	fs.BoolVar(&f.progress, "progress", true, "draw progress bars on stderr")
	fs.Parse(args)
	if f.client != "loop" && f.client != "gorilla" {
		fail(fmt.Errorf("-client %q: want loop or gorilla", f.client))
	}
	bench.ClientKind = f.client
	return f
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tornago-bench:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, f := os.Args[1], parse(os.Args[1], os.Args[2:])
	switch cmd {
	case "idle-child":
		if err := bench.IdleChild(f.url, f.n, bench.OpenOptions{Rate: f.rate, Src: f.src, SrcBase: f.srcbase}, os.Stdin, os.Stdout); err != nil {
			fail(err)
		}
		return
	case "compare":
		compare(f)
		return
	case "transports":
		if f.url == "" {
			fail(fmt.Errorf("transports: -url http://host:port is required"))
		}
		var prog *mpbProgress
		if f.progress {
			prog = newProgress()
		}
		rs, err := bench.Transports(bench.TransportsOptions{Base: strings.TrimSuffix(f.url, "/"), Conns: f.n, Duration: f.d, PID: f.pid, Progress: progressOf(prog)})
		if prog != nil {
			prog.Wait()
		}
		if err != nil {
			fail(err)
		}
		report(f, rs)
		return
	}
	if f.url == "" {
		fail(fmt.Errorf("%s: -url is required", cmd))
	}
	var prog *mpbProgress
	if f.progress {
		prog = newProgress()
	}
	r, err := run(cmd, f, f.url, f.pid, prog)
	if prog != nil {
		prog.Wait()
	}
	if err != nil {
		fail(err)
	}
	report(f, []*bench.Result{r})
}

func progressOf(p *mpbProgress) bench.Progress {
	if p == nil {
		return nil
	}
	return p
}

// run runs one scenario; url is a ws:// URL of the scenario's route (or the
// http:// base for transports).
func run(cmd string, f *flags, url string, pid int, p *mpbProgress) (*bench.Result, error) {
	open := bench.OpenOptions{Rate: f.rate, Src: f.src}
	switch cmd {
	case "idle":
		var steps []int
		for _, s := range strings.Split(f.steps, ",") {
			if k, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
				steps = append(steps, k)
			}
		}
		return bench.Idle(bench.IdleOptions{URL: url, Conns: f.n, PID: pid, Steps: steps, Hold: f.hold, MaxPerProc: f.perProc, Open: open, Progress: progressOf(p)})
	case "echo":
		c := f.c
		if c <= 0 {
			c = 1000
		}
		return bench.Echo(bench.EchoOptions{URL: url, Conns: c, Size: f.size, Duration: f.d, PID: pid, Open: open, Progress: progressOf(p)})
	case "push":
		return bench.Push(bench.PushOptions{URL: url, Conns: f.n, Duration: f.d, PID: pid, Open: open, Progress: progressOf(p)})
	case "broadcast":
		return bench.Broadcast(bench.BroadcastOptions{URL: url, Conns: f.n, Duration: f.d, Window: f.window, PID: pid, Open: open, Progress: progressOf(p)})
	case "handshake":
		return bench.Handshake(bench.HandshakeOptions{URL: url, Workers: f.c, Duration: f.d, Src: f.src, PID: pid, Progress: progressOf(p)})
	}
	return nil, fmt.Errorf("unknown scenario %q\n%s", cmd, usage)
}

func report(f *flags, rs []*bench.Result) {
	bench.WriteTable(os.Stdout, rs)
	for _, r := range rs {
		os.Stdout.WriteString("JSON ")
		r.WriteJSON(os.Stdout)
	}
	if f.plot != "" {
		if err := bench.WritePlot(f.plot, rs); err != nil {
			fail(err)
		}
		fmt.Fprintln(os.Stderr, "plot written to", f.plot)
	}
}

// routes is the path each scenario uses on every server.
var routes = map[string]string{"idle": "/echo", "echo": "/echo", "push": "/clock", "broadcast": "/ws", "handshake": "/echo"}

func compare(f *flags) {
	if f.pin && os.Getenv("TORNAGO_BENCH_PINNED") == "" {
		// Re-run this process on CPU 1 so that the server (CPU 0) and the
		// harness never share a core.
		exe, err := os.Executable()
		if err != nil {
			fail(err)
		}
		os.Setenv("TORNAGO_BENCH_PINNED", "1")
		fail(syscall.Exec("/usr/bin/taskset", append([]string{"taskset", "-c", "1", exe}, os.Args[1:]...), os.Environ()))
	}
	route, ok := routes[f.scenario]
	if !ok {
		fail(fmt.Errorf("compare: scenario %q not comparable (want idle, echo, push, broadcast, handshake)", f.scenario))
	}
	root := f.root
	if root == "" {
		root = findRoot()
	}
	pin := ""
	if f.pin {
		pin = "0"
	}
	logf, err := os.Create(filepath.Join(os.TempDir(), "tornago-bench-servers.log"))
	if err != nil {
		fail(err)
	}
	defer logf.Close()
	ss, err := bench.StartServers(root, strings.Split(f.servers, ","), f.port, pin, logf)
	if err != nil {
		fail(err)
	}
	for _, s := range ss {
		fmt.Fprintf(os.Stderr, "started %s pid %d on %s\n", s.Name, s.PID, s.Host)
	}
	var prog *mpbProgress
	if f.progress {
		prog = newProgress()
	}
	rs, err := bench.Compare(ss, f.reps, 3*time.Second, func(s *bench.Server) (*bench.Result, error) {
		return run(f.scenario, f, s.URL(route), s.PID, prog)
	}, func(r *bench.Result) {
		fmt.Fprintf(os.Stderr, "done: %s %s ops/s %.0f srv us/op %.2f errors %d\n", r.Server, r.Scenario, r.OpsPerS, r.CPUPerOp, r.Errors)
	})
	if prog != nil {
		prog.Wait()
	}
	bench.StopServers(ss)
	if err != nil {
		fail(err)
	}
	report(f, rs)
	bench.WriteRatios(os.Stdout, rs)
}

func findRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	fail(fmt.Errorf("compare: no go.mod above %s; pass -root", dir))
	return ""
}
