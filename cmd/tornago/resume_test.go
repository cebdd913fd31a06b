package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
)

// subscribed is the control message after the recovered ones.
type subscribed struct {
	Type      string `json:"type"`
	Head      string `json:"head"`
	Recovered int    `json:"recovered"`
	Gone      bool   `json:"gone"`
}

// wsFrame is one frame of the positioned protocol: a message (Pos set) or
// the subscribed control message.
type wsFrame struct {
	Pos  pubsub.Position
	Body string
	Ctl  *subscribed
}

func readFrame(t *testing.T, c *gws.Conn) wsFrame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(b) > 0 && b[0] == '{' {
		var s subscribed
		if err := json.Unmarshal(b, &s); err != nil || s.Type != "subscribed" {
			t.Fatalf("control frame %q: %v", b, err)
		}
		return wsFrame{Ctl: &s}
	}
	ps, body, ok := strings.Cut(string(b), "\n")
	p, err := pubsub.ParsePosition(ps)
	if !ok || err != nil {
		t.Fatalf("not a positioned frame: %q", b)
	}
	return wsFrame{Pos: p, Body: body}
}

// resume dials path with since and returns the connection, the recovered
// messages and the control message that ended them.
func resume(t *testing.T, addr, path, since string) (*gws.Conn, []wsFrame, subscribed) {
	t.Helper()
	c := dial(t, addr, path+"?since="+url.QueryEscape(since))
	var got []wsFrame
	for {
		f := readFrame(t, c)
		if f.Ctl != nil {
			return c, got, *f.Ctl
		}
		got = append(got, f)
	}
}

func publishChat(t *testing.T, addr, msg string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/receive?msg=" + url.QueryEscape(msg))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/receive %q: %s", msg, resp.Status)
	}
}

func bodies(fs []wsFrame) string {
	var b []string
	for _, f := range fs {
		b = append(b, f.Body)
	}
	return strings.Join(b, ",")
}

