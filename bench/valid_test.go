package bench

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
)

// TestNothingListeningIsInvalid: every scenario against a port nobody
// listens on returns an *InvalidError saying so, without running for its
// whole duration.
func TestNothingListeningIsInvalid(t *testing.T) {
	const u = "ws://127.0.0.1:1/echo"
	d := time.Minute
	runs := map[string]func() (any, error){
		"echo": func() (any, error) { return Echo(EchoOptions{URL: u, Conns: 10, Duration: d}) },
		"push": func() (any, error) { return Push(PushOptions{URL: u, Conns: 10, Duration: d}) },
		"broadcast": func() (any, error) {
			return Broadcast(BroadcastOptions{URL: u, Conns: 10, Duration: d})
		},
		"handshake": func() (any, error) { return Handshake(HandshakeOptions{URL: u, Workers: 2, Duration: d}) },
		"idle":      func() (any, error) { return Idle(IdleOptions{URL: u, Conns: 10, Hold: d}) },
		"transports": func() (any, error) {
			return Transports(TransportsOptions{Base: "http://127.0.0.1:1", Conns: 2, Duration: d})
		},
	}
	for name, run := range runs {
		t.Run(name, func(t *testing.T) {
			t0 := time.Now()
			_, err := run()
			if !IsInvalid(err) {
				t.Fatalf("err = %v, want an InvalidError", err)
			}
			if !strings.Contains(err.Error(), "refused") {
				t.Errorf("err %q does not say why (connection refused)", err)
			}
			if el := time.Since(t0); el > d/2 {
				t.Errorf("took %v: ran its duration against nothing", el)
			}
		})
	}
}

