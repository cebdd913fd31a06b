package bench

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// natsOpen is attack j: a local process, knowing no secret, connects to
// the NATS server the target runs for itself (tornago -procs embeds one on
// a loopback port the kernel picks) and asks to be let in. Let in, it
// could read every chat message (SUB >), publish into the chat past
// /receive's checks, close any /clock?Id= with a forged claim and purge
// the JetStream streams. It finds the NATS listeners among the sockets
// the server's process tree listens on (-pid), apart from the HTTP port:
// those that greet with NATS's INFO line. Not applicable without -pid or
// when the server runs no NATS of its own.
func natsOpen(e *attackEnv) error {
	var tried []string
	accepted := false
	for _, addr := range e.natsAddrs {
		outcome, isNATS := natsConnect(addr)
		if !isNATS {
			return fmt.Errorf("%s no longer answers as a NATS server", addr)
		}
		tried = append(tried, addr+" "+outcome)
		accepted = accepted || outcome == "accepted"
	}
	e.set("nats_listeners", strings.Join(tried, "; "))
	e.set("accepted", accepted)
	return nil
}

// probeNATS is the "nats:" need: the NATS listeners of the server's own
// processes, kept in e.natsAddrs; it returns why there are none.
func (e *attackEnv) probeNATS() string {
	if e.o.PID <= 0 {
		return "needs the server's -pid to find its NATS listener"
	}
	for _, p := range ownListeners(e.o.PID, e.host) {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		if _, isNATS := natsConnect(addr); isNATS {
			e.natsAddrs = append(e.natsAddrs, addr)
		}
	}
	if len(e.natsAddrs) == 0 {
		return "no NATS listener in the server's processes (not tornago -procs, or its NATS is elsewhere)"
	}
	return ""
}

// ownListeners returns the TCP ports the processes of pid's tree listen on
// (IPv4 or IPv6, any address), without the port of host.
func ownListeners(pid int, host string) []int {
	_, hp, _ := net.SplitHostPort(host)
	skip, _ := strconv.Atoi(hp)
	byInode := map[string]int{}
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			p, err := strconv.ParseInt(fs[1][i+1:], 16, 32)
			if err == nil && int(p) != skip {
				byInode[fs[9]] = int(p)
			}
		}
	}
	seen := map[int]bool{}
	var out []int
	for _, p := range treePIDs(pid) {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		for _, fd := range fds {
			l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p, fd.Name()))
			if err != nil {
				continue
			}
			ino, ok := strings.CutPrefix(l, "socket:[")
			if port, mine := byInode[strings.TrimSuffix(ino, "]")]; ok && mine && !seen[port] {
				seen[port] = true
				out = append(out, port)
			}
		}
	}
	return out
}

// natsConnect speaks NATS's client protocol to addr without credentials:
// it reports whether addr is a NATS server (it greets with INFO) and, if
// so, "accepted" (PONG to a PING after CONNECT) or "refused: " and the
// server's -ERR.
func natsConnect(addr string) (outcome string, isNATS bool) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReaderSize(c, 64<<10)
	info, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(info, "INFO ") {
		return "", false
	}
	if _, err := c.Write([]byte("CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"name\":\"tornago-bench-attack\"}\r\nPING\r\n")); err != nil {
		return "refused: " + err.Error(), true
	}
	for {
		line, err := r.ReadString('\n')
		line = strings.TrimSpace(line)
		switch {
		case line == "PONG":
			return "accepted", true
		case strings.HasPrefix(line, "-ERR"):
			return "refused: " + line, true
		case err != nil:
			return "refused: " + err.Error(), true
		}
	}
}
