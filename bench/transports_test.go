package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// startTornago starts cmd/tornago with extra flags on port, stopped by PID
// when the test ends.
func startTornago(t *testing.T, port int, args ...string) *Server {
	t.Helper()
	s, err := StartServer(moduleRoot(t), "tornago", port, ServerOptions{Args: args}, &syncWriter{})
	if err != nil {
		t.Fatalf("start tornago: %v", err)
	}
	t.Cleanup(func() { StopServers([]*Server{s}) })
	return s
}

// TestTransportsReconnect: every transport delivers the run's messages to
// every client, and across the drop of every client's connection at
// mid-run (each resuming from its last position) none is lost or
// repeated.
func TestTransportsReconnect(t *testing.T) {
	s := startTornago(t, 18770)
	const conns = 6
	// 100 messages a transport: the later transports start with more
	// than a page (100) of history before them.
	var rs []*Result
	for _, kind := range TransportKinds {
		t.Run(kind, func(t *testing.T) {
			got, err := Transports(TransportsOptions{Base: "http://" + s.Host, Conns: conns, Duration: 2 * time.Second,
				Every: 20 * time.Millisecond, PollEvery: 200 * time.Millisecond, Kinds: []string{kind}, PID: s.PID})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("%d results", len(got))
			}
			r := got[0]
			x := r.Extra
			t.Logf("delivered %d of %v, lost %v repeated %v, resumed %v, %.0f B/msg, p99 %v, errors %d %v",
				r.Ops, x["expected"], x["lost"], x["repeated"], x["resumed_clients"],
				x["wire_bytes_per_delivered"], r.Latency.P99, r.Errors, x["last_error"])
			if r.Server != kind || r.Invalid != "" || r.Errors != 0 || x["foreign_messages"] != nil {
				t.Errorf("invalid %q, errors %d (%v), foreign messages %v", r.Invalid, r.Errors, x["last_error"], x["foreign_messages"])
			}
			if x["published"].(int) < 50 || r.Ops != x["expected"].(int64) {
				t.Errorf("delivered %d, want every one of %v", r.Ops, x["expected"])
			}
			if x["lost"].(int64) != 0 || x["repeated"].(int64) != 0 {
				t.Errorf("lost %v, repeated %v across the reconnect", x["lost"], x["repeated"])
			}
			if x["resumed_clients"].(int64) != conns || x["history_gone"].(int64) != 0 {
				t.Errorf("%v clients resumed (want %d), history gone %v", x["resumed_clients"], conns, x["history_gone"])
			}
			// Every client opened a second connection at the drop.
			if x["conns_opened"].(int64) < 2*conns || x["http_requests"].(int64) < 2*conns {
				t.Errorf("%v connections, %v requests opened", x["conns_opened"], x["http_requests"])
			}
			if b, _ := x["wire_bytes_per_delivered"].(float64); b <= 0 || r.CPUPerOp == nil || r.Latency.N == 0 {
				t.Errorf("%v B/msg, CPU/op %v, %d latencies", x["wire_bytes_per_delivered"], r.CPUPerOp, r.Latency.N)
			}
			rs = append(rs, r)
		})
	}
	if len(rs) != len(TransportKinds) {
		return
	}
	// A WebSocket frame carries a message in a few bytes; a long poll
	// carries HTTP heads around it.
	if ws, lp := rs[0].Extra["wire_bytes_per_delivered"].(float64), rs[2].Extra["wire_bytes_per_delivered"].(float64); ws >= lp {
		t.Errorf("websocket %.0f B/msg not below long polling %.0f", ws, lp)
	}
	var out strings.Builder
	WriteRatios(&out, rs)
	if !strings.Contains(out.String(), "wire B/msg") || !strings.Contains(out.String(), "lost") {
		t.Errorf("ratios:\n%s", out.String())
	}
	png := filepath.Join(t.TempDir(), "transports.png")
	if err := WritePlot(png, rs); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("plot: %v, %d bytes", err, len(b))
	}
}

