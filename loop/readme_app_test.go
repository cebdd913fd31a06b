package loop_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// readmeHTMLBlock returns the ```html block after heading that is a whole
// page (starts with <!doctype html>).
func readmeHTMLBlock(readme []byte, heading string) ([]byte, error) {
	_, after, ok := bytes.Cut(readme, []byte("\n"+heading))
	if !ok {
		return nil, errors.New("no \"" + heading + "\" heading")
	}
	_, after, ok = bytes.Cut(after, []byte("\n```html\n<!doctype html>\n"))
	if !ok {
		return nil, errors.New("no ```html block starting with <!doctype html> after the " + heading + " heading")
	}
	page, _, ok := bytes.Cut(after, []byte("\n```\n"))
	if !ok {
		return nil, errors.New("the " + heading + " html block is not closed")
	}
	return append([]byte("<!doctype html>\n"), append(page, '\n')...), nil
}

// TestReadmeApp builds the "Building an app" program and page as the
// README says (its commands in a fresh module, main.go and index.html),
// starts it with the secret in its environment and checks what the section
// promises: /login gives tokens, two protocol clients join a room and
// talk, the rules hold (a forged from, another user's topic, a client
// publication on a user topic, a bad token), the dm RPC reaches a personal
// topic, a subscription with since resumes, the page and /tornago.js are
// served; with Chromium, the page signs in, joins, sends and receives.
func TestReadmeApp(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	page, err := readmeHTMLBlock(readme, "## Building an app")
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	bin := readmeBuild(t, "## Building an app", "## Building an app",
		[]string{"go get github.com/tornago/tornago/loop/realtime/..."},
		map[string][]byte{"index.html": page})
	addr := startReadmeApp(t, bin)
	base := "http://" + addr

	// The page and the client module are served.
	body, status := httpDo(t, "GET", base+"/", "")
	if status != 200 || !strings.Contains(body, `import {connect} from "/tornago.js"`) {
		t.Fatalf("GET /: %d\n%s", status, body)
	}
	if body, status := httpDo(t, "GET", base+"/tornago.js", ""); status != 200 || !strings.Contains(body, "export function connect") {
		t.Fatalf("GET /tornago.js: %d, %d bytes", status, len(body))
	}
	if body, status := httpDo(t, "POST", base+"/login", `{"name":"Not Valid"}`); status != 400 {
		t.Fatalf("POST /login with a bad name: %d %s", status, body)
	}

	ann := dialApp(t, addr, login(t, base, "ann"))
	bob := dialApp(t, addr, login(t, base, "bob"))
	bob.ok("subscribe", `{"topic":"chat:lobby"}`)
	bob.ok("subscribe", `{"topic":"user:#bob"}`)
	ann.ok("subscribe", `{"topic":"chat:lobby"}`)
	first := ann.ok("publish", `{"topic":"chat:lobby","data":{"from":"ann","text":"hi bob"}}`)
	ann.ok("publish", `{"topic":"chat:lobby","data":{"from":"ann","text":"still there?"}}`)
	if p := bob.push(); p.Topic != "chat:lobby" || !strings.Contains(string(p.Pub.Data), "hi bob") {
		t.Fatalf("bob got %+v, want ann's message on chat:lobby", p)
	}
	bob.push() // the second

	// The rules.
	ann.fails("publish", `{"topic":"chat:lobby","data":{"from":"bob","text":"forged"}}`, 103)
	ann.fails("subscribe", `{"topic":"user:#bob"}`, 103)
	ann.fails("publish", `{"topic":"user:#bob","data":{"from":"ann","text":"x"}}`, 108)
	ann.fails("subscribe", `{"topic":"news"}`, 102)
	ann.fails("rpc", `{"method":"dm","data":{"to":"Bob!","text":"x"}}`, 107)

	// The RPC: a private message on bob's own topic.
	if r := ann.ok("rpc", `{"method":"dm","data":{"to":"bob","text":"psst"}}`); !strings.Contains(string(r), "sent") {
		t.Fatalf("dm: %s", r)
	}
	if p := bob.push(); p.Topic != "user:#bob" || !strings.Contains(string(p.Pub.Data), `"from":"ann"`) {
		t.Fatalf("bob got %+v, want ann's dm on user:#bob", p)
	}

	// Resume: a new connection of bob's, from the position of ann's first
	// message, gets the second (and only it) before its reply.
	var pub struct{ Pos string }
	if err := json.Unmarshal(first, &pub); err != nil || pub.Pos == "" {
		t.Fatalf("publish result %s: no position (%v)", first, err)
	}
	bob2 := dialApp(t, addr, login(t, base, "bob"))
	res := bob2.ok("subscribe", `{"topic":"chat:lobby","since":"`+pub.Pos+`"}`)
	if len(bob2.pushes) != 1 || !strings.Contains(string(bob2.pushes[0].Pub.Data), "still there?") || !strings.Contains(string(res), `"recovered":1`) {
		t.Fatalf("resume from %s: result %s, pushes %+v", pub.Pos, res, bob2.pushes)
	}

	// A bad token: 3500, no reconnect.
	bad := dialApp(t, addr, "not.a.token")
	if code := bad.closeCode(); code != 3500 {
		t.Fatalf("bad token: close %d, want 3500", code)
	}

	t.Run("Chromium", func(t *testing.T) {
		ann.t = t // its failures are the subtest's
		readmeAppBrowser(t, base, ann)
	})
}

