package bench

import (
	"strconv"
	"strings"
)

// A server started with -procs is a parent (supervisor, embedded NATS)
// whose children serve the port, and children may be restarted: every
// figure read "of the server" is summed over the -pid and all its
// descendants, and the tree is read again at each sample.

// procStat is what /proc/PID/stat says about one process.
type procStat struct {
	pid, ppid int
	// cpu is utime+stime, child the cutime+cstime of reaped children, in
	// clock ticks.
	cpu, child int64
}

func parseStat(s string) (procStat, bool) {
	// The command name in parentheses may hold spaces: fields start after
	// the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return procStat{}, false
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(s[:strings.IndexByte(s, ' ')]))
	f := strings.Fields(s[i+2:])
	if len(f) < 15 {
		return procStat{}, false
	}
	// f[0] state, f[1] ppid, ... f[11] utime, f[12] stime, f[13] cutime, f[14] cstime
	num := func(k int) int64 { v, _ := strconv.ParseInt(f[k], 10, 64); return v }
	return procStat{pid: pid, ppid: int(num(1)), cpu: num(11) + num(12), child: num(13) + num(14)}, true
}

// procTree is pid and all its descendants (pid first), read from /proc
// now; empty when pid is gone.
func procTree(pid int) []procStat {
	root, ok := readStat(pid)
	if !ok {
		return nil
	}
	out := []procStat{root}
	for i := 0; i < len(out); i++ {
		kids, ok := childrenOf(out[i].pid)
		if !ok {
			return scanTree(root)
		}
		for _, k := range kids {
			if st, ok := readStat(k); ok {
				out = append(out, st)
			}
		}
	}
	return out
}

// treePIDs are the pids of procTree(pid).
func treePIDs(pid int) []int {
	var out []int
	for _, st := range procTree(pid) {
		out = append(out, st.pid)
	}
	return out
}

// treeCPU is the CPU ticks of pid's tree: each live process's own time
// plus the time of the children it reaped, so that a child that exited
// (or was restarted) during a phase still counts once, in its parent.
func treeCPU(pid int) (ticks int64, procs int) {
	t := procTree(pid)
	for _, st := range t {
		ticks += st.cpu + st.child
	}
	return ticks, len(t)
}

// treeRSS is the memory of pid's tree in bytes, 0 when pid is gone. One
// process: its resident set (VmRSS), as before. Several: the sum of their
// proportional set sizes (Pss), in which a page shared by k processes
// counts 1/k in each, so the binary's pages, mapped by the parent and
// every child, count once and not once per process (13 MB each for
// cmd/tornago, more than the connections of a child).
func treeRSS(pid int) int64 {
	ps := treePIDs(pid)
	if len(ps) <= 1 {
		return rss(pid)
	}
	var sum int64
	for _, p := range ps {
		sum += pss(p)
	}
	return sum
}

// pss is the proportional set size of pid in bytes (smaps_rollup), its
// VmRSS on kernels without smaps_rollup.
func pss(pid int) int64 {
	f := strings.Fields(procField(pid, "smaps_rollup", "Pss:"))
	if len(f) == 0 {
		return rss(pid)
	}
	kb, _ := strconv.ParseInt(f[0], 10, 64)
	return kb * 1024
}

// treeThreads is the thread count of pid's tree.
func treeThreads(pid int) int {
	n := 0
	for _, p := range treePIDs(pid) {
		n += threads(p)
	}
	return n
}

// isDescendant reports whether pid is a strict descendant of root.
func isDescendant(pid, root int) bool {
	for seen := 0; pid > 1 && seen < 1000; seen++ {
		st, ok := readStat(pid)
		if !ok {
			return false
		}
		if st.ppid == root {
			return true
		}
		pid = st.ppid
	}
	return false
}
