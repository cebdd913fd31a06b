package main

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strings"
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

// TestLogsAddressAndPushesRFC3339: on start it logs where it listens, and
// each message is plain RFC 3339 (whole seconds), as the README says.
func TestLogsAddressAndPushesRFC3339(t *testing.T) {
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
	var url string
	re := regexp.MustCompile(`msg="timedpush listening" addr=127\.0\.0\.1:\d+ url=(ws://\S+/time)`)
	deadline := time.After(20 * time.Second)
	for url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("exited without logging its address")
			}
			if m := re.FindStringSubmatch(l); m != nil {
				url = m[1]
			}
		case <-deadline:
			t.Fatal("no 'timedpush listening' log line")
		}
	}
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
