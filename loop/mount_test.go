package loop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	gws "github.com/gorilla/websocket"
)

// mountApp is the Application the mount tests serve: a plain route that
// tells what the loop saw, a body echo, a long poll and a WebSocket echo.
func mountApp(l *Loop) *Application {
	app := NewApplication(AppOptions{})
	app.HandleFunc("/hello", func(r *Request) {
		r.SetHeader("Content-Type", "text/plain")
		u := r.Path
		if r.RawQuery != "" {
			u += "?" + r.RawQuery
		}
		r.Write(fmt.Sprintf("hello %s %s user=%s remote=%s", r.Method, u, r.Header("X-User"), r.RemoteAddr()))
	})
	app.HandleFunc("/body", func(r *Request) { r.Write(r.Body) })
	app.HandleFunc("/poll", func(r *Request) {
		r.Async()
		l.CallLater(50*time.Millisecond, func() {
			r.Write("polled")
			r.Finish()
		})
	})
	app.HandleWebSocket("/echo", wsEchoRoute(WSOptions{}), WSOptions{})
	return app
}

// requireUser is a net/http middleware in front of the mount: it refuses a
// request without X-Token and passes the user on as a header it sets.
func requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Token") != "secret" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		r.Header.Del("X-Token")
		r.Header.Set("X-User", "ann")
		next.ServeHTTP(w, r)
	})
}

// mountServer starts a loop without a listener of its own and a net/http
// server whose ServeMux has a route of its own and the loop's app mounted
// under /t/ behind requireUser. hijacked counts the connections net/http
// gave away.
func mountServer(t testing.TB, opts Options) (l *Loop, addr string, hijacked *atomic.Int64) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	opts.TimeoutResolution = 10 * time.Millisecond
	l = New(opts)
	h, err := l.Mount(mountApp(l))
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "loop", l.Start, l.Ready(), l.Stop, 5*time.Second)
	mux := http.NewServeMux()
	mux.HandleFunc("/own", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "net/http") })
	mux.Handle("/t/", http.StripPrefix("/t", requireUser(h)))
	hijacked = new(atomic.Int64)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateHijacked {
			hijacked.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return l, srv.Listener.Addr().String(), hijacked
}

