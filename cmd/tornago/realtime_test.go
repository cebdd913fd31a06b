package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop/natsbroker"
	"github.com/tornago/tornago/loop/pubsub"
)

// TestDemoRealtime: the demo's protocol server, beside the seeds' routes,
// through a broker: chat rooms with history, the clock's ticks, RPC.
func TestDemoRealtime(t *testing.T) {
	addr := startDemosWith(t, &pubsub.MemoryBroker{})
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/connection/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(s string) {
		if err := c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	// until reads frames until one contains want.
	until := func(want string) string {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if !json.Valid(b) {
				t.Fatalf("frame not JSON: %s", b)
			}
			if strings.Contains(string(b), want) {
				return string(b)
			}
		}
	}
	send(`{"id":1,"connect":{}}`)
	until(`"id":1,"result":{"client"`)
	send(`{"id":2,"subscribe":{"topic":"chat:lobby"}}`)
	until(`"id":2,"result"`)
	send(`{"id":3,"publish":{"topic":"chat:lobby","data":{"text":"hello"}}}`)
	until(`{"push":{"topic":"chat:lobby","pub":{"pos":`)
	send(`{"id":4,"subscribe":{"topic":"clock:utc"}}`)
	until(`"id":4,"result"`)
	until(`{"push":{"topic":"clock:utc","pub":{"data":{"seq":`)
	send(`{"id":5,"rpc":{"method":"time"}}`)
	until(`"id":5,"result":{"data":{"client"`)
	send(`{"id":6,"publish":{"topic":"clock:utc","data":1}}`)
	until(`"id":6,"error":{"code":108`)
	send(`{"id":7,"subscribe":{"topic":"user:#1"}}`)
	until(`"id":7,"error":{"code":103`)
	// "delay" answers late (bounded), after commands sent behind it.
	t0 := time.Now()
	send(`{"id":8,"rpc":{"method":"delay","data":{"ms":300}}}`)
	send(`{"id":9,"ping":{}}`)
	until(`"id":9,"result"`)
	until(`"id":8,"result":{"data":{}}`)
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("delay of 300 ms answered after %v", d)
	}
	send(`{"id":10,"rpc":{"method":"delay","data":{"ms":"x"}}}`)
	until(`"id":10,"error"`)
}

// TestDemoRealtimeAcrossNATS: two nodes sharing NATS (JetStream) with the
// demo's broker filter: a publication on one reaches a subscriber on the
// other, with its position, and resumes there.
func TestDemoRealtimeAcrossNATS(t *testing.T) {
	ns := startTestNATS(t, -1, t.TempDir())
	var addrs []string
	for range 2 {
		nb := natsbroker.NewWithOptions(connectNATS(t, ns.ClientURL()), "tornago.", natsbroker.Options{Accept: acceptFromBroker(longPollOptions{})})
		t.Cleanup(nb.Close)
		addrs = append(addrs, startDemosWith(t, nb))
	}
	dialRT := func(addr string) (*websocket.Conn, func(string), func(string) string) {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/connection/websocket", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		send := func(s string) {
			if err := c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		until := func(want string) string {
			t.Helper()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				_, b, err := c.ReadMessage()
				if err != nil {
					t.Fatalf("waiting for %s: %v", want, err)
				}
				if strings.Contains(string(b), want) {
					return string(b)
				}
			}
		}
		return c, send, until
	}
	_, sendA, untilA := dialRT(addrs[0])
	_, sendB, untilB := dialRT(addrs[1])
	sendA(`{"id":1,"connect":{}}`)
	untilA(`"id":1,"result"`)
	sendB(`{"id":1,"connect":{}}`)
	untilB(`"id":1,"result"`)
	sendA(`{"id":2,"subscribe":{"topic":"chat:nats"}}`)
	untilA(`"id":2,"result"`)
	// B's first publish waits for the topic's JetStream stream.
	sendB(`{"id":2,"publish":{"topic":"chat:nats","data":"across"}}`)
	untilB(`"id":2,"result"`)
	push := untilA(`"data":"across"`)
	if !strings.Contains(push, `"pos":"`) {
		t.Fatalf("push without position: %s", push)
	}
}

// TestBinaryRealtimeRelay: two tornago processes sharing NATS, as -procs
// runs them; a long-polling session made on one is polled and commanded
// through the other (the kernel spreads a client's connections over the
// processes sharing the port).
func TestBinaryRealtimeRelay(t *testing.T) {
	ns := startTestNATS(t, -1, t.TempDir())
	bin := buildTornago(t)
	var addrs []string
	for range 2 {
		addr, _, _, _ := startBuilt(t, bin, "-nats", ns.ClientURL(), "-ping", "0")
		addrs = append(addrs, addr)
	}
	do := func(method, u, body string) string {
		t.Helper()
		req, _ := http.NewRequest(method, u, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d %s", method, u, resp.StatusCode, b)
		}
		return string(b)
	}
	var ans struct {
		Frames []struct{ Result struct{ Session string } }
	}
	json.Unmarshal([]byte(do("POST", "http://"+addrs[0]+"/connection/poll", `{"id":1,"connect":{}}`)), &ans)
	if len(ans.Frames) != 1 || ans.Frames[0].Result.Session == "" {
		t.Fatalf("connect: %+v", ans)
	}
	sess := url.QueryEscape(ans.Frames[0].Result.Session)
	do("POST", "http://"+addrs[1]+"/connection/command?session="+sess, `{"id":2,"ping":{}}`)
	if body := do("GET", "http://"+addrs[1]+"/connection/poll?session="+sess+"&next=1", ""); !strings.Contains(body, `"id":2,"result":{}`) {
		t.Fatalf("poll through the other process: %s", body)
	}
}
