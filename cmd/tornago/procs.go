package main

// -procs: the parent re-executes this binary as N children that listen on
// the same port (SO_REUSEPORT), as Tornado's fork_processes does, and
// supervises them. The parent serves nothing itself: it runs the embedded
// NATS (unless -nats names one), restarts a child that dies, forwards
// SIGINT/SIGTERM so that every child drains (WebSockets get 1001), and
// exits non-zero when a child keeps failing.

import (
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// childEnv carries a child's index; its presence makes the process a child.
const childEnv = "TORNAGO_CHILD"

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
// code. args are the parent's own arguments, passed on to the children.
func supervise(log *slog.Logger, cfg serverConfig, n int, args []string) int {
	if n <= 0 {
		n = runtime.NumCPU()
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
	if natsURL == "" {
		ns, err := startNATS()
		if err != nil {
			log.Error("nats", "err", err)
			return 1
		}
		defer ns.Close()
		natsURL = ns.URL()
		log.Info("embedded nats", "url", natsURL)
	}
	exe, err := os.Executable()
	if err != nil {
		log.Error("procs", "err", err)
		return 1
	}
	// Later flags win: the children get the resolved port and the broker.
	childArgs := append(append([]string(nil), args...), "-procs=1", "-port="+strconv.Itoa(port), "-nats="+natsURL)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	exits := make(chan childExit, n)
	restart := make(chan int, n)
	live := make(map[int]*exec.Cmd, n)
	fails := make([]int, n)
	start := func(slot int) {
		cmd := exec.Command(exe, childArgs...)
		cmd.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(slot))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		// A child must not outlive a parent killed without a chance to
		// forward the signal: it would hold the port (procs_pdeathsig.go).
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
