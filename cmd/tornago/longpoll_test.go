package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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

// postRaw sends a form and returns the status and body.
func postRaw(t *testing.T, c *http.Client, u string, form url.Values) (int, []byte) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	return resp.StatusCode, body
}

// TestDemoLongPollEmptyCursor: "cursor=" (what a form with an empty field
// sends, and what Tornado's get_argument returns as "") means no cursor, as
// in Tornado's chat demo.
func TestDemoLongPollEmptyCursor(t *testing.T) {
	base := "http://" + startDemos(t)
	c := &http.Client{Timeout: 10 * time.Second}
	var id struct{ ID int64 }
	post(t, c, base+"/new-message", url.Values{"msg": {"a"}}, &id)
	for _, path := range []string{"/poll-message", "/update-message"} {
		var r pollReply
		if post(t, c, base+path, url.Values{"cursor": {""}}, &r) && (len(r.Messages) != 1 || r.Messages[0].Body != "a") {
			t.Errorf("%s cursor=: %+v", path, r)
		}
	}
	// A cursor beyond the last id is from an earlier process: it counts as
	// none, at once (the client sees the new epoch), instead of waiting for
	// ids the new process has not reached.
	var r pollReply
	if post(t, c, base+"/update-message", url.Values{"cursor": {"999"}}, &r) && (len(r.Messages) != 1 || r.Messages[0].Body != "a") {
		t.Errorf("/update-message cursor=999: %+v", r)
	}
	for _, bad := range []string{"x", "-1", "1.5"} {
		code, body := postRaw(t, c, base+"/poll-message", url.Values{"cursor": {bad}})
		if code != 400 || !strings.Contains(string(body), "cursor") {
			t.Errorf("cursor=%s: %d %q, want 400 naming the cursor", bad, code, body)
		}
	}
}

// TestDemoLongPollRejectsBadMessages: invalid UTF-8, an empty message and one
// over the per-message cap are refused with a reason and not stored.
func TestDemoLongPollRejectsBadMessages(t *testing.T) {
	base := "http://" + startDemos(t)
	c := &http.Client{Timeout: 10 * time.Second}
	for _, tc := range []struct {
		msg  string
		code int
		want string
	}{
		{"\xff\xfe", 400, "UTF-8"},
		{"", 400, "msg is required"},
		{strings.Repeat("x", defaultLongPoll().MaxMessageBytes+1), 413, "bytes"},
	} {
		code, body := postRaw(t, c, base+"/new-message", url.Values{"msg": {tc.msg}})
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("msg %.20q: %d %.200q, want %d saying %q", tc.msg, code, body, tc.code, tc.want)
		}
	}
	var r pollReply
	post(t, c, base+"/poll-message", url.Values{"cursor": {"0"}}, &r)
	if len(r.Messages) != 0 {
		t.Fatalf("refused messages were stored: %d", len(r.Messages))
	}
}

type pageReply struct {
	Epoch    int64         `json:"epoch"`
	Messages []chatMessage `json:"messages"`
	More     bool          `json:"more"`
	Missed   int64         `json:"missed"`
}

// TestDemoLongPollBounded: posting more than the store's byte cap evicts the
// oldest messages; a poll from cursor 0 gets one bounded page saying how many
// it missed, and following "more" with the last id reads every kept message
// once, in order, each page bounded.
func TestDemoLongPollBounded(t *testing.T) {
	base := "http://" + startDemos(t)
	c := &http.Client{Timeout: 10 * time.Second}
	o := defaultLongPoll()
	size := o.MaxMessageBytes
	n := o.MaxBytes/size + 20 // 20 more than fit
	body := strings.Repeat("m", size-8)
	for i := 1; i <= n; i++ {
		var id struct{ ID int64 }
		if !post(t, c, base+"/new-message", url.Values{"msg": {fmt.Sprintf("%07d %s", i, body)}}, &id) {
			t.FailNow()
		}
	}
	cursor, pages, kept := int64(0), 0, 0
	var first int64
	for {
		code, raw := postRaw(t, c, base+"/poll-message", url.Values{"cursor": {strconv.FormatInt(cursor, 10)}})
		if code != 200 {
			t.Fatalf("poll cursor %d: %d %.200q", cursor, code, raw)
		}
		// A page holds at most PageBytes of messages, or a single message.
		if limit := o.PageBytes + 2*size; len(raw) > limit {
			t.Fatalf("page from cursor %d is %d bytes, over %d", cursor, len(raw), limit)
		}
		var r pageReply
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if pages == 0 {
			if len(r.Messages) == 0 || r.Missed == 0 || r.Missed != r.Messages[0].ID-1 {
				t.Fatalf("first page: %d messages, missed %d, first id %v", len(r.Messages), r.Missed, r.Messages[:min(1, len(r.Messages))])
			}
			first = r.Messages[0].ID
		} else if r.Missed != 0 {
			t.Fatalf("page %d reports %d missed", pages, r.Missed)
		}
		pages++
		for _, m := range r.Messages {
			if m.ID != cursor+1 && cursor != 0 {
				t.Fatalf("after cursor %d got id %d", cursor, m.ID)
			}
			if want := fmt.Sprintf("%07d ", m.ID); !strings.HasPrefix(m.Body, want) {
				t.Fatalf("message %d body %.10q", m.ID, m.Body)
			}
			cursor = m.ID
			kept++
		}
		if !r.More {
			break
		}
		if len(r.Messages) == 0 {
			t.Fatal("more with an empty page")
		}
	}
	if cursor != int64(n) {
		t.Fatalf("paging ended at id %d of %d", cursor, n)
	}
	if kept*size > o.MaxBytes+size || first == 1 {
		t.Fatalf("store kept %d messages of %d bytes (first id %d), over the %d byte cap", kept, size, first, o.MaxBytes)
	}
	if pages < 2 {
		t.Fatalf("%d messages came in %d page(s)", kept, pages)
	}
	t.Logf("%d posted, %d kept from id %d, read in %d pages", n, kept, first, pages)
}

