package main

// -procs: the parent re-executes this binary as N children that listen on
// the same port (SO_REUSEPORT), as Tornado's fork_processes does, and
// supervises them. The parent serves nothing itself: it runs the embedded
// NATS (unless -nats names one), restarts a child that dies, forwards
// SIGINT/SIGTERM so that every child drains (WebSockets get 1001), and
// exits non-zero when a child keeps failing.

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// parentDeathSignal is what the kernel sends a child when the parent dies
// (killed: a parent that stops forwards SIGINT or SIGTERM instead). The
// child stops as for SIGTERM, then removes the embedded NATS's store
// directory, which the parent could not (afterParent).
const parentDeathSignal = syscall.SIGUSR2

// parentDied is set in a child that got parentDeathSignal.
var parentDied atomic.Bool

// afterParent runs in a child once it has stopped for parentDeathSignal:
// it waits (at most 5 s) until the parent is gone entirely, which is when
// the kernel gives the child another parent (the signal comes when the
// parent's thread that started the child ends, before its other threads
// and its files, and the store's lock with them), then removes natsDir
// (when not empty) if its lock is free.
func afterParent(log *slog.Logger, parent int, natsDir string) {
	if natsDir == "" {
		return
	}
	for deadline := time.Now().Add(5 * time.Second); os.Getppid() == parent; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return
		}
	}
	for range 50 { // should the lock outlive the reparenting a moment
		if removeOrphanedNATSDir(natsDir) {
			log.Info("removed the store directory of the embedded nats: the parent is gone", "dir", natsDir)
			return
		}
		if _, err := os.Stat(natsDir); err != nil {
			return // another child was first
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// childSlotEnv carries a child's index; its presence makes the process a
// child.
const childSlotEnv = "TORNAGO_CHILD"

// Restart policy: a child that dies is started again after a back-off that
// doubles from minBackoff to maxBackoff; a child that ran healthyAfter
// resets it. A child that dies sooner than healthyAfter once more after
// maxQuickFailures such restarts in a row makes the parent give up.
const (
	minBackoff       = 100 * time.Millisecond
	maxBackoff       = 10 * time.Second
	healthyAfter     = 10 * time.Second
	maxQuickFailures = 5
	// killAfter is how long the parent waits for children to drain
	// after forwarding a signal before it kills them.
	killAfter = stopTimeout + 5*time.Second
)

type childExit struct {
	slot int
	cmd  *exec.Cmd
	err  error
	ran  time.Duration
}

// supervise runs n children (0: one per CPU) and returns the parent's exit
// code. args are the flags the command line gave the parent, as
// -name=value, but for -nats, -procs and -port: the children get those
// from the parent, -nats through their environment, since a child's
// command line is readable by every local user (/proc/PID/cmdline,
// pprof's /cmdline) and a NATS URL may hold a password. The children
// inherit the parent's environment, so flags set there apply to them too.
func supervise(log *slog.Logger, cfg serverConfig, n int, args []string) int {
	if n <= 0 {
		n = runtime.NumCPU()
	}
	if err := checkSidePorts(cfg, n); err != nil {
		log.Error("procs", "err", err)
		return 2
	}
	// Fail early and clearly when the port is taken, and resolve -port 0
	// once so that every child listens on the same port.
	probe, err := net.Listen("tcp", net.JoinHostPort(cfg.host, strconv.Itoa(cfg.port)))
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	natsURL := cfg.natsURL
	natsDir := ""
	if natsURL == "" {
		ns, err := startNATS(log)
		if err != nil {
			log.Error("nats", "err", err)
			return 1
		}
		defer ns.Close()
		natsURL, natsDir = ns.URL(), ns.Dir()
		log.Info("embedded nats", "url", redactURL(natsURL), "dir", natsDir)
	}
	exe, err := os.Executable()
	if err != nil {
		log.Error("procs", "err", err)
		return 1
	}
	childArgs := append(append([]string(nil), args...), "-procs=1", "-port="+strconv.Itoa(port))
	// The environment, not the command line: see above. A -nats flag of
	// the children's would win over it, and args has none.
	childEnv := append(os.Environ(), envName("nats")+"="+natsURL)
	// The secrets, for the same reason (a secret given on the parent's
	// command line or in its environment: the same value; from the config
	// file: the children read it too, and this wins equally).
	if cfg.apiKey != "" {
		childEnv = append(childEnv, envName("api-key")+"="+cfg.apiKey)
	}
	if cfg.tokenSecret != "" {
		childEnv = append(childEnv, envName("token-hmac-secret")+"="+cfg.tokenSecret)
	}
	if natsDir != "" {
		childEnv = append(childEnv, natsDirEnv+"="+natsDir)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	exits := make(chan childExit, n)
	restart := make(chan int, n)
	live := make(map[int]*exec.Cmd, n)
	fails := make([]int, n)
	start := func(slot int) {
		cmd := exec.Command(exe, childArgs...)
		cmd.Env = append(childEnv[:len(childEnv):len(childEnv)], childSlotEnv+"="+strconv.Itoa(slot))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		// A child must not outlive a parent killed without a chance to
		// forward the signal: it would hold the port. The signal is its
		// own so that the child knows to clean up after the parent
		// (procs_pdeathsig.go).
		setParentDeathSignal(cmd)
		began := time.Now()
		if err := cmd.Start(); err != nil {
			exits <- childExit{slot: slot, err: err}
			return
		}
		live[slot] = cmd
		log.Info("child started", "proc", slot, "pid", cmd.Process.Pid)
		go func() {
			err := cmd.Wait()
			exits <- childExit{slot: slot, cmd: cmd, err: err, ran: time.Since(began)}
		}()
	}
	for i := range n {
		start(i)
	}
	log.Info("tornago supervising", "procs", n, "port", port)

	code := 0
	stopping := false
	var kill <-chan time.Time
	stopAll := func(s os.Signal) {
		stopping = true
		for _, c := range live {
			c.Process.Signal(s)
		}
		kill = time.After(killAfter)
	}
	for !stopping || len(live) > 0 {
		select {
		case s := <-sig:
			if stopping {
				continue
			}
			log.Info("stopping children", "signal", s.String())
			stopAll(s)
		case <-kill:
			log.Error("children still running after the drain; killing them", "left", len(live))
			for _, c := range live {
				c.Process.Kill()
			}
			code = 1
		case e := <-exits:
			if e.cmd != nil && live[e.slot] == e.cmd {
				delete(live, e.slot)
			}
			if stopping {
				if e.err != nil {
					log.Warn("child stopped with an error", "proc", e.slot, "err", e.err)
					code = 1
				}
				continue
			}
			if e.ran >= healthyAfter {
				fails[e.slot] = 0
			}
			fails[e.slot]++
			if fails[e.slot] > maxQuickFailures {
				log.Error("child keeps failing; stopping", "proc", e.slot, "failures", fails[e.slot]-1, "err", e.err)
				code = 1
				stopAll(syscall.SIGTERM)
				continue
			}
			wait := min(minBackoff<<(fails[e.slot]-1), maxBackoff)
			log.Warn("child died; restarting", "proc", e.slot, "err", e.err, "ran", e.ran.Round(time.Millisecond), "backoff", wait)
			slot := e.slot
			time.AfterFunc(wait, func() { restart <- slot })
		case slot := <-restart:
			if !stopping {
				start(slot)
			}
		}
	}
	log.Info("children stopped", "exit", code)
	return code
}

// checkSidePorts refuses a -procs configuration whose side listeners
// would collide: child i serves -metrics and -pprof on their port plus i,
// so the two ranges of n ports must not overlap each other or the server's
// port (a child would fail to start, again and again). A port 0 (the
// kernel picks one per child) never collides.
func checkSidePorts(cfg serverConfig, n int) error {
	type span struct {
		flag, host string
		first, n   int
	}
	spans := []span{{"-port", cfg.host, cfg.port, 1}}
	for _, s := range []struct{ flag, addr string }{{"-metrics", cfg.metricsAddr}, {"-pprof", cfg.pprofAddr}} {
		if s.addr == "" {
			continue
		}
		host, ps, err := net.SplitHostPort(sideAddr(s.addr, cfg.host))
		if err != nil {
			return fmt.Errorf("%s %q: %w", s.flag, s.addr, err)
		}
		p, err := strconv.Atoi(ps)
		if err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("%s %q: the port must be a number from 0 to 65535", s.flag, s.addr)
		}
		if p != 0 && p+n-1 > 65535 {
			return fmt.Errorf("%s %q with -procs %d: child %d would need port %d, past 65535", s.flag, s.addr, n, n-1, p+n-1)
		}
		spans = append(spans, span{s.flag, host, p, n})
	}
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.first == 0 || b.first == 0 || !sameHosts(a.host, b.host) {
				continue
			}
			if a.first <= b.first+b.n-1 && b.first <= a.first+a.n-1 {
				return fmt.Errorf("with -procs %d, child i serves -metrics and -pprof on their port plus i: %s uses ports %d-%d and %s %d-%d, which overlap; move one past the other's range",
					n, a.flag, a.first, a.first+a.n-1, b.flag, b.first, b.first+b.n-1)
			}
		}
	}
	return nil
}

// sameHosts reports whether listeners on hosts a and b may conflict on
// one port: the same host, or either is every interface.
func sameHosts(a, b string) bool {
	everywhere := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return a == b || everywhere(a) || everywhere(b)
}
