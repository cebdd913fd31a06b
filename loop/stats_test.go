package loop

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
)

func codeCount(cc []CodeCount, code int) int64 {
	for _, c := range cc {
		if c.Code == code {
			return c.Count
		}
	}
	return 0
}

func TestMetricsCountTraffic(t *testing.T) {
	var mu sync.Mutex
	var parked *Request
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		app.HandleFunc("/ok", func(r *Request) { r.Write("ok") })
		app.HandleFunc("/poll", func(r *Request) {
			r.Async()
			mu.Lock()
			parked = r
			mu.Unlock()
		})
		app.HandleWebSocket("/echo", wsEchoRoute(WSOptions{}), WSOptions{})
		app.HandleWebSocket("/closed", func(r *Request) WebSocketHandler {
			r.SetStatus(429)
			return nil
		}, WSOptions{})
	})
	base := "http://" + addr
	get := func(path string) int {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if get("/ok") != 200 || get("/ok") != 200 || get("/nothing") != 404 {
		t.Fatal("unexpected statuses")
	}
	if st := get("/echo"); st != 400 && st != 426 { // a GET without the upgrade headers
		t.Fatalf("plain GET of a WebSocket route: %d", st)
	}

	c := gorillaDial(t, addr, "/echo", nil)
	for i := 0; i < 3; i++ {
		if err := c.WriteMessage(gws.TextMessage, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	m := l.Metrics()
	if m.OpenWebSockets != 1 {
		t.Errorf("OpenWebSockets = %d, want 1", m.OpenWebSockets)
	}
	c.WriteMessage(gws.CloseMessage, gws.FormatCloseMessage(1000, "bye"))
	c.ReadMessage() // the echoed close
	c.Close()

	if _, resp, err := gws.DefaultDialer.Dial(wsURL(addr, "/closed"), nil); err == nil || resp == nil || resp.StatusCode != 429 {
		t.Fatalf("refused upgrade: err %v resp %v", err, resp)
	}

	// A long poll is pending while parked, and no more once finished.
	done := make(chan struct{})
	go func() {
		defer close(done)
		get("/poll")
	}()
	waitFor(t, "the long poll to be pending", func() bool { return l.Metrics().PendingAsync == 1 })
	l.AddCallback(func() {
		mu.Lock()
		parked.Write("late")
		parked.Finish()
		mu.Unlock()
	})
	<-done
	waitFor(t, "the WebSocket to be closed and the poll finished", func() bool {
		m := l.Metrics()
		// The batch is observed after its callbacks return, so after
		// the poll's response may already have reached us.
		return m.OpenWebSockets == 0 && m.PendingAsync == 0 && m.CallbackBatch.Count() > 0
	})

	m = l.Metrics()
	if got := codeCount(m.HTTPResponses, 200); got != 3 {
		t.Errorf("200s = %d, want 3 (two /ok and the poll)", got)
	}
	if got := codeCount(m.HTTPResponses, 404); got != 1 {
		t.Errorf("404s = %d, want 1", got)
	}
	if got := codeCount(m.HTTPResponses, 101); got != 1 {
		t.Errorf("101s = %d, want 1", got)
	}
	if got := codeCount(m.ClosesReceived, 1000); got != 1 {
		t.Errorf("closes received 1000 = %d, want 1", got)
	}
	if got := codeCount(m.ClosesSent, 1000); got != 1 {
		t.Errorf("closes sent 1000 = %d, want 1 (the echo)", got)
	}
	if len(m.Routes) != 2 || m.Routes[0].Pattern != "/echo" || m.Routes[1].Pattern != "/closed" {
		t.Fatalf("routes: %+v", m.Routes)
	}
	echo, closed := m.Routes[0], m.Routes[1]
	if echo.UpgradesAccepted != 1 || echo.MessagesIn != 3 || echo.MessagesOut != 3 || echo.BytesIn != 15 || echo.BytesOut != 15 {
		t.Errorf("echo route: %+v", echo)
	}
	if n := len(echo.UpgradesRejected); n != 1 || (echo.UpgradesRejected[0].Code != 400 && echo.UpgradesRejected[0].Code != 426) {
		t.Errorf("echo route rejections: %+v", echo.UpgradesRejected)
	}
	if closed.UpgradesAccepted != 0 || codeCount(closed.UpgradesRejected, 429) != 1 {
		t.Errorf("refusing route: %+v", closed)
	}
	if m.CallbackLag.Count() == 0 || m.CallbackBatch.Count() == 0 {
		t.Errorf("no callback batch observed: lag %d, batch %d", m.CallbackLag.Count(), m.CallbackBatch.Count())
	}
	if len(m.CallbackLag.Counts) != len(m.CallbackLag.Bounds)+1 {
		t.Errorf("histogram shape: %d counts for %d bounds", len(m.CallbackLag.Counts), len(m.CallbackLag.Bounds))
	}
}

func TestMetricsAcceptsRefusedByReason(t *testing.T) {
	l, addr := startTestLoopWith(t, Options{MaxConns: 1, TimeoutResolution: 10 * time.Millisecond}, func(l *Loop) *Application {
		return NewApplication(AppOptions{})
	})
	c1 := wsDialTCP(t, addr) // holds the only slot
	c2 := wsDialTCP(t, addr)
	c2.expectEOF()
	waitFor(t, "the refusal", func() bool { return l.Metrics().RefusedMaxConns == 1 })
	if m := l.Metrics(); m.RefusedStopping != 0 || m.AcceptsRefused != 1 {
		t.Errorf("refusals: %+v", m)
	}
	_ = c1
}

// recordHandler keeps the records of one level and above.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) blocked() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if strings.HasPrefix(r.Message, "loop: blocked") {
			out = append(out, r)
		}
	}
	return out
}

func sleepyHandlerForWatchdog(r *Request) {
	time.Sleep(300 * time.Millisecond)
	r.Write("slept")
}

func TestWatchdogLogsBlockedHandlerOnce(t *testing.T) {
	rec := &recordHandler{}
	l, addr := startTestLoopWith(t, Options{BlockThreshold: 100 * time.Millisecond, Logger: slog.New(rec)}, func(l *Loop) *Application {
		app := NewApplication(AppOptions{})
		app.HandleFunc("/sleep", sleepyHandlerForWatchdog)
		app.HandleFunc("/fast", func(r *Request) { r.Write("fast") })
		return app
	})
	for _, p := range []string{"/fast", "/sleep", "/fast"} {
		resp, err := http.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	recs := rec.blocked()
	if len(recs) != 1 {
		t.Fatalf("%d blocked-loop records, want 1", len(recs))
	}
	var stack string
	recs[0].Attrs(func(a slog.Attr) bool {
		if a.Key == "stack" {
			stack = a.Value.String()
		}
		return true
	})
	if !strings.Contains(stack, "sleepyHandlerForWatchdog") {
		t.Errorf("the stack does not show the handler:\n%s", stack)
	}
	if !strings.HasPrefix(stack, "goroutine ") || strings.Contains(stack, "\ngoroutine ") {
		t.Errorf("want the loop goroutine's stack alone, got:\n%s", stack)
	}
	if n := l.Metrics().BlockedStalls; n != 1 {
		t.Errorf("BlockedStalls = %d, want 1", n)
	}
}

func TestWatchdogOffByDefault(t *testing.T) {
	l := New(Options{})
	if l.wd != nil {
		t.Fatal("a watchdog without BlockThreshold")
	}
}
