package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/proto/clientproto"
)

// hubBackend is an APIBackend over a plain loop.Hub (history topics
// publish at the next position), recording disconnects and subscribes:
// the API's own behaviour, apart from the protocol server's.
type hubBackend struct {
	l   *loop.Loop
	hub *loop.Hub

	mu   sync.Mutex
	ops  []string
	seen chan string
}

func (b *hubBackend) PublishAsync(topic string, data json.RawMessage, done func(pubsub.Position, error)) {
	if strings.HasPrefix(topic, "denied:") {
		done(pubsub.Position{}, &clientproto.Error{Code: clientproto.ErrPermissionDenied, Message: "permission denied"})
		return
	}
	err := b.hub.PublishAsync(topic, data, func(err error) {
		pos, _ := b.hub.Head(topic)
		done(pos, err)
	})
	if err != nil {
		done(pubsub.Position{}, err)
	}
}

func (b *hubBackend) record(op string) {
	b.mu.Lock()
	b.ops = append(b.ops, op)
	b.mu.Unlock()
	if b.seen != nil {
		b.seen <- op
	}
}

func (b *hubBackend) DisconnectUser(user string, code clientproto.DisconnectCode, reason string) {
	b.record("disconnect " + user + " " + strconv.Itoa(int(code)) + " " + reason)
}

func (b *hubBackend) SubscribeUser(user, topic string) { b.record("subscribe " + user + " " + topic) }

func (b *hubBackend) History(topic string, since pubsub.Position, done func([]pubsub.Message, pubsub.Position, error)) {
	done(b.hub.History(topic, since, nil))
}

// sub is a WebSocket route subscribing to the topic in its path.
type sub struct {
	loop.WebSocketBase
	hub *loop.Hub
}

func (s sub) Open(w *loop.WebSocket) { s.hub.Subscribe(w.Request().PathArgs[0], w) }

// apiServer starts a loop serving api with a hubBackend and /sub/<topic>;
// history topics are "h" and "h2".
func apiServer(t *testing.T, o APIOptions) (*hubBackend, *API, string) {
	t.Helper()
	api, err := NewAPI(o)
	if err != nil {
		t.Fatal(err)
	}
	l := loop.New(loop.Options{})
	b := &hubBackend{l: l, hub: loop.NewHub(l, loop.Text, nil)}
	for _, topic := range []string{"h", "h2"} {
		b.hub.KeepHistory(topic, pubsub.HistoryOptions{MaxMessages: 5}, func(err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	app := loop.NewApplication(loop.AppOptions{})
	api.Routes(app, b)
	app.HandleWebSocket(`/sub/(.+)`, func(*loop.Request) loop.WebSocketHandler { return sub{hub: b.hub} }, loop.WSOptions{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		t.Fatal(err)
	}
	go l.Start()
	<-l.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Stop(ctx)
		api.Close()
	})
	return b, api, "http://" + l.Addr().String()
}

type apiReply struct {
	status int
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// call is curl -X POST -H "X-API-Key: key" -d body base/api/method.
func call(t *testing.T, base, method, key, body string) apiReply {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/api/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := apiReply{status: resp.StatusCode}
	if resp.StatusCode != 404 || len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, body, resp.StatusCode, raw, err)
		}
	}
	return r
}

func TestAPIOffWithoutKey(t *testing.T) {
	_, _, base := apiServer(t, APIOptions{})
	for _, key := range []string{"", "anything"} {
		if r := call(t, base, "publish", key, `{"topic":"a","data":1}`); r.status != 404 {
			t.Errorf("no key configured, X-API-Key %q: status %d, want 404", key, r.status)
		}
	}
}

