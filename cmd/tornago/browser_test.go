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
	"github.com/tornago/tornago/loop/pubsub"
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
	// refuse, while set, resets every new connection at once: the
	// server looks down to the page (its process keeps running).
	refuse atomic.Bool
	// filter, when not nil, sees the head of each connection's first
	// request and returns a raw HTTP answer to send instead of forwarding
	// it, or "" to forward. Set once, by startFilterProxy.
	filter func(head string) string
}

type proxyPair struct {
	client, server *net.TCPConn
	blackholed     atomic.Bool
}

func startFaultProxy(t *testing.T, backend string) *faultProxy {
	t.Helper()
	return startFilterProxy(t, backend, nil)
}

// startFilterProxy starts a faultProxy with a filter (nil: none).
func startFilterProxy(t *testing.T, backend string, filter func(head string) string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, backend: backend, pairs: map[*proxyPair]struct{}{}, filter: filter}
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
		if p.refuse.Load() {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			continue
		}
		// Screening waits for the client's first bytes (a browser's
		// preconnected socket may send them much later): one goroutine per
		// connection keeps that from holding up the others.
		p.wg.Add(1)
		go p.forward(c.(*net.TCPConn))
	}
}

func (p *faultProxy) forward(c *net.TCPConn) {
	defer p.wg.Done()
	pr := &proxyPair{client: c}
	p.mu.Lock()
	p.pairs[pr] = struct{}{}
	p.mu.Unlock()
	drop := func() {
		c.Close()
		p.mu.Lock()
		delete(p.pairs, pr)
		p.mu.Unlock()
	}
	var head []byte
	if p.filter != nil {
		var refused bool
		if head, refused = p.screen(c); refused {
			drop()
			return
		}
	}
	s, err := net.DialTimeout("tcp", p.backend, 5*time.Second)
	if err != nil {
		drop()
		return
	}
	if _, err := s.Write(head); err != nil {
		s.Close()
		drop()
		return
	}
	p.mu.Lock()
	if _, ok := p.pairs[pr]; !ok {
		// Reset while it was being screened or dialed.
		p.mu.Unlock()
		s.Close()
		c.Close()
		return
	}
	pr.server = s.(*net.TCPConn)
	p.mu.Unlock()
	p.wg.Add(2)
	go p.pipe(pr, pr.server, pr.client)
	go p.pipe(pr, pr.client, pr.server)
}