// TestWSResume: a /ws?since= client gets its position from the first
// control message, drops, and resumes with exactly what it missed, marked
// by the count in the control message; then live messages follow.
func TestWSResume(t *testing.T) {
	addr := startDemos(t)
	c, rec, s := resume(t, addr, "/ws", "")
	if len(rec) != 0 || s.Gone || s.Head == "" {
		t.Fatalf("fresh subscribe: %v %+v", rec, s)
	}
	publishChat(t, addr, "a")
	f := readFrame(t, c)
	if f.Body != "a" || f.Pos.String() == s.Head {
		t.Fatalf("live: %+v after head %s", f, s.Head)
	}
	c.Close()
	publishChat(t, addr, "b")
	publishChat(t, addr, "c")
	c2, rec, s2 := resume(t, addr, "/ws", f.Pos.String())
	if bodies(rec) != "b,c" || s2.Recovered != 2 || s2.Gone || s2.Head != rec[1].Pos.String() {
		t.Fatalf("resumed: %v %+v", rec, s2)
	}
	if rec[0].Pos.Offset != f.Pos.Offset+1 || rec[1].Pos.Offset != f.Pos.Offset+2 {
		t.Fatalf("positions %v %v after %v", rec[0].Pos, rec[1].Pos, f.Pos)
	}
	publishChat(t, addr, "d")
	if f := readFrame(t, c2); f.Body != "d" {
		t.Fatalf("live after resume: %+v", f)
	}
	// From the head of a client that got nothing yet: nothing to recover.
	_, rec, s3 := resume(t, addr, "/ws", s2.Head)
	if len(rec) != 1 || rec[0].Body != "d" || s3.Recovered != 1 {
		t.Fatalf("from head %s: %v %+v", s2.Head, rec, s3)
	}
	// Ahead of this node (seen on one further along): the head it reports
	// is the client's own, so that it does not take those messages again.
	h3, _ := pubsub.ParsePosition(s3.Head)
	ahead := pubsub.Position{Epoch: h3.Epoch, Offset: h3.Offset + 5}
	if _, rec, s4 := resume(t, addr, "/ws", ahead.String()); len(rec) != 0 || s4.Head != ahead.String() {
		t.Fatalf("ahead at %s: %v %+v", ahead, rec, s4)
	}
	code, body := postRaw(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/poll-message", url.Values{"since": {"12x"}})
	if code != 400 || !strings.Contains(string(body), "since") {
		t.Fatalf("poll since=12x: %d %q", code, body)
	}
	// Bad positions are refused with 1008.
	bad := dial(t, addr, "/ws?since=12x")
	if _, _, err := bad.ReadMessage(); !gws.IsCloseError(err, 1008) {
		t.Fatalf("since=12x: %v", err)
	}
}

// TestResumeGapLongerThanHistory: a client whose position is older than
// the history (200 messages by default) is told so (gone), then gets the
// live messages; on the clock, ticks from a second no longer kept alike.
func TestResumeGapLongerThanHistory(t *testing.T) {
	addr := startDemos(t)
	_, _, s := resume(t, addr, "/ws", "")
	head, _ := pubsub.ParsePosition(s.Head)
	for i := 0; i < 205; i++ {
		publishChat(t, addr, "m")
	}
	c, rec, s2 := resume(t, addr, "/ws", pubsub.Position{Epoch: head.Epoch, Offset: head.Offset + 1}.String())
	if len(rec) != 0 || !s2.Gone || s2.Recovered != 0 {
		t.Fatalf("past the history: %d recovered, %+v", len(rec), s2)
	}
	publishChat(t, addr, "live")
	if f := readFrame(t, c); f.Body != "live" {
		t.Fatalf("live after gone: %+v", f)
	}
	// An earlier process's epoch: gone too.
	if _, _, s3 := resume(t, addr, "/ws", "5-3"); !s3.Gone {
		t.Fatalf("another epoch: %+v", s3)
	}
	// The clock keeps 300 ticks: an hour ago is gone, a second ago is not.
	now := time.Now().Unix()
	if _, _, sc := resume(t, addr, "/clock", pubsub.Position{Epoch: clockEpoch, Offset: now - 3600}.String()); !sc.Gone {
		t.Fatalf("clock an hour ago: %+v", sc)
	}
}

// TestWSResumeAcrossProcesses is the restart test: two processes
// share the chat through one NATS server with JetStream; a client of the
// first one is cut off when that process is killed, messages are posted
// on the second meanwhile, and the client resumes on the second one with
// exactly what it missed. Then the first comes back and serves the same
// positions.
func TestWSResumeAcrossProcesses(t *testing.T) {
	ns := startTestNATS(t, -1, t.TempDir())
	bin := buildTornago(t)
	a, cmdA, exitedA, _ := startBuilt(t, bin, "-nats", ns.ClientURL(), "-ping", "0")
	b, _, _, _ := startBuilt(t, bin, "-nats", ns.ClientURL(), "-ping", "0")
	c, _, _ := resume(t, a, "/ws", "")
	publishChat(t, b, "one")
	f := readFrame(t, c)
	if f.Body != "one" {
		t.Fatalf("client on a got %+v", f)
	}
	cmdA.Process.Kill()
	<-exitedA
	for _, m := range []string{"two", "three", "four"} {
		publishChat(t, b, m)
	}
	// /receive answers once NATS has the message, not once b's history
	// has it: wait for b's head to reach the last, so that the resume
	// recovers all three from b's history (with none there yet, a
	// resume got them all live: failed in a CI run).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		hc, _, hs := resume(t, b, "/ws", "")
		hc.Close()
		if h, _ := pubsub.ParsePosition(hs.Head); h.Epoch == f.Pos.Epoch && h.Offset >= f.Pos.Offset+3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b's head %s never reached %d after %v", hs.Head, f.Pos.Offset+3, f.Pos)
		}
	}
	_, rec, s := resume(t, b, "/ws", f.Pos.String())
	if s.Gone || s.Recovered != 3 || len(rec) != 3 {
		t.Fatalf("resumed on b: %v %+v", rec, s)
	}
	if bodies(rec) != "two,three,four" {
		t.Fatalf("resumed on b: %v", rec)
	}
	for i, r := range rec {
		if r.Pos.Epoch != f.Pos.Epoch || r.Pos.Offset != f.Pos.Offset+1+int64(i) {
			t.Fatalf("recovered %d at %v after %v", i, r.Pos, f.Pos)
		}
	}
	// A restarted process joins the same history.
	a2, _, _, _ := startBuiltAt(t, bin, a, "-nats", ns.ClientURL(), "-ping", "0")
	ca2, rec2, _ := resume(t, a2, "/ws", f.Pos.String())
	for len(rec2) < 3 {
		rec2 = append(rec2, readFrame(t, ca2))
	}
	if bodies(rec2) != "two,three,four" || rec2[0].Pos != rec[0].Pos {
		t.Fatalf("resumed on the restarted a: %v", rec2)
	}
}