func TestAPIKey(t *testing.T) {
	_, _, base := apiServer(t, APIOptions{Key: "s3cret"})
	for _, key := range []string{"", "wrong", "s3cret2", "s3cre"} {
		r := call(t, base, "publish", key, `{"topic":"a","data":1}`)
		if r.status != 401 || r.Error == nil || r.Error.Code != 101 {
			t.Errorf("X-API-Key %q: %d %+v, want 401 with code 101", key, r.status, r.Error)
		}
	}
	if r := call(t, base, "publish", "s3cret", `{"topic":"a","data":1}`); r.status != 200 {
		t.Errorf("right key: status %d %+v", r.status, r.Error)
	}
	resp, err := http.Get(base + "/api/publish")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow %q, want 405 Allow POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func dialSub(t *testing.T, base, topic string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/sub/"+topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

func readText(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

func TestAPIPublish(t *testing.T) {
	_, _, base := apiServer(t, APIOptions{Key: "k"})
	ws := dialSub(t, base, "news")
	r := call(t, base, "publish", "k", `{"topic":"news","data":{"text":"hi"}}`)
	if r.status != 200 || string(r.Result) != `{}` {
		t.Fatalf("publish: %d %s %+v", r.status, r.Result, r.Error)
	}
	if got := readText(t, ws); got != `{"text":"hi"}` {
		t.Errorf("subscriber got %q", got)
	}
	// A history topic reports the position.
	r = call(t, base, "publish", "k", `{"topic":"h","data":"one"}`)
	var res struct{ Pos string }
	json.Unmarshal(r.Result, &res)
	if p, err := pubsub.ParsePosition(res.Pos); r.status != 200 || err != nil || p.Offset != 1 {
		t.Errorf("publish on a history topic: %d %s, want pos E-1", r.status, r.Result)
	}
	// The backend's refusal keeps its code.
	r = call(t, base, "publish", "k", `{"topic":"denied:x","data":1}`)
	if r.status != 403 || r.Error == nil || r.Error.Code != 103 {
		t.Errorf("refused publish: %d %+v, want 403 code 103", r.status, r.Error)
	}
}

func TestAPIBadRequests(t *testing.T) {
	_, _, base := apiServer(t, APIOptions{Key: "k", MaxBodyBytes: 200, MaxTopics: 2})
	for _, c := range []struct {
		method, body string
		status, code int
		says         string
	}{
		{"publish", ``, 400, 107, "JSON object"},
		{"publish", `{"topic":"a","data":`, 400, 107, "body"},
		{"publish", `{"topic":"a","data":1} {}`, 400, 107, "after"},
		{"publish", `{"topic":"a","dat":1}`, 400, 107, "unknown field"},
		{"publish", `{"topic":"a"}`, 400, 107, "data is required"},
		{"publish", `{"data":1}`, 400, 107, "topic is required"},
		{"publish", `{"topic":"a b","data":1}`, 400, 107, "printable"},
		{"publish", `[1]`, 400, 107, "body"},
		{"publish", `{"topic":"a","data":"` + strings.Repeat("x", 200) + `"}`, 413, 115, "over the limit"},
		{"broadcast", `{"topics":[],"data":1}`, 400, 107, "topics is required"},
		{"broadcast", `{"topics":["a","b","c"],"data":1}`, 400, 107, "over the limit of 2"},
		{"history", `{"topic":"h","since":"x"}`, 400, 107, "EPOCH-OFFSET"},
		{"history", `{"topic":"h","limit":-1}`, 400, 107, "limit"},
		{"history", `{"topic":"plain"}`, 400, 108, "no history"},
		{"disconnect", `{}`, 400, 107, "user is required"},
		{"disconnect", `{"user":"42","code":1000}`, 400, 107, "3000-3999"},
		{"disconnect", `{"user":"42","reason":"` + strings.Repeat("r", 124) + `"}`, 400, 107, "reason"},
		{"subscribe", `{"user":"42"}`, 400, 107, "topic is required"},
		{"nosuch", `{}`, 404, 104, "no API method"},
	} {
		r := call(t, base, c.method, "k", c.body)
		if r.status != c.status || r.Error == nil || r.Error.Code != c.code || !strings.Contains(r.Error.Message, c.says) {
			t.Errorf("%s %s: %d %+v, want %d code %d saying %q", c.method, c.body, r.status, r.Error, c.status, c.code, c.says)
		}
	}
}

func TestAPIBroadcast(t *testing.T) {
	_, _, base := apiServer(t, APIOptions{Key: "k"})
	a, b := dialSub(t, base, "a"), dialSub(t, base, "b")
	r := call(t, base, "broadcast", "k", `{"topics":["a","h","denied:c","b"],"data":[1,2]}`)
	var res struct {
		Results []struct {
			Pos   string
			Error *struct{ Code int }
		}
	}
	if err := json.Unmarshal(r.Result, &res); err != nil || r.status != 200 || len(res.Results) != 4 {
		t.Fatalf("broadcast: %d %s", r.status, r.Result)
	}
	if res.Results[1].Pos == "" || res.Results[2].Error == nil || res.Results[2].Error.Code != 103 || res.Results[0].Error != nil {
		t.Errorf("results: %s", r.Result)
	}
	for _, ws := range []*websocket.Conn{a, b} {
		if got := readText(t, ws); got != `[1,2]` {
			t.Errorf("got %q", got)
		}
	}
}

func TestAPIHistory(t *testing.T) {
	_, _, base := apiServer(t, APIOptions{Key: "k"})
	var pos []string
	for i := range 7 { // the history keeps 5
		r := call(t, base, "publish", "k", `{"topic":"h2","data":`+string(rune('0'+i))+`}`)
		var res struct{ Pos string }
		json.Unmarshal(r.Result, &res)
		pos = append(pos, res.Pos)
	}
	type hist struct {
		Publications []struct {
			Pos  string
			Data json.RawMessage
		}
		Head string
		Gone bool
	}
	get := func(body string) hist {
		t.Helper()
		r := call(t, base, "history", "k", body)
		var h hist
		if err := json.Unmarshal(r.Result, &h); err != nil || r.status != 200 {
			t.Fatalf("history %s: %d %s %+v", body, r.status, r.Result, r.Error)
		}
		return h
	}
	datas := func(h hist) string {
		var s string
		for _, p := range h.Publications {
			s += string(p.Data)
		}
		return s
	}
	if h := get(`{"topic":"h"}`); len(h.Publications) != 0 || !strings.HasSuffix(h.Head, "-0") || h.Gone {
		t.Errorf("a history topic with nothing yet: %+v", h)
	}
	if h := get(`{"topic":"h2"}`); datas(h) != "23456" || h.Head != pos[6] || h.Gone {
		t.Errorf("all kept: %+v", h)
	}
	if h := get(`{"topic":"h2","limit":2}`); datas(h) != "56" {
		t.Errorf("newest 2: %+v", h)
	}
	if h := get(`{"topic":"h2","since":"` + pos[3] + `","limit":2}`); datas(h) != "45" || h.Publications[0].Pos != pos[4] {
		t.Errorf("2 after %s: %+v", pos[3], h)
	}
	if h := get(`{"topic":"h2","since":"` + pos[0] + `"}`); !h.Gone || len(h.Publications) != 0 {
		t.Errorf("since a trimmed position: %+v, want gone", h)
	}
}

// TestAPIControlLocal: without a broker, disconnect and subscribe reach
// every backend the API has (every loop of the process).
func TestAPIControlLocal(t *testing.T) {
	b, api, base := apiServer(t, APIOptions{Key: "k"})
	other := &hubBackend{seen: make(chan string, 4)}
	api.Add(other)
	if r := call(t, base, "disconnect", "k", `{"user":"42"}`); r.status != 200 || string(r.Result) != "{}" {
		t.Fatalf("disconnect: %d %s %+v", r.status, r.Result, r.Error)
	}
	if r := call(t, base, "subscribe", "k", `{"user":"42","topic":"user:#42"}`); r.status != 200 {
		t.Fatalf("subscribe: %d %+v", r.status, r.Error)
	}
	want := []string{"disconnect 42 3503 disconnected", "subscribe 42 user:#42"}
	for i, w := range want {
		if got := <-other.seen; got != w {
			t.Errorf("other loop: op %d %q, want %q", i, got, w)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if strings.Join(b.ops, "|") != strings.Join(want, "|") {
		t.Errorf("this loop: %q, want %q", b.ops, want)
	}
}

// TestAPIControlBroker: two processes' APIs share a broker; a disconnect
// asked of one reaches the other's backends, signed; forged, replayed and
// malformed control messages are refused and counted, and a good one
// after them still goes through (the canary).
func TestAPIControlBroker(t *testing.T) {
	mb := &pubsub.MemoryBroker{}
	_, _, base := apiServer(t, APIOptions{Key: "k", Broker: mb})
	remote, err := NewAPI(APIOptions{Key: "k", Broker: mb})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	rb := &hubBackend{seen: make(chan string, 4)}
	remote.Add(rb)
	r := call(t, base, "disconnect", "k", `{"user":"alice","code":3000,"reason":"deploy"}`)
	if r.status != 200 {
		t.Fatalf("disconnect: %d %+v", r.status, r.Error)
	}
	select {
	case got := <-rb.seen:
		if got != "disconnect alice 3000 deploy" {
			t.Errorf("other process got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the other process got nothing")
	}

	// Hostile publishers on the broker.
	forger, _ := NewAPI(APIOptions{Key: "not-k"})
	old := control{Op: "disconnect", User: "bob", Code: 3503, Reason: "x", At: time.Now().Add(-time.Hour).UnixMilli()}
	good := control{Op: "subscribe", User: "bob", Topic: "t", At: time.Now().UnixMilli()}
	bad := control{Op: "subscribe", User: "bob", Topic: "a b", At: time.Now().UnixMilli()}
	k, _ := NewAPI(APIOptions{Key: "k"})
	for _, m := range [][]byte{
		forger.sign(good), // another key
		k.sign(old),       // replayed
		k.sign(bad),       // invalid topic
		[]byte(`{"op":"disconnect","user":"bob","code":3503}`),                                       // unsigned
		append(k.sign(good)[:64], []byte(` {"op":"disconnect","user":"bob","code":3503,"at":1}`)...), // altered
		[]byte(strings.Repeat("x", 10000)),
	} {
		if err := mb.Publish(APIControlTopic, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := mb.Publish(APIControlTopic, k.sign(good)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-rb.seen:
		if got != "subscribe bob t" {
			t.Errorf("after the hostile messages the other process got %q, want the canary's subscribe", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the canary's control message did not arrive")
	}
	if n := remote.Refused(); n != 6 {
		t.Errorf("refused %d, want 6", n)
	}
}

func TestAPIVerifyErrors(t *testing.T) {
	a, _ := NewAPI(APIOptions{Key: "k"})
	now := time.Now()
	c := control{Op: "disconnect", User: "u", Code: 3503, Reason: "r", At: now.UnixMilli()}
	if got, err := a.verify(a.sign(c), now); err != nil || got != c {
		t.Fatalf("verify(sign(c)) = %+v, %v", got, err)
	}
	c.At = now.Add(10 * time.Minute).UnixMilli()
	if _, err := a.verify(a.sign(c), now); err == nil {
		t.Error("a control message from the future passed")
	}
	if _, err := a.verify([]byte("zz "+strings.Repeat("0", 62)+" {}"), now); err == nil || errors.Is(err, nil) {
		t.Error("garbage passed")
	}
}

// TestAPIHostileBesideCanary: wrong keys, malformed and oversized bodies,
// unknown methods and a broadcast to the most topics, sent concurrently,
// get their clear errors while a canary subscriber keeps getting every
// publication of a legitimate backend, in order and promptly.
func TestAPIHostileBesideCanary(t *testing.T) {
	_, _, base := apiServer(t, APIOptions{Key: "k"})
	canary := dialSub(t, base, "canary")
	big := `{"topic":"a","data":"` + strings.Repeat("x", DefaultAPIBodyBytes) + `"}`
	var topics []string
	for i := range DefaultAPITopics {
		topics = append(topics, `"t`+strconv.Itoa(i)+`"`)
	}
	many := `{"topics":[` + strings.Join(topics, ",") + `],"data":1}`
	hostile := []struct {
		method, key, body string
		status            int
	}{
		{"publish", "wrong", `{"topic":"canary","data":"forged"}`, 401},
		{"publish", "", `{"topic":"canary","data":"forged"}`, 401},
		{"publish", "k", `{"topic":"canary","data":`, 400},
		{"publish", "k", `{"topic":"canary","data":"x","extra":1}`, 400},
		{"publish", "k", big, 413},
		{"nosuch", "k", `{}`, 404},
		{"broadcast", "k", many, 200},
		{"disconnect", "k", `{"user":"` + strings.Repeat("u", 300) + `"}`, 400},
	}
	stop := make(chan struct{})
	errs := make(chan string, 100)
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				h := hostile[(g+i)%len(hostile)]
				req, _ := http.NewRequest("POST", base+"/api/"+h.method, strings.NewReader(h.body))
				if h.key != "" {
					req.Header.Set("X-API-Key", h.key)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != h.status {
					errs <- h.method + ": " + strconv.Itoa(resp.StatusCode)
					return
				}
			}
		}()
	}
	var worst time.Duration
	for i := range 40 {
		sent := time.Now()
		if r := call(t, base, "publish", "k", `{"topic":"canary","data":`+strconv.Itoa(i)+`}`); r.status != 200 {
			t.Fatalf("canary publish: %d %+v", r.status, r.Error)
		}
		if got := readText(t, canary); got != strconv.Itoa(i) {
			t.Fatalf("canary got %q, want %d", got, i)
		}
		worst = max(worst, time.Since(sent))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("hostile request: %s", e)
	}
	t.Logf("canary: worst publish-to-delivery %v beside the hostile requests", worst)
	if worst > time.Second {
		t.Errorf("canary waited %v", worst)
	}
}
