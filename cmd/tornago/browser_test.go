package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// faultProxy forwards TCP connections to the demo server and can break the
// ones it carries, the way networks and restarts break them under a page:
// reset (RST both ways, the browser sees 1006) or blackhole (the sockets stay
// open and silently drop every byte, so only a heartbeat can notice).
type faultProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	pairs   map[*proxyPair]struct{}
	wg      sync.WaitGroup
}

type proxyPair struct {
	client, server *net.TCPConn
	blackholed     atomic.Bool
}

func startFaultProxy(t *testing.T, backend string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, backend: backend, pairs: map[*proxyPair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.reset()
		p.wg.Wait()
	})
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", p.backend, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		pr := &proxyPair{client: c.(*net.TCPConn), server: s.(*net.TCPConn)}
		p.mu.Lock()
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pr, pr.server, pr.client)
		go p.pipe(pr, pr.client, pr.server)
	}
}

func (p *faultProxy) pipe(pr *proxyPair, dst, src *net.TCPConn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pr.blackholed.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			// One side went away: take the other down too, as a
			// transparent network path would.
			pr.client.Close()
			pr.server.Close()
			p.mu.Lock()
			delete(p.pairs, pr)
			p.mu.Unlock()
			return
		}
	}
}

// reset aborts every carried connection with an RST on both sides and
// returns how many there were.
func (p *faultProxy) reset() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.pairs)
	for pr := range p.pairs {
		pr.client.SetLinger(0)
		pr.server.SetLinger(0)
		pr.client.Close()
		pr.server.Close()
		delete(p.pairs, pr)
	}
	return n
}

// blackhole makes every connection carried now drop its bytes from here on;
// new connections are forwarded normally.
func (p *faultProxy) blackhole() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.pairs {
		pr.blackholed.Store(true)
	}
	return len(p.pairs)
}

// chromiumPath finds Debian's chromium (or another name for the same
// browser), or "".
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactPath is where the test saves its screenshot: $TORNAGO_ARTIFACTS,
// else tornago-artifacts in the temporary directory.
func artifactPath(t *testing.T, name string) string {
	dir := os.Getenv("TORNAGO_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "tornago-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts dir: %v", err)
	}
	return filepath.Join(dir, name)
}

type pageTick struct {
	Seq     int64  `json:"seq"`
	TS      string `json:"ts"`
	Latency string `json:"latency"`
}

type pageState struct {
	ClockState, ChatState string
	ClockOpens, ChatOpens int
	Ticks                 []pageTick // newest first
	Messages              []string
	ClockNote             string
	LongPollState         string
	LongPollMessages      []string
}

const readState = `(() => {
	const b = (id) => document.getElementById(id);
	return {
		ClockState: b("clock-status").dataset.state,
		ChatState: b("chat-status").dataset.state,
		ClockOpens: +b("clock-status").dataset.opens,
		ChatOpens: +b("chat-status").dataset.opens,
		Ticks: [...document.querySelectorAll("#ticks tr[data-seq]")].map((r) => ({seq: +r.dataset.seq, ts: r.dataset.ts, latency: r.dataset.latency})),
		Messages: [...document.querySelectorAll("#messages li .m")].map((m) => m.textContent),
		ClockNote: b("clock-note").textContent,
		LongPollState: b("lp-status").dataset.state,
		LongPollMessages: [...document.querySelectorAll("#lp-messages li .m")].map((m) => m.textContent),
	};
})()`

