package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime/rtclient"
)

// nodeWithWS returns node's path and the node_modules directory holding
// npm's ws (NODE_PATH, else .ci/node's), or skips (fails under CI=true).
// The test installs nothing: .ci/run does (npm ci --prefix .ci/node) and
// exports NODE_PATH.
func nodeWithWS(t *testing.T) (node, modules string) {
	t.Helper()
	node, err := exec.LookPath("node")
	requireTool(t, err == nil, "node")
	modules = os.Getenv("NODE_PATH")
	if modules == "" {
		modules = filepath.Join(repoRoot(t), ".ci", "node", "node_modules")
	}
	_, err = os.Stat(filepath.Join(modules, "ws", "package.json"))
	requireTool(t, err == nil, "npm package ws in "+modules+" (npm ci --prefix .ci/node)")
	return node, modules
}

// jsEvent is one line of js_publish_driver.mjs's output.
type jsEvent struct {
	Ev        string          `json:"ev"`
	State     string          `json:"state"`
	Transport string          `json:"transport"`
	Code      int             `json:"code"`
	Text      string          `json:"text"`
	Data      json.RawMessage `json:"data"`
	Pos       string          `json:"pos"`
	Result    json.RawMessage `json:"result"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// jsDriver is tornago.js running in node (testdata/js_publish_driver.mjs).
type jsDriver struct {
	t      *testing.T
	stdin  io.WriteCloser
	events chan jsEvent
	mu     sync.Mutex
	log    []string // every line, for failure messages
	pubs   map[string]int
}

// startJSDriver runs the driver on module (tornago.js as a file) against
// base over transport only, subscribed to topic.
func startJSDriver(t *testing.T, module, base, topic, transport string) *jsDriver {
	node, modules := nodeWithWS(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "js_publish_driver.mjs"), module, base, topic, transport)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &jsDriver{t: t, stdin: stdin, events: make(chan jsEvent, 256), pubs: map[string]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev jsEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				d.note("unparsed: " + sc.Text())
				continue
			}
			d.note(sc.Text())
			if ev.Ev == "pub" {
				var s string
				json.Unmarshal(ev.Data, &s)
				d.mu.Lock()
				d.pubs[s]++
				d.mu.Unlock()
			}
			select {
			case d.events <- ev:
			default: // 256 unread: the log and pubs still have it
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close() // the driver disconnects and exits
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("node stderr:\n%s", stderr.String())
		}
	})
	return d
}

func (d *jsDriver) note(line string) {
	d.mu.Lock()
	d.log = append(d.log, line)
	d.mu.Unlock()
}

// lines returns the driver's output so far.
func (d *jsDriver) lines() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.log, "\n")
}

// count returns how many times the driver's own subscription got text.
func (d *jsDriver) count(text string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pubs[text]
}

func (d *jsDriver) publish(text string) {
	d.t.Helper()
	b, _ := json.Marshal(map[string]string{"op": "publish", "text": text})
	if _, err := d.stdin.Write(append(b, '\n')); err != nil {
		d.t.Fatalf("to node: %v", err)
	}
}

// wait returns the first event (from now) that ok accepts.
func (d *jsDriver) wait(what string, ok func(jsEvent) bool) jsEvent {
	d.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-d.events:
			if ok(ev) {
				return ev
			}
		case <-timeout:
			d.t.Fatalf("timed out waiting for %s; node said:\n%s", what, d.lines())
		}
	}
}

// reply waits for the outcome of text's publish: its result, or fails.
func (d *jsDriver) reply(text string) json.RawMessage {
	d.t.Helper()
	ev := d.wait("the reply to publish "+text, func(ev jsEvent) bool { return (ev.Ev == "ack" || ev.Ev == "err") && ev.Text == text })
	if ev.Ev == "err" {
		d.t.Fatalf("publish %q rejected: %d %s; node said:\n%s", text, ev.Error.Code, ev.Error.Message, d.lines())
	}
	return ev.Result
}

// jsIdemRig is a tornago binary, a Go subscriber to topic connected to
// it directly, and tornago.js in node (jsDriver) connected through a hold
// proxy and subscribed to topic too.
type jsIdemRig struct {
	t      *testing.T
	addr   string
	stderr *lockedBuffer
	l      *loop.Loop
	topic  string
	trans  string // the JS client's only transport
	proxy  *holdProxy
	js     *jsDriver
	mu     sync.Mutex
	got    []jsSeen // what the Go subscriber got
}

// jsSeen is a publication a Go subscriber got: its text and position.
type jsSeen struct {
	text string
	pos  pubsub.Position
}

func (s jsSeen) String() string { return s.text + "@" + s.pos.String() }

// newJSIdemRig starts the binary with args; start then connects the
// clients. It returns the binary's process too (the supervisor under
// -procs).
func newJSIdemRig(t *testing.T, topic, transport string, args ...string) (*jsIdemRig, *exec.Cmd) {
	nodeWithWS(t) // before starting anything
	addr, cmd, _, stderr := startBinary(t, args...)
	return &jsIdemRig{t: t, addr: addr, stderr: stderr, topic: topic, trans: transport}, cmd
}

// start connects the clients (under -procs, once the children listen).
func (r *jsIdemRig) start() {
	t := r.t
	// The client exactly as pages load it.
	status, src := httpGet(t, "http://"+r.addr+"/tornago.js")
	if status != 200 || !strings.Contains(src, "export class Client") {
		t.Fatalf("GET /tornago.js: %d, %d bytes", status, len(src))
	}
	module := filepath.Join(t.TempDir(), "tornago.mjs") // .mjs: an ES module whatever node's detection
	if err := os.WriteFile(module, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}

	r.l = startClientLoop(t)
	subscribed := make(chan error, 4)
	sub, err := rtclient.Dial(r.l, "ws://"+r.addr+"/connection/websocket", rtclient.Options{Reconnect: true, MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		OnSubscribe: func(_ *rtclient.Client, _ string, _ rtclient.SubscribeResult, err error) { subscribed <- err }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	sub.Subscribe(r.topic, pubsub.Position{}, func(p rtclient.Publication) {
		var s string
		json.Unmarshal(p.Data, &s)
		r.mu.Lock()
		r.got = append(r.got, jsSeen{s, p.Pos})
		r.mu.Unlock()
	}, nil)
	if err := recv(t, subscribed, "subscribe"); err != nil {
		t.Fatal(err)
	}
	r.proxy = startHoldProxy(t, r.addr)
	r.js = startJSDriver(t, module, "http://"+r.proxy.ln.Addr().String(), r.topic, r.trans)
	r.js.wait("the JS client's subscription", func(ev jsEvent) bool { return ev.Ev == "subscribed" })
}

// find returns how many times the Go subscriber got s, and where the last.
func (r *jsIdemRig) find(s string) (n int, pos pubsub.Position) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.got {
		if g.text == s {
			n++
			pos = g.pos
		}
	}
	return n, pos
}

// waitGot waits until the Go subscriber got s and returns its position.
func (r *jsIdemRig) waitGot(s string) pubsub.Position {
	r.t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, pos := r.find(s); n > 0 {
			return pos
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the Go subscriber did not get %q\n%s", s, r.stderr)
		}
	}
}

// publishHeld publishes "warm" and waits for its reply, then publishes
// "once" with the server's bytes held back and waits until the Go
// subscriber got it. It returns both positions.
func (r *jsIdemRig) publishHeld() (warm, once pubsub.Position) {
	r.t.Helper()
	r.js.publish("warm")
	r.js.reply("warm")
	warm = r.waitGot("warm")
	r.proxy.hold.Store(true)
	r.js.publish("once")
	return warm, r.waitGot("once") // published; its reply held back
}

// finish waits for the retried publish's reply and checks, after one more
// publish ("end"), that "once" is published once: once for each
// subscriber and once in the topic's history read anew after warm. It
// returns the retried publish's result.
func (r *jsIdemRig) finish(warm, once pubsub.Position) json.RawMessage {
	t := r.t
	t.Helper()
	res := r.js.reply("once")
	r.js.publish("end")
	r.js.reply("end")
	end := r.waitGot("end")
	for deadline := time.Now().Add(15 * time.Second); r.js.count("end") == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the JS client's subscription did not get end; node said:\n%s", r.js.lines())
		}
	}
	if n, _ := r.find("once"); n != 1 {
		r.mu.Lock()
		t.Errorf("the Go subscriber got %q %d times: %v", "once", n, r.got)
		r.mu.Unlock()
	}
	if n := r.js.count("once"); n != 1 {
		t.Errorf("the JS client's subscription got %q %d times; node said:\n%s", "once", n, r.js.lines())
	}
	hist := make(chan jsSeen, 16)
	histSubscribed := make(chan error, 1)
	reader, err := rtclient.Dial(r.l, "ws://"+r.addr+"/connection/websocket", rtclient.Options{
		OnSubscribe: func(_ *rtclient.Client, _ string, _ rtclient.SubscribeResult, err error) { histSubscribed <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	reader.Subscribe(r.topic, warm, func(p rtclient.Publication) {
		var s string
		json.Unmarshal(p.Data, &s)
		hist <- jsSeen{s, p.Pos}
	}, nil)
	if err := recv(t, histSubscribed, "the history reader's subscribe"); err != nil {
		t.Fatal(err)
	}
	var after []jsSeen
	for pos := warm; pos != end; {
		h := recv(t, hist, "the history after warm")
		after = append(after, h)
		pos = h.pos
	}
	if len(after) != 2 || after[0] != (jsSeen{"once", once}) || after[1].text != "end" {
		t.Errorf("history after warm (%s): %v, want once at %s then end", warm, after, once)
	}
	t.Logf("node said:\n%s", r.js.lines())
	t.Logf("the retry resolved with %s; history after warm: %v", res, after)
	return res
}

// TestProcsJSPublishOnceAfterKill is TestProcsPublishOnceAfterKill with
// the browser client: tornago.js, as the binary serves it at /tornago.js,
// runs in node with npm's ws as its WebSocket. tornago -procs 2 (embedded
// NATS, chat history in JetStream); the JS client connects through a proxy
// that then holds back the server's bytes, publishes, and once the
// publication reached a Go subscriber the child holding the JS client's
// connection (over long polling: its session, made where the connect
// went) is killed (SIGKILL) before its reply. The JS client reconnects (to
// the other child: that one is dead) and sends the publish again with the
// same idempotency key: JetStream drops the duplicate, the publish promise
// resolves, and the publication exists once: once for the Go subscriber,
// once for the JS client's own subscription, once in the topic's history.
func TestProcsJSPublishOnceAfterKill(t *testing.T) {
	for _, transport := range []string{"websocket", "longpoll"} {
		t.Run(transport, func(t *testing.T) {
			r, cmd := newJSIdemRig(t, "chat:jsidem", transport, "-procs", "2")
			port := portOf(r.addr)
			kids := waitChildren(t, cmd.Process.Pid, 2, port)
			r.start()
			// The first connection carried the connect: its child holds the
			// WebSocket, or the long-polling session.
			owner := serverOf(t, kids, port, r.proxy.first())
			if owner == 0 {
				t.Fatal("no child holds the JS client's connection")
			}
			warm, once := r.publishHeld()
			if transport == "websocket" {
				if up := serverOf(t, kids, port, r.proxy.upstream()); up != owner {
					t.Fatalf("the WebSocket moved from child %d to %d", owner, up)
				}
			}
			r.proxy.hold.Store(false)
			if err := syscall.Kill(owner, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			res := r.finish(warm, once)
			// Through NATS the retry's reply, from the other process,
			// carries the publication's position (JetStream's dedup
			// acknowledges it with the first's sequence).
			var got struct {
				Pos string `json:"pos"`
			}
			if err := json.Unmarshal(res, &got); err != nil {
				t.Fatalf("publish result %s: %v", res, err)
			}
			if got.Pos != once.String() {
				t.Errorf("the retried publish resolved with pos %q; the publication is at %s", got.Pos, once)
			}
			t.Logf("child %d killed before its reply", owner)
		})
	}
}

// TestJSPublishSameReplyAfterDrop: one process, one loop, no broker. The
// JS client's connections are cut (no kill) after its publish was
// published and before the reply; it reconnects to the same loop (over
// long polling: a new session) and sends the publish again with the same
// key: the loop's window answers with the first publish's reply, so the
// promise resolves with the publication's position, and nothing is
// published twice. Over WebSocket and long polling (node has no
// EventSource for SSE).
func TestJSPublishSameReplyAfterDrop(t *testing.T) {
	for _, transport := range []string{"websocket", "longpoll"} {
		t.Run(transport, func(t *testing.T) {
			r, _ := newJSIdemRig(t, "chat:jsidem", transport)
			r.start()
			warm, once := r.publishHeld()
			r.proxy.hold.Store(false)
			r.proxy.cut()
			res := r.finish(warm, once)
			var got struct {
				Pos string `json:"pos"`
			}
			if err := json.Unmarshal(res, &got); err != nil || got.Pos != once.String() {
				t.Errorf("the retried publish resolved with %s (%v); want pos %s, the publication's", res, err, once)
			}
		})
	}
}