// screen reads the head of c's first request (bounded in size and time)
// and answers it with the filter's response when the filter refuses it; it
// returns the bytes read, to forward otherwise. Browsers open a new
// connection for each WebSocket, so an upgrade is always a first request.
func (p *faultProxy) screen(c net.Conn) (head []byte, refused bool) {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 4096)
	for len(head) < 64<<10 && !strings.Contains(string(head), "\r\n\r\n") {
		n, err := c.Read(buf)
		head = append(head, buf[:n]...)
		if err != nil {
			c.Close()
			return nil, true
		}
	}
	if answer := p.filter(string(head)); answer != "" {
		c.Write([]byte(answer))
		c.Close()
		return nil, true
	}
	// One request per connection, so that the filter sees every request
	// (a browser reuses kept-alive connections for any path): ask the
	// server to close after answering, unless this is an upgrade.
	h := string(head)
	if !strings.Contains(strings.ToLower(h), "\r\nupgrade:") {
		if i := strings.Index(strings.ToLower(h), "\r\nconnection:"); i >= 0 {
			end := i + 2 + strings.Index(h[i+2:], "\r\n")
			h = h[:i] + "\r\nConnection: close" + h[end:]
		} else if i := strings.Index(h, "\r\n"); i >= 0 {
			h = h[:i] + "\r\nConnection: close" + h[i:]
		}
	}
	return []byte(h), false
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
		pr.client.Close()
		if pr.server != nil {
			pr.server.SetLinger(0)
			pr.server.Close()
		}
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

	pg := openPage(t, startBrowser(t, exe), 40*time.Second)
	ctx := pg.ctx

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
		return waitState(t, what, d, state, cond)
	}
	hasMessage := func(s pageState, m string) bool { return slices.Contains(s.Messages, m) }

	start := time.Now()
	if err := chromedp.Run(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	s := waitFor("both sockets open", 10*time.Second, func(s pageState) bool {
		return s.ClockState == "open" && s.ChatState == "open"
	})
	// No ?transport=: both run over WebSocket, which works here.
	if g := pg.state(); g.Transports["chat"] != "ws" || g.Transports["clock"] != "ws" || len(g.Fallbacks) > 0 {
		t.Errorf("transports %v, fallbacks %v; want ws for both, none", g.Transports, g.Fallbacks)
	}

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

// startBrowser starts headless Chromium for the test and returns the
// context of its first tab; openPage opens more.
func startBrowser(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 860),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser, for as long as its context lives:
	// bctx itself, not one with a deadline.
	if err := chromedp.Run(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// browserPage is one tab, bounded by the deadline openPage gave it.
type browserPage struct {
	t   *testing.T
	ctx context.Context
}

// openPage opens a tab (sessionStorage of its own, so no position carries
// over from another test) that lives at most d, and saves its screenshot
// when the test ends.
func openPage(t *testing.T, bctx context.Context, d time.Duration) *browserPage {
	t.Helper()
	tctx, cancelTab := chromedp.NewContext(bctx)
	ctx, cancel := context.WithTimeout(tctx, d)
	p := &browserPage{t: t, ctx: ctx}
	t.Cleanup(func() {
		// The screenshot is taken whatever happened, so a failure leaves a
		// picture of the page as it was.
		var png []byte
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		if err := chromedp.Run(sctx, chromedp.FullScreenshot(&png, 100)); err != nil {
			t.Logf("screenshot: %v", err)
		} else {
			name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
			if name == "TestBrowserDemoPage" {
				name = "browser" // the name CI has always kept
			}
			path := artifactPath(t, name+".png")
			if err := os.WriteFile(path, png, 0o644); err != nil {
				t.Errorf("screenshot: %v", err)
			} else {
				t.Logf("screenshot: %s", path)
			}
		}
		cancel()
		cancelTab()
	})
	return p
}

func (p *browserPage) navigate(url string) {
	p.t.Helper()
	if err := chromedp.Run(p.ctx, chromedp.Navigate(url)); err != nil {
		p.t.Fatalf("navigate %s: %v", url, err)
	}
}

// tgMessage is one positioned message or tick the page received.
type tgMessage struct {
	Pos       string
	Body      string
	Recovered bool
	Transport string
	Seq       int64 // ticks
}

// tgState is window.tornago: the page's own account of what it received.
type tgState struct {
	Forced, Transport string
	Transports, Pos   map[string]string
	Opens             map[string]int
	Chat, Clock       []tgMessage
	Plain             []string
	Recovered         int
	Duplicates        int
	Gone              []struct {
		Topic  string
		Missed int
	}
	Fallbacks []string
	// From the DOM, to see that what the state says is also shown.
	ChatBadge, ClockBadge string
	ChatLabel, ClockLabel string
	RecoveredTags         int // "(recovered)" tags in the chat
	RecoveredRows         int // rows marked recovered in the tick table
	ChatGone, ClockGone   string
}

const readTornago = `(() => {
	const b = (id) => document.getElementById(id);
	return Object.assign({}, window.tornago, {
		ChatBadge: b("chat-status").dataset.state,
		ClockBadge: b("clock-status").dataset.state,
		ChatLabel: b("chat-transport").dataset.transport + " " + b("chat-transport").textContent,
		ClockLabel: b("clock-transport").dataset.transport + " " + b("clock-transport").textContent,
		RecoveredTags: document.querySelectorAll("#messages li.recovered .tag").length,
		RecoveredRows: document.querySelectorAll("#ticks tr.recovered").length,
		ChatGone: b("chat-gone").textContent,
		ClockGone: b("clock-gone").textContent,
	});
})()`

func (p *browserPage) state() tgState {
	p.t.Helper()
	var s tgState
	if err := chromedp.Run(p.ctx, chromedp.Evaluate(readTornago, &s)); err != nil {
		p.t.Fatalf("read window.tornago: %v", err)
	}
	return s
}

// waitFor polls the page's state until cond holds, failing with the last
// state after d.
func (p *browserPage) waitFor(what string, d time.Duration, cond func(tgState) bool) tgState {
	p.t.Helper()
	return waitState(p.t, what, d, p.state, cond)
}

// waitState reads a page's state every 50 ms until cond holds, failing
// with the last state after d: the browser tests' one poll loop, whatever
// the page reports.
func waitState[S any](t *testing.T, what string, d time.Duration, read func() S, cond func(S) bool) S {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := read()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; page state %+v", d, what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func chatBodies(s tgState) []string {
	out := make([]string, len(s.Chat))
	for i, m := range s.Chat {
		out[i] = m.Body
	}
	return out
}

// publishAll publishes each message with /receive, straight to the server.
func publishAll(t *testing.T, server string, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		receive(t, server, m)
	}
}

// serverHistory asks the server (short polls, following "more") for the
// positions of topic's messages after since.
func serverHistory(t *testing.T, server, topic, since string) []string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	var out []string
	for range 50 {
		q := url.Values{"since": {since}}
		if topic != "chat" {
			q.Set("topic", topic)
		}
		resp, err := c.Get("http://" + server + "/poll-message?" + q.Encode())
		if err != nil {
			t.Fatalf("GET /poll-message: %v", err)
		}
		var a struct {
			Head     string
			Messages []struct{ Pos string }
			More     bool
			Missed   int
		}
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /poll-message?%s: %d, %v", q.Encode(), resp.StatusCode, err)
		}
		if a.Missed != 0 {
			t.Fatalf("server history of %s after %s: %d missed", topic, since, a.Missed)
		}
		for _, m := range a.Messages {
			out = append(out, m.Pos)
			since = m.Pos
		}
		if !a.More {
			return out
		}
	}
	t.Fatalf("server history of %s: still more after 50 pages", topic)
	return nil
}