// TestBrowserDemoPage drives the page at / in headless Chromium: pushed
// ticks, chat, /receive and the broadcast form, then the two ways a
// connection dies (a silent blackhole caught by the clock's heartbeat, and a
// reset of every connection), each followed by the page reconnecting.
func TestBrowserDemoPage(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	server := startDemos(t)
	px := startFaultProxy(t, server)
	base := "http://" + px.addr()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 860),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()

	// The screenshot is taken whatever happens, so a failure leaves a
	// picture of the page as it was.
	defer func() {
		var png []byte
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		if err := chromedp.Run(sctx, chromedp.FullScreenshot(&png, 100)); err != nil {
			t.Logf("screenshot: %v", err)
			return
		}
		path := artifactPath(t, "browser.png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Errorf("screenshot: %v", err)
			return
		}
		t.Logf("screenshot: %s", path)
	}()

	state := func() pageState {
		t.Helper()
		var s pageState
		if err := chromedp.Run(ctx, chromedp.Evaluate(readState, &s)); err != nil {
			t.Fatalf("read page state: %v", err)
		}
		return s
	}
	// waitFor polls the page until cond holds, failing with the last state.
	waitFor := func(what string, d time.Duration, cond func(pageState) bool) pageState {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			s := state()
			if cond(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("waited %v for %s; page state %+v", d, what, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	hasMessage := func(s pageState, m string) bool { return slices.Contains(s.Messages, m) }

	start := time.Now()
	if err := chromedp.Run(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	s := waitFor("both sockets open", 10*time.Second, func(s pageState) bool {
		return s.ClockState == "open" && s.ChatState == "open" && hasMessage(s, "Welcome")
	})

	// At least three ticks, pushed about a second apart.
	s = waitFor("three ticks", 6*time.Second, func(s pageState) bool { return len(s.Ticks) >= 3 })
	var prev int64
	for i := len(s.Ticks) - 1; i >= 0; i-- {
		tk := s.Ticks[i]
		ts, err := strconv.ParseInt(tk.TS, 10, 64)
		if err != nil {
			t.Fatalf("tick %+v: ts: %v", tk, err)
		}
		if lat, err := strconv.ParseFloat(tk.Latency, 64); err != nil || lat < -50 || lat > 1000 {
			t.Errorf("tick %+v: latency %q ms out of range (%v)", tk, tk.Latency, err)
		}
		if prev != 0 {
			gap := time.Duration(ts - prev)
			if gap < 500*time.Millisecond || gap > 1600*time.Millisecond {
				t.Errorf("ticks %v apart, want about 1s: %+v", gap, s.Ticks)
			}
		}
		prev = ts
	}
	if s.Ticks[0].Seq <= s.Ticks[len(s.Ticks)-1].Seq {
		t.Errorf("ticks not newest first: %+v", s.Ticks)
	}

	// Chat: typing a line and pressing Enter sends it; the server's reply
	// shows up.
	if err := chromedp.Run(ctx, chromedp.SendKeys("#chat-input", "hello from chromium"+kb.Enter, chromedp.ByID)); err != nil {
		t.Fatalf("type chat line: %v", err)
	}
	waitFor("chat reply", 5*time.Second, func(s pageState) bool {
		return hasMessage(s, "hello from chromium") && hasMessage(s, "new message :hello from chromium")
	})

	// /receive from outside the page reaches it through /ws.
	if n := receive(t, server, "pushed from Go"); n != 1 {
		t.Errorf("/receive delivered to %d clients, want 1 (the page)", n)
	}
	waitFor("/receive push", 5*time.Second, func(s pageState) bool { return hasMessage(s, "pushed from Go") })

	// And the page's own broadcast form calls /receive.
	var result string
	if err := chromedp.Run(ctx,
		chromedp.SendKeys("#broadcast-input", "sent with the form"+kb.Enter, chromedp.ByID),
		chromedp.Poll(`document.getElementById("broadcast-result").textContent`, &result, chromedp.WithPollingTimeout(5*time.Second)),
	); err != nil {
		t.Fatalf("broadcast form: %v", err)
	}
	if result != "Delivered to 1 client." {
		t.Errorf("broadcast result %q", result)
	}
	waitFor("broadcast push", 5*time.Second, func(s pageState) bool { return hasMessage(s, "sent with the form") })

	// Long polling: a message posted with the page's form and one posted
	// from Go both reach the page's poll.
	waitFor("long poll open", 5*time.Second, func(s pageState) bool { return s.LongPollState == "open" })
	if err := chromedp.Run(ctx, chromedp.SendKeys("#lp-input", "polled from chromium"+kb.Enter, chromedp.ByID)); err != nil {
		t.Fatalf("type long-poll line: %v", err)
	}
	lc := http.Client{Timeout: 5 * time.Second}
	if resp, err := lc.PostForm("http://"+server+"/new-message", url.Values{"msg": {"polled from Go"}}); err != nil {
		t.Fatalf("POST /new-message: %v", err)
	} else {
		resp.Body.Close()
	}
	waitFor("long-poll messages", 5*time.Second, func(s pageState) bool {
		return slices.Contains(s.LongPollMessages, "polled from chromium") && slices.Contains(s.LongPollMessages, "polled from Go")
	})

	// Record every badge state from here on, to see the backoff happen.
	if err := chromedp.Run(ctx, chromedp.Evaluate(`(() => {
		window.badgeLog = [];
		for (const id of ["clock-status", "chat-status"]) {
			new MutationObserver(() => {
				const b = document.getElementById(id);
				window.badgeLog.push(id + ":" + b.dataset.state);
			}).observe(document.getElementById(id), {attributes: true, childList: true});
		}
	})()`, nil)); err != nil {
		t.Fatalf("install observer: %v", err)
	}

	// 1. Blackhole: the connections stay up but carry nothing. No close
	// event ever comes; the clock's 3 s heartbeat must notice and
	// reconnect (with the same Id, so the server replaces its stale
	// connection).
	before := state()
	if n := px.blackhole(); n < 2 {
		t.Fatalf("proxy carries %d connections, want the page's 2", n)
	}
	s = waitFor("clock reconnect after blackhole", 8*time.Second, func(s pageState) bool {
		return s.ClockOpens == before.ClockOpens+1 && s.ClockState == "open" &&
			len(s.Ticks) > 0 && s.Ticks[0].Seq > before.Ticks[0].Seq+1
	})
	if want := "nothing received for 3 s"; !strings.Contains(s.ClockNote, want) {
		t.Errorf("clock note %q, want it to say %q", s.ClockNote, want)
	}

	// 2. Reset: every connection is aborted; both sockets must come back
	// through "reconnecting", and work.
	before = state()
	if n := px.reset(); n < 2 {
		t.Fatalf("proxy carries %d connections, want at least the page's 2", n)
	}
	s = waitFor("both reconnect after reset", 8*time.Second, func(s pageState) bool {
		return s.ClockOpens > before.ClockOpens && s.ChatOpens > before.ChatOpens &&
			s.ClockState == "open" && s.ChatState == "open" &&
			len(s.Ticks) > 0 && s.Ticks[0].Seq > before.Ticks[0].Seq
	})
	var log []string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.badgeLog`, &log)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"clock-status:reconnecting", "chat-status:reconnecting", "chat-status:open"} {
		if !slices.Contains(log, want) {
			t.Errorf("badge states %v lack %q", log, want)
		}
	}
	if err := chromedp.Run(ctx, chromedp.SendKeys("#chat-input", "back again"+kb.Enter, chromedp.ByID)); err != nil {
		t.Fatalf("type chat line: %v", err)
	}
	waitFor("chat reply after reconnect", 5*time.Second, func(s pageState) bool {
		return hasMessage(s, "new message :back again")
	})
	t.Logf("browser scenario took %v; last ticks %+v", time.Since(start).Round(time.Millisecond), s.Ticks[:min(3, len(s.Ticks))])
}

// receive calls /receive?msg= and returns how many clients it reached.
func receive(t *testing.T, addr, msg string) int {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/receive?msg=" + url.QueryEscape(msg))
	if err != nil {
		t.Fatalf("GET /receive: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /receive: %v", err)
	}
	var r struct{ Delivered int }
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("GET /receive: %v in %q", err, body)
	}
	return r.Delivered
}
