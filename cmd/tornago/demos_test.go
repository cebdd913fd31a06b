package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cws "github.com/coder/websocket"
	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/internal/notrun"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
)

// startDemos runs the demo routes on a free loopback port.
func startDemos(t *testing.T) string {
	t.Helper()
	return startDemosWith(t, nil)
}

// startDemosWith runs the demo routes with a hub broker (nil: none).
func startDemosWith(t *testing.T, broker pubsub.Broker) string {
	t.Helper()
	return startDemoApp(t, demoAppOptions(longPollOptions{}), broker, nil)
}

// startDemoApp runs the demo routes on a free loopback port with the
// application's options, a hub broker (nil: none) and routes extra adds
// first (nil: none), and stops the loop when the test ends.
func startDemoApp(t *testing.T, opts loop.AppOptions, broker pubsub.Broker, extra func(*loop.Application)) string {
	t.Helper()
	l := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond})
	app := loop.NewApplication(opts)
	if extra != nil {
		extra(app)
	}
	node := addDemos(l, 0, app, &demoEnv{broker: chatBroker(broker, longPollOptions{}, slog.Default()), proc: "test", log: slog.Default()})
	if node.err != nil {
		t.Fatal(node.err)
	}
	addr := serveLoop(t, l, app)
	t.Cleanup(func() { // before serveLoop's Stop: parked polls must not hold it up
		done := make(chan struct{})
		l.AddCallback(func() { node.stop(); close(done) })
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	return addr
}

// serveLoop runs l serving app on a free loopback port, stops it when the
// test ends, and returns the address.
func serveLoop(t *testing.T, l *loop.Loop, app *loop.Application) string {
	t.Helper()
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
	})
	return l.Addr().String()
}