// TestDemoLongPollEpoch: with the current epoch a cursor holds even above
// the last id (a short poll answers an empty page, a long poll waits for
// the next message); with another epoch it counts as 0; a bad epoch gets
// 400.
func TestDemoLongPollEpoch(t *testing.T) {
	base := "http://" + startDemos(t)
	c := &http.Client{Timeout: 10 * time.Second}
	var id struct{ ID int64 }
	post(t, c, base+"/new-message", url.Values{"msg": {"a"}}, &id)
	var r pageReply
	if !post(t, c, base+"/poll-message", url.Values{}, &r) || r.Epoch == 0 || len(r.Messages) != 1 {
		t.Fatalf("first poll: %+v", r)
	}
	epoch := strconv.FormatInt(r.Epoch, 10)
	for _, tc := range []struct {
		cursor, epoch string
		want          int
	}{
		{"999", epoch, 0}, // seen elsewhere: nothing here yet, not a repeat
		{"999", "", 1},    // no epoch: from an earlier process
		{"1", strconv.FormatInt(r.Epoch-1, 10), 1}, // an earlier log's ids
		{"1", epoch, 0},
		{"0", epoch, 1},
	} {
		var p pageReply
		if post(t, c, base+"/poll-message", url.Values{"cursor": {tc.cursor}, "epoch": {tc.epoch}}, &p) && (len(p.Messages) != tc.want || p.Epoch != r.Epoch) {
			t.Errorf("cursor %s epoch %q: %+v, want %d message(s) in epoch %d", tc.cursor, tc.epoch, p, tc.want, r.Epoch)
		}
	}
	done := make(chan pageReply, 1)
	go func() {
		var p pageReply
		post(t, c, base+"/update-message", url.Values{"cursor": {"5"}, "epoch": {epoch}}, &p)
		done <- p
	}()
	waitParked(t, c, base, 1)
	// Ids 2..5 do not answer it; 6 does, alone.
	for i := 2; i <= 6; i++ {
		post(t, c, base+"/new-message", url.Values{"msg": {strconv.Itoa(i)}}, &id)
	}
	select {
	case p := <-done:
		if len(p.Messages) != 1 || p.Messages[0] != (chatMessage{6, "6"}) {
			t.Fatalf("long poll after cursor 5: %+v, want only id 6", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll after cursor 5 not answered by id 6")
	}
	for _, bad := range []string{"x", "-1"} {
		code, body := postRaw(t, c, base+"/poll-message", url.Values{"epoch": {bad}})
		if code != 400 || !strings.Contains(string(body), "epoch") {
			t.Errorf("epoch=%s: %d %q, want 400 naming the epoch", bad, code, body)
		}
	}
}

// TestDemoLongPollClockBeforeFirstTick: a page that opens before the
// clock's first tick learns the head of the history's first epoch
// (E-0); the first tick starts epoch 1, which makes that position beyond
// the history (pubsub.Position.Beyond). A long poll parked there must be
// answered by that tick (the oldest kept, missed -1), not left waiting for
// a position above E-0 that never comes: it waited until its timeout,
// and the page's clock took the silence for a lost connection.
func TestDemoLongPollClockBeforeFirstTick(t *testing.T) {
	c := &http.Client{Timeout: 10 * time.Second}
	for attempt := range 5 {
		server := startDemos(t)
		var page struct {
			Head     string
			Messages []struct{ Pos string }
			Missed   int64
		}
		if !post(t, c, "http://"+server+"/poll-message?topic=clock", url.Values{}, &page) {
			return
		}
		if strings.HasPrefix(page.Head, "1-") {
			t.Logf("attempt %d: the first tick came first (head %s); again", attempt, page.Head)
			continue
		}
		start := time.Now()
		if !post(t, c, "http://"+server+"/update-message?topic=clock", url.Values{"since": {page.Head}}, &page) {
			return
		}
		if d := time.Since(start); d > 2500*time.Millisecond {
			t.Fatalf("the poll at %s waited %v for the first tick", page.Head, d)
		}
		if len(page.Messages) == 0 || !strings.HasPrefix(page.Messages[0].Pos, "1-") || page.Missed != -1 {
			t.Fatalf("answer %+v: want the first tick with missed -1", page)
		}
		return
	}
	t.Fatal("the clock ticked before every one of five first polls")
}
