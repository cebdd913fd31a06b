package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/realtime"
	"github.com/tornago/tornago/loop/realtime/jwtauth"
)

// startDemosWithAPI runs the demo routes and the server API with key on a
// free loopback port.
func startDemosWithAPI(t *testing.T, key string) string {
	t.Helper()
	api, err := newDemoAPI(serverConfig{apiKey: key}, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	l := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond})
	opts := demoAppOptions(longPollOptions{})
	opts.Limits.MaxBodyBytes = max(opts.Limits.MaxBodyBytes, realtime.DefaultAPIBodyBytes)
	app := loop.NewApplication(opts)
	node := addDemos(l, 0, app, &demoEnv{proc: "test", log: slog.Default()})
	if node.err != nil {
		t.Fatal(node.err)
	}
	api.Routes(app, newDemoBackend(l, node, &demoEnv{}))
	addr := serveLoop(t, l, app)
	t.Cleanup(func() {
		done := make(chan struct{})
		l.AddCallback(func() { node.stop(); close(done) })
		<-done
	})
	return addr
}

// apiPost is curl -H "X-API-Key: key" -d body http://addr/api/method.
func apiPost(t *testing.T, addr, method, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/"+method, strings.NewReader(body))
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAPIPublishChatAsReceive: POST /api/publish to topic "chat" reaches
// the seeds' /ws clients exactly as /receive does: a JSON string as its
// text, any other value as its JSON encoding; on /ws?since= with the
// position prefix too, the same positions /receive's messages get.
func TestAPIPublishChatAsReceive(t *testing.T) {
	addr := startDemosWithAPI(t, "k")
	plain := dial(t, addr, "/ws")
	if _, w := read(t, plain); w != "Welcome" {
		t.Fatalf("got %q", w)
	}
	positioned := dial(t, addr, "/ws?since=")
	read(t, positioned) // the subscribed control frame
	for i, c := range []struct{ data, want string }{
		{`"hello"`, "hello"},
		{`"caf\u00e9 \"q\""`, `café "q"`},
		{`{"text":"hi","n":[1,2]}`, `{"text":"hi","n":[1,2]}`},
		{`42`, `42`},
		{`true`, `true`},
	} {
		code, body := apiPost(t, addr, "publish", "k", `{"topic":"chat","data":`+c.data+`}`)
		var res struct{ Result struct{ Pos string } }
		json.Unmarshal([]byte(body), &res)
		if code != 200 || res.Result.Pos == "" {
			t.Fatalf("publish %s: %d %s", c.data, code, body)
		}
		if _, got := read(t, plain); got != c.want {
			t.Errorf("/ws got %q for data %s, want %q", got, c.data, c.want)
		}
		if _, got := read(t, positioned); got != res.Result.Pos+"\n"+c.want {
			t.Errorf("/ws?since= got %q, want %q", got, res.Result.Pos+"\n"+c.want)
		}
		// The same text through /receive, for comparison.
		if code, body := httpGet(t, "http://"+addr+"/receive?msg="+url.QueryEscape(c.want)); code != 200 {
			t.Fatalf("/receive: %d %s", code, body)
		}
		if _, got := read(t, plain); got != c.want {
			t.Errorf("/receive of %q: /ws got %q", c.want, got)
		}
		if _, got := read(t, positioned); !strings.HasSuffix(got, fmt.Sprintf("-%d\n%s", 2*i+2, c.want)) {
			t.Errorf("/receive of %q: /ws?since= got %q", c.want, got)
		}
	}
	// /receive's refusals hold for the API's chat too.
	for _, c := range []struct {
		data string
		code int
	}{{`""`, 400}, {`"` + strings.Repeat("x", receiveMax+1) + `"`, 413}} {
		if code, body := apiPost(t, addr, "publish", "k", `{"topic":"chat","data":`+c.data+`}`); code != c.code {
			t.Errorf("data of %d bytes: %d %s, want %d", len(c.data), code, body, c.code)
		}
	}
	// History of the chat: its messages as JSON strings.
	code, body := apiPost(t, addr, "history", "k", `{"topic":"chat","limit":4}`)
	if code != 200 || !strings.Contains(body, `"data":"true"}`) || !strings.Contains(body, `"data":"42"`) {
		t.Errorf("history: %d %s", code, body)
	}
}

// TestBinaryAPIKey: without -api-key /api/ is 404; with TORNAGO_API_KEY a
// wrong or missing key is 401, the right one publishes to the /ws
// clients; the key is never in the log.
func TestBinaryAPIKey(t *testing.T) {
	bin := buildTornago(t)
	addr, _, _, _ := startBuilt(t, bin)
	if code, body := apiPost(t, addr, "publish", "anything", `{"topic":"chat","data":"x"}`); code != 404 {
		t.Errorf("no key configured: %d %s, want 404", code, body)
	}
	const key = "k-3f9a-secret-api-key"
	addr, _, _, stderr := startBuiltEnv(t, bin, freeAddr(t), []string{"TORNAGO_API_KEY=" + key}, "-access-log", "-log-level", "debug")
	ws := dial(t, addr, "/ws")
	read(t, ws)
	for _, k := range []string{"", "wrong"} {
		if code, body := apiPost(t, addr, "publish", k, `{"topic":"chat","data":"x"}`); code != 401 || !strings.Contains(body, `"code":101`) {
			t.Errorf("X-API-Key %q: %d %s, want 401", k, code, body)
		}
	}
	if code, body := apiPost(t, addr, "publish", key, `{"topic":"chat","data":{"a":1}}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	if _, got := read(t, ws); got != `{"a":1}` {
		t.Errorf("/ws got %q", got)
	}
	if strings.Contains(stderr.String(), key) {
		t.Errorf("the log shows the API key:\n%s", stderr)
	}
}

// freeAddr is a free 127.0.0.1 address.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestProcsSecretsNotInArgv: with -procs 2 and the secrets on the parent's
// command line, the children get them in their environment: no child's
// command line (/proc/PID/cmdline) holds them, the log does not either,
// and the API works on every child (a publish reaches /ws clients of
// both).
func TestProcsSecretsNotInArgv(t *testing.T) {
	const key, secret = "api-key-7d1c-in-argv", "hmac-secret-0b2e-in-argv"
	addr, cmd, _, stderr := startBinary(t, "-procs", "2", "-api-key", key, "-token-hmac-secret", secret)
	port := portOf(addr)
	kids := waitChildren(t, cmd.Process.Pid, 2, port)
	for _, pid := range kids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatal(err)
		}
		if s := string(b); strings.Contains(s, key) || strings.Contains(s, secret) {
			t.Errorf("child %d's command line holds a secret: %q", pid, strings.ReplaceAll(s, "\x00", " "))
		}
	}
	_, all := dialSpread(t, addr, port, kids, "/ws", 1, 200)
	if code, body := apiPost(t, addr, "publish", key, `{"topic":"chat","data":"to all"}`); code != 200 {
		t.Fatalf("publish: %d %s\n%s", code, body, stderr)
	}
	for i, c := range all {
		if _, got := read(t, c); got != "to all" {
			t.Fatalf("client %d got %q", i, got)
		}
	}
	log := stderr.String()
	if strings.Contains(log, key) || strings.Contains(log, secret) {
		t.Errorf("the log shows a secret:\n%s", log)
	}
	if !strings.Contains(log, "a secret on the command line") {
		t.Errorf("no warning about secrets in argv:\n%s", log)
	}
}

// frames reads c's frames on a goroutine of its own, so that a test can
// wait for one with a timeout and go on reading after it; the channel
// closes when the connection does, and code is then the close code.
type frames struct {
	ch   chan string
	code atomic.Int64
}

func readFrames(c *gws.Conn) *frames {
	f := &frames{ch: make(chan string, 64)}
	go func() {
		defer close(f.ch)
		for {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, msg, err := c.ReadMessage()
			if err != nil {
				var ce *gws.CloseError
				if errors.As(err, &ce) {
					f.code.Store(int64(ce.Code))
				}
				return
			}
			f.ch <- string(msg)
		}
	}()
	return f
}

// next returns the next frame holding all of want, skipping others, or
// "" after timeout or the close.
func (f *frames) next(timeout time.Duration, want ...string) string {
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-f.ch:
			if !ok {
				return ""
			}
			all := true
			for _, w := range want {
				all = all && strings.Contains(m, w)
			}
			if all {
				return m
			}
		case <-deadline:
			return ""
		}
	}
}

// closed waits for the close and returns its code (0: none in time).
func (f *frames) closed(timeout time.Duration) int64 {
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-f.ch:
			if !ok {
				return f.code.Load()
			}
		case <-deadline:
			return 0
		}
	}
}

// TestProcsAPIReachesEveryChild: with -procs 2 -loops 2, a subscribe, a
// publish and a disconnect asked of whichever child the API request lands
// on reach the user's protocol connections on every child (disconnect and
// subscribe through the signed control topic on the embedded NATS,
// publish through the hubs' broker), and another user's connection (the
// canary) stays.
func TestProcsAPIReachesEveryChild(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-procs"
	bin := buildTornago(t)
	addr, cmd, _, stderr := startBuiltEnv(t, bin, freeAddr(t),
		[]string{"TORNAGO_TOKEN_HMAC_SECRET=" + secret, "TORNAGO_API_KEY=k"}, "-procs", "2", "-loops", "2")
	port := portOf(addr)
	kids := waitChildren(t, cmd.Process.Pid, 2, port)
	tok, _ := jwtauth.SignHS256([]byte(secret), "alice", time.Now().Add(time.Hour), nil)
	type conn struct {
		pid int
		f   *frames
	}
	var alice []conn
	seen := map[int]bool{}
	for n := 0; len(seen) < 2; n++ {
		if n == 100 {
			t.Fatalf("100 connections, all on one child")
		}
		p := dialProto(t, addr)
		owner := serverOf(t, kids, port, p.c.NetConn())
		if owner == 0 {
			t.Fatalf("no child holds %v", p.c.LocalAddr())
		}
		p.do("connect", map[string]any{"token": tok})
		seen[owner] = true
		alice = append(alice, conn{owner, readFrames(p.c)})
	}
	canary := dialProto(t, addr)
	ctok, _ := jwtauth.SignHS256([]byte(secret), "bob", time.Now().Add(time.Hour), nil)
	canary.do("connect", map[string]any{"token": ctok})

	// A topic without history (user) and one with (chat: JetStream).
	for _, topic := range []string{"user:#alice", "chat:lobby"} {
		if code, body := apiPost(t, addr, "subscribe", "k", `{"user":"alice","topic":"`+topic+`"}`); code != 200 {
			t.Fatalf("subscribe: %d %s\n%s", code, body, stderr)
		}
		for _, c := range alice {
			if c.f.next(10*time.Second, `"sub"`, topic) == "" {
				t.Fatalf("child %d: no sub push of %s", c.pid, topic)
			}
		}
		// A publish through the API, on whichever child, reaches them
		// all. The sub push may come before the child's NATS
		// subscription is made (a topic without history loses what is
		// published in between), so publish until every connection has
		// one.
		want := `{"to":"` + topic + `"}`
		got := make([]bool, len(alice))
		for try := 0; ; try++ {
			if try == 20 {
				t.Fatalf("publications on %s did not reach every connection: %v\n%s", topic, got, stderr)
			}
			if code, body := apiPost(t, addr, "publish", "k", `{"topic":"`+topic+`","data":`+want+`}`); code != 200 {
				t.Fatalf("publish: %d %s", code, body)
			}
			all := true
			for i, c := range alice {
				got[i] = got[i] || c.f.next(500*time.Millisecond, `"pub"`, want) != ""
				all = all && got[i]
			}
			if all {
				break
			}
		}
	}
	if code, body := apiPost(t, addr, "disconnect", "k", `{"user":"alice","code":3000,"reason":"moving"}`); code != 200 {
		t.Fatalf("disconnect: %d %s", code, body)
	}
	for _, c := range alice {
		if got := c.f.closed(10 * time.Second); got != 3000 {
			t.Errorf("child %d: closed with %d, want 3000", c.pid, got)
		}
	}
	if fs := canary.do("ping", map[string]any{}); fs[len(fs)-1]["error"] != nil || fs[len(fs)-1]["closed"] != nil {
		t.Errorf("the canary: %s", fs[len(fs)-1])
	}
	if strings.Contains(stderr.String(), "refused a control message") || strings.Contains(stderr.String(), "refused a message") {
		t.Errorf("messages refused:\n%s", stderr)
	}
}
