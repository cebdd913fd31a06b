package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tornago/tornago/internal/notrun"
)

// moduleRoot is the repository root (bench's parent directory).
func moduleRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// startServer builds and starts one of ServerNames on a free-ish port and
// stops it by PID when the test ends.
func startServer(t *testing.T, name string, port int) *Server {
	t.Helper()
	if !procStats {
		t.Skip("StartServers measures servers through /proc: Linux only")
	}
	var log bytes.Buffer
	ss, err := StartServers(moduleRoot(t), []string{name}, port, "", &syncWriter{b: &log})
	if err != nil {
		t.Fatalf("start %s: %v\n%s", name, err, log.String())
	}
	t.Cleanup(func() { StopServers(ss) })
	return ss[0]
}

type syncWriter struct{ b *bytes.Buffer }

func (w *syncWriter) Write(p []byte) (int, error) { return len(p), nil }

func needTornado(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import tornado").Run(); err != nil {
		notrun.Skip(t, "no python3-tornado for /usr/bin/python3 (apt-get install python3-tornado)")
	}
}

func checkRun(t *testing.T, r *Result, err error, wantConns int) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if r.Conns != wantConns || r.Errors != 0 {
		t.Fatalf("%s: conns %d errors %d (want %d, 0); extra %v", r.Scenario, r.Conns, r.Errors, wantConns, r.Extra)
	}
	if r.Scenario != "idle" && (r.Ops == 0 || r.Latency.N == 0) {
		t.Fatalf("%s: no operations measured: %+v", r.Scenario, r)
	}
	if r.CPU.Wall <= 0 || !r.CPU.ServerMeasure {
		t.Fatalf("%s: CPU not measured: %+v", r.Scenario, r.CPU)
	}
}

func TestScenariosAgainstTornagoAndGorilla(t *testing.T) {
	for i, name := range []string{"tornago", "gorilla"} {
		for _, client := range []string{"loop", "gorilla"} {
			if name == "gorilla" && client == "gorilla" {
				continue // each server and each client once is enough
			}
			t.Run(name+"/"+client+"-client", func(t *testing.T) {
				ClientKind = client
				defer func() { ClientKind = "loop" }()
				s := startServer(t, name, 18700+10*i+len(client))
				open := OpenOptions{Rate: 1000}

				r, err := Echo(EchoOptions{URL: s.URL("/echo"), Conns: 20, Duration: time.Second, PID: s.PID, Open: open})
				checkRun(t, r, err, 20)

				r, err = Idle(IdleOptions{URL: s.URL("/echo"), Conns: 200, Steps: []int{100}, Hold: 500 * time.Millisecond, PID: s.PID, Open: open})
				checkRun(t, r, err, 200)
				if len(r.Steps) != 3 || r.Steps[2].Conns != 200 || r.Extra["rss_after_bytes"].(int64) <= 0 {
					t.Fatalf("idle steps %+v extra %v", r.Steps, r.Extra)
				}

				r, err = Push(PushOptions{URL: s.URL("/clock"), Conns: 50, Duration: 2500 * time.Millisecond, PID: s.PID, Open: open})
				checkRun(t, r, err, 50)
				if r.Extra["missed"].(int64) != 0 || r.Extra["duplicated"].(int64) != 0 || r.Extra["ticks"].(int64) < 2 {
					t.Fatalf("push: %v", r.Extra)
				}
				if want := r.Extra["expected"].(int64); r.Ops != want {
					t.Fatalf("push delivered %d, want %d", r.Ops, want)
				}

				r, err = Broadcast(BroadcastOptions{URL: s.URL("/ws"), Conns: 50, Duration: time.Second, PID: s.PID, Open: open})
				checkRun(t, r, err, 50)
				if r.Extra["missed"].(int64) != 0 {
					t.Fatalf("broadcast: %v", r.Extra)
				}

				r, err = Handshake(HandshakeOptions{URL: s.URL("/echo"), Workers: 2, Duration: 500 * time.Millisecond, PID: s.PID})
				checkRun(t, r, err, 2)
			})
		}
	}
}

