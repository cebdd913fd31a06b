package realtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/tornago/tornago/internal/notrun"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// subTokenServer serves the namespace "private" with subscription tokens
// "sub:USER:TOPIC:MS", valid MS milliseconds from when they are checked
// (a negative MS: already expired); every other token is refused. It
// counts the checks.
func subTokenServer(t *testing.T, lim realtime.Limits) (*realtime.Server, string, *atomic.Int64) {
	t.Helper()
	var checks atomic.Int64
	ns := append([]realtime.Namespace{{Name: "private", SubscribeToken: true, Publish: true,
		History: pubsub.HistoryOptions{MaxMessages: 100}}}, testNamespaces...)
	s, addr := start(t, realtime.Options{
		Namespaces: ns,
		Limits:     lim,
		// Connect tokens: "USER", or "USER;MS": valid MS ms, with an Info.
		Authenticate: func(_ context.Context, c realtime.Credentials) (realtime.Identity, error) {
			user, ms, ok := strings.Cut(c.Token, ";")
			if !ok {
				return realtime.Identity{User: user}, nil
			}
			n, err := strconv.Atoi(ms)
			if err != nil {
				return realtime.Identity{}, realtime.ErrUnauthorized
			}
			return realtime.Identity{User: user, Info: json.RawMessage(`{"n":1}`), ExpiresAt: time.Now().Add(time.Duration(n) * time.Millisecond)}, nil
		},
		VerifySubscribeToken: func(_ context.Context, token, user, topic string) (time.Time, error) {
			checks.Add(1)
			rest, ok := strings.CutPrefix(token, "sub:"+user+":"+topic+":")
			if !ok {
				return time.Time{}, errors.New("bad token")
			}
			ms, err := strconv.Atoi(rest)
			if err != nil {
				return time.Time{}, err
			}
			if ms == 0 {
				return time.Time{}, nil // a token without exp
			}
			return time.Now().Add(time.Duration(ms) * time.Millisecond), nil
		},
	}, nil)
	return s, addr, &checks
}

func subToken(user, topic string, d time.Duration) string {
	return "sub:" + user + ":" + topic + ":" + strconv.Itoa(int(d/time.Millisecond))
}

