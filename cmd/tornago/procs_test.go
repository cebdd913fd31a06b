package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
)

// childPIDs lists the live children of pid (from /proc/PID/task/*/children).
func childPIDs(t *testing.T, pid int) []int {
	t.Helper()
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// tcpSockets maps "localPort remotePort state" to the inodes of the IPv4
// TCP sockets so described, from /proc/net/tcp.
func tcpSockets(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 {
			continue
		}
		port := func(a string) int64 {
			_, p, _ := strings.Cut(a, ":")
			n, _ := strconv.ParseInt(p, 16, 32)
			return n
		}
		k := fmt.Sprintf("%d %d %s", port(fs[1]), port(fs[2]), fs[3])
		out[k] = append(out[k], fs[9])
	}
	return out
}

// socketOwner returns which of pids holds the socket inode, or 0.
func socketOwner(pids []int, inode string) int {
	want := "socket:[" + inode + "]"
	for _, pid := range pids {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && l == want {
				return pid
			}
		}
	}
	return 0
}

// serverOf returns the pid among pids that holds the server end of the
// client connection c to port.
func serverOf(t *testing.T, pids []int, port int, c net.Conn) int {
	t.Helper()
	cport := c.LocalAddr().(*net.TCPAddr).Port
	for _, inode := range tcpSockets(t)[fmt.Sprintf("%d %d 01", port, cport)] {
		if pid := socketOwner(pids, inode); pid != 0 {
			return pid
		}
	}
	return 0
}

