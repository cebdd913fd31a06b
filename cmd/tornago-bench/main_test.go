package main

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestMain runs main instead of the tests when re-executed by bench below.
func TestMain(m *testing.M) {
	if os.Getenv("TORNAGO_BENCH_AS_MAIN") == "1" {
		os.Args = append([]string{"tornago-bench"}, strings.Fields(os.Getenv("TORNAGO_BENCH_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runBench runs this test binary as tornago-bench with args.
func runBench(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TORNAGO_BENCH_AS_MAIN=1", "TORNAGO_BENCH_ARGS="+strings.Join(args, " "))
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestHelp: -h and -help on the binary and on each scenario print the usage
// with every flag and its default, and exit 0.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-help"}, {"echo", "-h"}, {"idle", "-help"}, {"compare", "-h"}, {"scale", "-h"}, {"attack", "-h"}} {
		out, errOut, code := runBench(t, args...)
		all := out + errOut
		if code != 0 {
			t.Errorf("%v: exit %d\n%s", args, code, all)
		}
		for _, want := range []string{"usage: tornago-bench", "-url", "-pid", "-max-fail", "-server", "(default 10s)", "(default 2000)"} {
			if !strings.Contains(all, want) {
				t.Errorf("%v: no %q in\n%s", args, want, all)
			}
		}
	}
	if _, errOut, code := runBench(t, "nosuch"); code != 2 || !strings.Contains(errOut, `unknown scenario "nosuch"`) {
		t.Errorf("unknown scenario: exit %d\n%s", code, errOut)
	}
}

// TestNothingListeningExits1: against a refused port the binary says why in
// one line on stderr and exits 1.
func TestNothingListeningExits1(t *testing.T) {
	out, errOut, code := runBench(t, "echo", "-url", "ws://127.0.0.1:1/echo", "-c", "10", "-d", "30s", "-progress=false")
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], "no connection opened") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, `"invalid":"no connection opened`) || strings.Contains(out, "server_cpu") {
		t.Fatalf("stdout:\n%s", out)
	}
}

func TestLabel(t *testing.T) {
	if got := label(&flags{url: "ws://127.0.0.1:8888/echo"}); got != "127.0.0.1:8888" {
		t.Errorf("label from URL = %q", got)
	}
	if got := label(&flags{url: "ws://127.0.0.1:8888/echo", server: "mine"}); got != "mine" {
		t.Errorf("label from -server = %q", got)
	}
}

// TestScale: scale -servers starts each server, runs every scenario
// against each (here spread over two harness processes), and prints the
// scaling table with one row per server.
func TestScale(t *testing.T) {
	out, errOut, code := runBench(t, "scale", "-servers", "tornago,gorilla", "-scenarios", "push:30,echo", "-n", "99", "-c", "10",
		"-d", "1500ms", "-cprocs", "2", "-port", "18750", "-progress=false")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"push: median of 1 run(s) per server; (x) = ratio to tornago", "echo: median of 1 run(s)",
		"x 2 processes", "tick p99 ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	rows := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "tornago ") || strings.HasPrefix(l, "gorilla ") {
			rows++
			// push:30 replaced -n 99; echo kept -c 10.
			if f := strings.Fields(l); f[1] != "30" && f[1] != "10" {
				t.Errorf("row %q: conns %s, want 30 (push) or 10 (echo)", l, f[1])
			}
		}
	}
	if rows != 4 {
		t.Errorf("%d table rows, want 2 scenarios x 2 servers:\n%s", rows, out)
	}
}

func TestSweepServers(t *testing.T) {
	f := parse("scale", []string{"-loops", "1,2,16"})
	if got, err := sweepServers(f); err != nil || strings.Join(got, ",") != "tornago-loops1,tornago-loops2,tornago-loops16" {
		t.Errorf("loops sweep = %v %v", got, err)
	}
	f = parse("scale", []string{"-loops", "1,4", "-sweep", "procs"})
	if got, _ := sweepServers(f); strings.Join(got, ",") != "tornago-procs1,tornago-procs4" {
		t.Errorf("procs sweep = %v", got)
	}
	sc, err := scaleScenarios(parse("scale", []string{"-scenarios", "push:19000,broadcast,echo:50", "-n", "7", "-c", "3"}))
	if err != nil || len(sc) != 3 || sc[0].flags.n != 19000 || sc[1].flags.n != 7 || sc[2].flags.c != 50 || sc[1].flags.c != 3 {
		t.Errorf("scenarios with counts: %v", err)
	}
	if _, err := scaleScenarios(parse("scale", []string{"-scenarios", "push:x"})); err == nil {
		t.Error("push:x accepted")
	}
	f = parse("scale", []string{"-servers", "tornago-loops1,gorilla"})
	if got, _ := sweepServers(f); strings.Join(got, ",") != "tornago-loops1,gorilla" {
		t.Errorf("-servers = %v", got)
	}
}

// TestPlotMakesItsFolder: -plot into a folder that does not exist yet (the
// README's bench/plots/ on a fresh checkout) creates it and writes the
// PNG; a folder that cannot be made fails at once, before the run.
func TestPlotMakesItsFolder(t *testing.T) {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil || c.WriteMessage(typ, msg) != nil {
				return
			}
		}
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/echo"
	dir := t.TempDir()
	png := filepath.Join(dir, "bench", "plots", "echo.png")
	out, errOut, code := runBench(t, "echo", "-url", url, "-c", "2", "-d", "300ms", "-progress=false", "-plot", png)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if st, err := os.Stat(png); err != nil || st.Size() == 0 {
		t.Fatalf("no plot: %v\n%s", err, errOut)
	}

	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	out, errOut, code = runBench(t, "echo", "-url", url, "-c", "2", "-d", "30s", "-progress=false", "-plot", filepath.Join(blocker, "echo.png"))
	if code != 1 || !strings.Contains(errOut, "-plot") || strings.Contains(out, "JSON") || time.Since(t0) > 20*time.Second {
		t.Fatalf("want exit 1 before the run; exit %d after %v\n%s\n%s", code, time.Since(t0), out, errOut)
	}
}