// sleeper is a process that listens on nothing, stopped by PID at the end.
func sleeper(t *testing.T) int {
	c := exec.Command("sleep", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c.Process.Pid
}

func TestCheckPID(t *testing.T) {
	if !procStats {
		t.Skip("-pid needs /proc: Linux only")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	u := "ws://" + ln.Addr().String() + "/echo"
	if err := CheckPID(os.Getpid(), u); err != nil {
		t.Fatalf("the listening process: %v", err)
	}
	if err := CheckPID(0, u); err != nil {
		t.Fatalf("no -pid: %v", err)
	}
	if err := CheckPID(sleeper(t), u); err == nil || !strings.Contains(err.Error(), "is not the process listening") {
		t.Fatalf("another process: %v", err)
	}
	if err := CheckPID(os.Getpid(), "ws://127.0.0.1:1/echo"); err == nil || !strings.Contains(err.Error(), "nothing listens") {
		t.Fatalf("unused port: %v", err)
	}
	if err := CheckPID(1<<22+7, u); err == nil {
		t.Fatal("no such process: passed")
	}
}

// TestWrongPIDAndUnmeasured: a -pid that is not the server is refused
// before the run; without -pid the server's figures print n/a and are
// absent from the JSON; the machine is recorded.
func TestWrongPIDAndUnmeasured(t *testing.T) {
	s := startServer(t, "gnetws", 18740)
	_, err := Echo(EchoOptions{URL: s.URL("/echo"), Conns: 2, Duration: time.Second, PID: sleeper(t)})
	if !IsInvalid(err) || !strings.Contains(err.Error(), "is not the process listening on port 18740") {
		t.Fatalf("wrong -pid: %v", err)
	}
	r, err := Echo(EchoOptions{URL: s.URL("/echo"), Conns: 2, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var js, table bytes.Buffer
	r.WriteJSON(&js)
	WriteTable(&table, []*Result{r})
	var m map[string]any
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["server_cpu_per_op_us"]; ok {
		t.Errorf("unmeasured server CPU per op in the JSON: %s", js.String())
	}
	if _, ok := m["cpu"].(map[string]any)["server_cpu_pct"]; ok {
		t.Errorf("unmeasured server CPU %% in the JSON: %s", js.String())
	}
	mach, _ := m["machine"].(map[string]any)
	if mach["cores"].(float64) < 1 || mach["gomaxprocs"].(float64) < 1 || mach["kernel"] == "" || !strings.HasPrefix(mach["go_version"].(string), "go") {
		t.Errorf("machine: %v", m["machine"])
	}
	if _, ok := m["cpu"].(map[string]any)["harness_cpu_s"]; !ok {
		t.Errorf("no harness CPU: %s", js.String())
	}
	if row := strings.Split(table.String(), "\n")[1]; strings.Count(row, "n/a") != 2 {
		t.Errorf("table row %q: want n/a for server us/op and CPU%%", row)
	}
	r, err = Idle(IdleOptions{URL: s.URL("/echo"), Conns: 5, Hold: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rss_per_conn_bytes", "rss_before_bytes", "server_idle_cpu_pct", "threads_after"} {
		if _, ok := r.Extra[k]; ok {
			t.Errorf("idle without -pid reports %s: %v", k, r.Extra)
		}
	}
}

// TestRSSShrinkIsInvalid: a server whose RSS falls below the settled
// baseline makes idle's RSS per connection invalid, with the reason.
func TestRSSShrinkIsInvalid(t *testing.T) {
	s := startServer(t, "gnetws", 18741)
	calls := 0
	r, err := Idle(IdleOptions{URL: s.URL("/echo"), Conns: 5, Hold: 100 * time.Millisecond, PID: s.PID,
		RSS: func(int) int64 {
			calls++
			if calls <= 2 { // the baseline: two equal readings
				return 10_000_000
			}
			return 8_600_000
		}})
	want := "server RSS shrank by 1.4 MB during the run: start a fresh server"
	if !IsInvalid(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if _, ok := r.Extra["rss_per_conn_bytes"]; ok || r.Invalid == "" {
		t.Fatalf("figure still reported: invalid %q extra %v", r.Invalid, r.Extra)
	}
	for _, st := range r.Steps {
		if st.BytesPerConn != nil {
			t.Fatalf("step %+v still has a per-connection figure", st)
		}
	}
}

// TestServerDiedIsInvalid: the server killed once measuring starts makes
// the run invalid.
func TestServerDiedIsInvalid(t *testing.T) {
	s := startServer(t, "gnetws", 18742)
	_, err := Echo(EchoOptions{URL: s.URL("/echo"), Conns: 4, Duration: time.Second, PID: s.PID,
		Progress: killAtMeasure{s}})
	if !IsInvalid(err) {
		t.Fatalf("err = %v, want InvalidError", err)
	}
}

type killAtMeasure struct{ s *Server }

func (k killAtMeasure) Phase(string, int64) ProgressBar { return noProgress{} }
func (k killAtMeasure) Timed(string, time.Duration) ProgressBar {
	k.s.cmd.Process.Kill()
	k.s.cmd.Wait()
	return noProgress{}
}

func TestWriteRatiosSpread(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	var rs []*Result
	for _, x := range []struct {
		srv string
		ops float64
	}{{"tornago", 100}, {"gorilla", 40}, {"tornago", 120}, {"gorilla", 60}, {"tornago", 80}, {"gorilla", 50}} {
		rs = append(rs, &Result{Scenario: "echo", Server: x.srv, OpsPerS: x.ops, CPUPerOp: f(x.ops / 10)})
	}
	rs[1].CPUPerOp = nil
	var out strings.Builder
	WriteRatios(&out, rs)
	for _, want := range []string{"100.00 (1.00x) [80.00..120.00]", "50.00 (0.50x) [40.00..60.00]", "6.00 (0.60x) [5.00..6.00]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ratios lack %q:\n%s", want, out.String())
		}
	}
}

func TestTicks125(t *testing.T) {
	labels := func(ts []plot.Tick) []string {
		var out []string
		for _, tk := range ts {
			if tk.Label != "" {
				out = append(out, tk.Label)
			}
		}
		return out
	}
	for _, tc := range []struct {
		lo, hi float64
		want   string
	}{
		{0, 1, "0 0.2 0.4 0.6 0.8 1"},
		{0, 37, "0 10 20 30"},
		{0, 19000, "0 5000 10000 15000"},
		{12, 260, "50 100 150 200 250"},
	} {
		if got := strings.Join(labels(ticks125{}.Ticks(tc.lo, tc.hi)), " "); got != tc.want {
			t.Errorf("ticks(%v, %v) = %q, want %q", tc.lo, tc.hi, got, tc.want)
		}
	}
	if got := strings.Join(labels(logTicks125{}.Ticks(0.3, 120)), " "); got != "0.5 1 2 5 10 20 50 100" {
		t.Errorf("log ticks = %q", got)
	}
}