func mustGet(t *testing.T, c *http.Client, u string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMountServeMux serves the loop's routes through a std ServeMux, beside
// a net/http route and behind a net/http middleware: plain requests
// (keep-alive, then served by the loop), bodies, a long poll, pipelining
// and a WebSocket.
func TestMountServeMux(t *testing.T) {
	l, addr, hijacked := mountServer(t, Options{})
	base := "http://" + addr
	c := &http.Client{Timeout: 5 * time.Second}
	if st, body := mustGet(t, c, base+"/own"); st != 200 || body != "net/http" {
		t.Fatalf("/own: %d %q", st, body)
	}
	if st, _ := mustGet(t, c, base+"/t/hello"); st != 401 {
		t.Fatalf("/t/hello without token: %d, want the middleware's 401", st)
	}
	// A fresh connection for each, so that each passes the middleware.
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	st, body := mustGet(t, fresh, base+"/t/hello?x=1", "X-Token", "secret")
	if st != 200 || !strings.HasPrefix(body, "hello GET /hello?x=1 user=ann remote=127.0.0.1:") {
		t.Fatalf("/t/hello: %d %q", st, body)
	}
	if st, _ := mustGet(t, fresh, base+"/t/nothing", "X-Token", "secret"); st != 404 {
		t.Fatalf("/t/nothing: %d, want the loop's 404", st)
	}
	if st, body := mustGet(t, fresh, base+"/t/poll", "X-Token", "secret"); st != 200 || body != "polled" {
		t.Fatalf("/t/poll: %d %q", st, body)
	}
	for _, chunked := range []bool{false, true} {
		payload := strings.Repeat("b", 100<<10)
		var rd io.Reader = strings.NewReader(payload)
		if chunked {
			rd = io.MultiReader(rd) // no length: the client sends it chunked
		}
		req, _ := http.NewRequest("POST", base+"/t/body", rd)
		req.Header.Set("X-Token", "secret")
		resp, err := fresh.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != payload {
			t.Fatalf("POST chunked=%v: %d, %d bytes back", chunked, resp.StatusCode, len(b))
		}
	}

	// Pipelined: the second request is in net/http's buffer when the
	// handler hijacks; the loop serves both, then more on the same
	// connection (which the loop now owns: no middleware any more).
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	req := "GET /t/hello HTTP/1.1\r\nHost: x\r\nX-Token: secret\r\n\r\n"
	io.WriteString(raw, req+"GET /hello?second HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(raw)
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"hello GET /hello user=ann", "hello GET /hello?second user="} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if !strings.HasPrefix(string(b), want) {
			t.Fatalf("pipelined: %q, want %q...", b, want)
		}
	}

	// A WebSocket through the mount (gorilla), and one whose first frame
	// comes in the handshake's write (in net/http's buffer at the hijack).
	d := &gws.Dialer{HandshakeTimeout: 5 * time.Second}
	ws1, _, err := d.Dial("ws://"+addr+"/t/echo", http.Header{"X-Token": {"secret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws1.Close()
	ws1.WriteMessage(gws.TextMessage, []byte("hi"))
	ws1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, m, err := ws1.ReadMessage(); err != nil || string(m) != "hi" {
		t.Fatalf("gorilla echo: %q %v", m, err)
	}
	r := wsDialTCP(t, addr)
	r.write(append([]byte(wsHandshake(addr, "/t/echo", "X-Token: secret\r\n")), wsFrame(true, ws.OpText, []byte("early"))...))
	if resp := r.response(); resp.StatusCode != 101 {
		t.Fatalf("raw upgrade: %d", resp.StatusCode)
	}
	if f := r.mustFrame(); string(f.payload) != "early" {
		t.Fatalf("early frame echo: %q", f.payload)
	}
	if n := hijacked.Load(); n < 8 {
		t.Fatalf("net/http hijacked %d connections, want every mounted one", n)
	}
	m := l.Metrics()
	if m.OpenWebSockets != 2 {
		t.Fatalf("loop metrics: %d open WebSockets, want 2", m.OpenWebSockets)
	}
}

// TestMountIdleGoroutines checks that a mounted WebSocket keeps no
// goroutine: 200 of them leave the process's goroutines where they were.
func TestMountIdleGoroutines(t *testing.T) {
	l, addr, _ := mountServer(t, Options{})
	dial := func(n int) []net.Conn {
		var cs []net.Conn
		for range n {
			r := wsDialTCP(t, addr)
			r.write([]byte(wsHandshake(addr, "/t/echo", "X-Token: secret\r\n")))
			if resp := r.response(); resp.StatusCode != 101 {
				t.Fatalf("upgrade: %d", resp.StatusCode)
			}
			cs = append(cs, r.c)
		}
		return cs
	}
	dial(20) // warms gnet's registration pool up
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()
	cs := dial(200)
	time.Sleep(100 * time.Millisecond)
	after := runtime.NumGoroutine()
	t.Logf("goroutines: %d before, %d with 200 more mounted WebSockets", base, after)
	if after-base > 20 {
		t.Fatalf("goroutines: %d before, %d with 200 more mounted WebSockets", base, after)
	}
	if n := l.Metrics().OpenWebSockets; n != 220 {
		t.Fatalf("%d open WebSockets on the loop, want 220", n)
	}
	// Still served: the last one echoes.
	r := &wsRaw{t: t, c: cs[len(cs)-1], br: bufio.NewReader(cs[len(cs)-1])}
	r.send(true, ws.OpText, []byte("still"))
	if f := r.mustFrame(); string(f.payload) != "still" {
		t.Fatalf("echo: %q", f.payload)
	}
}

// TestMountRefusals: what the loop cannot take is answered in place with a
// clear error, never a hang, and the canary beside it is still served.
func TestMountRefusals(t *testing.T) {
	l := New(Options{Logger: slog.New(slog.DiscardHandler), TimeoutResolution: 10 * time.Millisecond})
	h, err := l.Mount(mountApp(l))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{}).Mount(h.(*mountHandler).app); err == nil {
		t.Fatal("an Application mounted on a second loop")
	}
	check := func(what string, c *http.Client, u string, want int, wantBody string) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || !strings.Contains(string(b), wantBody) {
			t.Fatalf("%s: %d %q, want %d %q", what, resp.StatusCode, b, want, wantBody)
		}
	}
	plain := httptest.NewServer(h)
	defer plain.Close()
	c := &http.Client{Timeout: 5 * time.Second}
	check("before Start", c, plain.URL+"/hello", 503, "not running")
	runUntilCleanup(t, "loop", l.Start, l.Ready(), l.Stop, 5*time.Second)

	tlsSrv := httptest.NewTLSServer(h)
	defer tlsSrv.Close()
	tc := tlsSrv.Client()
	tc.Timeout = 5 * time.Second
	check("TLS", tc, tlsSrv.URL+"/hello", 501, "TLS")
	tc.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	tlsSrv2 := httptest.NewUnstartedServer(h)
	tlsSrv2.EnableHTTP2 = true
	tlsSrv2.StartTLS()
	defer tlsSrv2.Close()
	c2 := tlsSrv2.Client()
	c2.Timeout = 5 * time.Second
	check("HTTP/2", c2, tlsSrv2.URL+"/hello", 501, "HTTP/1.x only")

	// A unix socket.
	sock := filepath.Join(t.TempDir(), "s")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	usrv := &http.Server{Handler: h}
	go usrv.Serve(uln)
	defer usrv.Close()
	uc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return net.Dial("unix", sock) },
	}}
	check("unix socket", uc, "http://x/hello", 501, "TCP")

	// A listener that wraps its connections (netutil.LimitListener does).
	wln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wsrv := &http.Server{Handler: h}
	go wsrv.Serve(wrapListener{wln})
	defer wsrv.Close()
	check("wrapped conn", c, "http://"+wln.Addr().String()+"/hello", 501, "*net.TCPConn")

	// The canary: a plain server mounting the same handler still works.
	check("canary", c, plain.URL+"/hello", 200, "hello GET /hello")
}

