package bench

import (
	"strconv"
	"strings"
	"time"
)

// rss is the resident set of pid in bytes, 0 when unknown.
func rss(pid int) int64 {
	f := strings.Fields(procField(pid, "status", "VmRSS:"))
	if len(f) == 0 {
		return 0
	}
	kb, _ := strconv.ParseInt(f[0], 10, 64)
	return kb * 1024
}

func threads(pid int) int {
	n, _ := strconv.Atoi(procField(pid, "status", "Threads:"))
	return n
}

// cpuTicks is utime+stime of pid in clock ticks (100 Hz on Linux); pid 0
// reads this process.
func cpuTicks(pid int) int64 {
	st, _ := readStat(pid)
	return st.cpu
}

// cpuMeter measures the server's (pid and its descendants) and this
// harness's (this process and its harness children) CPU over a phase.
type cpuMeter struct {
	pid         int
	harness     []int
	t0          time.Time
	srv0, self0 int64
	procs0      []int
}

// startCPU starts measuring; harness are the harness's child processes
// whose CPU is the harness's, not the server's.
func startCPU(pid int, harness ...int) cpuMeter {
	m := cpuMeter{pid: pid, harness: harness, t0: time.Now(), self0: harnessTicks(harness)}
	if pid > 0 {
		m.srv0, _ = treeCPU(pid)
		m.procs0 = treePIDs(pid)
	}
	return m
}

func harnessTicks(children []int) int64 {
	t := cpuTicks(0)
	for _, c := range children {
		t += cpuTicks(c)
	}
	return t
}

// CPU is the CPU time used during a phase, in seconds and % of one core.
// The server's figures are nil (absent from the JSON) without a -pid; they
// are summed over the -pid's process tree.
type CPU struct {
	Wall          float64  `json:"wall_s"`
	Server        *float64 `json:"server_cpu_s,omitempty"`
	ServerPct     *float64 `json:"server_cpu_pct,omitempty"`
	Harness       float64  `json:"harness_cpu_s"`
	HarnessPct    float64  `json:"harness_cpu_pct"`
	ServerMeasure bool     `json:"server_measured"`
	// ServerProcs is how many processes the server's tree held at the end
	// (the -pid and its descendants); ServerProcsGone how many of those at
	// the start had exited by then (a child that crashed or was restarted).
	ServerProcs     int `json:"server_procs,omitempty"`
	ServerProcsGone int `json:"server_procs_gone,omitempty"`
	// HarnessProcs is this process plus its harness children.
	HarnessProcs int `json:"harness_procs"`
}

func (m cpuMeter) stop() CPU {
	c := CPU{Wall: time.Since(m.t0).Seconds(), HarnessProcs: 1 + len(m.harness)}
	c.Harness = float64(harnessTicks(m.harness)-m.self0) / 100
	if c.Wall > 0 {
		c.HarnessPct = c.Harness / c.Wall * 100
	}
	if procStats && m.pid > 0 && alive(m.pid) {
		t, n := treeCPU(m.pid)
		srv := float64(t-m.srv0) / 100
		c.Server, c.ServerMeasure, c.ServerProcs = &srv, true, n
		now := map[int]bool{}
		for _, p := range treePIDs(m.pid) {
			now[p] = true
		}
		for _, p := range m.procs0 {
			if !now[p] {
				c.ServerProcsGone++
			}
		}
		if c.Wall > 0 {
			pct := srv / c.Wall * 100
			c.ServerPct = &pct
		}
	}
	return c
}

// Pace says which side most likely set the pace: the side whose busiest
// figure is closest to saturating what it can use (the server is one loop
// for Tornago; the harness may use every core).
func (c CPU) Pace(harnessCores float64) string {
	if !c.ServerMeasure || c.ServerPct == nil {
		return "unknown (no -pid)"
	}
	h := c.HarnessPct / (100 * harnessCores)
	s := *c.ServerPct / 100
	switch {
	case h >= 0.85 && h > s:
		return "client (harness CPU-bound)"
	case s >= 0.85:
		return "server (server CPU-bound)"
	default:
		return "neither saturated (latency-bound)"
	}
}
