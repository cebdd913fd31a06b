package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tornago/tornago/internal/notrun"
)

// lockedBuffer collects a subprocess's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startBinary builds cmd/tornago and runs it on a free loopback port until
// the test ends; it returns the address, the process, a channel closed once
// it has exited (cmd.ProcessState is set then) and its stderr.
func startBinary(t *testing.T, args ...string) (string, *exec.Cmd, <-chan struct{}, *lockedBuffer) {
	t.Helper()
	return startBuilt(t, buildTornago(t), args...)
}

// buildTornago builds cmd/tornago into the test's temporary directory and
// returns the binary's path.
func buildTornago(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		notrun.Skip(t, "no go tool on PATH")
	}
	bin := filepath.Join(t.TempDir(), "tornago")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startBuilt is startBinary with a binary from buildTornago.
func startBuilt(t *testing.T, bin string, args ...string) (string, *exec.Cmd, <-chan struct{}, *lockedBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return startBuiltAt(t, bin, addr, args...)
}

// startBuiltAt is startBuilt on a given 127.0.0.1 address (a restart on the
// same port).
func startBuiltAt(t *testing.T, bin, addr string, args ...string) (string, *exec.Cmd, <-chan struct{}, *lockedBuffer) {
	t.Helper()
	return startBuiltEnv(t, bin, addr, nil, args...)
}

// startBuiltEnv is startBuiltAt with env added to the test's environment.
func startBuiltEnv(t *testing.T, bin, addr string, env []string, args ...string) (string, *exec.Cmd, <-chan struct{}, *lockedBuffer) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, append([]string{"-host", "127.0.0.1", "-port", port}, args...)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	c := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.Get("http://" + addr + "/index")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return addr, cmd, exited, stderr
			}
		}
		select {
		case <-exited:
			t.Fatalf("server exited before serving: %v\n%s", cmd.ProcessState, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not serving after 15 s: %v\n%s", err, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBinarySIGTERMAnswersLongPolls: a long poll parked when the server gets
// SIGTERM is answered at once with a complete, empty page (the client just
// polls again, elsewhere or later), and the process exits 0 without waiting
// out the stop timeout.
func TestBinarySIGTERMAnswersLongPolls(t *testing.T) {
	addr, cmd, exited, stderr := startBinary(t, "-ping", "0")
	base := "http://" + addr
	c := &http.Client{Timeout: 20 * time.Second}

	type result struct {
		code int
		body []byte
		err  error
		at   time.Time
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.PostForm(base+"/update-message", url.Values{"cursor": {"0"}})
		if err != nil {
			done <- result{err: err, at: time.Now()}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body) // fails on a truncated body
		done <- result{resp.StatusCode, body, err, time.Now()}
	}()
	// Wait until the server has parked the poll (it reports its waiters).
	deadline := time.Now().Add(10 * time.Second)
	for {
		var s struct{ Waiting int }
		code, body := postRaw(t, c, base+"/poll-message", url.Values{})
		if code == 200 && json.Unmarshal(body, &s) == nil && s.Waiting >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the long poll was never parked: last /poll-message %d %q", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}

	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("pending poll after SIGTERM: %v (after %v)\n%s", r.err, r.at.Sub(sent), stderr)
		}
		var p pageReply
		if r.code != 200 || json.Unmarshal(r.body, &p) != nil || p.Messages == nil || len(p.Messages) != 0 {
			t.Fatalf("pending poll after SIGTERM: %d %q, want 200 with an empty message list", r.code, r.body)
		}
		t.Logf("pending poll answered %v after SIGTERM", r.at.Sub(sent).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		t.Fatalf("pending poll not answered within 3 s of SIGTERM\n%s", stderr)
	}

	select {
	case <-exited:
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("server exited with %d after SIGTERM, want 0\n%s", code, stderr)
		}
		t.Logf("exited 0 %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	case <-time.After(8 * time.Second):
		t.Fatalf("server still running 8 s after SIGTERM\n%s", stderr)
	}
}
