package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestMain(m *testing.M) {
	if os.Getenv("TIMEDPUSH_AS_MAIN") == "1" {
		os.Args = []string{"timedpush", "-addr", "127.0.0.1:0"}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startMain runs main in a child process on 127.0.0.1:0 and returns it,
// the URL it logged and its later stderr lines.
func startMain(t *testing.T) (*exec.Cmd, string, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TIMEDPUSH_AS_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	re := regexp.MustCompile(`msg="timedpush listening" addr=127\.0\.0\.1:\d+ url=(ws://127\.0\.0\.1:\d+/time)`)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("exited without logging its address")
			}
			if m := re.FindStringSubmatch(l); m != nil {
				return cmd, m[1], lines
			}
		case <-deadline:
			t.Fatal("no 'timedpush listening' log line")
		}
	}
}

// TestLogsAddressAndPushesRFC3339: on start it logs where it listens, and
// each message is plain RFC 3339 (whole seconds), as the README says.
func TestLogsAddressAndPushesRFC3339(t *testing.T) {
	_, url, _ := startMain(t)
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339, string(msg)); err != nil || strings.Contains(string(msg), ".") {
		t.Fatalf("message %q is not plain RFC 3339: %v", msg, err)
	}
}

// TestURLHasAHost: the logged URL of a listener on every interface (the
// default -addr :8889) names a host a client can dial, not "ws://:8889".
func TestURLHasAHost(t *testing.T) {
	for addr, want := range map[string]string{
		":8889":          "ws://localhost:8889/time",
		"0.0.0.0:8889":   "ws://localhost:8889/time",
		"[::]:8889":      "ws://localhost:8889/time",
		"127.0.0.1:8889": "ws://127.0.0.1:8889/time",
		"[::1]:8889":     "ws://[::1]:8889/time",
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := wsURL(a, "/time"); got != want {
			t.Errorf("%s (%v): url %s, want %s", addr, a, got, want)
		}
	}
}

// TestSIGTERMStopsGracefully: SIGTERM closes a connected client with 1001
// (going away) and the process exits 0 within a bound.
func TestSIGTERMStopsGracefully(t *testing.T) {
	cmd, url, _ := startMain(t)
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue // a tick sent before the stop
		}
		if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Fatalf("client: %v, want close 1001", err)
		}
		break
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want 0", err)
		}
	case <-time.After(stopTimeout + 5*time.Second):
		t.Fatal("still running after SIGTERM")
	}
	t.Logf("stopped %v after SIGTERM", time.Since(t0).Round(time.Millisecond))
}
