package realtime

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
)

// startNode runs a Server on its own loop as if it were a process of its
// own (localOnly), with relay as its Relay.
func startNode(t *testing.T, relay pubsub.Broker) (*Server, string) {
	t.Helper()
	o := Options{Relay: relay, Limits: Limits{PollWait: time.Second},
		Namespaces: []Namespace{{Name: "chat", Publish: true, History: pubsub.HistoryOptions{MaxMessages: 10}}}}
	return StartForTest(t, loop.Options{}, relay, o, func(s *Server, _ *loop.Application) { s.localOnly = true })
}

func httpDo(t *testing.T, method, u, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	return DoForTest(t, http.DefaultClient, req)
}

// TestRelayAcrossProcesses: polls and command POSTs that reach another
// process than their session's go over the relay and are answered.
func TestRelayAcrossProcesses(t *testing.T) {
	broker := &pubsub.MemoryBroker{}
	_, a := startNode(t, broker)
	_, b := startNode(t, broker)
	time.Sleep(100 * time.Millisecond) // the relay subscriptions, made off the loops
	code, body := httpDo(t, "POST", "http://"+a+"/connection/poll", `{"id":1,"connect":{}}`)
	var ans struct {
		Frames []struct {
			ID     int
			Result struct{ Session string }
			Push   *struct {
				Pub struct{ Data json.RawMessage }
			}
		}
		Next int
	}
	if code != 200 || json.Unmarshal([]byte(body), &ans) != nil || ans.Frames[0].Result.Session == "" {
		t.Fatalf("connect: %d %s", code, body)
	}
	sess := url.QueryEscape(ans.Frames[0].Result.Session)
	if code, body := httpDo(t, "POST", "http://"+b+"/connection/command?session="+sess, `{"id":2,"subscribe":{"topic":"chat:r"}}`); code != 202 {
		t.Fatalf("relayed POST: %d %s", code, body)
	}
	code, body = httpDo(t, "GET", "http://"+b+"/connection/poll?session="+sess+"&next=1", "")
	if code != 200 || json.Unmarshal([]byte(body), &ans) != nil || len(ans.Frames) != 1 || ans.Frames[0].ID != 2 || ans.Next != 2 {
		t.Fatalf("relayed poll: %d %s", code, body)
	}
	// A relayed poll parked on the other process gets the publication
	// (after the publish's reply: the broker orders it).
	got := make(chan string, 1)
	go func() {
		next := 2
		for range 3 {
			_, body := httpDo(t, "GET", "http://"+b+"/connection/poll?session="+sess+"&next="+strconv.Itoa(next), "")
			var a struct{ Next int }
			json.Unmarshal([]byte(body), &a)
			if strings.Contains(body, `"data":"relayed"`) {
				got <- body
				return
			}
			next = a.Next
		}
		got <- "not received"
	}()
	time.Sleep(100 * time.Millisecond)
	httpDo(t, "POST", "http://"+b+"/connection/command?session="+sess, `{"id":3,"publish":{"topic":"chat:r","data":"relayed"}}`)
	select {
	case body := <-got:
		if !strings.Contains(body, `"data":"relayed"`) {
			t.Fatalf("parked relayed poll: %s", body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the relayed poll was not answered")
	}
	// An unknown session of another node: 404 through the relay.
	forged := ans.Frames[0].Result.Session[:17] + "x"
	if code, body := httpDo(t, "GET", "http://"+b+"/connection/poll?session="+url.QueryEscape(forged)+"&next=0", ""); code != 404 || !strings.Contains(body, `"code":110`) {
		t.Fatalf("forged session through the relay: %d %s", code, body)
	}
}

// TestRelayForgedNode: a session id whose node is not hex is not relayed
// (404 at once), whatever it names.
func TestRelayForgedNode(t *testing.T) {
	_, a := startNode(t, &pubsub.MemoryBroker{})
	for _, id := range []string{"0123456789abcde*.x", "0123456789ABCDEF.x", "0123456789abcdef0.x"} {
		if code, _ := httpDo(t, "GET", "http://"+a+"/connection/poll?session="+url.QueryEscape(id)+"&next=0", ""); code != 404 {
			t.Errorf("%s: %d", id, code)
		}
	}
}
