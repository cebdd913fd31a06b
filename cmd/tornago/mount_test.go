package main

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"

	"github.com/tornago/tornago/loop"
)

// The credentials the mount tests' net/http middleware wants: Basic
// auth (Go's clients send it for a URL with user:password@) or the
// session cookie that net/http's /login sets (the browser).
const (
	mountUser    = "ann"
	mountPass    = "pw"
	mountSession = "s3ss10n"
)

var mountBasic = "Basic " + base64.StdEncoding.EncodeToString([]byte(mountUser+":"+mountPass))

// requireAuth is an ordinary net/http middleware: 401 unless the request
// carries the credentials.
func requireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		ck, _ := r.Cookie("session")
		if !(ok && u == mountUser && p == mountPass) && (ck == nil || ck.Value != mountSession) {
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// startMountedDemos runs the demo routes on a loop without a listener of
// its own, mounted with loop.Mount in a std ServeMux behind requireAuth,
// beside net/http routes of the ServeMux's own (/nethttp, /login). It
// returns the net/http server's address and the number of connections
// net/http handed over.
func startMountedDemos(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	l := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond})
	app := loop.NewApplication(demoAppOptions(longPollOptions{}))
	node := addDemos(l, 0, app, &demoEnv{broker: chatBroker(nil, longPollOptions{}, slog.Default()), proc: "test", log: slog.Default()})
	if node.err != nil {
		t.Fatal(node.err)
	}
	h, err := l.Mount(app)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- l.Start() }()
	<-l.Ready()
	mux := http.NewServeMux()
	mux.HandleFunc("/nethttp", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "net/http") })
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: mountSession, Path: "/", HttpOnly: true})
		http.Redirect(w, r, r.URL.Query().Get("next"), http.StatusFound)
	})
	mux.Handle("/", requireAuth(h))
	var hijacked atomic.Int64
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateHijacked {
			hijacked.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		done := make(chan struct{})
		l.AddCallback(func() { node.stop(); close(done) })
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
		if err := <-errc; err != nil {
			t.Errorf("loop: %v", err)
		}
	})
	return srv.Listener.Addr().String(), &hijacked
}

