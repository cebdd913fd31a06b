package loop_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tornago/tornago/internal/notrun"
)

// readmeAppBrowser (TestReadmeApp/Chromium) drives the README's chat page in headless Chromium
// (skipped without it): carol signs in and joins the lobby, gets ann's
// message, sends one that ann gets; then the tab leaves and comes back,
// and the page joins again by itself and gets the message posted while it
// was away, without the ones it had already shown.
func readmeAppBrowser(t *testing.T, base string, ann *appConn) {
	t.Helper()
	exe := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		notrun.Skip(t, "no chromium (apt-get install chromium)")
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.Flag("headless", "new"), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true))...)
	bctx, cancel := chromedp.NewContext(actx)
	defer func() { cancel(); cancelAlloc() }()
	ctx, cancelRun := context.WithTimeout(bctx, 60*time.Second)
	defer cancelRun()
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			t.Fatalf("chromium: %s: %v", what, err)
		}
	}
	type pageState struct {
		Status string
		Log    []string
	}
	waitFor := func(what string, cond func(pageState) bool) pageState {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			var s pageState
			run("read the page", chromedp.Evaluate(`({status: document.getElementById("status").textContent,
				log: [...document.querySelectorAll("#log li")].map((li) => li.textContent)})`, &s))
			if cond(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("chromium: waited 15 s for %s: %+v", what, s)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	has := func(s pageState, line string) int {
		n := 0
		for _, l := range s.Log {
			if l == line {
				n++
			}
		}
		return n
	}

	run("open the page", chromedp.Navigate(base+"/"),
		chromedp.SetValue("#name", "carol", chromedp.ByID), chromedp.Click("#login button", chromedp.ByQuery))
	waitFor("carol connected", func(s pageState) bool { return strings.Contains(s.Status, "carol in lobby: connected") })
	ann.ok("publish", `{"topic":"chat:lobby","data":{"from":"ann","text":"hello carol"}}`)
	waitFor("ann's message on the page", func(s pageState) bool { return has(s, "ann: hello carol") == 1 })

	ann.pushes = nil
	run("send", chromedp.SetValue("#text", "hi ann", chromedp.ByID), chromedp.Click("#send button", chromedp.ByQuery))
	if p := ann.push(); p.Topic != "chat:lobby" || !strings.Contains(string(p.Pub.Data), `{"from":"carol","text":"hi ann"}`) {
		t.Fatalf("ann got %+v, want carol's message", p)
	}
	waitFor("carol's own message", func(s pageState) bool { return has(s, "carol: hi ann") == 1 })

	// Away and back in the same tab (sessionStorage stays): the page joins
	// again and resumes after the last message it showed.
	run("leave", chromedp.Navigate("about:blank"))
	ann.ok("publish", `{"topic":"chat:lobby","data":{"from":"ann","text":"while you were away"}}`)
	run("come back", chromedp.Navigate(base+"/"))
	s := waitFor("the missed message", func(s pageState) bool { return has(s, "ann: while you were away") == 1 })
	if has(s, "ann: hello carol") != 0 || has(s, "carol: hi ann") != 0 {
		t.Fatalf("chromium: messages shown before leaving came again: %q", s.Log)
	}
}