// posBefore returns the position just before p ("E-N" to "E-(N-1)").
func posBefore(t *testing.T, p string) string {
	t.Helper()
	e, n, ok := strings.Cut(p, "-")
	off, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || off < 1 {
		t.Fatalf("position %q", p)
	}
	return e + "-" + strconv.FormatInt(off-1, 10)
}

// checkAgainstServer fails unless the page got exactly the server's
// messages of topic from its first one to its last: none lost, none twice,
// in order.
func checkAgainstServer(t *testing.T, server, topic string, got []tgMessage) {
	t.Helper()
	if len(got) == 0 {
		t.Errorf("%s: the page got nothing", topic)
		return
	}
	var page []string
	for _, m := range got {
		page = append(page, m.Pos)
	}
	want := serverHistory(t, server, topic, posBefore(t, page[0]))
	if i := slices.Index(want, page[len(page)-1]); i >= 0 {
		want = want[:i+1]
	}
	if !slices.Equal(page, want) {
		t.Errorf("%s: the page has positions\n%v\nthe server's history from the first to the last is\n%v", topic, page, want)
	}
}

// allTransports is the page's ?transport= values.
var allTransports = []string{"ws", "sse", "longpoll", "shortpoll"}

// TestBrowserTransports forces each transport with ?transport= and checks
// that the page says it uses it, and that chat messages published with
// /receive and with the page's own chat form reach it, and ticks too.
func TestBrowserTransports(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	b := startBrowser(t, exe)
	for _, tr := range allTransports {
		t.Run(tr, func(t *testing.T) {
			server := startDemos(t)
			transportScenario(t, b, server, "http://"+server+"/?transport="+tr, tr)
		})
	}
}

