package realtime

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tornago/tornago/internal/notrun"
	"github.com/tornago/tornago/loop"
)

// TestJSClientUnit runs the browser client's unit tests in node: backoff,
// position bookkeeping, frame parsing, and the connection bookkeeping
// (resume, reconnect codes, token refresh, fallback order, tab sharing's
// Core) through an in-memory transport.
func TestJSClientUnit(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		notrun.Skip(t, "no node")
	}
	// The module is copied as .mjs so that node loads it as an ES module
	// whatever its version's detection rules.
	mod := filepath.Join(t.TempDir(), "tornago.mjs")
	src, err := os.ReadFile("js/tornago.js")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mod, src, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "testdata/tornago_unit.mjs", mod).CombinedOutput()
	t.Logf("node:\n%s", out)
	if err != nil {
		t.Fatalf("node unit tests: %v", err)
	}
}

// TestJSHandler serves the client at /tornago.js and /tornago.d.ts with
// their types, an ETag that answers 304, and the embedded bytes.
func TestJSHandler(t *testing.T) {
	app := loop.NewApplication(loop.AppOptions{})
	app.Handle("/tornago.js", JSHandler())
	app.Handle("/tornago.d.ts", JSHandler())
	app.Handle("/other.js", JSHandler())
	addr := jsServeLoop(t, app)
	c := &http.Client{Timeout: 5 * time.Second}
	do := func(method, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	want, _ := os.ReadFile("js/tornago.js")
	resp, body := do("GET", "/tornago.js")
	if resp.StatusCode != 200 || body != string(want) {
		t.Fatalf("GET /tornago.js: %d, %d bytes (want %d)", resp.StatusCode, len(body), len(want))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || len(etag) < 10 {
		t.Errorf("ETag %q", etag)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q", cc)
	}
	resp, body = do("GET", "/tornago.js", "If-None-Match", `"x", W/`+etag)
	if resp.StatusCode != 304 || body != "" || resp.Header.Get("ETag") != etag {
		t.Errorf("revalidation: %d %q ETag %q", resp.StatusCode, body, resp.Header.Get("ETag"))
	}
	resp, body = do("HEAD", "/tornago.js")
	if resp.StatusCode != 200 || body != "" || resp.ContentLength != int64(len(want)) {
		t.Errorf("HEAD: %d, %q, length %d", resp.StatusCode, body, resp.ContentLength)
	}
	resp, body = do("GET", "/tornago.d.ts")
	if resp.StatusCode != 200 || !strings.Contains(body, "export declare function connect") {
		t.Errorf("GET /tornago.d.ts: %d %.60q", resp.StatusCode, body)
	}
	if resp.Header.Get("ETag") == etag {
		t.Errorf("the .d.ts has the module's ETag")
	}
	if resp, _ := do("POST", "/tornago.js"); resp.StatusCode != 405 {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	if resp, _ := do("GET", "/other.js"); resp.StatusCode != 404 {
		t.Errorf("GET /other.js: %d", resp.StatusCode)
	}
}

// jsServeLoop runs app on a loop on a free loopback port until the test
// ends.
func jsServeLoop(t *testing.T, app *loop.Application) string {
	t.Helper()
	l := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- l.Start() }()
	<-l.Ready()
	select {
	case err := <-errc:
		t.Fatalf("start: %v", err)
	default:
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
		if err := <-errc; err != nil {
			t.Errorf("loop: %v", err)
		}
	})
	return l.Addr().String()
}
