package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tornago/tornago/bench"
)

// scaleFlags are the scale sweep's own flags.
type scaleFlags struct {
	loops, sweep, scenarios, serverArgs string
}

func (s *scaleFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.loops, "loops", "1,2,4,8,16", "scale: the values swept (tornago -loops L, or -procs L with -sweep procs; 0 = one per CPU)")
	fs.StringVar(&s.sweep, "sweep", "loops", "scale: the tornago flag swept: loops or procs")
	fs.StringVar(&s.scenarios, "scenarios", "push,broadcast,echo", "scale: scenarios run against every server, each optionally with its connection count (push:19000,broadcast:10000,echo:1000 replaces -n or -c)")
	fs.StringVar(&s.serverArgs, "server-args", "", "scale: extra flags for every server, space-separated (\"-ping 0\")")
}

// sweepServers are the servers a scale run starts: -servers when given,
// else tornago-<sweep><L> for each L of -loops.
func sweepServers(f *flags) ([]string, error) {
	given := false
	f.fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == "servers" })
	if given {
		return strings.Split(f.servers, ","), nil
	}
	if f.scale.sweep != "loops" && f.scale.sweep != "procs" {
		return nil, fmt.Errorf("scale: -sweep %q: want loops or procs", f.scale.sweep)
	}
	var names []string
	for _, v := range strings.Split(f.scale.loops, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("scale: -loops %q: want counts like 1,2,4", f.scale.loops)
		}
		names = append(names, fmt.Sprintf("tornago-%s%d", f.scale.sweep, n))
	}
	return names, nil
}

// scaleScenario is one scenario of a sweep with its own flags.
type scaleScenario struct {
	name  string
	flags *flags
}

// scaleScenarios parses -scenarios: names, each optionally with its own
// connection count (push:19000,broadcast:10000,echo:1000), which replaces
// -n (push, broadcast) or -c (echo, handshake) for that scenario.
func scaleScenarios(f *flags) ([]scaleScenario, error) {
	var out []scaleScenario
	for _, item := range strings.Split(f.scale.scenarios, ",") {
		name, count, hasCount := strings.Cut(strings.TrimSpace(item), ":")
		if _, ok := routes[name]; !ok || name == "idle" {
			return nil, fmt.Errorf("scale: scenario %q (want push, broadcast, echo, handshake, each optionally :COUNT)", item)
		}
		fc := *f
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("scale: %q: want %s:COUNT with a count above 0", item, name)
			}
			fc.n, fc.c = n, n
		}
		out = append(out, scaleScenario{name, &fc})
	}
	return out, nil
}

// scale runs the many-core plan: every scenario against tornago with 1, 2,
// 4, ... loops (or processes), servers alternating within each repetition,
// and prints the scaling table after the per-run table and JSON lines.
func scale(f *flags) {
	names, err := sweepServers(f)
	if err != nil {
		fail(err)
	}
	cprocsGiven := false
	f.fs.Visit(func(fl *flag.Flag) { cprocsGiven = cprocsGiven || fl.Name == "cprocs" })
	if !cprocsGiven {
		// The loop client uses one core per harness process: on a bigger
		// machine one process would measure the client, not 16 loops.
		f.cprocs = runtime.NumCPU() / 2
	}
	scens, err := scaleScenarios(f)
	if err != nil {
		fail(err)
	}
	root, _, logf := serverSetup(f)
	defer logf.Close()
	var ss []*bench.Server
	for i, n := range names {
		s, err := bench.StartServer(root, n, f.port+i, bench.ServerOptions{Args: strings.Fields(f.scale.serverArgs)}, logf)
		if err != nil {
			bench.StopServers(ss)
			fail(fmt.Errorf("%w (server output: %s)", err, logf.Name()))
		}
		fmt.Fprintf(os.Stderr, "started %s pid %d on %s\n", s.Name, s.PID, s.Host)
		ss = append(ss, s)
	}
	var prog *mpbProgress
	if f.progress {
		prog = newProgress()
	}
	var all []*bench.Result
	for _, one := range scens {
		sc, fs := one.name, one.flags
		rs, err := bench.Compare(ss, f.reps, 3*time.Second, func(s *bench.Server) (*bench.Result, error) {
			r, err := run(sc, fs, s.URL(routes[sc]), s.PID, prog)
			if bench.IsInvalid(err) && r != nil {
				// An invalid run is a row of the table that says why,
				// not the end of the sweep.
				return r, nil
			}
			return r, err
		}, func(r *bench.Result) {
			fmt.Fprintf(os.Stderr, "done: %s %s ops/s %.0f srv us/op %s p99 %v\n", r.Server, r.Scenario, r.OpsPerS,
				bench.FormatOrNA(r.CPUPerOp, "%.2f"), r.Latency.P99)
		})
		all = append(all, rs...)
		if err != nil {
			if prog != nil {
				prog.Wait()
			}
			bench.StopServers(ss)
			report(f, all)
			fail(err)
		}
	}
	if prog != nil {
		prog.Wait()
	}
	bench.StopServers(ss)
	report(f, all)
	bench.WriteScale(os.Stdout, all)
}
