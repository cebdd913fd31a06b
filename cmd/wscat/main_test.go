package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
)

// wscatBin is the wscat binary the tests run, built once by TestMain.
// Without -race: a race-instrumented binary takes about a second per run on
// a loaded machine, and the race detector's view of Conn is in wsclient's
// TestDialConcurrentRecvClose.
var wscatBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wscat-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wscatBin = filepath.Join(dir, "wscat")
	out, err := exec.Command("go", "build", "-o", wscatBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build wscat: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type echo struct{ loop.WebSocketBase }

func (echo) OnMessage(w *loop.WebSocket, typ loop.MessageType, data []byte) {
	if typ == loop.Binary {
		w.WriteBinary(data)
		return
	}
	w.WriteText(data)
}

// refuse closes every connection with 1008 as soon as it opens.
type refuse struct{ loop.WebSocketBase }

func (refuse) Open(w *loop.WebSocket) { w.Close(loop.ClosePolicy, "go away") }

// startServer runs a loop with /echo and /refuse on 127.0.0.1 until the
// test ends.
func startServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := loop.New(loop.Options{})
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/echo", func(*loop.Request) loop.WebSocketHandler { return echo{} }, loop.WSOptions{})
	app.HandleWebSocket("/refuse", func(*loop.Request) loop.WebSocketHandler { return refuse{} }, loop.WSOptions{})
	if err := l.Listen(addr, app); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- l.Start() }()
	select {
	case <-l.Ready():
	case err := <-started:
		t.Fatalf("Start: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("loop not ready after 5s")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
		<-started
	})
	return addr
}

type result struct {
	code           int
	stdout, stderr string
}

// wscat runs the binary with stdin, bounded by 20 s.
func wscat(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wscatBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("wscat %v did not finish in 20s; stderr:\n%s", args, r.stderr)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("wscat %v: %v", args, err)
	}
	return r
}

// TestWscatHiRepeated: `printf 'hi\n' | wscat ws://.../echo`, 50 times,
// always prints the echo and exits 0 after a clean close (it failed about
// one run in four: Close raced the reader on one buffer).
func TestWscatHiRepeated(t *testing.T) {
	url := "ws://" + startServer(t) + "/echo"
	for i := range 50 {
		r := wscat(t, "hi\n", url)
		if r.code != 0 || r.stdout != "< hi\n" || !strings.Contains(r.stderr, "closed: 1000") {
			t.Fatalf("run %d: exit %d, stdout %q, stderr:\n%s", i, r.code, r.stdout, r.stderr)
		}
	}
}

// TestWscatLongLine: a line well over bufio.Scanner's 64 KiB default
// goes out whole and its echo comes back whole (it was dropped silently).
func TestWscatLongLine(t *testing.T) {
	url := "ws://" + startServer(t) + "/echo"
	long := strings.Repeat("0123456789abcdef", 200<<10/16) + "end"
	r := wscat(t, "first\n"+long+"\nlast", url) // the last line has no newline
	if want := "< first\n< " + long + "\n< last\n"; r.code != 0 || r.stdout != want {
		t.Fatalf("exit %d, stdout %d bytes (want %d), stderr:\n%s", r.code, len(r.stdout), len(want), r.stderr)
	}
}

// TestWscatLineTooLong: a line over -max-message is an error (exit 1, a
// message on stderr), not a silent stop; lines before it were sent.
func TestWscatLineTooLong(t *testing.T) {
	url := "ws://" + startServer(t) + "/echo"
	r := wscat(t, "ok\n"+strings.Repeat("x", 2000)+"\nnever\n", "-max-message", "1000", url)
	if r.code != 1 || !strings.Contains(r.stderr, "1000") || strings.Contains(r.stdout, "never") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestWscatInvalidUTF8: a line that is not UTF-8 cannot be a text message:
// an error, not a frame the server must fail with 1007.
func TestWscatInvalidUTF8(t *testing.T) {
	url := "ws://" + startServer(t) + "/echo"
	r := wscat(t, "ok\n\xff\xfe\n", url)
	if r.code != 1 || !strings.Contains(r.stderr, "UTF-8") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestWscatErrors: the failure paths exit non-zero with a message on
// stderr: bad usage (2), a refused connection, a failed handshake and a
// server closing with an error code (1).
func TestWscatErrors(t *testing.T) {
	addr := startServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no url", nil, 2, "usage"},
		{"bad flag", []string{"-nope", "ws://" + addr + "/echo"}, 2, "usage"},
		{"refused", []string{"ws://" + closed + "/echo"}, 1, "wscat:"},
		{"not found", []string{"ws://" + addr + "/missing"}, 1, "handshake"},
		{"server closes 1008", []string{"ws://" + addr + "/refuse"}, 1, "1008"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := wscat(t, "", tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", r.code, tc.code, r.stderr, tc.want)
			}
		})
	}
}

// TestWscatServerClosesWhileTyping: with stdin still open (a terminal), a
// server close ends wscat at once instead of waiting for the next line.
func TestWscatServerClosesWhileTyping(t *testing.T) {
	addr := startServer(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close() // never written: stdin stays open
	defer pr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wscatBin, "ws://"+addr+"/refuse")
	cmd.Stdin = pr
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err = cmd.Run()
	var ee *exec.ExitError
	if ctx.Err() != nil || !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errb.String(), "closed: 1008 go away") {
		t.Fatalf("wscat: %v (ctx %v), stderr:\n%s", err, ctx.Err(), errb.String())
	}
}
