// Package bench is Tornago's load harness: scenarios that work against any
// RFC 6455 server and report the server's memory and CPU from /proc.
package bench

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// IdleResult is the outcome of the idle scenario.
type IdleResult struct {
	Conns         int           `json:"conns"`
	Errors        int           `json:"errors"`
	RSSBefore     int64         `json:"rss_before_bytes"`
	RSSAfter      int64         `json:"rss_after_bytes"`
	BytesPerConn  float64       `json:"rss_per_conn_bytes"`
	ThreadsAfter  int           `json:"server_threads"`
	ConnectP50    time.Duration `json:"connect_p50_ns"`
	ConnectP99    time.Duration `json:"connect_p99_ns"`
	ServerCPUIdle float64       `json:"server_cpu_idle_pct"`
}

// Idle opens n upgraded WebSocket connections to rawURL, holding them with
// no goroutine each, spreading source addresses over 127.0.0.x (x from 1 to
// srcAddrs) so that ephemeral ports do not run out, and reports the server's
// (pid) RSS growth per connection and its idle CPU over hold.
func Idle(rawURL string, n, pid, srcAddrs int, hold time.Duration, progress func(done, errs int)) (IdleResult, []net.Conn, error) {
	var res IdleResult
	u, err := url.Parse(rawURL)
	if err != nil {
		return res, nil, fmt.Errorf("bench idle: %w", err)
	}
	if srcAddrs < 1 {
		srcAddrs = 1
	}
	req := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	res.RSSBefore = rss(pid)
	conns := make([]net.Conn, 0, n)
	lat := make([]time.Duration, 0, n)
	buf := make([]byte, 1024)
	for i := 0; i < n; i++ {
		d := net.Dialer{Timeout: 5 * time.Second}
		if srcAddrs > 1 {
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%srcAddrs))}
		}
		start := time.Now()
		c, err := d.Dial("tcp", u.Host)
		if err == nil {
			_, err = c.Write(req)
		}
		if err == nil {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var got int
			for err == nil && !bytes.Contains(buf[:got], []byte("\r\n\r\n")) {
				var k int
				k, err = c.Read(buf[got:])
				got += k
			}
			if err == nil && !bytes.HasPrefix(buf[:got], []byte("HTTP/1.1 101")) {
				err = fmt.Errorf("no 101: %q", buf[:min(got, 40)])
			}
		}
		if err != nil {
			res.Errors++
			if c != nil {
				c.Close()
			}
			continue
		}
		lat = append(lat, time.Since(start))
		conns = append(conns, c)
		if progress != nil && (i+1)%500 == 0 {
			progress(i+1, res.Errors)
		}
	}
	res.Conns = len(conns)
	time.Sleep(500 * time.Millisecond)
	cpu0 := cpuTicks(pid)
	time.Sleep(hold)
	cpu1 := cpuTicks(pid)
	res.ServerCPUIdle = float64(cpu1-cpu0) / 100 / hold.Seconds() * 100
	res.RSSAfter = rss(pid)
	if res.Conns > 0 {
		res.BytesPerConn = float64(res.RSSAfter-res.RSSBefore) / float64(res.Conns)
	}
	res.ThreadsAfter = threads(pid)
	res.ConnectP50, res.ConnectP99 = percentile(lat, 50), percentile(lat, 99)
	return res, conns, nil
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	for i := 1; i < len(s); i++ { // insertion sort is fine for a report
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[(len(s)-1)*p/100]
}

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

// cpuTicks is utime+stime of pid in clock ticks (100 Hz on Linux).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
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