// transportScenario opens pageURL (the demo page forcing transport tr) in
// a new tab of b and checks that chat and clock run over tr: live
// messages published on server arrive once, in order, as in the server's
// history.
func transportScenario(t *testing.T, b context.Context, server, pageURL, tr string) {
	t.Helper()
	pg := openPage(t, b, 30*time.Second)
	pg.navigate(pageURL)
	pg.waitFor("chat and clock open over "+tr, 10*time.Second, func(s tgState) bool {
		return s.Transports["chat"] == tr && s.Transports["clock"] == tr &&
			s.ChatBadge == "open" && s.ClockBadge == "open" && len(s.Clock) >= 2
	})
	publishAll(t, server, tr+" one", tr+" two", tr+" three")
	if err := chromedp.Run(pg.ctx, chromedp.SendKeys("#chat-input", tr+" typed"+kb.Enter, chromedp.ByID)); err != nil {
		t.Fatalf("type chat line: %v", err)
	}
	want := []string{tr + " one", tr + " two", tr + " three"}
	s := pg.waitFor("the published messages", 10*time.Second, func(s tgState) bool {
		got := chatBodies(s)
		return len(got) >= 3 && slices.Equal(got[:3], want) &&
			(tr == "ws" && slices.Contains(s.Plain, "new message :"+tr+" typed") ||
				tr != "ws" && slices.Contains(got, tr+" typed"))
	})
	for _, m := range s.Chat {
		if m.Recovered || m.Transport != tr {
			t.Errorf("message %+v: want live over %s", m, tr)
		}
	}
	if s.Forced != tr || s.Transport != tr || !strings.HasPrefix(s.ChatLabel, tr+" ") || !strings.HasPrefix(s.ClockLabel, tr+" ") {
		t.Errorf("forced %q, transport %q, labels %q / %q; want %s", s.Forced, s.Transport, s.ChatLabel, s.ClockLabel, tr)
	}
	if s.Duplicates != 0 || s.Recovered != 0 || len(s.Gone) != 0 || len(s.Fallbacks) != 0 {
		t.Errorf("duplicates %d, recovered %d, gone %v, fallbacks %v; want none; clock %+v", s.Duplicates, s.Recovered, s.Gone, s.Fallbacks, s.Clock)
	}
	checkAgainstServer(t, server, "chat", s.Chat)
	checkAgainstServer(t, server, "clock", s.Clock)
}

// outage makes the server unreachable for the page (every connection reset,
// new ones refused) until the page has noticed on both topics, runs during,
// and lets the page back in.
func outage(t *testing.T, pg *browserPage, px *faultProxy, during func()) {
	t.Helper()
	px.refuse.Store(true)
	px.reset()
	pg.waitFor("the page to notice the outage", 8*time.Second, func(s tgState) bool {
		return s.ChatBadge != "open" && s.ClockBadge != "open"
	})
	during()
	px.refuse.Store(false)
}

