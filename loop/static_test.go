package loop_test

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tornago/tornago/loop"
)

func TestStaticFiles(t *testing.T) {
	dir := t.TempDir()
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mtime, mtime)
	}
	write("app.css", "body{}")
	write("js/app.js", "let x=1")
	write("docs/index.html", "<h1>docs</h1>")
	write("empty/.keep", "")
	os.WriteFile(filepath.Join(filepath.Dir(dir), "secret.txt"), []byte("secret"), 0o644)

	app := loop.NewApplication(loop.AppOptions{})
	app.Handle(`/static/(.*)`, loop.StaticFiles(os.DirFS(dir)))
	app.Handle(`/mem/(.*)`, loop.StaticFiles(fstest.MapFS{"a.json": {Data: []byte(`{"a":1}`)}}))
	_, addr := startLoop(t, app)
	base := "http://" + addr
	c := &http.Client{Timeout: 5 * time.Second}
	do := func(method, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
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

	resp, body := do("GET", "/static/app.css")
	if resp.StatusCode != 200 || body != "body{}" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/css; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if resp.ContentLength != 6 {
		t.Fatalf("Content-Length %d", resp.ContentLength)
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "Mon, 06 May 2024 07:08:09 GMT" {
		t.Fatalf("Last-Modified %q", lm)
	}
	etag := resp.Header.Get("ETag")
	if len(etag) < 4 || etag[0] != '"' {
		t.Fatalf("ETag %q", etag)
	}
	if resp, body := do("GET", "/static/js/app.js"); body != "let x=1" || resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("js: %q %q", body, resp.Header.Get("Content-Type"))
	}

	// Conditional requests.
	if resp, body := do("GET", "/static/app.css", "If-None-Match", `"x", `+etag); resp.StatusCode != 304 || body != "" || resp.Header.Get("ETag") != etag {
		t.Fatalf("If-None-Match: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do("GET", "/static/app.css", "If-None-Match", `"other"`); resp.StatusCode != 200 {
		t.Fatalf("stale If-None-Match: %d", resp.StatusCode)
	}
	if resp, _ := do("GET", "/static/app.css", "If-Modified-Since", "Mon, 06 May 2024 07:08:09 GMT"); resp.StatusCode != 304 {
		t.Fatalf("If-Modified-Since equal: %d", resp.StatusCode)
	}
	if resp, _ := do("GET", "/static/app.css", "If-Modified-Since", "Mon, 06 May 2024 07:08:08 GMT"); resp.StatusCode != 200 {
		t.Fatalf("If-Modified-Since older: %d", resp.StatusCode)
	}

	// HEAD: headers with the file's length, no body.
	if resp, body := do("HEAD", "/static/app.css"); resp.StatusCode != 200 || body != "" || resp.ContentLength != 6 {
		t.Fatalf("HEAD: %d %q %d", resp.StatusCode, body, resp.ContentLength)
	}
	if resp, _ := do("POST", "/static/app.css"); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST: %d %q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	// Directories.
	if resp, body := do("GET", "/static/docs/"); resp.StatusCode != 200 || body != "<h1>docs</h1>" || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("index.html: %d %q", resp.StatusCode, body)
	}
	for _, p := range []string{"/static/empty", "/static/empty/", "/static/", "/static/missing.txt", "/static/js"} {
		if resp, _ := do("GET", p); resp.StatusCode != 404 {
			t.Fatalf("%s: %d, want 404", p, resp.StatusCode)
		}
	}

	// embed.FS-like file system without modification times.
	resp, body = do("GET", "/mem/a.json")
	if resp.StatusCode != 200 || body != `{"a":1}` || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Last-Modified") != "" {
		t.Fatalf("mem: %d %q %q", resp.StatusCode, body, resp.Header)
	}
	if r2, _ := do("GET", "/mem/a.json", "If-None-Match", resp.Header.Get("ETag")); r2.StatusCode != 304 {
		t.Fatalf("mem If-None-Match: %d", r2.StatusCode)
	}

	// Path traversal, sent raw so that no client cleans the path.
	for _, target := range []string{"/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/js/../../secret.txt", "/static/./app.css", "/static//app.css", "/static/js%2f..%2f..%2fsecret.txt", `/static/..\secret.txt`} {
		conn := dial(t, addr)
		io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, body := readResp(t, bufio.NewReader(conn), "GET")
		if resp.StatusCode != 404 {
			t.Fatalf("%s: %d %q, want 404", target, resp.StatusCode, body)
		}
	}
}
