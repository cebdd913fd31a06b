package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

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

// TestProcsAPIReachesEveryChild: with -procs 2 -loops 2, a disconnect and
// a subscribe asked of whichever child the API request lands on reach the
// user's protocol connections on every child (the signed control topic on
// the embedded NATS), and another user's connection (the canary) stays.
func TestProcsAPIReachesEveryChild(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-procs"
	bin := buildTornago(t)
	addr, cmd, _, stderr := startBuiltEnv(t, bin, freeAddr(t),
		[]string{"TORNAGO_TOKEN_HMAC_SECRET=" + secret, "TORNAGO_API_KEY=k"}, "-procs", "2", "-loops", "2")
	port := portOf(addr)
	kids := waitChildren(t, cmd.Process.Pid, 2, port)
	tok, _ := jwtauth.SignHS256([]byte(secret), "alice", time.Now().Add(time.Hour), nil)
	by := map[int][]*protoConn{}
	for n := 0; len(by) < 2; n++ {
		if n == 100 {
			t.Fatalf("100 connections, all on one child")
		}
		p := dialProto(t, addr)
		owner := serverOf(t, kids, port, p.c.NetConn())
		if owner == 0 {
			t.Fatalf("no child holds %v", p.c.LocalAddr())
		}
		p.do("connect", map[string]any{"token": tok})
		by[owner] = append(by[owner], p)
	}
	canary := dialProto(t, addr)
	ctok, _ := jwtauth.SignHS256([]byte(secret), "bob", time.Now().Add(time.Hour), nil)
	canary.do("connect", map[string]any{"token": ctok})

	if code, body := apiPost(t, addr, "subscribe", "k", `{"user":"alice","topic":"user:#alice"}`); code != 200 {
		t.Fatalf("subscribe: %d %s\n%s", code, body, stderr)
	}
	for pid, ps := range by {
		for _, p := range ps {
			p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, msg, err := p.c.ReadMessage()
			if err != nil || !strings.Contains(string(msg), `"sub"`) {
				t.Fatalf("child %d: %s %v, want the sub push", pid, msg, err)
			}
		}
	}
	if code, body := apiPost(t, addr, "disconnect", "k", `{"user":"alice","code":3000,"reason":"moving"}`); code != 200 {
		t.Fatalf("disconnect: %d %s", code, body)
	}
	for pid, ps := range by {
		for _, p := range ps {
			if got := p.closedWith(); got != 3000 {
				t.Errorf("child %d: closed with %d, want 3000", pid, got)
			}
		}
	}
	if fs := canary.do("ping", map[string]any{}); fs[len(fs)-1]["error"] != nil || fs[len(fs)-1]["closed"] != nil {
		t.Errorf("the canary: %s", fs[len(fs)-1])
	}
	if strings.Contains(stderr.String(), "refused a control message") {
		t.Errorf("control messages refused:\n%s", stderr)
	}
}
