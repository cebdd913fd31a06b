package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
)

func TestApplyEnvFlagsWin(t *testing.T) {
	newFS := func() (*flag.FlagSet, *int, *string) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		return fs, fs.Int("port", 8888, ""), fs.String("log-level", "info", "")
	}
	env := map[string]string{"TORNAGO_PORT": "9000", "TORNAGO_LOG_LEVEL": "debug"}
	fs, port, level := newFS()
	fs.Parse([]string{"-port", "9001"})
	if err := applyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *port != 9001 || *level != "debug" {
		t.Fatalf("port %d level %q: want the flag's 9001 and the environment's debug", *port, *level)
	}
	fs, _, _ = newFS()
	fs.Parse(nil)
	err := applyEnv(fs, func(k string) string { return map[string]string{"TORNAGO_PORT": "x"}[k] })
	if err == nil || !strings.Contains(err.Error(), "TORNAGO_PORT") {
		t.Fatalf("invalid value: %v", err)
	}
}

func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	log, err := newLogger(&b, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil || rec["msg"] != "shown" {
		t.Fatalf("json log %q: %v", b.String(), err)
	}
	if _, err := newLogger(io.Discard, "loud", "text"); err == nil {
		t.Fatal("level loud accepted")
	}
	if _, err := newLogger(io.Discard, "info", "xml"); err == nil {
		t.Fatal("format xml accepted")
	}
}

// TestHealthzFromTheLoop: /healthz answers, the access log records it, and
// while the loop is blocked /healthz does not answer (a check run off the
// loop would still say ok).
func TestHealthzFromTheLoop(t *testing.T) {
	entries := make(chan loop.AccessEntry, 16)
	l := loop.New(loop.Options{})
	opts := demoAppOptions(longPollOptions{})
	opts.AccessLog = func(e loop.AccessEntry) { entries <- e }
	app := loop.NewApplication(opts)
	addHealthz(app)
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		t.Fatal(err)
	}
	go l.Start()
	<-l.Ready()
	defer l.Stop(t.Context())
	u := "http://" + l.Addr().String() + "/healthz"
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"ok"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	select {
	case e := <-entries:
		if e.Method != "GET" || e.Path != "/healthz" || e.Status != 200 || e.Bytes != len(body) || net.ParseIP(e.Remote) == nil {
			t.Fatalf("access entry %+v", e)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no access log entry")
	}
	release, stuck := make(chan struct{}), make(chan struct{})
	l.AddCallback(func() { close(stuck); <-release }) // a stuck loop
	defer close(release)
	<-stuck
	c.Timeout = 300 * time.Millisecond
	if resp, err := c.Get(u); err == nil {
		resp.Body.Close()
		t.Fatal("/healthz answered while the loop was stuck")
	}
}

// TestBinaryConfigFromEnvironment: the binary takes its flags from TORNAGO_*
// variables, flags win (TORNAGO_PORT is not a port; -port is), the access
// log comes out as JSON, and it names the client from the one proxy header
// family -proxy-header picks (a bad one stops the binary at once).
func TestBinaryConfigFromEnvironment(t *testing.T) {
	bin := buildTornago(t)
	out, err := exec.Command(bin, "-proxy-header", "X-Client-IP").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "-proxy-header") {
		t.Errorf("-proxy-header X-Client-IP: %v %q, want exit 2 naming the flag", err, out)
	}
	// A bad -trusted-proxies panicked in loop.NewApplication after the
	// loops started: exit 2 naming the flag, before anything starts.
	out, err = exec.Command(bin, "-trusted-proxies", "10.0.0.1,not-an-ip").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "-trusted-proxies") || strings.Contains(string(out), "panic") {
		t.Errorf("-trusted-proxies 10.0.0.1,not-an-ip: %v %q, want exit 2 naming the flag", err, out)
	}
	t.Setenv("TORNAGO_PORT", "not-a-port")
	t.Setenv("TORNAGO_LOG_FORMAT", "json")
	t.Setenv("TORNAGO_ACCESS_LOG", "true")
	t.Setenv("TORNAGO_TRUSTED_PROXIES", "127.0.0.1")
	t.Setenv("TORNAGO_PROXY_HEADER", "forwarded")
	addr, _, _, stderr := startBuilt(t, bin)
	req, _ := http.NewRequest("GET", "http://"+addr+"/index", nil)
	req.Header.Set("Forwarded", "for=203.0.113.5")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	// The readiness probes are in the log too, from 127.0.0.1 with no
	// proxy header; the request above is the one from 203.0.113.5.
	for !strings.Contains(stderr.String(), `"remote_ip":"203.0.113.5"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no JSON access log line with the forwarded client:\n%s", stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if rec["msg"] == "access" && rec["path"] == "/index" && (rec["status"] != float64(200) || rec["remote_ip"] == "6.6.6.6") {
			t.Fatalf("access line %q", line)
		}
	}
}