// TestBrowserRecovery cuts the page off the server over each transport,
// publishes while it is away, and checks that on reconnect it shows the
// missed messages and ticks, marked recovered, none lost or repeated.
func TestBrowserRecovery(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	b := startBrowser(t, exe)
	for _, tr := range allTransports {
		t.Run(tr, func(t *testing.T) {
			server := startDemos(t)
			px := startFaultProxy(t, server)
			pg := openPage(t, b, 45*time.Second)
			pg.navigate("http://" + px.addr() + "/?transport=" + tr)
			pg.waitFor("chat and clock open", 10*time.Second, func(s tgState) bool {
				return s.ChatBadge == "open" && s.ClockBadge == "open" && len(s.Clock) >= 1
			})
			publishAll(t, server, "before")
			pg.waitFor("the first message", 5*time.Second, func(s tgState) bool { return slices.Contains(chatBodies(s), "before") })
			before := pg.state()

			missed := []string{"missed 1", "missed 2", "missed 3"}
			outage(t, pg, px, func() {
				publishAll(t, server, missed...)
				// Away for at least one tick.
				time.Sleep(1500 * time.Millisecond)
			})
			s := pg.waitFor("the missed messages", 12*time.Second, func(s tgState) bool {
				return slices.Contains(chatBodies(s), "missed 3") && s.ChatBadge == "open" && s.ClockBadge == "open"
			})
			publishAll(t, server, "after")
			s = pg.waitFor("the next message", 5*time.Second, func(s tgState) bool { return slices.Contains(chatBodies(s), "after") })

			if got, want := chatBodies(s), append(append([]string{"before"}, missed...), "after"); !slices.Equal(got, want) {
				t.Errorf("chat %q, want %q", got, want)
			}
			for _, m := range s.Chat {
				if want := strings.HasPrefix(m.Body, "missed"); m.Recovered != want {
					t.Errorf("message %+v: recovered %v, want %v", m, m.Recovered, want)
				}
			}
			if s.RecoveredTags != len(missed) {
				t.Errorf("%d chat messages shown as recovered, want %d", s.RecoveredTags, len(missed))
			}
			var ticksRecovered int
			for _, m := range s.Clock[len(before.Clock):] {
				if m.Recovered {
					ticksRecovered++
				}
			}
			if ticksRecovered == 0 || s.RecoveredRows == 0 {
				t.Errorf("no tick recovered (%d in the state, %d rows shown); ticks %+v", ticksRecovered, s.RecoveredRows, s.Clock)
			}
			if s.Duplicates != 0 || len(s.Gone) != 0 {
				t.Errorf("duplicates %d, gone %v; want none", s.Duplicates, s.Gone)
			}
			if s.Transports["chat"] != tr || s.Transports["clock"] != tr || len(s.Fallbacks) != 0 {
				t.Errorf("transports %v, fallbacks %v; want %s throughout", s.Transports, s.Fallbacks, tr)
			}
			if s.Opens["chat"] < 2 || s.Opens["clock"] < 2 {
				t.Errorf("opens %v: want a reconnect of both", s.Opens)
			}
			checkAgainstServer(t, server, "chat", s.Chat)
			checkAgainstServer(t, server, "clock", s.Clock)
		})
	}
}

// TestBrowserHistoryGone publishes more messages than the chat keeps (200)
// while the page is away: the page must say how many it missed, and show
// the ones kept as recovered.
func TestBrowserHistoryGone(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	b := startBrowser(t, exe)
	const kept, extra = 200, 50
	for _, tr := range []string{"ws", "sse", "longpoll"} {
		t.Run(tr, func(t *testing.T) {
			server := startDemos(t)
			px := startFaultProxy(t, server)
			pg := openPage(t, b, 45*time.Second)
			pg.navigate("http://" + px.addr() + "/?transport=" + tr)
			pg.waitFor("chat open", 10*time.Second, func(s tgState) bool { return s.ChatBadge == "open" })
			publishAll(t, server, "before")
			pg.waitFor("the first message", 5*time.Second, func(s tgState) bool { return slices.Contains(chatBodies(s), "before") })
			var missed []string
			for i := range kept + extra {
				missed = append(missed, "missed "+strconv.Itoa(i+1))
			}
			outage(t, pg, px, func() { publishAll(t, server, missed...) })
			s := pg.waitFor("the kept messages and the notice", 12*time.Second, func(s tgState) bool {
				return slices.Contains(chatBodies(s), missed[len(missed)-1]) && len(s.Gone) > 0
			})
			want := "history gone: " + strconv.Itoa(extra) + " messages missed, reloaded"
			if len(s.Gone) != 1 || s.Gone[0].Topic != "chat" || s.Gone[0].Missed != extra || !strings.HasPrefix(s.ChatGone, want) {
				t.Errorf("gone %+v, notice %q; want one for chat, %d missed, saying %q", s.Gone, s.ChatGone, extra, want)
			}
			if got, want := chatBodies(s), append([]string{"before"}, missed[extra:]...); !slices.Equal(got, want) {
				t.Errorf("chat has %d messages (%q ... %q), want %d (before, missed %d ... missed %d)",
					len(got), got[:min(3, len(got))], got[max(0, len(got)-2):], len(want), extra+1, kept+extra)
			}
			if s.Duplicates != 0 {
				t.Errorf("%d duplicates", s.Duplicates)
			}
		})
	}
}