// TestIdleTransports: idle holds N SSE streams and N parked long polls,
// and measures the server's memory per held client.
func TestIdleTransports(t *testing.T) {
	s := startTornago(t, 18771)
	for _, tr := range []string{"sse", "long-poll", "ws"} {
		u := "http://" + s.Host
		if tr == "ws" {
			u, _ = ChatWSURL(u)
		}
		r, err := Idle(IdleOptions{URL: u, Transport: tr, Conns: 150, Steps: []int{50}, Hold: 300 * time.Millisecond, PID: s.PID, Open: OpenOptions{Rate: 1000}})
		checkRun(t, r, err, 150)
		if len(r.Steps) != 3 || r.Steps[2].Conns != 150 || r.Extra["rss_after_bytes"].(int64) <= 0 {
			t.Fatalf("%s: steps %+v extra %v", tr, r.Steps, r.Extra)
		}
		if _, ok := r.Extra["rss_per_conn_bytes"].(float64); !ok {
			t.Fatalf("%s: no RSS per connection: %v", tr, r.Extra)
		}
		// The long polls are parked on the server (one loop: all of them).
		if w, ok := r.Extra["server_waiting"].(int); tr == "long-poll" && (!ok || w < 150) {
			t.Fatalf("long-poll: server says %v waiting, want 150", r.Extra["server_waiting"])
		}
	}
}

// TestHistoryCost: K kept messages cost memory on the server; a history
// too short for K makes the run invalid instead of a figure per message
// the server dropped.
func TestHistoryCost(t *testing.T) {
	s := startTornago(t, 18772, "-longpoll-messages", "3000", "-longpoll-bytes", "16777216")
	r, err := History(HistoryOptions{Base: "http://" + s.Host, Messages: 2000, Size: 2000, PID: s.PID})
	if err != nil {
		t.Fatal(err)
	}
	if per, ok := r.Extra["rss_per_message_bytes"].(float64); !ok || per <= 0 || r.Ops != 2000 {
		t.Fatalf("history: %d published, extra %v", r.Ops, r.Extra)
	}
	short := startTornago(t, 18773) // keeps 200
	r, err = History(HistoryOptions{Base: "http://" + short.Host, Messages: 300, Size: 100, PID: short.PID})
	if !IsInvalid(err) || !strings.Contains(r.Invalid, "kept fewer than 300") {
		t.Fatalf("history beyond the server's bound: err %v, invalid %q", err, r.Invalid)
	}
}

func TestReadSSE(t *testing.T) {
	in := ": hello\r\n\r\nid: 1-5\ndata: a\ndata:b\n\nevent: subscribed\nid: 1-5\ndata: {\"head\":\"1-5\"}\n\n" +
		"data: no id\n\nid: 1-6\n\n: heartbeat\ndata: cut"
	var got []sseEvent
	if err := readSSE(strings.NewReader(in), func(ev sseEvent) error { got = append(got, ev); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []sseEvent{{"message", "1-5", []byte("a\nb")}, {"subscribed", "1-5", []byte(`{"head":"1-5"}`)}, {"message", "", []byte("no id")}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	long := "data: " + strings.Repeat("x", 40000) + "\n\n"
	got = nil
	readSSE(strings.NewReader(long), func(ev sseEvent) error { got = append(got, ev); return nil })
	if len(got) != 1 || len(got[0].Data) != 40000 {
		t.Fatalf("long line: %d events", len(got))
	}
}

func FuzzReadSSE(f *testing.F) {
	f.Add("id: 1-1\ndata: x\n\n")
	f.Add("event: subscribed\r\ndata: {}\r\n\r\n:c\n")
	f.Fuzz(func(t *testing.T, s string) {
		n := 0
		readSSE(strings.NewReader(s), func(ev sseEvent) error {
			n++
			if ev.Type == "" || n > len(s) {
				t.Fatalf("event %d %+v", n, ev)
			}
			return nil
		})
	})
}

// TestTally: the loss and repeat counts of one client against what was
// published, including a repeat of a message past the end.
func TestTally(t *testing.T) {
	r := &txRun{kind: "t", tag: []byte(`"run":"x"`)}
	c := &txClient{r: r}
	for _, seq := range []int{1, 2, 2, 4, 5, 5, 5, 7, 7} {
		c.deliver([]byte(fmt.Sprintf(`{"run":"x","seq":%d,"ts":%d}`, seq, time.Now().UnixNano())))
	}
	c.deliver([]byte(`{"run":"y","seq":3,"ts":1}`))
	if lost, rep := c.tally(6); lost != 2 || rep != 4 {
		t.Fatalf("lost %d repeated %d, want 2 (3, 6) and 4", lost, rep)
	}
	if r.delivered.Load() != 5 || r.foreign.Load() != 1 {
		t.Fatalf("delivered %d foreign %d", r.delivered.Load(), r.foreign.Load())
	}
}
