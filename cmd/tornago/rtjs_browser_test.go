package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop"
)

// The browser client (loop/realtime/js/tornago.js, served at /tornago.js)
// in headless Chromium against the demo's protocol server, through the
// fault proxy: each transport, fallback, a reload resuming, tabs sharing one
// connection.

// rtjsPage is a page that only loads the client: the query says how
// (transports, shared, ping, topic); window.rt records what it saw.
const rtjsPage = `<!doctype html>
<meta charset="utf-8"><title>tornago.js test</title>
<script type="module">
import {connect} from "/tornago.js";
const q = new URLSearchParams(location.search);
const opts = {connectTimeout: 3000, minReconnectDelay: 100, maxReconnectDelay: 1000, pongTimeout: 1500};
if (q.get("ping")) opts.pingInterval = +q.get("ping");
if (q.get("transports")) opts.transports = q.get("transports").split(",");
if (q.get("worker")) opts.workerURL = q.get("worker");
const sh = q.get("shared");
opts.shared = sh === "false" ? false : (sh || "auto");
const rt = window.rt = {state: "", states: [], transport: "", client: "", msgs: [], subs: [], errors: [], global: typeof globalThis.Tornago};
const c = window.client = connect(opts);
rt.link = c.link ? c.link.kind : "";
c.on("state", (s, d) => {
	rt.state = s;
	rt.states.push(s + ":" + d.code);
	rt.transport = d.transport;
	rt.client = d.client;
	rt.link = c.link ? c.link.kind : "";
});
c.subscribe(q.get("topic") || "chat:lobby", {
	onMessage: (data, pub) => rt.msgs.push({text: data && data.text, pos: pub.pos || ""}),
	onSubscribed: (r) => rt.subs.push(r),
	onError: (e) => rt.errors.push(e.code + " " + e.message),
});
</script>
<p>tornago.js test page</p>`

// rtjsState is window.rt.
type rtjsState struct {
	State, Transport, Client, Link, Global string
	States                                 []string
	Msgs                                   []struct{ Text, Pos string }
	Subs                                   []struct {
		Head      string
		Recovered int
		Gone      bool
	}
	Errors []string
}

func (s rtjsState) texts() []string {
	var out []string
	for _, m := range s.Msgs {
		out = append(out, m.Text)
	}
	return out
}

// rtjsServer runs the demo (with its protocol server) plus the test page,
// behind a fault proxy whose filter counts the protocol's requests by path
// and refuses those refuse returns true for.
type rtjsServer struct {
	addr  string
	px    *faultProxy
	mu    sync.Mutex
	count map[string]int
	deny  map[string]bool
}

func startRTJS(t *testing.T) *rtjsServer {
	t.Helper()
	s := &rtjsServer{count: map[string]int{}, deny: map[string]bool{}}
	s.addr = startDemoApp(t, demoAppOptions(longPollOptions{}), nil, func(app *loop.Application) {
		app.HandleFunc("/rtjs-test", func(r *loop.Request) {
			r.SetHeader("Content-Type", "text/html; charset=utf-8")
			r.Write(rtjsPage)
			r.Finish()
		})
	})
	s.px = startFilterProxy(t, s.addr, func(head string) string {
		line, _, _ := strings.Cut(head, "\r\n")
		path := strings.Fields(line + " x x")[1]
		path, _, _ = strings.Cut(path, "?")
		s.mu.Lock()
		defer s.mu.Unlock()
		s.count[path]++
		if s.deny[path] {
			return "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
		}
		return ""
	})
	return s
}

func (s *rtjsServer) base() string { return "http://" + s.px.addr() }

func (s *rtjsServer) requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[path]
}

func (s *rtjsServer) refuse(path string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deny[path] = on
}

// rtjsPublish publishes {"text": text} on topic with a Go WebSocket client
// of the protocol, straight to the server (not through the proxy), and
// returns the position.
func rtjsPublish(t *testing.T, addr, topic, text string) string {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/connection/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data, _ := json.Marshal(map[string]string{"text": text})
	for _, cmd := range []string{`{"id":1,"connect":{}}`, fmt.Sprintf(`{"id":2,"publish":{"topic":%q,"data":%s}}`, topic, data)} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(cmd)); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("publish %q: %v", text, err)
		}
		var r struct {
			ID     int
			Result struct{ Pos string }
			Error  *struct{ Message string }
		}
		if json.Unmarshal(b, &r) == nil && r.ID == 2 {
			if r.Error != nil {
				t.Fatalf("publish %q: %s", text, r.Error.Message)
			}
			return r.Result.Pos
		}
	}
}

