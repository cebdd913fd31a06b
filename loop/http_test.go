package loop_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/proto/http1"
)

func testApp(opts loop.AppOptions) *loop.Application {
	app := loop.NewApplication(opts)
	app.HandleFunc(`/index`, func(r *loop.Request) { r.Write("Hello world") })
	app.HandleFunc(`/user/([0-9]+)`, func(r *loop.Request) { r.Write("user " + r.PathArgs[0]) })
	app.Handle(`/methods`, loop.Methods{
		Get:  func(r *loop.Request) { r.Write("got") },
		Post: func(r *loop.Request) { r.Write("posted") },
	})
	app.HandleFunc(`/args`, func(r *loop.Request) {
		r.Write(r.GetArgument("name", "none") + "|" + strings.Join(r.GetArguments("x"), ","))
	})
	app.HandleFunc(`/json`, func(r *loop.Request) { r.Write(map[string]any{"ok": true, "n": 3}) })
	app.HandleFunc(`/headers`, func(r *loop.Request) {
		r.SetHeader("X-One", "first")
		r.SetHeader("x-one", "replaced")
		r.AddHeader("X-Multi", "a")
		r.AddHeader("X-Multi", "b")
		r.SetHeader("X-Evil", "v\r\nInjected: yes")
		r.SetCookie("session", "abc", "Path=/", "HttpOnly")
		r.SetStatus(201)
		r.Write("cookie=" + r.Cookie("in"))
	})
	app.HandleFunc(`/redirect`, func(r *loop.Request) { r.Redirect("/index", r.GetArgument("p", "") == "1") })
	app.HandleFunc(`/echo`, func(r *loop.Request) { r.Write(r.Method + " " + r.Proto + " " + string(r.Body)) })
	app.HandleFunc(`/panic`, func(r *loop.Request) { r.Write("partial"); panic("handler bug") })
	return app
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestHTTPBasics(t *testing.T) {
	_, addr := startLoop(t, testApp(loop.AppOptions{}))
	base := "http://" + addr
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	t.Run("index", func(t *testing.T) {
		resp, body := get(t, c, base+"/index")
		if resp.StatusCode != 200 || body != "Hello world" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if resp.Header.Get("Server") != "Tornago" || resp.ContentLength != 11 {
			t.Fatalf("Server %q Content-Length %d", resp.Header.Get("Server"), resp.ContentLength)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=UTF-8" {
			t.Fatalf("Content-Type %q", ct)
		}
	})
	t.Run("capture", func(t *testing.T) {
		resp, body := get(t, c, base+"/user/1234")
		if resp.StatusCode != 200 || body != "user 1234" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if resp, _ := get(t, c, base+"/user/abc"); resp.StatusCode != 404 {
			t.Fatalf("/user/abc: %d, want 404 (pattern anchored)", resp.StatusCode)
		}
		if resp, _ := get(t, c, base+"/user/1/x"); resp.StatusCode != 404 {
			t.Fatalf("/user/1/x: %d, want 404 (pattern anchored)", resp.StatusCode)
		}
	})
	t.Run("404", func(t *testing.T) {
		resp, body := get(t, c, base+"/nope")
		if resp.StatusCode != 404 || !strings.Contains(body, "404: Not Found") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("methods", func(t *testing.T) {
		if _, body := get(t, c, base+"/methods"); body != "got" {
			t.Fatalf("GET %q", body)
		}
		resp, err := c.Post(base+"/methods", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "posted" {
			t.Fatalf("POST %q", b)
		}
		req, _ := http.NewRequest("DELETE", base+"/methods", nil)
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD, POST" {
			t.Fatalf("DELETE: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
		}
		req, _ = http.NewRequest("HEAD", base+"/methods", nil)
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) != 0 || resp.ContentLength != 3 {
			t.Fatalf("HEAD: %d body %q Content-Length %d", resp.StatusCode, b, resp.ContentLength)
		}
	})
	t.Run("arguments", func(t *testing.T) {
		if _, body := get(t, c, base+"/args?name=a+b%21&x=1&x=2"); body != "a b!|1,2" {
			t.Fatalf("query: %q", body)
		}
		if _, body := get(t, c, base+"/args"); body != "none|" {
			t.Fatalf("default: %q", body)
		}
		resp, err := c.PostForm(base+"/args?x=q", url.Values{"name": {"from body"}, "x": {"b"}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "from body|q,b" {
			t.Fatalf("form: %q", b)
		}
	})
	t.Run("json", func(t *testing.T) {
		resp, body := get(t, c, base+"/json")
		if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		var v struct {
			OK bool `json:"ok"`
			N  int  `json:"n"`
		}
		if err := json.Unmarshal([]byte(body), &v); err != nil || !v.OK || v.N != 3 {
			t.Fatalf("body %q: %v", body, err)
		}
	})
	t.Run("headers and cookies", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/headers", nil)
		req.Header.Set("Cookie", `other=1; in="v42"`)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 || string(b) != "cookie=v42" {
			t.Fatalf("%d %q", resp.StatusCode, b)
		}
		if v := resp.Header.Values("X-One"); len(v) != 1 || v[0] != "replaced" {
			t.Fatalf("X-One %q", v)
		}
		if v := resp.Header.Values("X-Multi"); strings.Join(v, ",") != "a,b" {
			t.Fatalf("X-Multi %q", v)
		}
		if resp.Header.Get("Injected") != "" || resp.Header.Get("X-Evil") != "vInjected: yes" {
			t.Fatalf("header injection: X-Evil %q Injected %q", resp.Header.Get("X-Evil"), resp.Header.Get("Injected"))
		}
		if sc := resp.Header.Get("Set-Cookie"); sc != "session=abc; Path=/; HttpOnly" {
			t.Fatalf("Set-Cookie %q", sc)
		}
	})
	t.Run("redirect", func(t *testing.T) {
		resp, _ := get(t, c, base+"/redirect")
		if resp.StatusCode != 302 || resp.Header.Get("Location") != "/index" {
			t.Fatalf("%d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, _ = get(t, c, base+"/redirect?p=1")
		if resp.StatusCode != 301 {
			t.Fatalf("permanent: %d", resp.StatusCode)
		}
		follow := &http.Client{Timeout: 5 * time.Second}
		if _, body := get(t, follow, base+"/redirect"); body != "Hello world" {
			t.Fatalf("followed: %q", body)
		}
	})
	t.Run("chunked upload", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte("hello "))
			time.Sleep(10 * time.Millisecond)
			pw.Write([]byte("chunked"))
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", base+"/echo", pr) // unknown length: chunked
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "POST HTTP/1.1 hello chunked" {
			t.Fatalf("body %q", b)
		}
	})
}

func TestHTTPByteByByte(t *testing.T) {
	_, addr := startLoop(t, testApp(loop.AppOptions{}))
	c := dial(t, addr)
	msg := "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	for i := 0; i < len(msg); i++ {
		if _, err := c.Write([]byte{msg[i]}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	br := bufio.NewReader(c)
	resp, body := readResp(t, br, "POST")
	if resp.StatusCode != 200 || body != "POST HTTP/1.1 hello" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	// Chunked body, also split byte by byte, on the same connection.
	msg = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: t\r\n\r\n"
	for i := 0; i < len(msg); i++ {
		c.Write([]byte{msg[i]})
		time.Sleep(time.Millisecond)
	}
	resp, body = readResp(t, br, "POST")
	if resp.StatusCode != 200 || body != "POST HTTP/1.1 abcde" {
		t.Fatalf("chunked: %d %q", resp.StatusCode, body)
	}
}

func TestHTTPPipelined(t *testing.T) {
	app := testApp(loop.AppOptions{})
	app.HandleFunc(`/slow/(.*)`, func(r *loop.Request) {
		r.Async()
		r.Loop().CallLater(30*time.Millisecond, func() { r.Write("slow " + r.PathArgs[0]); r.Finish() })
	})
	_, addr := startLoop(t, app) // handlers use r.Loop(), never a captured *Loop
	c := dial(t, addr)
	// The first is answered asynchronously: the others must wait for it.
	_, err := io.WriteString(c, "GET /slow/1 HTTP/1.1\r\nHost: x\r\n\r\n"+
		"GET /user/2 HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"+
		"GET /slow/4 HTTP/1.1\r\nHost: x\r\n\r\n"+
		"GET /index HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var got []string
	for i := 0; i < 5; i++ {
		_, body := readResp(t, br, "GET")
		got = append(got, body)
	}
	want := "slow 1|user 2|POST HTTP/1.1 abc|slow 4|Hello world"
	if s := strings.Join(got, "|"); s != want {
		t.Fatalf("got %q, want %q", s, want)
	}
	expectEOF(t, br)
}

func TestHTTP10(t *testing.T) {
	_, addr := startLoop(t, testApp(loop.AppOptions{}))
	c := dial(t, addr)
	io.WriteString(c, "GET /index HTTP/1.0\r\n\r\n")
	br := bufio.NewReader(c)
	resp, body := readResp(t, br, "GET")
	if body != "Hello world" || !resp.Close {
		t.Fatalf("%q close=%v", body, resp.Close)
	}
	expectEOF(t, br)

	c = dial(t, addr)
	br = bufio.NewReader(c)
	io.WriteString(c, "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body = readResp(t, br, "GET")
	if body != "GET HTTP/1.0 " || resp.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("%q Connection %q", body, resp.Header.Get("Connection"))
	}
	io.WriteString(c, "GET /index HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if _, body = readResp(t, br, "GET"); body != "Hello world" {
		t.Fatalf("second request on HTTP/1.0 keep-alive: %q", body)
	}
}

func TestHTTPExpectContinue(t *testing.T) {
	_, addr := startLoop(t, testApp(loop.AppOptions{}))
	c := dial(t, addr)
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim line %q, %v", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("after 100: %q", blank)
	}
	io.WriteString(c, "data")
	resp, body := readResp(t, br, "POST")
	if resp.StatusCode != 200 || body != "POST HTTP/1.1 data" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	// With the body already sent, no 100 is needed (and none is sent).
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok")
	resp, body = readResp(t, br, "POST")
	if resp.StatusCode != 200 || body != "POST HTTP/1.1 ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// rawStatus sends req on a fresh connection and returns the status, and
// whether the server then closed the connection.
func rawStatus(t *testing.T, addr, req string) (int, bool) {
	t.Helper()
	c := dial(t, addr)
	go io.WriteString(c, req) // a large request may still be in flight when the server answers
	br := bufio.NewReader(c)
	resp, _ := readResp(t, br, "GET")
	rest, err := io.ReadAll(br)
	return resp.StatusCode, len(rest) == 0 && (err == nil || isReset(err))
}

func TestHTTPLimits(t *testing.T) {
	app := testApp(loop.AppOptions{Limits: http1.Limits{MaxBodyBytes: 100}})
	_, addr := startLoop(t, app)
	cases := []struct {
		name, req string
		status    int
	}{
		{"request line too long", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"headers too large", "GET /index HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("f", 1000)+"\r\n", 70) + "\r\n", 431},
		{"body too large", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n" + strings.Repeat("b", 101), 413},
		{"chunked body too large", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + strings.Repeat("b", 101) + "\r\n0\r\n\r\n", 413},
		{"malformed", "GARBAGE\r\n\r\n", 400},
		{"no host", "GET /index HTTP/1.1\r\n\r\n", 400},
		{"bad chunk", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
		{"gzip transfer coding", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"HTTP/2.0", "GET /index HTTP/2.0\r\nHost: x\r\n\r\n", 505},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, closed := rawStatus(t, addr, tc.req)
			if st != tc.status || !closed {
				t.Fatalf("status %d closed %v, want %d and close", st, closed, tc.status)
			}
		})
	}
	// Exactly at the body limit is fine.
	st, _ := rawStatus(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"+strings.Repeat("b", 100))
	if st != 200 {
		t.Fatalf("body at the limit: %d", st)
	}
}

func TestHTTPTimeouts(t *testing.T) {
	app := testApp(loop.AppOptions{HeaderTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	_, addr := startLoop(t, app)

	t.Run("slowloris", func(t *testing.T) {
		c := dial(t, addr)
		start := time.Now()
		io.WriteString(c, "GET /index HTTP/1.1\r\nHost: x\r\n")
		time.Sleep(50 * time.Millisecond)
		io.WriteString(c, "X-Slow: 1\r\n") // trickling does not extend the deadline
		br := bufio.NewReader(c)
		resp, _ := readResp(t, br, "GET")
		el := time.Since(start)
		if resp.StatusCode != 408 {
			t.Fatalf("status %d, want 408", resp.StatusCode)
		}
		if el < 180*time.Millisecond || el > 2*time.Second {
			t.Fatalf("408 after %v, want ~200ms", el)
		}
		expectEOF(t, br)
	})
	t.Run("slow body", func(t *testing.T) {
		c := dial(t, addr)
		io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
		br := bufio.NewReader(c)
		resp, _ := readResp(t, br, "POST")
		if resp.StatusCode != 408 {
			t.Fatalf("status %d, want 408", resp.StatusCode)
		}
		expectEOF(t, br)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET /index HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := readResp(t, br, "GET"); body != "Hello world" {
			t.Fatalf("body %q", body)
		}
		// Activity within the idle timeout keeps the connection.
		time.Sleep(150 * time.Millisecond)
		io.WriteString(c, "GET /index HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := readResp(t, br, "GET"); body != "Hello world" {
			t.Fatalf("second body %q", body)
		}
		start := time.Now()
		expectEOF(t, br)
		if el := time.Since(start); el < 250*time.Millisecond || el > 2*time.Second {
			t.Fatalf("idle close after %v, want ~300ms", el)
		}
	})
	t.Run("idle before first request", func(t *testing.T) {
		c := dial(t, addr)
		start := time.Now()
		expectEOF(t, bufio.NewReader(c))
		if el := time.Since(start); el < 250*time.Millisecond || el > 2*time.Second {
			t.Fatalf("idle close after %v, want ~300ms", el)
		}
	})
}

func TestHTTPHandlerPanic(t *testing.T) {
	_, addr := startLoop(t, testApp(loop.AppOptions{}))
	c := dial(t, addr)
	io.WriteString(c, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, body := readResp(t, br, "GET")
	if resp.StatusCode != 500 || strings.Contains(body, "partial") || !resp.Close {
		t.Fatalf("%d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	expectEOF(t, br)
	hc := &http.Client{Timeout: 5 * time.Second}
	if _, body := get(t, hc, "http://"+addr+"/index"); body != "Hello world" {
		t.Fatalf("after panic: %q", body)
	}
}

// TestHTTPRejectWhileClientStillSends checks that a client still uploading
// a body over the limit reads the 413 instead of a connection reset: the
// server must not close with unread input (the kernel would send RST).
func TestHTTPRejectWhileClientStillSends(t *testing.T) {
	app := testApp(loop.AppOptions{Limits: http1.Limits{MaxBodyBytes: 100}})
	_, addr := startLoop(t, app)
	for i := 0; i < 5; i++ {
		c := dial(t, addr)
		const size = 8 << 20
		go func() {
			io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
			chunk := []byte(strings.Repeat("b", 64<<10))
			for sent := 0; sent < size; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
		time.Sleep(50 * time.Millisecond) // let the upload fill the socket buffers
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("attempt %d: reading the 413: %v", i, err)
		}
		if resp.StatusCode != 413 {
			t.Fatalf("attempt %d: status %d, want 413", i, resp.StatusCode)
		}
		c.Close()
	}
}

// TestHTTPHandlerCannotSetFraming checks that framing headers set by a
// handler are dropped, so the response is framed once, by the loop.
func TestHTTPHandlerCannotSetFraming(t *testing.T) {
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleFunc(`/frame`, func(r *loop.Request) {
		r.SetHeader("Content-Length", "999")
		r.SetHeader("Transfer-Encoding", "chunked")
		r.SetHeader("X-Split", "a\r\nInjected: yes")
		r.Write("four")
	})
	_, addr := startLoop(t, app)
	resp, err := http.Get("http://" + addr + "/frame")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "four" || resp.ContentLength != 4 || len(resp.TransferEncoding) != 0 {
		t.Fatalf("body %q length %d TE %v", body, resp.ContentLength, resp.TransferEncoding)
	}
	if resp.Header.Get("Injected") != "" || resp.Header.Get("X-Split") != "aInjected: yes" {
		t.Fatalf("header splitting: %v", resp.Header)
	}
}

// TestHTTPPipelineBehindPendingRequestBounded: while an asynchronous request
// is pending, a client that keeps pipelining is answered and closed once it
// has more than AppOptions.MaxHeldInputPerConn buffered, instead of growing
// server memory.
func TestHTTPPipelineBehindPendingRequestBounded(t *testing.T) {
	app := loop.NewApplication(loop.AppOptions{Limits: http1.Limits{MaxHeaderBytes: 4096, MaxBodyBytes: 4096}})
	app.HandleFunc(`/wait`, func(r *loop.Request) { r.Async() }) // never finishes
	_, addr := startLoop(t, app)
	c := dial(t, addr)
	req := "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	filler := strings.Repeat(req, 100) // 3 KiB per write
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var err error
	for i := 0; i < 1000 && err == nil; i++ { // at most 3 MB
		_, err = io.WriteString(c, filler)
	}
	if err != nil {
		return // reset: the server closed while the client was writing
	}
	// The server answered (400, AppOptions.MaxHeldInputPerConn) and closed.
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("server kept the connection open (err %v)", err)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
		t.Fatalf("answer %.60q, want a 400", got)
	}
}