func dial(t *testing.T, addr, path string) *gws.Conn {
	t.Helper()
	d := gws.Dialer{HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("ws://"+addr+path, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return c
}

func read(t *testing.T, c *gws.Conn) (int, string) {
	t.Helper()
	typ, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, string(b)
}

func TestDemoEcho(t *testing.T) {
	addr := startDemos(t)
	c := dial(t, addr, "/echo")
	c.WriteMessage(gws.TextMessage, []byte("hi"))
	if typ, m := read(t, c); typ != gws.TextMessage || m != "hi" {
		t.Fatalf("%d %q", typ, m)
	}
	big := bytes.Repeat([]byte{1, 2, 3, 4}, 3<<19) // 6 MiB: over the 4 MiB MaxUnsentPerConn, under the route's 64 MiB MaxMessageSize
	c.WriteMessage(gws.BinaryMessage, big)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, got, err := c.ReadMessage()
	if err != nil || typ != gws.BinaryMessage || !bytes.Equal(got, big) {
		t.Fatalf("big echo: type %d len %d err %v", typ, len(got), err)
	}

	// coder/websocket, with a cross-origin header (/echo, a bench target, accepts any).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cc, _, err := cws.Dial(ctx, "ws://"+addr+"/echo", &cws.DialOptions{HTTPHeader: http.Header{"Origin": {"http://elsewhere.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.CloseNow()
	cc.Write(ctx, cws.MessageText, []byte("coder"))
	if _, b, err := cc.Read(ctx); err != nil || string(b) != "coder" {
		t.Fatalf("coder echo %q %v", b, err)
	}
	if err := cc.Close(cws.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
}

func TestDemoChatAndReceive(t *testing.T) {
	addr := startDemos(t)
	a := dial(t, addr, "/ws")
	if _, m := read(t, a); m != "Welcome" {
		t.Fatalf("first message %q", m)
	}
	a.WriteMessage(gws.TextMessage, []byte("hello"))
	if _, m := read(t, a); m != "new message :hello" {
		t.Fatalf("reply %q", m)
	}
	b := dial(t, addr, "/ws")
	read(t, b)

	get := func(q string) map[string]any {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/receive?msg=" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		body, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("/receive: %d %q", resp.StatusCode, body)
		}
		return v
	}
	if v := get("broadcast"); v["delivered"] != float64(2) {
		t.Fatalf("delivered %v, want 2", v)
	}
	for _, c := range []*gws.Conn{a, b} {
		if _, m := read(t, c); m != "broadcast" {
			t.Fatalf("got %q", m)
		}
	}
	// A closed client leaves the registry.
	b.WriteMessage(gws.CloseMessage, gws.FormatCloseMessage(1000, ""))
	b.ReadMessage()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if v := get("x"); v["delivered"] == float64(1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("closed client still counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDemoClock(t *testing.T) {
	addr := startDemos(t)
	anon := dial(t, addr, "/clock")
	first := dial(t, addr, "/clock?Id=a")
	type tick struct {
		Time string `json:"time"`
		TS   int64  `json:"ts"`
		Seq  int64  `json:"seq"`
	}
	for _, c := range []*gws.Conn{anon, first} {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, m := read(t, c)
		var tk tick
		if err := json.Unmarshal([]byte(m), &tk); err != nil || tk.Seq < 1 || tk.TS == 0 {
			t.Fatalf("tick %q: %v", m, err)
		}
	}
	// Same Id: the first connection is replaced with close 4000.
	dial(t, addr, "/clock?Id=a")
	first.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		_, _, err := first.ReadMessage()
		if err == nil {
			continue
		}
		var ce *gws.CloseError
		if !errors.As(err, &ce) || ce.Code != 4000 {
			t.Fatalf("replaced connection got %v, want close 4000", err)
		}
		break
	}
}

// requireTool skips loudly (a NOT RUN line at the end of the package's
// tests), or fails under CI=true, when an external client is missing.
func requireTool(t *testing.T, ok bool, what string) {
	t.Helper()
	if !ok {
		notrun.Skip(t, "no "+what)
	}
}

func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

const pyScript = `
import json, sys, threading
import websocket

addr = sys.argv[1]
hdr = sys.argv[2:]  # extra request headers ("Authorization: ...")
out = {}

c = websocket.create_connection("ws://%s/echo" % addr, timeout=5, header=hdr)
c.send("hello python")
out["echo_text"] = c.recv()
c.send_binary(b"\x00\x01\xff")
out["echo_binary"] = list(c.recv())
big = "y" * (1 << 20)
c.send(big)
out["echo_big_ok"] = c.recv() == big
c.close()

c = websocket.create_connection("ws://%s/ws" % addr, timeout=5, header=hdr)
out["ws_welcome"] = c.recv()
c.send("from python")
out["ws_reply"] = c.recv()
c.close()

def run_app(path, hello, want, code):
    got, closed, errors = [], [], []
    def on_open(ws):
        if hello:
            ws.send(hello)
    def on_message(ws, msg):
        got.append(msg)
        if len(got) == want:
            # Not ws.close(): in websocket-client 1.2.x that ends run_forever
            # without calling on_close. Send our close frame and let the
            # server's answer end the loop (and call on_close with its code).
            ws.sock.send_close(code, b"bye")
    def on_error(ws, err):
        errors.append(repr(err))
    def on_close(ws, status, reason):
        closed.append(status)
    app = websocket.WebSocketApp("ws://%s%s" % (addr, path), header=hdr, on_open=on_open, on_message=on_message,
                                 on_error=on_error, on_close=on_close)
    t = threading.Timer(10, app.close)
    t.start()
    app.run_forever()
    t.cancel()
    return {"messages": got, "closed": closed, "errors": errors}

out["app_echo"] = run_app("/echo", "app hello", 1, 4001)
out["app_ws"] = run_app("/ws", None, 1, 1000)
print(json.dumps(out))
`

type pyApp struct {
	Messages []string `json:"messages"`
	Closed   []int    `json:"closed"`
	Errors   []string `json:"errors"`
}

func TestPythonWebsocketClient(t *testing.T) {
	requirePyWebsocket(t)
	runPyScript(t, startDemos(t))
}

// requirePyWebsocket skips (or fails, see requireTool) without python3's
// websocket-client.
func requirePyWebsocket(t *testing.T) {
	t.Helper()
	_, err := os.Stat("/usr/bin/python3")
	requireTool(t, err == nil, "/usr/bin/python3")
	haveMod := exec.Command("/usr/bin/python3", "-c", "import websocket").Run() == nil
	requireTool(t, haveMod, "python3-websocket (Debian package; `import websocket`)")
}

// runPyScript runs pyScript (python3-websocket on /echo and /ws) against
// addr, sending the extra headers ("Name: value") with each handshake.
func runPyScript(t *testing.T, addr string, headers ...string) {
	t.Helper()
	const py = "/usr/bin/python3"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{"-c", pyScript, addr}, headers...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	var res struct {
		EchoText   string `json:"echo_text"`
		EchoBinary []int  `json:"echo_binary"`
		EchoBigOK  bool   `json:"echo_big_ok"`
		Welcome    string `json:"ws_welcome"`
		Reply      string `json:"ws_reply"`
		AppEcho    pyApp  `json:"app_echo"`
		AppWS      pyApp  `json:"app_ws"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("python output %q: %v\n%s", out, err, stderr.String())
	}
	if res.EchoText != "hello python" || len(res.EchoBinary) != 3 || res.EchoBinary[2] != 255 || !res.EchoBigOK {
		t.Errorf("echo: %+v", res)
	}
	if res.Welcome != "Welcome" || res.Reply != "new message :from python" {
		t.Errorf("/ws: %+v", res)
	}
	if a := res.AppEcho; fmt.Sprint(a.Messages) != "[app hello]" || fmt.Sprint(a.Closed) != "[4001]" || len(a.Errors) != 0 {
		t.Errorf("WebSocketApp /echo: %+v", a)
	}
	if a := res.AppWS; fmt.Sprint(a.Messages) != "[Welcome]" || fmt.Sprint(a.Closed) != "[1000]" || len(a.Errors) != 0 {
		t.Errorf("WebSocketApp /ws: %+v", a)
	}
}

const nodeScript = `
const WebSocket = require('ws');
const addr = process.argv[process.argv.length - 1];
const out = {};
function step(path, fn) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket('ws://' + addr + path);
    const msgs = [];
    ws.on('error', reject);
    ws.on('open', () => fn(ws, 'open'));
    ws.on('message', (data, isBinary) => { msgs.push(isBinary ? [...data] : data.toString()); fn(ws, 'message', msgs); });
    ws.on('close', (code, reason) => resolve({msgs, code, reason: reason.toString()}));
  });
}
(async () => {
  out.echo = await step('/echo', (ws, ev, msgs) => {
    if (ev === 'open') { ws.send('hello node'); ws.send(Buffer.from([0, 1, 255])); }
    else if (msgs.length === 2) ws.close(4001, 'bye');
  });
  out.chat = await step('/ws', (ws, ev, msgs) => {
    if (ev === 'message' && msgs.length === 1) ws.send('from node');
    else if (ev === 'message') ws.close();
  });
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
setTimeout(() => { console.error('timeout'); process.exit(2); }, 15000).unref();
`

func TestNodeWsClient(t *testing.T) {
	node, err := exec.LookPath("node")
	requireTool(t, err == nil, "node")
	// The test installs nothing: .ci/run does (npm install --prefix
	// .ci/node ws@8) and exports NODE_PATH.
	modules := os.Getenv("NODE_PATH")
	if modules == "" {
		modules = filepath.Join(repoRoot(t), ".ci", "node", "node_modules")
	}
	_, err = os.Stat(filepath.Join(modules, "ws", "package.json"))
	requireTool(t, err == nil, "npm package ws in "+modules+" (npm install --prefix .ci/node ws@8)")

	addr := startDemos(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "-e", nodeScript, "--", addr)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	type result struct {
		Msgs   []any  `json:"msgs"`
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}
	var res struct{ Echo, Chat result }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node output %q: %v", out, err)
	}
	if len(res.Echo.Msgs) != 2 || res.Echo.Msgs[0] != "hello node" || res.Echo.Code != 4001 {
		t.Errorf("echo: %+v", res.Echo)
	}
	if b, _ := json.Marshal(res.Echo.Msgs); !strings.Contains(string(b), "[0,1,255]") {
		t.Errorf("binary echo: %s", b)
	}
	if len(res.Chat.Msgs) != 2 || res.Chat.Msgs[0] != "Welcome" || res.Chat.Msgs[1] != "new message :from node" || res.Chat.Code != 1005 {
		t.Errorf("chat: %+v", res.Chat)
	}
}

// httpGet returns the status and body of a GET.
func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, string(body)
}

// TestDemoReceiveRejectsBadInput: /receive with invalid UTF-8 or without a
// message is refused with 400 and a reason, and the /ws clients neither get
// it nor lose their connection (a Text frame of invalid UTF-8 makes every
// browser close with 1007).
func TestDemoReceiveRejectsBadInput(t *testing.T) {
	addr := startDemos(t)
	a, b := dial(t, addr, "/ws"), dial(t, addr, "/ws")
	for _, c := range []*gws.Conn{a, b} {
		if _, m := read(t, c); m != "Welcome" {
			t.Fatalf("first message %q", m)
		}
	}
	for _, tc := range []struct{ query, want string }{
		{"msg=%ff%fe", "UTF-8"},
		{"msg=ok%c3", "UTF-8"},
		{"", "msg is required"},
		{"msg=", "msg is required"},
		{"msg=" + strings.Repeat("x", 70<<10), ""}, // over the request-line limit or the message cap
	} {
		code, body := httpGet(t, "http://"+addr+"/receive?"+tc.query)
		if code/100 != 4 || !strings.Contains(body, tc.want) {
			t.Errorf("/receive?%.30s: %d %q, want 4xx saying %q", tc.query, code, body, tc.want)
		}
	}
	if code, body := httpGet(t, "http://"+addr+"/receive?msg="+url.QueryEscape("ça va")); code != 200 {
		t.Fatalf("valid /receive: %d %q", code, body)
	}
	for _, c := range []*gws.Conn{a, b} {
		if typ, m := read(t, c); typ != gws.TextMessage || m != "ça va" {
			t.Fatalf("after the refused ones the next message is %d %q, want the valid one", typ, m)
		}
	}
}

// TestDemoChatRefusesBinary: /ws is a text chat (the seed's on_message
// prefixes the text with "new message :"), so binary input is refused with
// 1003 Unsupported Data, the code RFC 6455 gives for exactly this, instead of
// being echoed in a Text frame that may not be UTF-8.
func TestDemoChatRefusesBinary(t *testing.T) {
	addr := startDemos(t)
	c := dial(t, addr, "/ws")
	read(t, c)
	if err := c.WriteMessage(gws.BinaryMessage, []byte{0xff, 0x00, 0xfe}); err != nil {
		t.Fatal(err)
	}
	typ, m, err := c.ReadMessage()
	var ce *gws.CloseError
	if !errors.As(err, &ce) || ce.Code != 1003 {
		t.Fatalf("binary to /ws: got %d %q %v, want close 1003", typ, m, err)
	}
}

// TestDemoOriginSameOnly: /ws and /clock accept their own origin and clients
// that send none (non-browsers), and refuse other origins with 403; the
// bench targets /echo and /echo-deflate still accept any.
func TestDemoOriginSameOnly(t *testing.T) {
	addr := startDemos(t)
	d := gws.Dialer{HandshakeTimeout: 5 * time.Second}
	try := func(path, origin string) int {
		t.Helper()
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, resp, err := d.Dial("ws://"+addr+path, h)
		if err == nil {
			c.Close()
			return 101
		}
		if resp == nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		return resp.StatusCode
	}
	for _, path := range []string{"/ws", "/clock", "/clock?Id=o"} {
		if got := try(path, "http://elsewhere.example"); got != 403 {
			t.Errorf("%s from another origin: %d, want 403", path, got)
		}
		if got := try(path, "http://"+addr); got != 101 {
			t.Errorf("%s from its own origin: %d, want 101", path, got)
		}
		if got := try(path, ""); got != 101 {
			t.Errorf("%s without Origin: %d, want 101", path, got)
		}
	}
	for _, path := range []string{"/echo", "/echo-deflate"} {
		if got := try(path, "http://elsewhere.example"); got != 101 {
			t.Errorf("%s from another origin: %d, want 101 (bench target)", path, got)
		}
	}
}