func TestTornadoReference(t *testing.T) {
	needTornado(t)
	s := startServer(t, "tornado", 18760)
	r, err := Echo(EchoOptions{URL: s.URL("/echo"), Conns: 10, Duration: time.Second, PID: s.PID})
	checkRun(t, r, err, 10)
	r, err = Push(PushOptions{URL: s.URL("/clock"), Conns: 20, Duration: 2500 * time.Millisecond, PID: s.PID})
	checkRun(t, r, err, 20)
	if r.Extra["missed"].(int64) != 0 || r.Extra["duplicated"].(int64) != 0 {
		t.Fatalf("push: %v", r.Extra)
	}
	r, err = Broadcast(BroadcastOptions{URL: s.URL("/ws"), Conns: 20, Duration: time.Second, PID: s.PID})
	checkRun(t, r, err, 20)
}

func TestCompareAndPlot(t *testing.T) {
	root := moduleRoot(t)
	ss, err := StartServers(root, []string{"tornago", "gorilla"}, 18780, "", &syncWriter{})
	if err != nil {
		t.Fatal(err)
	}
	defer StopServers(ss)
	rs, err := Compare(ss, 1, 0, func(s *Server) (*Result, error) {
		return Idle(IdleOptions{URL: s.URL("/echo"), Conns: 100, Steps: []int{50}, Hold: 200 * time.Millisecond, PID: s.PID})
	}, nil)
	if err != nil || len(rs) != 2 || rs[0].Server != "tornago" || rs[1].Server != "gorilla" {
		t.Fatalf("compare: %v %v", rs, err)
	}
	var out strings.Builder
	WriteRatios(&out, rs)
	WriteTable(&out, rs)
	if !strings.Contains(out.String(), "RSS/conn B") || !strings.Contains(out.String(), "gorilla") {
		t.Fatalf("ratios:\n%s", out.String())
	}
	png := filepath.Join(t.TempDir(), "idle.png")
	if err := WritePlot(png, rs); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("plot: %v, %d bytes", err, len(b))
	}
}

func TestJSONInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		key  string
		want int64
		ok   bool
	}{
		{`{"time":"x","ts":1700000000123456789,"seq":7}`, "ts", 1700000000123456789, true},
		{`{"seq": 42}`, "seq", 42, true},
		{`{"ts":"nope"}`, "ts", 0, false},
		{`{}`, "seq", 0, false},
	} {
		got, ok := jsonInt([]byte(tc.in), tc.key)
		if got != tc.want || ok != tc.ok {
			t.Errorf("jsonInt(%s, %s) = %d %v, want %d %v", tc.in, tc.key, got, ok, tc.want, tc.ok)
		}
	}
}

// TestIdleChildProcesses spreads connections over child processes the way a
// 1M-connection run does, here with 150 per process.
func TestIdleChildProcesses(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tornago-bench")
	b := exec.Command("go", "build", "-o", bin, "./cmd/tornago-bench")
	b.Dir = moduleRoot(t)
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	s := startServer(t, "tornago", 18790)
	r, err := Idle(IdleOptions{URL: s.URL("/echo"), Conns: 400, MaxPerProc: 150, Hold: 300 * time.Millisecond, PID: s.PID,
		ChildCommand: func(n, srcBase int) *exec.Cmd {
			return exec.Command(bin, "idle-child", "-url", s.URL("/echo"), "-n", fmt.Sprint(n), "-srcbase", fmt.Sprint(srcBase), "-progress=false")
		}})
	checkRun(t, r, err, 400)
	if last := r.Steps[len(r.Steps)-1]; last.Conns != 400 {
		t.Fatalf("steps %+v", r.Steps)
	}
}

// TestGnetwsFloor: the bare gnet+gobwas reference echoes every message
// intact (Echo counts a changed echo as an error) with small, 200-byte and
// 70,000-byte messages, so its figures measure a working server.
func TestGnetwsFloor(t *testing.T) {
	root := moduleRoot(t)
	ss, err := StartServers(root, []string{"gnetws"}, 18790, "", &syncWriter{})
	if err != nil {
		t.Fatal(err)
	}
	defer StopServers(ss)
	for _, size := range []int{64, 200, 70000} {
		r, err := Echo(EchoOptions{URL: ss[0].URL("/echo"), Conns: 20, Size: size, Duration: 500 * time.Millisecond, PID: ss[0].PID})
		if err != nil {
			t.Fatal(err)
		}
		if r.Errors != 0 || r.Ops < 20 {
			t.Fatalf("echo %d B: %d messages, %d errors (%v)", size, r.Ops, r.Errors, r.Extra)
		}
	}
}
