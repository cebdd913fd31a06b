package realtime_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// sseClient reads a /connection/sse stream.
type sseClient struct {
	t    *testing.T
	resp *http.Response
	rd   *bufio.Reader
}

func openSSE(t *testing.T, addr, connect string) *sseClient {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/connection/sse?connect=" + url.QueryEscape(connect))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("sse: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	return &sseClient{t: t, resp: resp, rd: bufio.NewReader(resp.Body)}
}

// next returns the next event's data as a frame.
func (s *sseClient) next() frame {
	s.t.Helper()
	var data []string
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			s.t.Fatalf("sse read: %v (so far %q)", err, data)
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "" && len(data) > 0:
			var f frame
			if err := json.Unmarshal([]byte(strings.Join(data, "\n")), &f); err != nil {
				s.t.Fatalf("event %q: %v", data, err)
			}
			return f
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):])
		}
	}
}

func post(t *testing.T, u, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSSE(t *testing.T) {
	s, addr := start(t, realtime.Options{}, nil)
	sc := openSSE(t, addr, `{"id":1,"connect":{"name":"test"}}`)
	f := sc.next()
	var r cp.ConnectResult
	if f.ID != 1 || json.Unmarshal(f.Result, &r) != nil || r.Session == "" {
		t.Fatalf("connect %+v", f)
	}
	cmdURL := "http://" + addr + "/connection/command?session=" + r.Session
	if code, body := post(t, cmdURL, `{"id":2,"subscribe":{"topic":"chat:a"}}`+"\n"+`{"id":3,"ping":{}}`); code != 202 {
		t.Fatalf("command POST: %d %s", code, body)
	}
	if f := sc.next(); f.ID != 2 || f.Error != nil {
		t.Fatalf("subscribe reply %+v", f)
	}
	if f := sc.next(); f.ID != 3 {
		t.Fatalf("ping reply %+v", f)
	}
	pub := dial(t, addr)
	pub.connect("")
	pub.ok(pub.cmd("publish", map[string]any{"topic": "chat:a", "data": "multi\nline"}), nil)
	if f := sc.next(); f.Push == nil || string(f.Push.Pub.Data) != `"multi\nline"` {
		t.Fatalf("push %+v", f)
	}
	if code, body := post(t, cmdURL, `{"id":4,`); code != 400 {
		t.Fatalf("malformed POST: %d %s", code, body)
	}
	if code, body := post(t, cmdURL, `{"id":4,"ping":{"x":"`+strings.Repeat("x", 70<<10)+`"}}`); code != 413 {
		t.Fatalf("oversized POST: %d %s", code, body)
	}
	if m := s.Metrics(); m.Sessions[realtime.TransportSSE] != 1 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestForgedSession(t *testing.T) {
	_, addr := start(t, realtime.Options{}, nil)
	for _, u := range []string{"/connection/command?session=AAAA", "/connection/command"} {
		code, body := post(t, "http://"+addr+u, `{"id":1,"ping":{}}`)
		var e struct{ Error cp.Error }
		if code != 404 || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != cp.ErrSessionExpired {
			t.Fatalf("%s: %d %s", u, code, body)
		}
	}
	resp, err := http.Get("http://" + addr + "/connection/poll?session=AAAA&next=0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("poll with a forged session: %d", resp.StatusCode)
	}
}

type pollAnswer struct {
	Frames []json.RawMessage `json:"frames"`
	Next   uint64            `json:"next"`
}

func poll(t *testing.T, u string, post string) (pollAnswer, []frame) {
	t.Helper()
	var resp *http.Response
	var err error
	if post != "" {
		resp, err = http.Post(u, "application/json", strings.NewReader(post))
	} else {
		resp, err = http.Get(u)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a pollAnswer
	if resp.StatusCode != 200 || json.Unmarshal(b, &a) != nil {
		t.Fatalf("poll %s: %d %s", u, resp.StatusCode, b)
	}
	var fs []frame
	for _, raw := range a.Frames {
		var f frame
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	return a, fs
}

func TestLongPolling(t *testing.T) {
	_, addr := start(t, realtime.Options{Limits: realtime.Limits{PollWait: 300 * time.Millisecond, SessionIdle: 500 * time.Millisecond}}, nil)
	base := "http://" + addr + "/connection/poll"
	a, fs := poll(t, base, `{"id":1,"connect":{}}`)
	var r cp.ConnectResult
	if a.Next != 1 || len(fs) != 1 || json.Unmarshal(fs[0].Result, &r) != nil || r.Session == "" {
		t.Fatalf("connect: %+v %+v", a, fs)
	}
	sess := url.QueryEscape(r.Session)
	// A repeated poll (the answer was lost) gets the frame again.
	if a, fs = poll(t, base+"?session="+sess+"&next=0", ""); a.Next != 1 || len(fs) != 1 || fs[0].ID != 1 {
		t.Fatalf("repeat: %+v", a)
	}
	if code, body := post(t, "http://"+addr+"/connection/command?session="+sess, `{"id":2,"subscribe":{"topic":"chat:p"}}`); code != 202 {
		t.Fatalf("POST %d %s", code, body)
	}
	if a, fs = poll(t, base+"?session="+sess+"&next=1", ""); a.Next != 2 || len(fs) != 1 || fs[0].ID != 2 || fs[0].Error != nil {
		t.Fatalf("subscribe reply: %+v %+v", a, fs)
	}
	// A parked poll gets the publication when it comes.
	got := make(chan []frame, 1)
	go func() {
		_, fs := poll(t, base+"?session="+sess+"&next=2", "")
		got <- fs
	}()
	time.Sleep(50 * time.Millisecond)
	pub := dial(t, addr)
	pub.connect("")
	pub.ok(pub.cmd("publish", map[string]any{"topic": "chat:p", "data": 7}), nil)
	if fs := <-got; len(fs) != 1 || fs[0].Push == nil || string(fs[0].Push.Pub.Data) != "7" {
		t.Fatalf("parked poll: %+v", fs)
	}
	// Nothing new: the poll answers empty after PollWait.
	if a, fs = poll(t, base+"?session="+sess+"&next=3", ""); a.Next != 3 || len(fs) != 0 {
		t.Fatalf("empty poll: %+v", a)
	}
	// No poll for SessionIdle: the session expires (404, code 110).
	time.Sleep(700 * time.Millisecond)
	resp, err := http.Get(base + "?session=" + sess + "&next=3")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("after expiry: %d", resp.StatusCode)
	}
}

// TestSlowSSESession: a stream whose client does not read is closed as a
// slow consumer's; a canary on the same topic gets every message.
func TestSlowSSESession(t *testing.T) {
	s, addr := start(t, realtime.Options{EventStream: loop.EventStreamOptions{MaxUnsentPerConn: 64 << 10}}, nil)
	canary := dial(t, addr)
	canary.connect("")
	canary.ok(canary.cmd("subscribe", map[string]any{"topic": "chat:slow"}), nil)
	counted := make(chan int, 1)
	go func() {
		n := 0
		for {
			canary.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, b, err := canary.c.ReadMessage()
			if err != nil {
				counted <- -1
				return
			}
			n++
			if strings.Contains(string(b), `"end"`) {
				counted <- n
				return
			}
		}
	}()
	// The slow client: a raw socket that never reads after the head.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "GET /connection/sse?connect=%s HTTP/1.1\r\nHost: x\r\n\r\n", url.QueryEscape(`{"id":1,"connect":{}}`))
	time.Sleep(100 * time.Millisecond)
	// Its subscribe comes through the command POST; the session id is in
	// the stream, which it does not read: read just that much.
	buf := make([]byte, 4096)
	n, _ := nc.Read(buf)
	i := strings.Index(string(buf[:n]), `"session":"`)
	if i < 0 {
		t.Fatalf("no session in %q", buf[:n])
	}
	sess := string(buf[i+len(`"session":"`):])
	sess = sess[:strings.IndexByte(sess, '"')]
	if code, _ := post(t, "http://"+addr+"/connection/command?session="+sess, `{"id":2,"subscribe":{"topic":"chat:slow"}}`); code != 202 {
		t.Fatal(code)
	}
	time.Sleep(50 * time.Millisecond)
	big := json.RawMessage(`"` + strings.Repeat("x", 32<<10) + `"`)
	sent := 0
	for ; sent < 2000; sent++ {
		done := make(chan struct{})
		s.PublishAsync("chat:slow", big, func(_ pubsub.Position, _ error) { close(done) })
		<-done
		if s.Metrics().Sessions[realtime.TransportSSE] == 0 {
			break
		}
	}
	if s.Metrics().Sessions[realtime.TransportSSE] != 0 {
		t.Fatalf("the slow SSE session is still open after %d messages", sent)
	}
	done := make(chan struct{})
	s.PublishAsync("chat:slow", json.RawMessage(`"end"`), func(_ pubsub.Position, _ error) { close(done) })
	<-done
	if n := <-counted; n != sent+2 {
		t.Fatalf("canary got %d messages, want %d", n, sent+2)
	}
}

// TestPollSessionBinding: a command POST with other credentials than the
// session's is refused (403); a server-side disconnect reaches the next
// poll, then the session is gone.
func TestPollSessionBinding(t *testing.T) {
	s, addr := start(t, realtime.Options{Authenticate: func(_ context.Context, c realtime.Credentials) (realtime.Identity, error) {
		return realtime.Identity{User: strings.TrimPrefix(c.Header.Get("Authorization"), "Bearer ")}, nil
	}}, nil)
	base := "http://" + addr + "/connection/poll"
	req, _ := http.NewRequest("POST", base, strings.NewReader(`{"id":1,"connect":{}}`))
	req.Header.Set("Authorization", "Bearer alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var a pollAnswer
	json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	var f frame
	var r cp.ConnectResult
	if len(a.Frames) != 1 || json.Unmarshal(a.Frames[0], &f) != nil || json.Unmarshal(f.Result, &r) != nil || r.Session == "" {
		t.Fatalf("connect %+v", a)
	}
	cmdURL := "http://" + addr + "/connection/command?session=" + url.QueryEscape(r.Session)
	req, _ = http.NewRequest("POST", cmdURL, strings.NewReader(`{"id":2,"ping":{}}`))
	req.Header.Set("Authorization", "Bearer mallory")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("POST with another identity: %d", resp.StatusCode)
	}
	s.DisconnectUser("alice", 0, "bye")
	time.Sleep(50 * time.Millisecond)
	_, fs := poll(t, base+"?session="+url.QueryEscape(r.Session)+"&next=1", "")
	if len(fs) != 1 || fs[0].Disconnect == nil || fs[0].Disconnect.Code != cp.DisconnectForced || fs[0].Disconnect.Reconnect {
		t.Fatalf("after DisconnectUser: %+v", fs)
	}
	resp, err = http.Get(base + "?session=" + url.QueryEscape(r.Session) + "&next=2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("after the disconnect: %d", resp.StatusCode)
	}
}

// TestSessionOnAnotherLoop: polls and command POSTs that reach another
// loop of the process than the session's (the kernel spreads a client's
// connections over SO_REUSEPORT loops) are served by the session's loop.
func TestSessionOnAnotherLoop(t *testing.T) {
	_, addrA := start(t, realtime.Options{Limits: realtime.Limits{PollWait: 2 * time.Second}}, nil)
	_, addrB := start(t, realtime.Options{}, nil)
	a, fs := poll(t, "http://"+addrA+"/connection/poll", `{"id":1,"connect":{}}`)
	var r cp.ConnectResult
	if len(fs) != 1 || json.Unmarshal(fs[0].Result, &r) != nil || r.Session == "" {
		t.Fatalf("connect %+v", a)
	}
	sess := url.QueryEscape(r.Session)
	if code, body := post(t, "http://"+addrB+"/connection/command?session="+sess, `{"id":2,"subscribe":{"topic":"chat:x"}}`+"\n"+`{"id":3,"ping":{}}`); code != 202 {
		t.Fatalf("POST on the other loop: %d %s", code, body)
	}
	a, fs = poll(t, "http://"+addrB+"/connection/poll?session="+sess+"&next=1", "")
	if len(fs) == 0 || fs[0].ID != 2 || fs[0].Error != nil {
		t.Fatalf("poll on the other loop: %+v %+v", a, fs)
	}
	// The ping's reply may come in a later answer than the subscribe's:
	// read up to it, so that the parked poll below waits for the push.
	for fs[len(fs)-1].ID != 3 {
		a, fs = poll(t, "http://"+addrB+"/connection/poll?session="+sess+"&next="+fmt.Sprint(a.Next), "")
		if len(fs) == 0 || fs[0].Push != nil {
			t.Fatalf("the ping's reply: %+v %+v", a, fs)
		}
	}
	// A poll parked on B gets what A's session receives.
	got := make(chan []frame, 1)
	go func() {
		_, fs := poll(t, "http://"+addrB+"/connection/poll?session="+sess+"&next="+fmt.Sprint(a.Next), "")
		got <- fs
	}()
	time.Sleep(100 * time.Millisecond)
	pub := dial(t, addrA)
	pub.connect("")
	pub.ok(pub.cmd("publish", map[string]any{"topic": "chat:x", "data": "hop"}), nil)
	if fs := <-got; len(fs) != 1 || fs[0].Push == nil || string(fs[0].Push.Pub.Data) != `"hop"` {
		t.Fatalf("parked poll on the other loop: %+v", fs)
	}
}

// TestShutdown: Shutdown ends every connection with 3000 at once: a
// parked poll is answered (it would hold Loop.Stop up to PollWait), a
// WebSocket gets the push and the close code.
func TestShutdown(t *testing.T) {
	s, addr := start(t, realtime.Options{}, nil)
	ws := dial(t, addr)
	ws.connect("")
	_, fs := poll(t, "http://"+addr+"/connection/poll", `{"id":1,"connect":{}}`)
	var r cp.ConnectResult
	json.Unmarshal(fs[0].Result, &r)
	got := make(chan []frame, 1)
	go func() {
		_, fs := poll(t, "http://"+addr+"/connection/poll?session="+url.QueryEscape(r.Session)+"&next=1", "")
		got <- fs
	}()
	time.Sleep(100 * time.Millisecond)
	s.Loop().AddCallback(s.Shutdown)
	select {
	case fs := <-got:
		if len(fs) != 1 || fs[0].Disconnect == nil || fs[0].Disconnect.Code != cp.DisconnectShutdown || !fs[0].Disconnect.Reconnect {
			t.Fatalf("parked poll: %+v", fs)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the parked poll was not answered")
	}
	ws.wantClose(cp.DisconnectShutdown)
}

// TestPollSessionBound: long-polling sessions, which hold no connection,
// are bounded per loop; an anonymous user has no personal topic.
func TestPollSessionBound(t *testing.T) {
	_, addr := start(t, realtime.Options{Limits: realtime.Limits{MaxPollSessions: 2, PollWait: 100 * time.Millisecond}}, nil)
	base := "http://" + addr + "/connection/poll"
	var sessions []string
	for range 2 {
		_, fs := poll(t, base, `{"id":1,"connect":{}}`)
		var r cp.ConnectResult
		json.Unmarshal(fs[0].Result, &r)
		sessions = append(sessions, r.Session)
	}
	code, body := post(t, base, `{"id":1,"connect":{}}`)
	if code != 503 || !strings.Contains(body, `"code":100`) {
		t.Fatalf("third session: %d %s", code, body)
	}
	post(t, "http://"+addr+"/connection/command?session="+url.QueryEscape(sessions[0]), `{"id":2,"subscribe":{"topic":"user:#"}}`)
	_, fs := poll(t, base+"?session="+url.QueryEscape(sessions[0])+"&next=1", "")
	if len(fs) != 1 || fs[0].Error == nil || fs[0].Error.Code != cp.ErrPermissionDenied {
		t.Fatalf("anonymous personal topic: %+v", fs)
	}
}

// TestSlowPollSession: a long-polling session that does not poll while
// publications pile up ends with 3001 at its unsent bound; a canary on
// the same topic gets everything.
func TestSlowPollSession(t *testing.T) {
	s, addr := start(t, realtime.Options{Limits: realtime.Limits{MaxUnsent: 4 << 10}}, nil)
	canary := dial(t, addr)
	canary.connect("")
	canary.ok(canary.cmd("subscribe", map[string]any{"topic": "chat:pile"}), nil)
	base := "http://" + addr + "/connection/poll"
	_, fs := poll(t, base, `{"id":1,"connect":{}}`)
	var r cp.ConnectResult
	json.Unmarshal(fs[0].Result, &r)
	sess := url.QueryEscape(r.Session)
	post(t, "http://"+addr+"/connection/command?session="+sess, `{"id":2,"subscribe":{"topic":"chat:pile"}}`)
	for i := range 10 {
		done := make(chan struct{})
		s.PublishAsync("chat:pile", json.RawMessage(`"`+strings.Repeat("x", 1000)+fmt.Sprint(i)+`"`), func(pubsub.Position, error) { close(done) })
		<-done
	}
	for range 10 {
		if f := canary.read(); f.Push == nil {
			t.Fatalf("canary: %+v", f)
		}
	}
	_, fs = poll(t, base+"?session="+sess+"&next=1", "")
	last := fs[len(fs)-1]
	if last.Disconnect == nil || last.Disconnect.Code != cp.DisconnectSlow || !last.Disconnect.Reconnect {
		t.Fatalf("slow session's last frame: %+v (of %d)", last, len(fs))
	}
}