// TestMountedDemos serves the demo through a net/http server (see
// startMountedDemos) to real clients: python3-websocket on /echo and /ws,
// gorilla on /echo, /sse resuming after Last-Event-ID, and a long poll.
func TestMountedDemos(t *testing.T) {
	addr, hijacked := startMountedDemos(t)
	authed := mountUser + ":" + mountPass + "@" + addr // Go's clients send Basic auth
	c := &http.Client{Timeout: 10 * time.Second}
	if st, body := httpGet(t, "http://"+addr+"/nethttp"); st != 200 || body != "net/http" {
		t.Fatalf("/nethttp: %d %q", st, body)
	}
	if st, _ := httpGet(t, "http://"+addr+"/"); st != 401 {
		t.Fatalf("/ without credentials: %d, want the middleware's 401", st)
	}
	if _, _, err := (&gws.Dialer{HandshakeTimeout: 5 * time.Second}).Dial("ws://"+addr+"/echo", nil); err == nil {
		t.Fatal("/echo upgraded without credentials")
	}
	if st, body := httpGet(t, "http://"+authed+"/"); st != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("/ with credentials: %d", st)
	}

	t.Run("python", func(t *testing.T) {
		requirePyWebsocket(t)
		runPyScript(t, addr, "Authorization: "+mountBasic)
	})

	t.Run("gorilla", func(t *testing.T) {
		d := gws.Dialer{HandshakeTimeout: 5 * time.Second}
		ws, _, err := d.Dial("ws://"+addr+"/echo", http.Header{"Authorization": {mountBasic}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		big := strings.Repeat("z", 300<<10)
		for _, m := range []string{"one", big} {
			ws.WriteMessage(gws.TextMessage, []byte(m))
			if _, got, err := ws.ReadMessage(); err != nil || string(got) != m {
				t.Fatalf("echo of %d bytes: %d bytes, %v", len(m), len(got), err)
			}
		}
	})

	t.Run("sse-resume", func(t *testing.T) {
		auth := "Authorization: " + mountBasic + "\r\n"
		s := openRawSSEWith(t, addr, "/sse", "", auth)
		first, rec, sub := s.subscribed(t)
		if len(rec) != 0 || sub.Gone || first.id == "" {
			t.Fatalf("fresh stream: %v %+v", rec, sub)
		}
		publishChat(t, authed, "live")
		ev := s.next(t)
		if ev.data != "live" {
			t.Fatalf("live event %+v", ev)
		}
		s.c.Close()
		publishChat(t, authed, "missed")
		s2 := openRawSSEWith(t, addr, "/sse", ev.id, auth)
		_, rec, sub = s2.subscribed(t)
		if len(rec) != 1 || rec[0].data != "missed" || sub.Recovered != 1 {
			t.Fatalf("resumed after %s: %v %+v", ev.id, rec, sub)
		}
	})

	t.Run("longpoll", func(t *testing.T) {
		base := "http://" + authed
		// The chat has what the other subtests published: wait after it.
		var now pollReply
		post(t, c, base+"/poll-message", url.Values{"cursor": {"0"}}, &now)
		cursor := "0"
		if n := len(now.Messages); n > 0 {
			cursor = strconv.FormatInt(now.Messages[n-1].ID, 10)
		}
		waiting := make(chan pollReply, 1)
		go func() {
			var r pollReply
			post(t, c, base+"/update-message", url.Values{"cursor": {cursor}}, &r)
			waiting <- r
		}()
		time.Sleep(200 * time.Millisecond) // parked on the loop
		select {
		case r := <-waiting:
			t.Fatalf("poll answered before any message: %+v", r)
		default:
		}
		var id struct{ ID int64 }
		post(t, c, base+"/new-message", url.Values{"msg": {"polled"}}, &id)
		select {
		case r := <-waiting:
			if len(r.Messages) != 1 || r.Messages[0].Body != "polled" {
				t.Fatalf("poll %+v", r)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the long poll was not answered")
		}
	})
	if n := hijacked.Load(); n < 8 {
		t.Errorf("net/http handed %d connections over, want every mounted one", n)
	}
}

// TestBrowserMounted runs Chromium on the demo page served through the
// mounted server: the page logs in at net/http's /login (a session cookie
// the middleware checks on every request, WebSocket handshakes included),
// then runs the chat and the clock over WebSocket, SSE and long polling.
func TestBrowserMounted(t *testing.T) {
	exe := chromiumPath()
	requireTool(t, exe != "", "chromium (apt-get install chromium)")
	b := startBrowser(t, exe)
	for _, tr := range []string{"ws", "sse", "longpoll"} {
		t.Run(tr, func(t *testing.T) {
			addr, _ := startMountedDemos(t)
			page := "http://" + addr + "/login?next=" + url.QueryEscape("/?transport="+tr)
			transportScenario(t, b, mountUser+":"+mountPass+"@"+addr, page, tr)
		})
	}
}

// TestBinaryMount runs `tornago -mount -loops 2`: net/http's own route and
// the demo's beside it on one port, and SIGTERM still stops the loops
// gracefully (a WebSocket handed over reads 1001) and the process exits 0.
func TestBinaryMount(t *testing.T) {
	addr, cmd, exited, stderr := startBinary(t, "-mount", "-loops", "2", "-ping", "0")
	if st, body := httpGet(t, "http://"+addr+"/nethttp/"); st != 200 || body != "served by net/http\n" {
		t.Fatalf("/nethttp/: %d %q", st, body)
	}
	ws := dial(t, addr, "/echo")
	ws.WriteMessage(gws.TextMessage, []byte("mounted"))
	if _, m := read(t, ws); m != "mounted" {
		t.Fatalf("echo %q", m)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := ws.ReadMessage()
	var ce *gws.CloseError
	if !errors.As(err, &ce) || ce.Code != gws.CloseGoingAway {
		t.Fatalf("after SIGTERM: %v, want close 1001\n%s", err, stderr)
	}
	select {
	case <-exited:
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit %d after SIGTERM\n%s", code, stderr)
		}
	case <-time.After(8 * time.Second):
		t.Fatalf("still running 8 s after SIGTERM\n%s", stderr)
	}
}
