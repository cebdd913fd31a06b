package realtime_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/realtime"
)

// presencePage subscribes to room:b with onJoinLeave, then asks presence
// and presenceStats each time the test says so (window.ask()).
const presencePage = `<!doctype html><meta charset="utf-8"><title>presence</title>
<script type="module">
import {connect} from "/tornago.js";
const rt = window.rt = {events: [], presence: null, stats: null, err: ""};
const c = connect({shared: false, token: "ada"});
const s = c.subscribe("room:b", {onJoinLeave: (ev) => rt.events.push(ev)});
window.ask = async () => {
	try {
		rt.presence = await c.presence("room:b");
		rt.stats = await c.presenceStats("room:b");
	} catch (e) { rt.err = String(e && e.message); }
};
s.ready.then(() => { rt.subscribed = true; });
</script>`

// TestBrowserClientPresence: the browser client's presence and
// presenceStats, and its subscription's join/leave events, against the
// server: a gorilla client joining and leaving is seen by the page.
func TestBrowserClientPresence(t *testing.T) {
	o := realtime.Options{
		Namespaces: presenceNamespaces,
		Presence:   realtime.NewPresenceGroup(),
		Authenticate: func(_ context.Context, c realtime.Credentials) (realtime.Identity, error) {
			return realtime.Identity{User: c.Token, Info: json.RawMessage(`{"name":"` + c.Token + `"}`)}, nil
		},
		JoinLeaveInterval: 20 * time.Millisecond,
	}
	_, addr := realtime.StartForTest(t, loop.Options{}, nil, o, func(_ *realtime.Server, app *loop.Application) {
		app.HandleFunc("/page", func(r *loop.Request) {
			r.SetHeader("Content-Type", "text/html; charset=utf-8")
			r.Write(presencePage)
		})
	})

	bctx := startChromium(t)
	ctx, cancelRun := context.WithTimeout(bctx, 30*time.Second)
	defer cancelRun()
	if err := chromedp.Run(ctx, chromedp.Navigate("http://"+addr+"/page")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	type member struct{ Client, User string }
	type state struct {
		Subscribed bool
		Events     []struct{ Join, Leave []member }
		Presence   *struct{ Members []member }
		Stats      *struct{ Clients, Users int }
		Err        string
	}
	wait := func(what string, cond func(state) bool) state {
		t.Helper()
		return waitPage(t, ctx, 10*time.Second, what, cond)
	}
	wait("subscribed", func(s state) bool { return s.Subscribed })
	g := dial(t, addr)
	gid := g.connect("grace").Client
	g.ok(g.cmd("subscribe", map[string]any{"topic": "room:b"}), nil)
	wait("grace's join", func(s state) bool {
		for _, e := range s.Events {
			for _, m := range e.Join {
				if m.Client == gid && m.User == "grace" {
					return true
				}
			}
		}
		return false
	})
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.ask()`, nil)); err != nil {
		t.Fatal(err)
	}
	st := wait("presence", func(s state) bool { return s.Stats != nil || s.Err != "" })
	if st.Err != "" || st.Stats.Clients != 2 || st.Stats.Users != 2 || len(st.Presence.Members) != 2 {
		t.Fatalf("presence from the page: %+v", st)
	}
	g.c.Close()
	wait("grace's leave", func(s state) bool {
		for _, e := range s.Events {
			for _, m := range e.Leave {
				if m.Client == gid {
					return true
				}
			}
		}
		return false
	})
}