type wrapListener struct{ net.Listener }
type wrappedConn struct{ net.Conn }

func (w wrapListener) Accept() (net.Conn, error) {
	c, err := w.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrappedConn{c}, nil
}

// TestMountMaxConns: MaxConns counts mounted connections, and one beyond it
// reads the loop's 503.
func TestMountMaxConns(t *testing.T) {
	_, addr, _ := mountServer(t, Options{MaxConns: 2})
	var open []*wsRaw
	for range 2 {
		r := wsDialTCP(t, addr)
		r.write([]byte(wsHandshake(addr, "/t/echo", "X-Token: secret\r\n")))
		if resp := r.response(); resp.StatusCode != 101 {
			t.Fatalf("upgrade: %d", resp.StatusCode)
		}
		open = append(open, r)
	}
	r := wsDialTCP(t, addr)
	r.write([]byte(wsHandshake(addr, "/t/echo", "X-Token: secret\r\n")))
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("beyond MaxConns: %v %v", resp, err)
	}
	open[0].send(true, ws.OpText, []byte("canary"))
	if f := open[0].mustFrame(); string(f.payload) != "canary" {
		t.Fatalf("canary: %q", f.payload)
	}
}

// TestMountHostile: what net/http lets through but the loop's limits do
// not is refused as on the loop's own listener (a head over
// MaxHeaderBytes: 431, by the handler; garbage behind a good request:
// 400, by the loop), and a WebSocket beside them goes on.
func TestMountHostile(t *testing.T) {
	_, addr, _ := mountServer(t, Options{Logger: slog.New(slog.DiscardHandler)})
	canary := wsDialTCP(t, addr)
	canary.write([]byte(wsHandshake(addr, "/t/echo", "X-Token: secret\r\n")))
	if resp := canary.response(); resp.StatusCode != 101 {
		t.Fatalf("canary upgrade: %d", resp.StatusCode)
	}
	ask := func(raw string) int {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go io.WriteString(c, raw) // the server may answer before it read everything
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		return resp.StatusCode
	}
	// 100 KiB of headers: within net/http's 1 MB, over the loop's 64 KiB.
	big := "GET /t/hello HTTP/1.1\r\nHost: x\r\nX-Token: secret\r\nX-Big: " + strings.Repeat("a", 100<<10) + "\r\n\r\n"
	if st := ask(big); st != 431 {
		t.Fatalf("100 KiB head through the mount: %d, want the loop's 431", st)
	}
	// A good request, then garbage the loop reads after it.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /t/hello HTTP/1.1\r\nHost: x\r\nX-Token: secret\r\n\r\n\x00\x01garbage\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for _, want := range []int{200, 400} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != want {
			t.Fatalf("want %d: %v %v", want, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	canary.send(true, ws.OpText, []byte("canary"))
	if f := canary.mustFrame(); string(f.payload) != "canary" {
		t.Fatalf("canary: %q", f.payload)
	}
}

// TestGroupMount: a group's mount handler spreads connections over its
// loops (the one with the fewest), and each runs on the loop it reports.
func TestGroupMount(t *testing.T) {
	g := NewGroup(2, Options{TimeoutResolution: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	h, err := g.Mount(func(l *Loop, i int) *Application { return groupWhoSetup(g, l, i) })
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "group", g.Start, g.Ready(), g.Stop, 10*time.Second)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	seen := map[int]int{}
	for range 6 {
		_, i := groupDial(t, addr, "/who", 2)
		seen[i]++
	}
	if seen[0] != 3 || seen[1] != 3 {
		t.Fatalf("connections per loop %v, want 3 and 3", seen)
	}
}
