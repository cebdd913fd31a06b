package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop/pubsub"
)

// posReply is a poll's answer with the fields the position cases check.
type posReply struct {
	Epoch    int64         `json:"epoch"`
	Messages []chatMessage `json:"messages"`
	Head     string        `json:"head"`
	Missed   int64         `json:"missed"`
}

// positionKind is what a resume position means to every transport.
type positionKind int

const (
	fromNow positionKind = iota // nothing recovered, the real head, the next message live
	lagging                     // this node is behind the client: the client's head, later messages only
	goneAt                      // not of this history: gone with the real head (polls: the oldest kept, missed -1)
	badPos                      // not a position: 1008 on a WebSocket, 400 on SSE and polls
)

// TestPositionsEveryTransport: the same since means the same on /ws,
// /sse (?since= and Last-Event-ID), /poll-message and /update-message:
// 0-0 is from now; ahead of the node within pubsub.MaxLead in its epoch is
// the node lagging; further ahead, or a newer epoch, is gone with the
// real head (and live messages still arrive); text that is not a
// canonical position (E-+1, leading zeros, signs) is refused.
func TestPositionsEveryTransport(t *testing.T) {
	addr := startDemos(t)
	base := "http://" + addr
	c := &http.Client{Timeout: 10 * time.Second}
	for _, m := range []string{"a", "b", "c"} {
		publishChat(t, addr, m)
	}
	realHead := func() pubsub.Position {
		t.Helper()
		var r posReply
		if !post(t, c, base+"/poll-message", url.Values{"since": {"0-0"}}, &r) {
			t.FailNow()
		}
		p, err := pubsub.ParsePosition(r.Head)
		if err != nil || p.Offset == 0 {
			t.Fatalf("head %q: %v", r.Head, err)
		}
		return p
	}
	e := realHead().Epoch
	at := func(epoch, off int64) func(pubsub.Position) string {
		return func(h pubsub.Position) string { return pubsub.Position{Epoch: epoch, Offset: off}.String() }
	}
	ahead := func(n int64) func(pubsub.Position) string {
		return func(h pubsub.Position) string { return pubsub.Position{Epoch: h.Epoch, Offset: h.Offset + n}.String() }
	}
	text := func(s string) func(pubsub.Position) string { return func(pubsub.Position) string { return s } }
	es := strconv.FormatInt(e, 10)
	for _, tc := range []struct {
		name  string
		since func(head pubsub.Position) string
		kind  positionKind
		live  bool // publish and check what arrives (not for the far bound: MaxLead messages)
	}{
		{"zero", text("0-0"), fromNow, true},
		{"head", ahead(0), fromNow, true},
		{"lag", ahead(3), lagging, true},
		{"lead bound", ahead(pubsub.MaxLead), lagging, false},
		{"beyond the bound", ahead(pubsub.MaxLead + 1), goneAt, true},
		{"max offset", at(e, 1<<63-1), goneAt, true},
		{"newer epoch", at(e+1, 1), goneAt, true},
		{"newer epoch, no offset", at(e+1, 0), goneAt, false},
		{"far epoch", at(1<<63-1, 1<<63-1), goneAt, false},
		{"older epoch", at(e-1, 1), goneAt, true},
		{"plus offset", text(es + "-+1"), badPos, false},
		{"plus epoch", text("+" + es + "-1"), badPos, false},
		{"leading zero", text(es + "-01"), badPos, false},
		{"minus zero", text(es + "--0"), badPos, false},
		{"zero zero zero", text("00-0"), badPos, false},
		{"space", text(es + " -1"), badPos, false},
		{"overflow", text(es + "-9223372036854775808"), badPos, false},
		{"garbage", text("12x"), badPos, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := realHead()
			since := tc.since(head)
			// What every transport must answer as the client's head.
			wantHead := head
			if tc.kind == lagging {
				wantHead, _ = pubsub.ParsePosition(since)
			}
			q := url.Values{"since": {since}}.Encode()

			// WebSocket.
			ws := dial(t, addr, "/ws?"+q)
			var wsLive *gws.Conn
			if tc.kind == badPos {
				if _, _, err := ws.ReadMessage(); !gws.IsCloseError(err, 1008) {
					t.Errorf("ws: %v, want close 1008", err)
				}
			} else {
				var rec []wsFrame
				var s subscribed
				for {
					f := readFrame(t, ws)
					if f.Ctl != nil {
						s = *f.Ctl
						break
					}
					rec = append(rec, f)
				}
				if len(rec) != 0 || s.Gone != (tc.kind == goneAt) || s.Head != wantHead.String() {
					t.Errorf("ws since %s (head %s): %d recovered, %+v; want gone %v head %s", since, head, len(rec), s, tc.kind == goneAt, wantHead)
				}
				wsLive = ws
			}

			// Server-Sent Events, by ?since= and by Last-Event-ID.
			var sseLive []*rawSSE
			for _, how := range []string{"query", "header"} {
				target, lastID := "/sse?"+q, ""
				if how == "header" {
					target, lastID = "/sse", since
				}
				if tc.kind == badPos {
					req, _ := http.NewRequest("GET", base+target, nil)
					if lastID != "" {
						req.Header.Set("Last-Event-ID", lastID)
					}
					resp, err := c.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != 400 {
						t.Errorf("sse by %s: %s, want 400", how, resp.Status)
					}
					continue
				}
				s := openRawSSE(t, addr, target, lastID)
				_, rec, sub := s.subscribed(t)
				if len(rec) != 0 || sub.Gone != (tc.kind == goneAt) || sub.Head != wantHead.String() {
					t.Errorf("sse by %s since %s (head %s): %d recovered, %+v; want gone %v head %s", how, since, head, len(rec), sub, tc.kind == goneAt, wantHead)
				}
				sseLive = append(sseLive, s)
			}

			// Short poll.
			if tc.kind == badPos {
				for _, path := range []string{"/poll-message", "/update-message"} {
					if code, body := postRaw(t, c, base+path, url.Values{"since": {since}}); code != 400 {
						t.Errorf("%s: %d %q, want 400", path, code, body)
					}
				}
				return
			}
			var r posReply
			if post(t, c, base+"/poll-message", url.Values{"since": {since}}, &r) {
				switch tc.kind {
				case goneAt:
					if r.Missed != -1 || len(r.Messages) == 0 || r.Messages[0].ID > head.Offset || r.Epoch != e {
						t.Errorf("poll since %s: %+v, want the oldest kept with missed -1", since, r)
					}
				default:
					if r.Missed != 0 || len(r.Messages) != 0 || r.Head != wantHead.String() {
						t.Errorf("poll since %s: %+v, want nothing and head %s", since, r, wantHead)
					}
				}
			}

			// Long poll: gone answers at once; from now and lagging wait.
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan posReply, 1)
			go func() {
				var r posReply
				req, _ := http.NewRequestWithContext(ctx, "POST", base+"/update-message", strings.NewReader(url.Values{"since": {since}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if resp, err := c.Do(req); err == nil {
					json.NewDecoder(resp.Body).Decode(&r)
					resp.Body.Close()
				}
				done <- r
			}()
			defer func() {
				// Let the next case start with no poll parked.
				cancel()
				<-done
				waitWaiting(t, c, base, 0)
			}()
			if tc.kind == goneAt {
				select {
				case r := <-done:
					if r.Missed != -1 || len(r.Messages) == 0 {
						t.Errorf("long poll since %s: %+v, want the oldest kept with missed -1", since, r)
					}
					done <- r // for the deferred wait
				case <-time.After(5 * time.Second):
					t.Errorf("long poll since %s: no answer at once", since)
				}
			} else {
				waitParked(t, c, base, 1)
			}
			if !tc.live {
				return
			}

			// Live: the first message after the client's head arrives,
			// on every transport.
			skip := wantHead.Offset - head.Offset
			for i := int64(0); i <= skip; i++ {
				publishChat(t, addr, fmt.Sprintf("m%d", i))
			}
			want := pubsub.Position{Epoch: e, Offset: head.Offset + skip + 1}
			if f := readFrame(t, wsLive); f.Pos != want {
				t.Errorf("ws live: %+v, want %s", f, want)
			}
			for i, s := range sseLive {
				if ev := s.next(t); ev.id != want.String() {
					t.Errorf("sse %d live: %+v, want %s", i, ev, want)
				}
			}
			if tc.kind != goneAt {
				select {
				case r := <-done:
					if len(r.Messages) != 1 || r.Messages[0].ID != want.Offset {
						t.Errorf("long poll since %s: %+v, want only %s", since, r, want)
					}
					done <- r // for the deferred wait
				case <-time.After(5 * time.Second):
					t.Errorf("long poll since %s: not answered by %s", since, want)
				}
			}
		})
	}
}

// waitWaiting waits until exactly n long polls are parked on the chat.
func waitWaiting(t *testing.T, c *http.Client, base string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var s struct{ Waiting int }
		if post(t, c, base+"/poll-message", url.Values{"since": {"0-0"}}, &s) && s.Waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d long polls parked after 10 s, want %d", s.Waiting, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPositionsPollCursorPair: the older cursor/epoch pair follows the same
// rules as since=: a newer epoch or a cursor beyond MaxLead is gone at
// once (missed -1), not a poll that waits for positions that never come.
func TestPositionsPollCursorPair(t *testing.T) {
	addr := startDemos(t)
	base := "http://" + addr
	c := &http.Client{Timeout: 10 * time.Second}
	publishChat(t, addr, "a")
	var r posReply
	if !post(t, c, base+"/poll-message", url.Values{}, &r) || len(r.Messages) != 1 {
		t.Fatalf("first poll: %+v", r)
	}
	for _, form := range []url.Values{
		{"cursor": {"1"}, "epoch": {strconv.FormatInt(r.Epoch+1, 10)}},
		{"cursor": {strconv.FormatInt(2+pubsub.MaxLead, 10)}, "epoch": {strconv.FormatInt(r.Epoch, 10)}},
	} {
		var p posReply
		if post(t, c, base+"/update-message", form, &p) && (p.Missed != -1 || len(p.Messages) != 1 || p.Head != r.Head) {
			t.Errorf("%v: %+v, want the kept message, missed -1, head %s", form, p, r.Head)
		}
	}
}
