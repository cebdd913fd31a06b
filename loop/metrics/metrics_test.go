package metrics_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/metrics"
)

type echo struct{ loop.WebSocketBase }

func (echo) OnMessage(w *loop.WebSocket, typ loop.MessageType, data []byte) {
	if string(data) == "flood" {
		// A client that does not read: write until the slow-consumer
		// policy closes it (MaxUnsentPerConn is small on this route).
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for i := 0; i < 1000; i++ {
			if w.WriteBinary(chunk) != nil {
				return
			}
		}
		return
	}
	w.WriteText(data)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startLoop runs a loop with an HTTP route and two WebSocket echo routes,
// and serves its metrics on a net/http listener of their own.
func startLoop(t *testing.T) (addr, metricsURL string) {
	t.Helper()
	l := loop.New(loop.Options{Logger: slog.New(slog.DiscardHandler), TimeoutResolution: 10 * time.Millisecond})
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleFunc("/hello", func(r *loop.Request) { r.Write("hello") })
	app.Handle("/events", loop.Methods{Get: func(r *loop.Request) { r.EventStream(loop.EventStreamOptions{}) }})
	app.Handle("/events-flood", loop.Methods{Get: func(r *loop.Request) {
		// A stream whose client does not read: events until the
		// slow-consumer bound closes it.
		es, err := r.EventStream(loop.EventStreamOptions{MaxUnsentPerConn: 4 << 10})
		if err != nil {
			return
		}
		data := bytes.Repeat([]byte("x"), 64<<10)
		for i := 0; i < 1000 && es.Send("", "", data) == nil; i++ {
		}
	}})
	app.HandleWebSocket("/echo", func(*loop.Request) loop.WebSocketHandler { return echo{} }, loop.WSOptions{})
	app.HandleWebSocket("/small", func(*loop.Request) loop.WebSocketHandler { return echo{} },
		loop.WSOptions{MaxUnsentPerConn: 4 << 10, CheckOrigin: loop.AnyOrigin})
	addr = freeAddr(t)
	if err := l.Listen(addr, app); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- l.Start() }()
	<-l.Ready()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: metrics.Handler(l)}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
		if err := <-started; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
	return addr, "http://" + ln.Addr().String() + "/metrics"
}

// scrape fetches and parses the exposition with Prometheus's own parser.
func scrape(t *testing.T, u string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the exposition: %v", err)
	}
	return fams
}