// TestBrowserFallback serves the page through a proxy that refuses every
// WebSocket upgrade (403, as a proxy that does not carry them might), and
// then also /sse (404, as from a proxy that knows no such path): with no
// ?transport=, chat and clock must land on SSE, then on long polling, and
// work there.
func TestBrowserFallback(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	b := startBrowser(t, exe)
	for _, c := range []struct {
		name, want string
		fallbacks  []string
		refuseSSE  bool
	}{
		{"ws refused", "sse", []string{"ws -> sse"}, false},
		{"ws and sse refused", "longpoll", []string{"ws -> sse", "sse -> longpoll"}, true},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			server := startDemos(t)
			var upgrades, streams atomic.Int64
			px := startFilterProxy(t, server, func(head string) string {
				h := strings.ToLower(head)
				if strings.Contains(h, "\r\nupgrade: websocket") {
					upgrades.Add(1)
					return "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
				}
				if c.refuseSSE && strings.HasPrefix(head, "GET /sse") {
					streams.Add(1)
					return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
				}
				return ""
			})
			pg := openPage(t, b, 30*time.Second)
			pg.navigate("http://" + px.addr() + "/")
			s := pg.waitFor("both on "+c.want, 15*time.Second, func(s tgState) bool {
				return s.Transports["chat"] == c.want && s.Transports["clock"] == c.want &&
					s.ChatBadge == "open" && s.ClockBadge == "open" && len(s.Clock) >= 1
			})
			var want []string
			for _, topic := range []string{"clock", "chat"} {
				for _, f := range c.fallbacks {
					want = append(want, topic+": "+f)
				}
			}
			var got []string
			for _, f := range s.Fallbacks {
				got = append(got, f[:strings.Index(f+" (", " (")])
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("fallbacks %q, want %q", s.Fallbacks, want)
			}
			if !strings.HasPrefix(s.ChatLabel, c.want+" ") || !strings.Contains(s.ChatLabel, "(fallback)") {
				t.Errorf("chat transport label %q, want it to name %s, a fallback", s.ChatLabel, c.want)
			}
			// Two tries of each refused transport for each topic, and no
			// more once fallen back.
			if n := upgrades.Load(); n != 4 {
				t.Errorf("%d upgrades refused, want 4", n)
			}
			if n := streams.Load(); c.refuseSSE && n != 4 {
				t.Errorf("%d streams refused, want 4", n)
			}
			publishAll(t, server, "over "+c.want)
			if err := chromedp.Run(pg.ctx, chromedp.SendKeys("#chat-input", "typed over "+c.want+kb.Enter, chromedp.ByID)); err != nil {
				t.Fatalf("type chat line: %v", err)
			}
			s = pg.waitFor("messages over "+c.want, 5*time.Second, func(s tgState) bool {
				return slices.Equal(chatBodies(s), []string{"over " + c.want, "typed over " + c.want})
			})
			for _, m := range s.Chat {
				if m.Transport != c.want || m.Recovered {
					t.Errorf("message %+v: want live over %s", m, c.want)
				}
			}
			checkAgainstServer(t, server, "chat", s.Chat)
		})
	}
}

