package realtime_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// startAPILoops runs n loops, each with a protocol server (the token is
// the user id) and the server API with key, their hubs sharing a
// MemoryBroker (one process's loops); it returns each loop's address.
func startAPILoops(t *testing.T, n int, key string) []string {
	t.Helper()
	api, err := realtime.NewAPI(realtime.APIOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	broker := &pubsub.MemoryBroker{}
	o := realtime.Options{
		Namespaces: testNamespaces,
		Authenticate: func(_ context.Context, c realtime.Credentials) (realtime.Identity, error) {
			return realtime.Identity{User: c.Token}, nil
		},
	}
	withAPI := func(s *realtime.Server, app *loop.Application) { api.Routes(app, s.APIBackend()) }
	var addrs []string
	for range n {
		_, addr := realtime.StartForTest(t, loop.Options{}, broker, o, withAPI)
		addrs = append(addrs, addr)
	}
	return addrs
}

func apiPost(t *testing.T, addr, method, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/"+method, strings.NewReader(body))
	req.Header.Set("X-API-Key", key)
	return realtime.DoForTest(t, &http.Client{Timeout: 5 * time.Second}, req)
}

// TestAPIReachesProtocolClients: protocol clients over gorilla on two
// loops. The API subscribes user alice's connections on both loops, a
// publish reaches them, history returns it, and a disconnect ends every
// connection of alice's with 3503 while bob's (the canary, on the same
// loops) goes on.
func TestAPIReachesProtocolClients(t *testing.T) {
	addrs := startAPILoops(t, 2, "k")
	alice := []*wsc{dial(t, addrs[0]), dial(t, addrs[1])}
	bob := dial(t, addrs[0])
	for _, a := range alice {
		a.connect("alice")
	}
	bob.connect("bob")
	bob.ok(bob.cmd("subscribe", map[string]any{"topic": "chat:room"}), nil)

	if code, body := apiPost(t, addrs[1], "subscribe", "k", `{"user":"alice","topic":"chat:room"}`); code != 200 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	for i, a := range alice {
		if f := a.read(); f.Push == nil || f.Push.Topic != "chat:room" || f.Push.Sub == nil {
			t.Fatalf("alice %d: %+v, want a sub push", i, f)
		}
	}
	code, body := apiPost(t, addrs[0], "publish", "k", `{"topic":"chat:room","data":{"text":"hi"}}`)
	if code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	for i, c := range append(alice, bob) {
		if f := c.read(); f.Push == nil || f.Push.Pub == nil || string(f.Push.Pub.Data) != `{"text":"hi"}` || f.Push.Pub.Pos == "" {
			t.Fatalf("client %d: %+v, want the publication", i, f)
		}
	}
	code, body = apiPost(t, addrs[1], "history", "k", `{"topic":"chat:room"}`)
	var h struct {
		Result struct {
			Publications []struct {
				Pos  string
				Data json.RawMessage
			}
		}
	}
	if json.Unmarshal([]byte(body), &h); code != 200 || len(h.Result.Publications) != 1 || string(h.Result.Publications[0].Data) != `{"text":"hi"}` {
		t.Fatalf("history: %d %s", code, body)
	}
	if code, body := apiPost(t, addrs[0], "history", "k", `{"topic":"news:x"}`); code != 403 || !strings.Contains(body, `"code":108`) {
		t.Errorf("history of a namespace without: %d %s, want 403 code 108", code, body)
	}
	if code, body := apiPost(t, addrs[0], "history", "k", `{"topic":"nons:x"}`); code != 400 || !strings.Contains(body, `"code":102`) {
		t.Errorf("history of no namespace: %d %s, want 400 code 102", code, body)
	}
	if code, body := apiPost(t, addrs[0], "publish", "k", `{"topic":"nons:x","data":1}`); code != 400 || !strings.Contains(body, `"code":102`) {
		t.Errorf("publish to no namespace: %d %s, want 400 code 102", code, body)
	}

	if code, body := apiPost(t, addrs[0], "disconnect", "k", `{"user":"alice","reason":"banned"}`); code != 200 {
		t.Fatalf("disconnect: %d %s", code, body)
	}
	for _, a := range alice {
		a.wantClose(cp.DisconnectForced)
	}
	bob.ok(bob.cmd("ping", map[string]any{}), nil)
}
