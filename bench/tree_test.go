//go:build linux

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTree starts sh -c script and, at the end, kills it and every
// descendant it still has, by PID.
func startTree(t *testing.T, script string) int {
	t.Helper()
	c := exec.Command("/bin/sh", "-c", script)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	pid := c.Process.Pid
	t.Cleanup(func() {
		for _, p := range treePIDs(pid)[1:] {
			syscall.Kill(p, syscall.SIGKILL)
		}
		c.Process.Kill()
		c.Wait()
	})
	return pid
}

// waitFor polls cond until it holds (at most 20 s).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for t0 := time.Now(); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Since(t0) > 20*time.Second {
			t.Fatalf("after 20 s: %s", what)
		}
	}
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// TestProcTree: a shell with two sleeping children is a tree of three
// whose RSS and threads are the sum of the three.
func TestProcTree(t *testing.T) {
	pid := startTree(t, "sleep 60 & sleep 60 & wait")
	// Both children exec'd: until then a child is still "sh".
	waitFor(t, "two sleep children", func() bool {
		ps := treePIDs(pid)
		return len(ps) == 3 && comm(ps[1]) == "sleep" && comm(ps[2]) == "sleep"
	})
	ps := treePIDs(pid)
	if ps[0] != pid {
		t.Fatalf("tree %v does not start with %d", ps, pid)
	}
	var sum int64
	for _, p := range ps[1:] {
		if c := comm(p); c != "sleep" {
			t.Fatalf("descendant %d is %q, want sleep", p, c)
		}
		sum += rss(p)
	}
	// The tree's figure is the sum of the processes' Pss: more than any
	// one of them, at most the sum of their RSS (shared pages count once).
	var pssSum int64
	for _, p := range ps {
		pssSum += pss(p)
	}
	if tr := treeRSS(pid); sum == 0 || tr <= pss(pid) || tr > rss(pid)+sum || tr < pssSum/2 {
		t.Fatalf("tree %d, shell Pss %d RSS %d, children RSS %d, Pss sum %d", tr, pss(pid), rss(pid), sum, pssSum)
	}
	// The scan of every /proc/*/stat (kernels without task/*/children)
	// finds the same tree.
	root, _ := readStat(pid)
	var scanned []int
	for _, st := range scanTree(root) {
		scanned = append(scanned, st.pid)
	}
	if !slices.Equal(sorted(scanned), sorted(ps)) {
		t.Fatalf("scan %v, children files %v", scanned, ps)
	}
	if n := treeThreads(pid); n != 3 {
		t.Fatalf("tree threads %d, want 3", n)
	}
	if !isDescendant(ps[1], pid) || isDescendant(pid, ps[1]) {
		t.Fatalf("isDescendant wrong for %d under %d", ps[1], pid)
	}
}

// TestTreeCPUCountsExitedChildren: the CPU of a child that already exited
// (a -procs child restarted) still counts, in the parent that reaped it.
func TestTreeCPUCountsExitedChildren(t *testing.T) {
	pid := startTree(t, "( i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done ); sleep 60")
	waitFor(t, "the busy subshell to exit and sleep to start", func() bool {
		ps := treePIDs(pid)
		return len(ps) == 2 && comm(ps[1]) == "sleep"
	})
	ticks, procs := treeCPU(pid)
	own := cpuTicks(pid)
	if procs != 2 || ticks-own < 5 {
		t.Fatalf("tree CPU %d ticks over %d processes, the shell's own %d: the exited child's CPU is missing", ticks, procs, own)
	}
}

// TestCPUMeterOverTree: a busy child of the -pid is the server's CPU, and
// the meter counts the processes.
func TestCPUMeterOverTree(t *testing.T) {
	pid := startTree(t, "while :; do :; done & sleep 60 & wait")
	waitFor(t, "two children", func() bool { return len(treePIDs(pid)) == 3 })
	m := startCPU(pid)
	time.Sleep(500 * time.Millisecond)
	c := m.stop()
	if c.Server == nil || *c.Server < 0.05 || c.ServerProcs != 3 || c.ServerProcsGone != 0 {
		t.Fatalf("cpu %+v (server %v)", c, c.Server)
	}
	// A child gone between start and stop is reported.
	kids := treePIDs(pid)[1:]
	m = startCPU(pid)
	for _, p := range kids {
		if comm(p) == "sleep" {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
	waitFor(t, "sleep reaped", func() bool { return len(treePIDs(pid)) == 2 })
	if c = m.stop(); c.ServerProcsGone != 1 || c.ServerProcs != 2 {
		t.Fatalf("after a child exited: %+v", c)
	}
}

// TestCheckPIDTree: a parent whose child owns the listening socket (the
// shape of tornago -procs) passes; an ancestor of the harness does not;
// a run with it as -pid reports the tree's processes and CPU.
func TestCheckPIDTree(t *testing.T) {
	bin, err := build(moduleRoot(t), "./cmd/tornago", "tornago", &syncWriter{})
	if err != nil {
		t.Fatal(err)
	}
	const port = 18744
	if err := waitPortFree(fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	pid := startTree(t, fmt.Sprintf("%s -port %d -log-level error & wait", bin, port))
	host := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitListening(host, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	u := "ws://" + host + "/clock"
	if err := CheckPID(pid, u); err != nil {
		t.Fatalf("parent of the listener: %v", err)
	}
	if err := CheckPID(os.Getppid(), u); err == nil || !strings.Contains(err.Error(), "ancestor of this harness") {
		t.Fatalf("the harness's parent: %v", err)
	}
	if err := CheckPID(startTree(t, "sleep 60 & wait"), u); err == nil || !strings.Contains(err.Error(), "is not the process listening") {
		t.Fatalf("an unrelated tree: %v", err)
	}
	r, err := Push(PushOptions{URL: u, Conns: 20, Duration: 1500 * time.Millisecond, PID: pid})
	checkRun(t, r, err, 20)
	if r.CPU.ServerProcs != 2 {
		t.Fatalf("server processes %d, want 2 (sh and tornago): %+v", r.CPU.ServerProcs, r.CPU)
	}
	if ps := treePIDs(pid); !slices.ContainsFunc(ps[1:], func(p int) bool { return comm(p) == "tornago" }) {
		t.Fatalf("tree %v has no tornago", ps)
	}
}

func sorted(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