// TestBrowserReloadResumes leaves the page and comes back in the same tab:
// the new page resumes from the position the old one kept (sessionStorage:
// ?since= on /ws, on a new EventSource and on the first poll) and shows what
// was published meanwhile as recovered.
func TestBrowserReloadResumes(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	b := startBrowser(t, exe)
	for _, tr := range []string{"ws", "sse", "longpoll"} {
		t.Run(tr, func(t *testing.T) {
			server := startDemos(t)
			pg := openPage(t, b, 30*time.Second)
			page := "http://" + server + "/?transport=" + tr
			pg.navigate(page)
			pg.waitFor("chat open", 10*time.Second, func(s tgState) bool { return s.ChatBadge == "open" })
			publishAll(t, server, "seen")
			first := pg.waitFor("the first message", 5*time.Second, func(s tgState) bool { return slices.Contains(chatBodies(s), "seen") })
			pg.navigate("about:blank")
			publishAll(t, server, "while away 1", "while away 2")
			pg.navigate(page)
			s := pg.waitFor("the messages published while away", 10*time.Second, func(s tgState) bool {
				return len(s.Chat) >= 2 && s.ChatBadge == "open"
			})
			publishAll(t, server, "back")
			s = pg.waitFor("the next message", 5*time.Second, func(s tgState) bool { return slices.Contains(chatBodies(s), "back") })
			if got, want := chatBodies(s), []string{"while away 1", "while away 2", "back"}; !slices.Equal(got, want) {
				t.Errorf("chat after coming back %q, want %q", got, want)
			}
			for _, m := range s.Chat {
				if want := strings.HasPrefix(m.Body, "while away"); m.Recovered != want {
					t.Errorf("message %+v: recovered %v, want %v", m, m.Recovered, want)
				}
			}
			if s.Duplicates != 0 || len(s.Gone) != 0 || s.RecoveredTags != 2 {
				t.Errorf("duplicates %d, gone %v, %d shown recovered; want 0, none, 2", s.Duplicates, s.Gone, s.RecoveredTags)
			}
			checkAgainstServer(t, server, "chat", append(first.Chat, s.Chat...))
		})
	}
}

// TestBrowserPositionBeyond: a page whose stored position is beyond the
// history (a far-ahead offset, a newer epoch: a stale or tampered
// sessionStorage) is told "gone" with the real head and shows the live
// messages again, on every transport, instead of taking them all for
// duplicates of what it "has".
func TestBrowserPositionBeyond(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	b := startBrowser(t, exe)
	for _, tr := range []string{"ws", "sse", "longpoll"} {
		t.Run(tr, func(t *testing.T) {
			server := startDemos(t)
			publishAll(t, server, "old")
			head, _ := pubsub.ParsePosition(serverHead(t, server))
			pg := openPage(t, b, 30*time.Second)
			page := "http://" + server + "/?transport=" + tr
			for i, far := range []pubsub.Position{{Epoch: head.Epoch, Offset: 1<<63 - 1}, {Epoch: head.Epoch + 1, Offset: 5}} {
				pg.navigate(page)
				pg.waitFor("chat open", 10*time.Second, func(s tgState) bool { return s.ChatBadge == "open" })
				if err := chromedp.Run(pg.ctx, chromedp.Evaluate(`sessionStorage.setItem("tornago-pos-chat", "`+far.String()+`")`, nil)); err != nil {
					t.Fatal(err)
				}
				pg.navigate(page)
				pg.waitFor("chat open from "+far.String(), 10*time.Second, func(s tgState) bool { return s.ChatBadge == "open" })
				live := "live " + strconv.Itoa(i)
				publishAll(t, server, live)
				s := pg.waitFor(live+" after "+far.String(), 10*time.Second, func(s tgState) bool { return slices.Contains(chatBodies(s), live) })
				if s.Pos["chat"] == far.String() {
					t.Errorf("the page still stands at %s", far)
				}
			}
		})
	}
}

// serverHead is the chat's head on server ("E-N").
func serverHead(t *testing.T, server string) string {
	t.Helper()
	var r posReply
	if !post(t, &http.Client{Timeout: 5 * time.Second}, "http://"+server+"/poll-message", url.Values{"since": {"0-0"}}, &r) {
		t.FailNow()
	}
	return r.Head
}