func publishNow(t *testing.T, s *realtime.Server, topic, data string) {
	t.Helper()
	done := make(chan error, 1)
	if err := s.PublishAsync(topic, json.RawMessage(data), func(_ pubsub.Position, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSubscriptionTokenExpiry: a subscription whose token expires ends
// then with an unsub push (109) while the connection and its other
// subscription live on; one refreshed with sub_refresh lives on; a
// refresh with another user's or topic's token is refused.
func TestSubscriptionTokenExpiry(t *testing.T) {
	s, addr, _ := subTokenServer(t, realtime.Limits{})
	a := dial(t, addr)
	a.connect("ann")
	var r cp.SubscribeResult
	t0 := time.Now()
	a.ok(a.cmd("subscribe", map[string]any{"topic": "private:x", "token": subToken("ann", "private:x", 1500*time.Millisecond)}), &r)
	if !r.Expires || r.TTL != 1 {
		t.Fatalf("subscribe result %+v, want expires with ttl 1", r)
	}
	r = cp.SubscribeResult{}
	a.ok(a.cmd("subscribe", map[string]any{"topic": "chat:canary"}), &r)
	if r.Expires {
		t.Fatalf("canary subscribe result %+v: expires", r)
	}
	b := dial(t, addr)
	b.connect("bob")
	b.ok(b.cmd("subscribe", map[string]any{"topic": "private:y", "token": subToken("bob", "private:y", 1500*time.Millisecond)}), nil)
	r = cp.SubscribeResult{}
	b.ok(b.cmd("subscribe", map[string]any{"topic": "private:z", "token": subToken("bob", "private:z", 0)}), &r)
	if r.Expires {
		t.Fatalf("subscribe with a token without exp: %+v", r)
	}

	// Refused refreshes.
	b.wantError(b.cmd("sub_refresh", map[string]any{"topic": "private:y", "token": subToken("ann", "private:y", time.Hour)}), cp.ErrPermissionDenied)
	b.wantError(b.cmd("sub_refresh", map[string]any{"topic": "private:y", "token": subToken("bob", "private:z", time.Hour)}), cp.ErrPermissionDenied)
	b.wantError(b.cmd("sub_refresh", map[string]any{"topic": "private:y", "token": subToken("bob", "private:y", -time.Second)}), cp.ErrTokenExpired)
	b.wantError(b.cmd("sub_refresh", map[string]any{"topic": "private:w", "token": subToken("bob", "private:w", time.Hour)}), cp.ErrNotSubscribed)
	b.ok(b.cmd("subscribe", map[string]any{"topic": "chat:b"}), nil)
	b.wantError(b.cmd("sub_refresh", map[string]any{"topic": "chat:b", "token": subToken("bob", "chat:b", time.Hour)}), cp.ErrNotAvailable)

	var rr cp.RefreshResult
	b.ok(b.cmd("sub_refresh", map[string]any{"topic": "private:y", "token": subToken("bob", "private:y", 3500*time.Millisecond)}), &rr)
	if !rr.Expires || rr.TTL != 3 {
		t.Fatalf("sub_refresh result %+v, want expires with ttl 3", rr)
	}

	// ann's private:x ends at its expiry, with the code; nothing of it
	// comes after; the canary subscription lives on.
	f := a.read()
	if f.Push == nil || f.Push.Topic != "private:x" || f.Push.Unsub == nil || f.Push.Unsub.Code != cp.ErrTokenExpired || f.Push.Unsub.Reason != realtime.SubscriptionExpiredReason {
		t.Fatalf("frame %+v, want the unsub push of private:x with 109", f)
	}
	if d := time.Since(t0); d < 1400*time.Millisecond || d > 3*time.Second {
		t.Fatalf("unsub %v after the subscribe, want 1.5 s", d)
	}
	publishNow(t, s, "private:x", `"late"`)
	publishNow(t, s, "chat:canary", `"alive"`)
	f = a.read()
	if f.Push == nil || f.Push.Topic != "chat:canary" || f.Push.Pub == nil {
		t.Fatalf("frame %+v, want the canary's publication", f)
	}
	a.wantError(a.cmd("unsubscribe", map[string]any{"topic": "private:x"}), cp.ErrNotSubscribed)
	// It may subscribe again with a new token.
	a.ok(a.cmd("subscribe", map[string]any{"topic": "private:x", "token": subToken("ann", "private:x", time.Hour)}), nil)

	// bob's refreshed private:y lives past its first expiry.
	time.Sleep(time.Until(t0.Add(2 * time.Second)))
	publishNow(t, s, "private:y", `"still"`)
	f = b.read()
	if f.Push == nil || f.Push.Topic != "private:y" || f.Push.Pub == nil {
		t.Fatalf("frame %+v, want private:y's publication", f)
	}
	b.ok(b.cmd("ping", map[string]any{}), nil)
	// Then it ends at the refreshed expiry; private:z (no exp) does not.
	f = b.read()
	if f.Push == nil || f.Push.Topic != "private:y" || f.Push.Unsub == nil || f.Push.Unsub.Code != cp.ErrTokenExpired {
		t.Fatalf("frame %+v, want the unsub push of private:y", f)
	}
	publishNow(t, s, "private:z", `"z"`)
	f = b.read()
	if f.Push == nil || f.Push.Topic != "private:z" || f.Push.Pub == nil {
		t.Fatalf("frame %+v, want private:z's publication", f)
	}
}

// TestSubscriptionExpiryAndConnectionToken: the connection's own token
// and its subscriptions' share one timer entry: a connection refresh
// keeps the subscription's expiry, which ends the subscription first; the
// connection's expiry then ends the connection (3005).
func TestSubscriptionExpiryAndConnectionToken(t *testing.T) {
	_, addr, _ := subTokenServer(t, realtime.Limits{})
	a := dial(t, addr)
	if r := a.connect("ann;2500"); !r.Expires {
		t.Fatalf("connect %+v", r)
	}
	t0 := time.Now()
	a.ok(a.cmd("subscribe", map[string]any{"topic": "private:x", "token": subToken("ann", "private:x", time.Second)}), nil)
	a.ok(a.cmd("subscribe", map[string]any{"topic": "private:y", "token": subToken("ann", "private:y", time.Hour)}), nil)
	a.ok(a.cmd("refresh", map[string]any{"token": "ann;2500"}), nil)
	f := a.read()
	if f.Push == nil || f.Push.Topic != "private:x" || f.Push.Unsub == nil || f.Push.Unsub.Code != cp.ErrTokenExpired {
		t.Fatalf("frame %+v, want the unsub push of private:x", f)
	}
	if d := time.Since(t0); d < 900*time.Millisecond || d > 2*time.Second {
		t.Fatalf("private:x ended after %v, want 1 s", d)
	}
	a.ok(a.cmd("ping", map[string]any{}), nil)
	a.wantClose(cp.DisconnectTokenExpired)
	if d := time.Since(t0); d < 2400*time.Millisecond {
		t.Fatalf("3005 after %v, want 2.5 s", d)
	}
}

// TestSubscriptionExpirySSE: the same over SSE, commands POSTed: the
// expired subscription's unsub push comes on the stream; the refreshed
// one lives on.
func TestSubscriptionExpirySSE(t *testing.T) {
	s, addr, _ := subTokenServer(t, realtime.Limits{})
	sc := openSSE(t, addr, `{"id":1,"connect":{"token":"ann"}}`)
	var r cp.ConnectResult
	if f := sc.next(); f.ID != 1 || json.Unmarshal(f.Result, &r) != nil || r.Session == "" {
		t.Fatalf("connect %+v", f)
	}
	cmdURL := "http://" + addr + "/connection/command?session=" + r.Session
	t0 := time.Now()
	body := `{"id":2,"subscribe":{"topic":"private:x","token":"` + subToken("ann", "private:x", time.Second) + `"}}` + "\n" +
		`{"id":3,"subscribe":{"topic":"private:y","token":"` + subToken("ann", "private:y", time.Second) + `"}}` + "\n" +
		`{"id":4,"sub_refresh":{"topic":"private:y","token":"` + subToken("ann", "private:y", time.Hour) + `"}}`
	if code, b := post(t, cmdURL, body); code != 202 {
		t.Fatalf("command POST: %d %s", code, b)
	}
	for id := uint32(2); id <= 4; id++ {
		if f := sc.next(); f.ID != id || f.Error != nil {
			t.Fatalf("reply %+v, want %d's", f, id)
		}
	}
	f := sc.next()
	if f.Push == nil || f.Push.Topic != "private:x" || f.Push.Unsub == nil || f.Push.Unsub.Code != cp.ErrTokenExpired {
		t.Fatalf("frame %+v, want the unsub push of private:x", f)
	}
	if d := time.Since(t0); d < 900*time.Millisecond {
		t.Fatalf("unsub after %v, want 1 s", d)
	}
	time.Sleep(time.Until(t0.Add(1500 * time.Millisecond)))
	publishNow(t, s, "private:y", `"y"`)
	if f := sc.next(); f.Push == nil || f.Push.Topic != "private:y" || f.Push.Pub == nil {
		t.Fatalf("frame %+v, want private:y's publication", f)
	}
}

// TestJSClientSubscriptionExpiry: tornago.js in node against the server
// on a real socket (testdata/tornago_subexp.mjs): a subscription with 1.5 s
// tokens and getToken lives on through sub_refreshes; one whose refresh is
// refused is ended by the server (109) and subscribed again from its
// position, missing nothing; a canary topic and the connection go on.
func TestJSClientSubscriptionExpiry(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		notrun.Skip(t, "no node")
	}
	args := []string{}
	if exec.Command(node, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)").Run() != nil {
		args = append(args, "--experimental-websocket") // node 20-21
	}
	_, addr, checks := subTokenServer(t, realtime.Limits{})
	mod := filepath.Join(t.TempDir(), "tornago.mjs")
	src, err := os.ReadFile("js/tornago.js")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mod, src, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args = append(args, "testdata/tornago_subexp.mjs", mod, "ws://"+addr)
	out, err := exec.CommandContext(ctx, node, args...).CombinedOutput()
	t.Logf("node:\n%s", out)
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	t.Logf("%d subscription token checks", checks.Load())
}

// TestSubRefreshFlood: sub_refresh commands go through the command rate
// limit like any other: a flood ends with 3004 after a bounded number of
// token checks, and a canary connection does not notice.
func TestSubRefreshFlood(t *testing.T) {
	_, addr, checks := subTokenServer(t, realtime.Limits{CommandsPerSecond: 10, CommandBurst: 10})
	canary := dial(t, addr)
	canary.connect("can")
	a := dial(t, addr)
	a.connect("ann")
	a.ok(a.cmd("subscribe", map[string]any{"topic": "private:x", "token": subToken("ann", "private:x", time.Hour)}), nil)
	before := checks.Load()
	cmd := []byte(`{"id":9,"sub_refresh":{"topic":"private:x","token":"` + subToken("ann", "private:x", time.Hour) + `"}}`)
	for range 2000 {
		if err := a.c.WriteMessage(websocket.TextMessage, cmd); err != nil {
			break // closed with 3004 already
		}
	}
	start := time.Now()
	refused, answered := 0, 0
	for {
		a.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := a.c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != int(cp.DisconnectTooManyRequests) {
				t.Fatalf("closed with %v after %d refused, want 3004", err, refused)
			}
			break
		}
		switch {
		case strings.Contains(string(b), `"code":111`):
			refused++
		case strings.Contains(string(b), `"result"`):
			answered++
		}
	}
	n := checks.Load() - before
	t.Logf("flood: %d answered, %d refused (111), %d token checks, 3004 after %v", answered, refused, n, time.Since(start))
	if n > 10+2 || refused > 20*10+1 {
		t.Fatalf("%d token checks and %d refused commands for a flood, want at most the burst (10) and 20x the rate", n, refused)
	}
	canary.ok(canary.cmd("ping", map[string]any{}), nil)
}
