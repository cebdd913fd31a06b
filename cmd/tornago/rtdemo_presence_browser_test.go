package main

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
)

// startDemoAppTokens is startDemoApp with demo tokens (-token-hmac-secret):
// POST /demo/token names the page's user.
func startDemoAppTokens(t *testing.T, secret string) string {
	t.Helper()
	auth, err := newTokenAuth(secret, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	l := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond})
	app := loop.NewApplication(demoAppOptions(longPollOptions{}))
	env := &demoEnv{broker: chatBroker(&pubsub.MemoryBroker{}, longPollOptions{}, slog.Default()), proc: "test", log: slog.Default(), auth: auth}
	node := addDemos(l, 0, app, env)
	if node.err != nil {
		t.Fatal(node.err)
	}
	addr := serveLoop(t, l, app)
	t.Cleanup(func() {
		done := make(chan struct{})
		l.AddCallback(func() { node.stop(); close(done) })
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	return addr
}

// TestBrowserRealtimePagePresence: two tabs of the /realtime page, each
// with its own connection and demo token (Ada, Grace), in chat:lobby: each
// lists the other as here and shows a join line; when Grace's tab closes,
// Ada's shows "Grace left" and the list shrinks to herself. Twice: tabs of
// one browser with a connection each (shared=false), and tabs of two
// browsers (two users), each sharing its browser's connection through the
// client's SharedWorker as the page does by default.
func TestBrowserRealtimePagePresence(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	addr := startDemoAppTokens(t, "0123456789abcdef0123456789abcdef-demo")
	bctx := startBrowser(t, exe)
	t.Run("own connections", func(t *testing.T) {
		testPagePresence(t, func(name string) *rtjsTab {
			return openRTJSTab(t, bctx, "http://"+addr+"/realtime?shared=false&name="+name)
		})
	})
	t.Run("browsers", func(t *testing.T) {
		testPagePresence(t, func(name string) *rtjsTab {
			return openRTJSTab(t, startBrowser(t, exe), "http://"+addr+"/realtime?name="+name)
		})
	})
}

// testPagePresence is TestBrowserRealtimePagePresence with open's tabs.
func testPagePresence(t *testing.T, open func(name string) *rtjsTab) {
	type demoState struct {
		State, Client, Subscribed string
		Members, Events, Errors   []string
	}
	state := func(p *rtjsTab) demoState {
		t.Helper()
		var s demoState
		if err := chromedp.Run(p.ctx, chromedp.Evaluate(`window.rtdemo || {}`, &s)); err != nil {
			t.Fatalf("read window.rtdemo: %v", err)
		}
		return s
	}
	waitFor := func(p *rtjsTab, what string, cond func(demoState) bool) demoState {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s := state(p)
			if cond(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("waited for %s; page state %+v", what, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	same := func(got []string, want ...string) bool {
		g := slices.Clone(got)
		slices.Sort(g)
		slices.Sort(want)
		return slices.Equal(g, want)
	}
	ada := open("Ada")
	waitFor(ada, "Ada alone in the lobby", func(s demoState) bool {
		return s.State == "connected" && s.Subscribed == "lobby" && same(s.Members, "Ada")
	})
	grace := open("Grace")
	g := waitFor(grace, "Grace sees Ada", func(s demoState) bool { return s.Subscribed == "lobby" && same(s.Members, "Ada", "Grace") })
	a := waitFor(ada, "Ada sees Grace join", func(s demoState) bool {
		return same(s.Members, "Ada", "Grace") && slices.Contains(s.Events, "Grace joined")
	})
	if a.Client == g.Client {
		t.Fatalf("both tabs on one connection %s", a.Client)
	}
	// Grace's own join is not a line on her page: she saw Ada there already.
	if len(g.Events) != 0 {
		t.Errorf("Grace's lines %v, want none", g.Events)
	}
	grace.cancel() // the tab closes: its connection ends
	a = waitFor(ada, "Ada sees Grace leave", func(s demoState) bool {
		return same(s.Members, "Ada") && slices.Contains(s.Events, "Grace left")
	})
	if !slices.Equal(a.Events, []string{"Grace joined", "Grace left"}) || len(a.Errors) > 0 {
		t.Errorf("Ada's lines %v, errors %v", a.Events, a.Errors)
	}
	// Two more at once (within one join/leave interval): one of them was
	// there first, so at most one sees the other join.
	linus, mary := open("Linus"), open("Mary")
	l := waitFor(linus, "Linus sees all", func(s demoState) bool { return same(s.Members, "Ada", "Linus", "Mary") })
	m := waitFor(mary, "Mary sees all", func(s demoState) bool { return same(s.Members, "Ada", "Linus", "Mary") })
	time.Sleep(300 * time.Millisecond) // the interval's push, if late
	l, m = state(linus), state(mary)
	if slices.Contains(l.Events, "Mary joined") && slices.Contains(m.Events, "Linus joined") {
		t.Errorf("each saw the other join: Linus %v, Mary %v", l.Events, m.Events)
	}
}
