package realtime_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tornago/tornago/internal/notrun"
)

// startChromium starts a headless chromium that ends with t and returns
// its context (a tab's parent); without one, t is skipped.
func startChromium(t *testing.T) context.Context {
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
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Run(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// waitPage reads the page's window.rt in ctx into an S every 50 ms until
// cond holds, failing with the last state after d.
func waitPage[S any](t *testing.T, ctx context.Context, d time.Duration, what string, cond func(S) bool) S {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var s S
		if err := chromedp.Run(ctx, chromedp.Evaluate(`window.rt || {}`, &s)); err != nil {
			t.Fatal(err)
		}
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: %+v", d, what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
