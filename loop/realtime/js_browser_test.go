package realtime_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/realtime"
)

// tokenPage connects with token "t-1" and a getToken that fails its first
// call when the query says fail=1 (a page offline at refresh time), then
// answers "t-2", "t-3"...; window.rt records states, client ids and tokens.
const tokenPage = `<!doctype html><meta charset="utf-8"><title>tokens</title>
<script type="module">
import {connect} from "/tornago.js";
const q = new URLSearchParams(location.search);
const rt = window.rt = {states: [], clients: [], calls: 0};
let n = 1;
const c = connect({shared: false, token: "t-1", minReconnectDelay: 50, maxReconnectDelay: 200, getToken: async () => {
	rt.calls++;
	if (q.get("fail") === "1" && rt.calls === 1) throw new Error("offline");
	return "t-" + (++n);
}});
c.on("state", (s, d) => {
	rt.states.push(s + ":" + d.code);
	if (s === "connected") rt.clients.push(d.client);
});
</script>`

// TestBrowserClientTokens: with tokens that live 3 s, the browser client
// refreshes before each expiry on the same connection; when a refresh
// could not be made (getToken failed), the server ends the connection with
// 3005 and the client gets a new token and reconnects.
func TestBrowserClientTokens(t *testing.T) {
	var auths atomic.Int64
	o := realtime.Options{
		Namespaces: testNamespaces,
		Authenticate: func(_ context.Context, c realtime.Credentials) (realtime.Identity, error) {
			auths.Add(1)
			if _, err := strconv.Atoi(strings.TrimPrefix(c.Token, "t-")); err != nil || !strings.HasPrefix(c.Token, "t-") {
				return realtime.Identity{}, realtime.ErrUnauthorized
			}
			return realtime.Identity{User: "ada", ExpiresAt: time.Now().Add(3 * time.Second)}, nil
		},
	}
	_, addr := realtime.StartForTest(t, loop.Options{TimeoutResolution: 10 * time.Millisecond}, nil, o, func(_ *realtime.Server, app *loop.Application) {
		app.HandleFunc("/tokens", func(r *loop.Request) {
			r.SetHeader("Content-Type", "text/html; charset=utf-8")
			r.Write(tokenPage)
		})
	})
	base := "http://" + addr

	bctx := startChromium(t)
	type state struct {
		States, Clients []string
		Calls           int
	}
	watch := func(url string, d time.Duration, what string, cond func(state) bool) state {
		t.Helper()
		tctx, cancelTab := chromedp.NewContext(bctx)
		defer cancelTab()
		ctx, cancel := context.WithTimeout(tctx, d+10*time.Second)
		defer cancel()
		if err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
			t.Fatal(err)
		}
		return waitPage(t, ctx, d, what, cond)
	}

	// Refresh: three token lifetimes on one connection.
	start := time.Now()
	st := watch(base+"/tokens", 15*time.Second, "three refreshes", func(s state) bool { return s.Calls >= 3 })
	if time.Since(start) < 4*time.Second {
		t.Errorf("three refreshes in %v: too early for 3 s tokens", time.Since(start))
	}
	if len(st.Clients) != 1 || slices.ContainsFunc(st.States, func(s string) bool { return strings.Contains(s, "3005") }) {
		t.Errorf("refresh did not keep the connection: states %v, clients %v", st.States, st.Clients)
	}

	// Expiry: the first getToken fails, the connection ends with 3005, the
	// second gives a token and the client reconnects.
	st = watch(base+"/tokens?fail=1", 15*time.Second, "a reconnect after 3005", func(s state) bool { return len(s.Clients) >= 2 })
	if !slices.Contains(st.States, "connecting:3005") || st.Calls < 2 || st.Clients[0] == st.Clients[1] {
		t.Errorf("after a failed refresh: states %v, clients %v, getToken calls %d; want connecting:3005, then a new connection", st.States, st.Clients, st.Calls)
	}
	t.Logf("Authenticate called %d times", auths.Load())
}