// value returns the value of the series of name whose labels include
// want ("k=v" pairs), and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, lp := range m.Label {
			labels[lp.GetName()] = lp.GetValue()
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// waitValue scrapes until the series has the value (the loop updates its
// counters as it goes; a client may see the effect first).
func waitValue(t *testing.T, u string, want float64, name string, labels ...string) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fams := scrape(t, u)
		got, ok := value(fams, name, labels...)
		if ok && got == want {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMetricsScrapedOverHTTP(t *testing.T) {
	addr, mu := startLoop(t)

	fams := scrape(t, mu)
	for _, name := range []string{"tornago_connections_open", "tornago_accepts_refused_total", "tornago_loop_lag_seconds",
		"tornago_loop_callback_batch_seconds", "tornago_loop_callbacks_queued", "tornago_loop_timers_pending",
		"tornago_loop_executor_queued", "tornago_unsent_bytes", "tornago_websocket_slow_consumer_total",
		"tornago_stream_slow_consumer_total", "tornago_held_input_bytes", "tornago_held_input_closes_total",
		"tornago_loop_blocked_total", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}
	if f := fams["tornago_loop_lag_seconds"]; f != nil && f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("tornago_loop_lag_seconds is a %v", f.GetType())
	}

	for i := 0; i < 3; i++ {
		resp, err := http.Get("http://" + addr + "/hello")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	waitValue(t, mu, 3, "tornago_http_responses_total", "code=200")

	// An event stream is counted as one, not as a long poll.
	ev, err := http.Get("http://" + addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	waitValue(t, mu, 1, "tornago_connections_open", "kind=eventstream")
	waitValue(t, mu, 0, "tornago_connections_open", "kind=longpoll")
	ev.Body.Close()
	waitValue(t, mu, 0, "tornago_connections_open", "kind=eventstream")

	// A WebSocket: open, three echoes, then closed by the client with 1000.
	c, _, err := gws.DefaultDialer.Dial("ws://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitValue(t, mu, 1, "tornago_connections_open", "kind=websocket", "loop=0")
	for i := 0; i < 3; i++ {
		c.WriteMessage(gws.TextMessage, []byte(fmt.Sprint("message ", i)))
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	c.WriteMessage(gws.CloseMessage, gws.FormatCloseMessage(1000, ""))
	c.ReadMessage()
	c.Close()
	fams = waitValue(t, mu, 0, "tornago_connections_open", "kind=websocket")
	checks := []struct {
		want   float64
		name   string
		labels []string
	}{
		{3, "tornago_websocket_messages_received_total", []string{"route=/echo"}},
		{3, "tornago_websocket_messages_sent_total", []string{"route=/echo"}},
		{27, "tornago_websocket_received_bytes_total", []string{"route=/echo"}},
		{27, "tornago_websocket_sent_bytes_total", []string{"route=/echo"}},
		{1, "tornago_websocket_upgrades_total", []string{"route=/echo", "result=accepted", "status=101"}},
		{0, "tornago_websocket_upgrades_total", []string{"route=/small", "result=accepted"}},
		{1, "tornago_websocket_close_frames_total", []string{"direction=received", "code=1000"}},
		{1, "tornago_websocket_close_frames_total", []string{"direction=sent", "code=1000"}},
		{1, "tornago_http_responses_total", []string{"code=101"}},
	}
	for _, ck := range checks {
		if got, ok := value(fams, ck.name, ck.labels...); !ok || got != ck.want {
			t.Errorf("%s%v = %v (present %v), want %v", ck.name, ck.labels, got, ok, ck.want)
		}
	}

	// A refused upgrade: a foreign Origin on a same-origin route.
	_, resp, err := gws.DefaultDialer.Dial("ws://"+addr+"/echo", http.Header{"Origin": {"http://elsewhere.example"}})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("cross-origin upgrade: %v %v", err, resp)
	}
	waitValue(t, mu, 1, "tornago_websocket_upgrades_total", "route=/echo", "result=rejected", "status=403")

	// A slow consumer: it asks for a flood and reads nothing.
	sc, _, err := gws.DefaultDialer.Dial("ws://"+addr+"/small", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sc.WriteMessage(gws.TextMessage, []byte("flood"))
	fams = waitValue(t, mu, 1, "tornago_websocket_slow_consumer_total", "action=close")
	if got, _ := value(fams, "tornago_websocket_messages_received_total", "route=/small"); got != 1 {
		t.Errorf("/small messages received = %v, want 1", got)
	}
	if got, _ := value(fams, "tornago_websocket_messages_sent_total", "route=/small"); got < 1 {
		t.Errorf("/small messages sent = %v, want some before the close", got)
	}
	if got, _ := value(fams, "tornago_loop_lag_seconds"); got < 1 {
		t.Errorf("no callback batch in the lag histogram")
	}

	// An event stream's slow consumer has its own series: it is not a
	// WebSocket's.
	fc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	fc.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(fc, "GET /events-flood HTTP/1.1\r\nHost: x\r\n\r\n")
	fams = waitValue(t, mu, 1, "tornago_stream_slow_consumer_total")
	if got, _ := value(fams, "tornago_websocket_slow_consumer_total", "action=close"); got != 1 {
		t.Errorf("websocket slow consumer closes = %v after an event stream's, want 1 (the WebSocket's)", got)
	}

	// Input pipelined behind an event stream past its bound (4 KiB).
	hc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	io.WriteString(hc, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n"+strings.Repeat("x", 8<<10))
	waitValue(t, mu, 1, "tornago_held_input_closes_total")
	waitValue(t, mu, 0, "tornago_held_input_bytes")
}
