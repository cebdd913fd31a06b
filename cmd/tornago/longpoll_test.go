package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

type pollReply struct {
	Epoch    int64         `json:"epoch"`
	Messages []chatMessage `json:"messages"`
}

// post sends a form and decodes the JSON answer into out. It reports
// failures with t.Errorf (it also runs on other goroutines) and returns
// false then.
func post(t *testing.T, c *http.Client, u string, form url.Values, out any) bool {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Errorf("POST %s: %v", u, err)
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Errorf("POST %s: %d %s", u, resp.StatusCode, body)
		return false
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Errorf("POST %s: %v in %q", u, err, body)
		return false
	}
	return true
}

func TestDemoIndexHTTP(t *testing.T) {
	addr := startDemos(t)
	resp, err := http.Get("http://" + addr + "/index")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "Hello world" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// TestDemoLongPollCursor: a poll waits for the next message; messages posted
// between two polls arrive in the next poll; short polling never waits.
func TestDemoLongPollCursor(t *testing.T) {
	base := "http://" + startDemos(t)
	c := &http.Client{Timeout: 10 * time.Second}

	waiting := make(chan pollReply, 1)
	go func() {
		var r pollReply
		post(t, c, base+"/update-message", url.Values{"cursor": {"0"}}, &r)
		waiting <- r
	}()
	time.Sleep(100 * time.Millisecond) // the poll is parked on the server
	select {
	case r := <-waiting:
		t.Fatalf("poll answered before any message: %+v", r)
	default:
	}
	var id struct{ ID int64 }
	post(t, c, base+"/new-message", url.Values{"msg": {"a"}}, &id)
	r := <-waiting
	if len(r.Messages) != 1 || r.Messages[0] != (chatMessage{1, "a"}) {
		t.Fatalf("first poll %+v", r)
	}
	// Posted between two polls: the next poll returns both at once.
	post(t, c, base+"/new-message", url.Values{"msg": {"b"}}, &id)
	post(t, c, base+"/new-message", url.Values{"msg": {"c"}}, &id)
	var r2 pollReply
	post(t, c, base+"/update-message", url.Values{"cursor": {"1"}}, &r2)
	if len(r2.Messages) != 2 || r2.Messages[0].Body != "b" || r2.Messages[1].Body != "c" || r2.Epoch != r.Epoch {
		t.Fatalf("second poll %+v", r2)
	}
	var s pollReply
	post(t, c, base+"/poll-message", url.Values{"cursor": {"3"}}, &s)
	if len(s.Messages) != 0 {
		t.Fatalf("short poll past the end: %+v", s)
	}
}

// TestDemoLongPollNothingLost: one client polls in a loop, following its
// cursor, while another posts messages at irregular times; it must see every
// message exactly once, in order.
func TestDemoLongPollNothingLost(t *testing.T) {
	base := "http://" + startDemos(t)
	c := &http.Client{Timeout: 10 * time.Second}
	const n = 60
	go func() {
		for i := 1; i <= n; i++ {
			var id struct{ ID int64 }
			if !post(t, c, base+"/new-message", url.Values{"msg": {strconv.Itoa(i)}}, &id) {
				return
			}
			if i%7 == 0 {
				time.Sleep(15 * time.Millisecond) // some land while a poll waits
			}
		}
	}()
	var got []string
	cursor := int64(0)
	deadline := time.Now().Add(15 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		var r pollReply
		if !post(t, c, base+"/update-message", url.Values{"cursor": {strconv.FormatInt(cursor, 10)}}, &r) {
			t.FailNow()
		}
		for _, m := range r.Messages {
			if m.ID != cursor+1 {
				t.Fatalf("after cursor %d got id %d", cursor, m.ID)
			}
			cursor = m.ID
			got = append(got, m.Body)
		}
	}
	if len(got) != n {
		t.Fatalf("got %d of %d messages", len(got), n)
	}
	for i, b := range got {
		if b != strconv.Itoa(i+1) {
			t.Fatalf("message %d is %q", i+1, b)
		}
	}
}