// startReadmeApp starts the built program on a free port with a secret in
// its environment and returns its address.
func startReadmeApp(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "CHAT_SECRET=readme-test-secret-of-at-least-32-bytes")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logged []string
	t.Cleanup(func() { // runs last: after the program stopped
		mu.Lock()
		defer mu.Unlock()
		if t.Failed() {
			t.Logf("the app's log:\n%s", strings.Join(logged, "\n"))
		}
	})
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`listening addr=(\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
			mu.Lock()
			logged = append(logged, sc.Text())
			mu.Unlock()
		}
	}()
	select {
	case a := <-found:
		return a
	case <-time.After(15 * time.Second):
		t.Fatal("the app did not log its address within 15 s")
		return ""
	}
}

func httpDo(t *testing.T, method, url, body string) (string, int) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

func login(t *testing.T, base, name string) string {
	t.Helper()
	body, status := httpDo(t, "POST", base+"/login", `{"name":"`+name+`"}`)
	var r struct{ Token string }
	if status != 200 || json.Unmarshal([]byte(body), &r) != nil || r.Token == "" {
		t.Fatalf("POST /login %s: %d %s", name, status, body)
	}
	return r.Token
}

// appConn is a protocol client on gorilla/websocket: commands one at a
// time, pushes kept as they come.
type appConn struct {
	t      *testing.T
	c      *websocket.Conn
	id     int
	pushes []appPush
}

type appPush struct {
	Topic string
	Pub   struct {
		Pos  string
		Data json.RawMessage
	}
}

type appFrame struct {
	ID     int
	Result json.RawMessage
	Error  *struct {
		Code    int
		Message string
	}
	Push *appPush
}

func dialApp(t *testing.T, addr, token string) *appConn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/connection/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a := &appConn{t: t, c: c}
	a.send("connect", `{"token":"`+token+`","name":"readme-test"}`)
	return a
}

func (a *appConn) send(cmd, body string) {
	a.t.Helper()
	a.id++
	msg := `{"id":` + itoa(a.id) + `,"` + cmd + `":` + body + `}`
	if err := a.c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		a.t.Fatalf("send %s: %v", msg, err)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// reply sends a command and reads until its reply, keeping pushes.
func (a *appConn) reply(cmd, body string) appFrame {
	a.t.Helper()
	if cmd != "" {
		a.send(cmd, body)
	}
	for {
		f := a.frame()
		if f.Push != nil {
			a.pushes = append(a.pushes, *f.Push)
			continue
		}
		if f.ID == a.id {
			return f
		}
	}
}

func (a *appConn) frame() appFrame {
	a.t.Helper()
	a.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := a.c.ReadMessage()
	if err != nil {
		a.t.Fatalf("read: %v", err)
	}
	var f appFrame
	if err := json.Unmarshal(b, &f); err != nil {
		a.t.Fatalf("frame %s: %v", b, err)
	}
	return f
}

func (a *appConn) ok(cmd, body string) json.RawMessage {
	a.t.Helper()
	if a.id == 1 && cmd != "connect" { // the connect's reply first
		if f := a.reply("", ""); f.Error != nil {
			a.t.Fatalf("connect: %+v", *f.Error)
		}
	}
	f := a.reply(cmd, body)
	if f.Error != nil {
		a.t.Fatalf("%s %s: error %d %s", cmd, body, f.Error.Code, f.Error.Message)
	}
	return f.Result
}

func (a *appConn) fails(cmd, body string, code int) {
	a.t.Helper()
	f := a.reply(cmd, body)
	if f.Error == nil || f.Error.Code != code {
		a.t.Fatalf("%s %s: got %+v %s, want error %d", cmd, body, f.Error, f.Result, code)
	}
}

// push returns the next push (kept or read).
func (a *appConn) push() appPush {
	a.t.Helper()
	for len(a.pushes) == 0 {
		if f := a.frame(); f.Push != nil {
			a.pushes = append(a.pushes, *f.Push)
		}
	}
	p := a.pushes[0]
	a.pushes = a.pushes[1:]
	return p
}

// closeCode reads until the connection closes and returns its close code.
func (a *appConn) closeCode() int {
	a.t.Helper()
	for {
		a.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := a.c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			a.t.Fatalf("read: %v, want a close frame", err)
		}
	}
}

// TestReadmeProtocolReference: the README's summary of the client protocol
// ("### The protocol reference") agrees with proto/clientproto/PROTOCOL.md:
// the same commands, each field and result it names in PROTOCOL.md's row of
// that command, and every error and disconnect code with its name.
func TestReadmeProtocolReference(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	proto, err := os.ReadFile("../proto/clientproto/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "\n### The protocol reference\n")
	if !ok {
		t.Fatal(`README.md: no "### The protocol reference" heading`)
	}
	if i := strings.Index(sec, "\n#"); i >= 0 {
		sec = sec[:i]
	}
	if !strings.Contains(sec, "](proto/clientproto/PROTOCOL.md)") {
		t.Error("README.md: the protocol reference does not link to proto/clientproto/PROTOCOL.md")
	}

	// Codes: "`103` permission denied" in the README, "| 103 | permission denied |" there.
	theirs := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\| (\d{3,4}) \| ([^|]+?) \|`).FindAllStringSubmatch(string(proto), -1) {
		theirs[m[1]] = m[2]
	}
	ours := map[string]string{}
	for _, m := range regexp.MustCompile("`(\\d{3,4})` ([a-z]+(?: [a-z]+)*)").FindAllStringSubmatch(strings.Join(strings.Fields(sec), " "), -1) {
		ours[m[1]] = m[2]
	}
	if len(theirs) < 20 {
		t.Fatalf("PROTOCOL.md: found %d codes: %v", len(theirs), theirs)
	}
	for code, name := range theirs {
		if ours[code] != name {
			t.Errorf("code %s: PROTOCOL.md names it %q, the README %q", code, name, ours[code])
		}
	}
	for code := range ours {
		if _, ok := theirs[code]; !ok {
			t.Errorf("code %s: in the README, not in PROTOCOL.md", code)
		}
	}

	// Commands: the first cells of the two commands tables.
	rows := func(doc string) map[string]string {
		m := map[string]string{}
		for _, r := range regexp.MustCompile("(?m)^\\| `([a-z_]+)`[^|]*\\|(.*)$").FindAllStringSubmatch(doc, -1) {
			m[r[1]] = r[2]
		}
		return m
	}
	_, protoCmds, _ := strings.Cut(string(proto), "\n## Commands\n")
	protoCmds, _, _ = strings.Cut(protoCmds, "\n## ")
	want, got := rows(protoCmds), rows(sec)
	if len(want) != 10 || len(got) != len(want) {
		t.Fatalf("commands: PROTOCOL.md has %d, the README %d", len(want), len(got))
	}
	word := regexp.MustCompile("`([a-z_]+)`")
	for cmd, cells := range got {
		if _, ok := want[cmd]; !ok {
			t.Errorf("command %s: in the README, not in PROTOCOL.md", cmd)
			continue
		}
		for _, w := range word.FindAllStringSubmatch(cells, -1) {
			if !strings.Contains(want[cmd], "`"+w[1]+"`") {
				t.Errorf("command %s: the README names `%s`, PROTOCOL.md's row does not", cmd, w[1])
			}
		}
	}
}