const pyResume = `
import json, sys, websocket
addr, since = sys.argv[1], sys.argv[2]
ws = websocket.create_connection("ws://%s/ws?since=%s" % (addr, since), timeout=5)
out = []
while True:
    m = ws.recv()
    if m.startswith("{"):
        out.append(json.loads(m))
        break
    pos, body = m.split("\n", 1)
    out.append([pos, body])
ws.close()
print(json.dumps(out))
`

// TestPythonResume: Debian's python3-websocket resumes with ?since= and
// reads the positioned frames and the control message.
func TestPythonResume(t *testing.T) {
	const py = "/usr/bin/python3"
	_, err := os.Stat(py)
	requireTool(t, err == nil, py)
	requireTool(t, exec.Command(py, "-c", "import websocket").Run() == nil, "python3-websocket (Debian package; `import websocket`)")
	addr := startDemos(t)
	_, _, s := resume(t, addr, "/ws", "")
	publishChat(t, addr, "p1")
	publishChat(t, addr, "p2 with\nnewline")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pyResume, addr, s.Head)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	var got []json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil || len(got) != 3 {
		t.Fatalf("python output %s: %v", out, err)
	}
	var m1, m2 [2]string
	var ctl subscribed
	json.Unmarshal(got[0], &m1)
	json.Unmarshal(got[1], &m2)
	json.Unmarshal(got[2], &ctl)
	if m1[1] != "p1" || m2[1] != "p2 with\nnewline" || ctl.Recovered != 2 || ctl.Head != m2[0] {
		t.Fatalf("python read %s", out)
	}
}

// TestClockFillsSkippedSeconds: seconds the loop was too busy to tick are
// published late, so the clock's history stays contiguous for resumes.
func TestClockFillsSkippedSeconds(t *testing.T) {
	l := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond})
	app := loop.NewApplication(loop.AppOptions{})
	ck := newClock(l, nil, "test", slog.Default())
	serveLoop(t, l, app)
	type out struct {
		msgs []pubsub.Message
		err  error
	}
	done := make(chan out, 1)
	l.AddCallback(func() {
		// A fresh hub: the clock's own may hold a real tick already.
		ck.hub = loop.NewHub(l, loop.Text, nil)
		ck.hub.KeepHistory(clockTopic, pubsub.HistoryOptions{MaxMessages: clockHistory}, nil)
		now := time.Now().Round(time.Second).Unix()
		ck.lastSec = now - 4 // as if three ticks were skipped
		ck.tick()
		msgs, _, err := ck.hub.History(clockTopic, pubsub.Position{Epoch: clockEpoch, Offset: now - 4}, nil)
		done <- out{msgs, err}
	})
	o := <-done
	if o.err != nil || len(o.msgs) < 4 {
		t.Fatalf("history after the gap: %d messages, %v", len(o.msgs), o.err)
	}
	for i, m := range o.msgs[:4] {
		var tick struct {
			Seq  int64
			Late bool
		}
		json.Unmarshal(m.Data, &tick)
		if m.Pos.Offset != o.msgs[0].Pos.Offset+int64(i) || tick.Seq != m.Pos.Offset || tick.Late != (i < 3) {
			t.Fatalf("tick %d: %v %s", i, m.Pos, m.Data)
		}
	}
}