// rtjsTab is one tab showing the test page (a browserPage without the
// screenshot, that the test may close early).
type rtjsTab struct {
	browserPage
	cancel context.CancelFunc
}

func openRTJSTab(t *testing.T, bctx context.Context, url string) *rtjsTab {
	t.Helper()
	tctx, cancelTab := chromedp.NewContext(bctx)
	ctx, cancel := context.WithTimeout(tctx, 60*time.Second)
	tab := &rtjsTab{browserPage: browserPage{t: t, ctx: ctx}, cancel: func() { cancel(); cancelTab() }}
	t.Cleanup(tab.cancel)
	tab.navigate(url)
	return tab
}

func (p *rtjsTab) state() rtjsState {
	p.t.Helper()
	var s rtjsState
	if err := chromedp.Run(p.ctx, chromedp.Evaluate(`window.rt || {}`, &s)); err != nil {
		p.t.Fatalf("read window.rt: %v", err)
	}
	return s
}

func (p *rtjsTab) waitFor(what string, d time.Duration, cond func(rtjsState) bool) rtjsState {
	p.t.Helper()
	return waitState(p.t, what, d, p.state, cond)
}

// eval runs a promise-returning expression in the page and decodes the
// value it resolves with into out (a rejection fails the test).
func (p *rtjsTab) eval(expr string, out any) {
	p.t.Helper()
	start := `window.__ev = null; Promise.resolve().then(() => ` + expr + `).then(
		(v) => window.__ev = {done: true, v: JSON.stringify(v === undefined ? null : v)},
		(e) => window.__ev = {done: true, err: String(e && e.message || e)}); true`
	var ok bool
	if err := chromedp.Run(p.ctx, chromedp.Evaluate(start, &ok)); err != nil {
		p.t.Fatalf("%s: %v", expr, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var r struct {
			Done   bool
			V, Err string
		}
		if err := chromedp.Run(p.ctx, chromedp.Evaluate(`window.__ev || {}`, &r)); err != nil {
			p.t.Fatalf("%s: %v", expr, err)
		}
		if r.Done {
			if r.Err != "" {
				p.t.Fatalf("%s: rejected: %s", expr, r.Err)
			}
			if err := json.Unmarshal([]byte(r.V), out); err != nil {
				p.t.Fatalf("%s: %v in %s", expr, err, r.V)
			}
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no answer in 15 s", expr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasText(s rtjsState, text string) bool { return slices.Contains(s.texts(), text) }

// noRepeats fails when a position shows up twice in what the page handled.
func noRepeats(t *testing.T, s rtjsState) {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range s.Msgs {
		if m.Pos != "" && seen[m.Pos] {
			t.Errorf("position %s handled twice: %+v", m.Pos, s.Msgs)
		}
		seen[m.Pos] = true
	}
}

// TestBrowserClientTransports: on each transport alone, the page connects,
// subscribes, publishes with an ack and receives its publication, calls an
// RPC, and after every connection is reset while a publication is made
// elsewhere, reconnects and recovers it, repeating nothing.
func TestBrowserClientTransports(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	srv := startRTJS(t)
	bctx := startBrowser(t, exe)
	for _, tr := range []string{"websocket", "sse", "longpoll"} {
		t.Run(tr, func(t *testing.T) {
			topic := "chat:t-" + tr
			p := openRTJSTab(t, bctx, srv.base()+"/rtjs-test?shared=false&transports="+tr+"&topic="+topic)
			s := p.waitFor("connected and subscribed", 10*time.Second, func(s rtjsState) bool {
				return s.State == "connected" && len(s.Subs) == 1
			})
			if s.Transport != tr || s.Link != "local" || s.Client == "" || s.Global != "object" {
				t.Errorf("transport %q link %q client %q globalThis.Tornago %s; want %s, local, an id, object", s.Transport, s.Link, s.Client, s.Global, tr)
			}
			var ack struct{ Pos string }
			p.eval(`client.publish(`+jsString(topic)+`, {text: "from the page"})`, &ack)
			if ack.Pos == "" {
				t.Errorf("publish ack without pos: %+v", ack)
			}
			p.waitFor("own publication", 5*time.Second, func(s rtjsState) bool { return hasText(s, "from the page") })
			var rpc struct{ Time, Client string }
			p.eval(`client.rpc("time")`, &rpc)
			if rpc.Time == "" || rpc.Client != s.Client {
				t.Errorf("rpc time: %+v (client %q)", rpc, s.Client)
			}
			var rpcErr string
			p.eval(`client.rpc("no such method").then(() => "resolved", (e) => e.code + " " + e.message)`, &rpcErr)
			if !strings.HasPrefix(rpcErr, "104 ") {
				t.Errorf("unknown rpc: %q, want 104", rpcErr)
			}

			// Down: every connection reset and new ones refused while a
			// publication is made; back up: the page recovers it.
			srv.px.refuse.Store(true)
			srv.px.reset()
			p.waitFor("connecting", 5*time.Second, func(s rtjsState) bool { return s.State == "connecting" })
			rtjsPublish(t, srv.addr, topic, "while away")
			srv.px.refuse.Store(false)
			// Recovered publications come before the subscribe reply that
			// counts them, and on long polling maybe in an earlier answer:
			// wait for both.
			s = p.waitFor("recovered", 15*time.Second, func(s rtjsState) bool {
				return s.State == "connected" && hasText(s, "while away") && len(s.Subs) >= 2
			})
			if len(s.Subs) < 2 || s.Subs[len(s.Subs)-1].Recovered < 1 {
				t.Errorf("resubscription %+v, want recovered >= 1", s.Subs)
			}
			rtjsPublish(t, srv.addr, topic, "live again")
			s = p.waitFor("live", 5*time.Second, func(s rtjsState) bool { return hasText(s, "live again") })
			if want := []string{"from the page", "while away", "live again"}; !slices.Equal(s.texts(), want) {
				t.Errorf("page handled %q, want %q", s.texts(), want)
			}
			noRepeats(t, s)
		})
	}
}

// TestBrowserClientFallback: with WebSocket refused by the proxy the page
// falls back to SSE, with SSE refused too to long polling; a blackholed
// connection is noticed by the client's ping and replaced.
func TestBrowserClientFallback(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	srv := startRTJS(t)
	bctx := startBrowser(t, exe)

	srv.refuse("/connection/websocket", true)
	p := openRTJSTab(t, bctx, srv.base()+"/rtjs-test?shared=false&topic=chat:fb1")
	s := p.waitFor("connected over sse", 15*time.Second, func(s rtjsState) bool { return s.State == "connected" })
	if s.Transport != "sse" {
		t.Errorf("transport %q with WebSocket refused, want sse", s.Transport)
	}
	srv.refuse("/connection/sse", true)
	p2 := openRTJSTab(t, bctx, srv.base()+"/rtjs-test?shared=false&topic=chat:fb2")
	// Subscribed, not only connected: a publication before the subscribe
	// reached the server is before "now" and not for this page.
	s = p2.waitFor("connected over long polling", 15*time.Second, func(s rtjsState) bool { return s.State == "connected" && len(s.Subs) == 1 })
	if s.Transport != "longpoll" {
		t.Errorf("transport %q with WebSocket and SSE refused, want longpoll", s.Transport)
	}
	rtjsPublish(t, srv.addr, "chat:fb2", "polled")
	p2.waitFor("a publication over long polling", 5*time.Second, func(s rtjsState) bool { return hasText(s, "polled") })

	// Blackhole: WebSocket allowed again; the connection goes silent, no
	// close ever comes; the 1 s ping finds out and the page reconnects.
	srv.refuse("/connection/websocket", false)
	srv.refuse("/connection/sse", false)
	p3 := openRTJSTab(t, bctx, srv.base()+"/rtjs-test?shared=false&ping=1000&topic=chat:fb3")
	p3.waitFor("connected over websocket", 10*time.Second, func(s rtjsState) bool {
		return s.State == "connected" && s.Transport == "websocket" && len(s.Subs) == 1
	})
	ws := srv.requests("/connection/websocket")
	srv.px.blackhole()
	start := time.Now()
	rtjsPublish(t, srv.addr, "chat:fb3", "after the blackhole")
	s = p3.waitFor("reconnected and recovered", 15*time.Second, func(s rtjsState) bool {
		return s.State == "connected" && hasText(s, "after the blackhole")
	})
	t.Logf("blackhole noticed and recovered in %v; states %v", time.Since(start).Round(time.Millisecond), s.States)
	if !slices.Contains(s.States, "connecting:3002") {
		t.Errorf("states %v, want connecting:3002 (no pong)", s.States)
	}
	if srv.requests("/connection/websocket") <= ws {
		t.Errorf("no new WebSocket after the blackhole")
	}
	noRepeats(t, s)
}

// TestBrowserClientReload: a page that reloads subscribes from the
// position kept in sessionStorage and gets what was published meanwhile,
// and only that.
func TestBrowserClientReload(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	srv := startRTJS(t)
	bctx := startBrowser(t, exe)
	url := srv.base() + "/rtjs-test?shared=false&topic=chat:reload"
	p := openRTJSTab(t, bctx, url)
	p.waitFor("subscribed", 10*time.Second, func(s rtjsState) bool { return len(s.Subs) == 1 })
	rtjsPublish(t, srv.addr, "chat:reload", "before")
	p.waitFor("before", 5*time.Second, func(s rtjsState) bool { return hasText(s, "before") })
	p.navigate("about:blank")
	rtjsPublish(t, srv.addr, "chat:reload", "while reloading")
	p.navigate(url)
	s := p.waitFor("resumed", 10*time.Second, func(s rtjsState) bool { return hasText(s, "while reloading") && len(s.Subs) >= 1 })
	if hasText(s, "before") || len(s.Subs) != 1 || s.Subs[0].Recovered != 1 || s.Subs[0].Gone {
		t.Errorf("after reload: messages %q, subscribe %+v; want only the one published meanwhile, recovered 1", s.texts(), s.Subs)
	}
}

// TestBrowserClientTabs: tabs of one browser share one server connection,
// through a SharedWorker, or through a leader tab over a BroadcastChannel;
// when the leader tab closes, another takes over and resumes.
func TestBrowserClientTabs(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	srv := startRTJS(t)
	bctx := startBrowser(t, exe)

	t.Run("sharedworker", func(t *testing.T) {
		before := srv.requests("/connection/websocket")
		url := srv.base() + "/rtjs-test?topic=chat:tabs"
		a := openRTJSTab(t, bctx, url)
		a.waitFor("a subscribed", 10*time.Second, func(s rtjsState) bool { return s.State == "connected" && len(s.Subs) == 1 })
		b := openRTJSTab(t, bctx, url)
		sb := b.waitFor("b subscribed", 10*time.Second, func(s rtjsState) bool { return s.State == "connected" && len(s.Subs) == 1 })
		if sb.Link != "sharedworker" {
			t.Errorf("link %q, want sharedworker", sb.Link)
		}
		rtjsPublish(t, srv.addr, "chat:tabs", "to both")
		a.waitFor("a got it", 5*time.Second, func(s rtjsState) bool { return hasText(s, "to both") })
		b.waitFor("b got it", 5*time.Second, func(s rtjsState) bool { return hasText(s, "to both") })
		if n := srv.requests("/connection/websocket") - before; n != 1 {
			t.Errorf("%d WebSocket connections for two tabs, want 1", n)
		}
		if sa := a.state(); sa.Client != sb.Client {
			t.Errorf("client ids %q and %q: not one connection", sa.Client, sb.Client)
		}
		// A reloads while B holds the connection: A resumes from its
		// position out of what the worker kept, on the same connection.
		a.navigate("about:blank")
		rtjsPublish(t, srv.addr, "chat:tabs", "while a reloads")
		b.waitFor("b got it", 5*time.Second, func(s rtjsState) bool { return hasText(s, "while a reloads") })
		a.navigate(url)
		sa := a.waitFor("a resumed", 10*time.Second, func(s rtjsState) bool { return hasText(s, "while a reloads") && len(s.Subs) >= 1 })
		if !slices.Equal(sa.texts(), []string{"while a reloads"}) || len(sa.Subs) != 1 || sa.Subs[0].Recovered != 1 {
			t.Errorf("after reload: a handled %q, subscribe %+v; want the one published meanwhile, recovered 1", sa.texts(), sa.Subs)
		}
		if n := srv.requests("/connection/websocket") - before; n != 1 {
			t.Errorf("%d WebSocket connections after a reload in a shared tab, want still 1", n)
		}
	})

	t.Run("broadcast", func(t *testing.T) {
		before := srv.requests("/connection/websocket")
		url := srv.base() + "/rtjs-test?shared=broadcast&topic=chat:bc"
		a := openRTJSTab(t, bctx, url)
		a.waitFor("leader subscribed", 10*time.Second, func(s rtjsState) bool { return s.State == "connected" && len(s.Subs) == 1 })
		b := openRTJSTab(t, bctx, url)
		b.waitFor("follower subscribed", 10*time.Second, func(s rtjsState) bool { return s.State == "connected" && len(s.Subs) == 1 })
		rtjsPublish(t, srv.addr, "chat:bc", "one")
		a.waitFor("leader got one", 5*time.Second, func(s rtjsState) bool { return hasText(s, "one") })
		b.waitFor("follower got one", 5*time.Second, func(s rtjsState) bool { return hasText(s, "one") })
		if n := srv.requests("/connection/websocket") - before; n != 1 {
			t.Errorf("%d WebSocket connections for two tabs, want 1", n)
		}
		// The leader goes; the follower is elected, connects, resumes.
		a.cancel()
		rtjsPublish(t, srv.addr, "chat:bc", "two")
		s := b.waitFor("new leader got two", 15*time.Second, func(s rtjsState) bool { return hasText(s, "two") })
		if want := []string{"one", "two"}; !slices.Equal(s.texts(), want) {
			t.Errorf("follower handled %q, want %q", s.texts(), want)
		}
		if n := srv.requests("/connection/websocket") - before; n != 2 {
			t.Errorf("%d WebSocket connections, want 2 (the first leader's, then the new one's)", n)
		}
		noRepeats(t, s)
	})

	t.Run("no worker", func(t *testing.T) {
		// The SharedWorker cannot start (its script is missing): the tabs
		// elect a leader instead and still share one connection.
		before := srv.requests("/connection/websocket")
		url := srv.base() + "/rtjs-test?worker=/no-such-worker.js&topic=chat:noworker"
		a := openRTJSTab(t, bctx, url)
		b := openRTJSTab(t, bctx, url)
		for _, p := range []*rtjsTab{a, b} {
			s := p.waitFor("subscribed", 10*time.Second, func(s rtjsState) bool { return s.State == "connected" && len(s.Subs) == 1 })
			if s.Link != "broadcast" {
				t.Errorf("link %q, want broadcast", s.Link)
			}
		}
		rtjsPublish(t, srv.addr, "chat:noworker", "shared anyway")
		a.waitFor("a got it", 5*time.Second, func(s rtjsState) bool { return hasText(s, "shared anyway") })
		b.waitFor("b got it", 5*time.Second, func(s rtjsState) bool { return hasText(s, "shared anyway") })
		if n := srv.requests("/connection/websocket") - before; n != 1 {
			t.Errorf("%d WebSocket connections for two tabs, want 1", n)
		}
	})
}

// jsString quotes s for JavaScript (JSON is a subset).
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestBrowserRealtimePage drives the demo page built on the client
// (/realtime): clock ticks, chat in a room with the page's name, another
// room, a publication from Go.
func TestBrowserRealtimePage(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	srv := startRTJS(t)
	p := openRTJSTab(t, startBrowser(t, exe), srv.base()+"/realtime?name=Ada")
	type demoState struct {
		State, Transport, Name, Room string
		Subscribed                   string
		Ticks                        int
		Messages                     []struct{ Who, Text, Pos string }
		Errors                       []string
	}
	state := func() demoState {
		t.Helper()
		var s demoState
		if err := chromedp.Run(p.ctx, chromedp.Evaluate(`window.rtdemo || {}`, &s)); err != nil {
			t.Fatalf("read window.rtdemo: %v", err)
		}
		return s
	}
	waitFor := func(what string, cond func(demoState) bool) demoState {
		t.Helper()
		return waitState(t, what, 10*time.Second, state, cond)
	}
	waitFor("connected, two ticks", func(s demoState) bool { return s.State == "connected" && s.Ticks >= 2 })
	if err := chromedp.Run(p.ctx, chromedp.SendKeys("#chat-input", "hello lobby\n", chromedp.ByID)); err != nil {
		t.Fatal(err)
	}
	s := waitFor("own message", func(s demoState) bool { return len(s.Messages) == 1 })
	if m := s.Messages[0]; m.Who != "Ada" || m.Text != "hello lobby" || m.Pos == "" || s.Room != "lobby" {
		t.Errorf("message %+v in room %q, want Ada's in lobby with a position", m, s.Room)
	}
	if err := chromedp.Run(p.ctx, chromedp.SetValue("#room", "go", chromedp.ByID), chromedp.Evaluate(`document.getElementById("room").dispatchEvent(new Event("change"))`, nil)); err != nil {
		t.Fatal(err)
	}
	waitFor("room go", func(s demoState) bool { return s.Subscribed == "go" && len(s.Messages) == 0 })
	rtjsPublish(t, srv.addr, "chat:go", "from Go")
	s = waitFor("message from Go", func(s demoState) bool { return len(s.Messages) == 1 })
	if m := s.Messages[0]; m.Who != "anonymous" || m.Text != "from Go" {
		t.Errorf("message %+v", m)
	}
	if len(s.Errors) > 0 {
		t.Errorf("page errors: %v", s.Errors)
	}
}
