package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func procField(pid int, file, key string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key) {
			return strings.TrimSpace(strings.TrimPrefix(line, key))
		}
	}
	return ""
}

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
	p := "self"
	if pid > 0 {
		p = strconv.Itoa(pid)
	}
	b, err := os.ReadFile("/proc/" + p + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// cpuMeter measures the server's (pid) and this harness's CPU over a phase.
type cpuMeter struct {
	pid         int
	t0          time.Time
	srv0, self0 int64
}

func startCPU(pid int) cpuMeter {
	m := cpuMeter{pid: pid, t0: time.Now(), self0: cpuTicks(0)}
	if pid > 0 {
		m.srv0 = cpuTicks(pid)
	}
	return m
}

// CPU is the CPU time used during a phase, in seconds and % of one core.
// The server's figures are nil (absent from the JSON) without a -pid.
type CPU struct {
	Wall          float64  `json:"wall_s"`
	Server        *float64 `json:"server_cpu_s,omitempty"`
	ServerPct     *float64 `json:"server_cpu_pct,omitempty"`
	Harness       float64  `json:"harness_cpu_s"`
	HarnessPct    float64  `json:"harness_cpu_pct"`
	ServerMeasure bool     `json:"server_measured"`
}

func (m cpuMeter) stop() CPU {
	c := CPU{Wall: time.Since(m.t0).Seconds()}
	c.Harness = float64(cpuTicks(0)-m.self0) / 100
	if c.Wall > 0 {
		c.HarnessPct = c.Harness / c.Wall * 100
	}
	if m.pid > 0 && alive(m.pid) {
		srv := float64(cpuTicks(m.pid)-m.srv0) / 100
		c.Server, c.ServerMeasure = &srv, true
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