// waitChildren waits until pid has n children, each listening on port.
func waitChildren(t *testing.T, pid, n, port int) []int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		kids := childPIDs(t, pid)
		listening := 0
		socks := tcpSockets(t)[fmt.Sprintf("%d 0 0A", port)]
		for _, k := range kids {
			for _, inode := range socks {
				if socketOwner([]int{k}, inode) == k {
					listening++
					break
				}
			}
		}
		if len(kids) == n && listening == n {
			return kids
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d children listening on %d, have %d children (%v), %d listening", n, port, len(kids), kids, listening)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dialSpread opens /ws clients until every child in pids holds at least
// min of them (SO_REUSEPORT hashes each connection to a socket), at most
// max clients; each has read its Welcome.
func dialSpread(t *testing.T, addr string, port int, pids []int, path string, min, max int) (map[int][]*gws.Conn, []*gws.Conn) {
	t.Helper()
	by := map[int][]*gws.Conn{}
	var all []*gws.Conn
	for len(all) < max {
		c := dial(t, addr, path)
		if path == "/ws" {
			if _, m := read(t, c); m != "Welcome" {
				t.Fatalf("first message %q", m)
			}
		}
		owner := serverOf(t, pids, port, c.NetConn())
		if owner == 0 {
			t.Fatalf("no child holds the server end of %v", c.LocalAddr())
		}
		by[owner] = append(by[owner], c)
		all = append(all, c)
		done := len(by) == len(pids)
		for _, cs := range by {
			done = done && len(cs) >= min
		}
		if done {
			return by, all
		}
	}
	t.Fatalf("after %d clients, not every child of %v holds %d: %d children have some", max, pids, min, len(by))
	return nil, nil
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// TestProcsReceiveReachesEveryChild: with -procs 2 -loops 2 and the
// embedded NATS, a /receive on any child reaches the /ws clients of every
// child and loop exactly once, in order.
func TestProcsReceiveReachesEveryChild(t *testing.T) {
	addr, cmd, _, stderr := startBinary(t, "-procs", "2", "-loops", "2")
	port := portOf(addr)
	kids := waitChildren(t, cmd.Process.Pid, 2, port)
	_, all := dialSpread(t, addr, port, kids, "/ws", 3, 200)
	for _, msg := range []string{"first", "second", "third"} {
		if code, body := httpGet(t, "http://"+addr+"/receive?msg="+msg); code != 200 {
			t.Fatalf("/receive: %d %s\n%s", code, body, stderr)
		}
	}
	for i, c := range all {
		for _, want := range []string{"first", "second", "third"} {
			if _, got := read(t, c); got != want {
				// A repeat would show here as the message before want.
				t.Fatalf("client %d: got %q, want %q", i, got, want)
			}
		}
	}
}

// TestProcsRestartKilledChild: a child killed with SIGKILL is started
// again, and the server keeps serving throughout; SIGTERM then gives every
// WebSocket of every child 1001 and the parent exits 0.
func TestProcsRestartKilledChildAndSIGTERM(t *testing.T) {
	addr, cmd, exited, stderr := startBinary(t, "-procs", "2")
	port := portOf(addr)
	kids := waitChildren(t, cmd.Process.Pid, 2, port)
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var now []int
	for {
		now = waitChildren(t, cmd.Process.Pid, 2, port)
		if now[0] != kids[0] && now[1] != kids[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d not replaced: %v\n%s", kids[0], now, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "child died; restarting") {
		t.Errorf("the restart was not logged:\n%s", stderr)
	}
	_, all := dialSpread(t, addr, port, now, "/ws", 2, 200)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, c := range all {
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, _, err := c.ReadMessage()
		if !gws.IsCloseError(err, gws.CloseGoingAway) {
			t.Fatalf("client %d: want close 1001, got %v", i, err)
		}
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("parent still running 20 s after SIGTERM\n%s", stderr)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("parent exit code %d, want 0\n%s", code, stderr)
	}
	// nats.go calls the disconnect handler from Close as well: a clean
	// stop is no outage.
	if strings.Contains(stderr.String(), "nats disconnected") {
		t.Errorf("a clean stop logged a NATS disconnection:\n%s", stderr)
	}
	for _, k := range now {
		if syscall.Kill(k, 0) == nil {
			t.Errorf("child %d still alive after the parent exited", k)
		}
	}
}

// TestProcsClockIdReplacedAcrossChildren: a second /clock?Id=X replaces
// the first wherever it lives (close 4000), also when the two land on
// different children, and the newest keeps ticking.
func TestProcsClockIdReplacedAcrossChildren(t *testing.T) {
	addr, cmd, _, stderr := startBinary(t, "-procs", "2", "-loops", "2")
	port := portOf(addr)
	kids := waitChildren(t, cmd.Process.Pid, 2, port)
	prev := dial(t, addr, "/clock?Id=X")
	prevOwner := serverOf(t, kids, port, prev.NetConn())
	crossed := 0
	for i := 0; i < 40 && crossed < 2; i++ {
		c := dial(t, addr, "/clock?Id=X")
		owner := serverOf(t, kids, port, c.NetConn())
		prev.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			_, _, err := prev.ReadMessage()
			if err == nil {
				continue // a tick before the close
			}
			if !gws.IsCloseError(err, 4000) {
				t.Fatalf("replacement %d (child %d -> %d): want close 4000, got %v\n%s", i, prevOwner, owner, err, stderr)
			}
			break
		}
		if owner != prevOwner {
			crossed++
		}
		prev, prevOwner = c, owner
	}
	if crossed < 2 {
		t.Fatalf("no replacement crossed children in 40 tries")
	}
	for range 2 {
		prev.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := prev.ReadMessage(); err != nil {
			t.Fatalf("the newest connection stopped ticking: %v", err)
		}
	}
}

// TestProcsGivesUpOnFailingChild: a child that dies at every start (here
// its -metrics port is taken) is restarted with back-off, then the parent
// stops the others and exits non-zero.
func TestProcsGivesUpOnFailingChild(t *testing.T) {
	held := heldPortBeforeFree(t)
	defer held.Close()
	// Child 0 serves metrics on the held port and fails; child 1 on the
	// next one, free a moment ago (below the ephemeral range, so no
	// outgoing connection of a concurrent test takes it: one did in CI,
	// and both children failed before the server served).
	_, cmd, exited, stderr := startBinary(t, "-procs", "2", "-metrics", held.Addr().String())
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("parent still running after 60 s of a failing child\n%s", stderr)
	}
	if code := cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatalf("parent exit code 0, want non-zero\n%s", stderr)
	}
	log := stderr.String()
	if n := strings.Count(log, "child died; restarting"); n != maxQuickFailures {
		t.Errorf("%d restarts logged, want %d\n%s", n, maxQuickFailures, log)
	}
	if !strings.Contains(log, "child keeps failing") {
		t.Errorf("giving up was not logged\n%s", log)
	}
}

// heldPortBeforeFree listens on a loopback port below the kernel's
// ephemeral range whose next port is free too.
func heldPortBeforeFree(t *testing.T) net.Listener {
	t.Helper()
	for range 200 {
		p := 10000 + rand.IntN(20000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		next, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		if err != nil {
			ln.Close()
			continue
		}
		next.Close()
		return ln
	}
	t.Fatal("no two free loopback ports in a row below 30000")
	return nil
}
