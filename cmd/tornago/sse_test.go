package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tornago/tornago/loop/pubsub"
)

// rawSSE is an SSE client on a bare TCP connection: it writes the request
// itself and reads the chunked text/event-stream byte by byte.
type rawSSE struct {
	c  net.Conn
	br *bufio.Reader
}

type sseEv struct{ id, event, data string }

func openRawSSE(t *testing.T, addr, target, lastID string) *rawSSE {
	t.Helper()
	return openRawSSEWith(t, addr, target, lastID, "")
}

// openRawSSEWith is openRawSSE sending the extra header lines (each ending
// in CRLF).
func openRawSSEWith(t *testing.T, addr, target, lastID, extra string) *rawSSE {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n" + extra
	if lastID != "" {
		req += "Last-Event-ID: " + lastID + "\r\n"
	}
	c.Write([]byte(req + "\r\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("%s: %s %v %v", target, resp.Status, resp.Header, resp.TransferEncoding)
	}
	// http.ReadResponse would hide the chunking; read it ourselves.
	return &rawSSE{c: c, br: bufio.NewReader(httputil.NewChunkedReader(br))}
}

// next reads one event, skipping comments (heartbeats) and the retry field.
func (s *rawSSE) next(t *testing.T) sseEv {
	t.Helper()
	s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ev sseEv
	var data []string
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.id != "" || ev.event != "" || data != nil {
				ev.data = strings.Join(data, "\n")
				return ev
			}
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry:"):
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[6:])
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}
}

func (s *rawSSE) subscribed(t *testing.T) (sseEv, []sseEv, subscribed) {
	t.Helper()
	var got []sseEv
	for {
		ev := s.next(t)
		if ev.event == "subscribed" {
			var sub subscribed
			if err := json.Unmarshal([]byte(ev.data), &sub); err != nil || sub.Head != ev.id {
				t.Fatalf("subscribed event %+v: %v", ev, err)
			}
			return ev, got, sub
		}
		got = append(got, ev)
	}
}

// TestSSE: /sse carries the chat with positions as event ids, the same
// string as a /ws?since= client's and a long poll's "pos" for the same
// message; it resumes after Last-Event-ID; /sse?topic=clock carries ticks
// whose id is 1-<second>; HEAD, a bad Last-Event-ID and an unknown topic
// are answered without a stream.
func TestSSE(t *testing.T) {
	addr := startDemos(t)
	s := openRawSSE(t, addr, "/sse", "")
	first, rec, sub := s.subscribed(t)
	if len(rec) != 0 || sub.Gone || first.id == "" {
		t.Fatalf("fresh stream: %v %+v", rec, sub)
	}
	ws, _, _ := resume(t, addr, "/ws", first.id)
	publishChat(t, addr, "two\nlines")
	ev := s.next(t)
	f := readFrame(t, ws)
	if ev.data != "two\nlines" || ev.event != "" || ev.id != f.Pos.String() || f.Body != "two\nlines" {
		t.Fatalf("sse %+v, ws %+v: one message, one position", ev, f)
	}
	var page struct {
		Messages []struct{ Pos, Body string }
		Head     string
	}
	post(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/poll-message", url.Values{"since": {first.id}}, &page)
	if len(page.Messages) != 1 || page.Messages[0].Pos != ev.id || page.Head != ev.id {
		t.Fatalf("poll since %s: %+v, want pos %s", first.id, page, ev.id)
	}
	s.c.Close()
	publishChat(t, addr, "three")
	s2 := openRawSSE(t, addr, "/sse", ev.id)
	_, rec, sub = s2.subscribed(t)
	if len(rec) != 1 || rec[0].data != "three" || sub.Recovered != 1 || sub.Head != rec[0].id {
		t.Fatalf("resumed after %s: %v %+v", ev.id, rec, sub)
	}
	// ?since= does the same for a page's first EventSource.
	s3 := openRawSSE(t, addr, "/sse?since="+url.QueryEscape(ev.id), "")
	if _, rec, _ := s3.subscribed(t); len(rec) != 1 || rec[0].data != "three" {
		t.Fatalf("since= %v", rec)
	}

	ck := openRawSSE(t, addr, "/sse?topic=clock", "")
	_, _, csub := ck.subscribed(t)
	tick := ck.next(t)
	var body struct{ Seq int64 }
	json.Unmarshal([]byte(tick.data), &body)
	if tick.id != fmt.Sprintf("%d-%d", clockEpoch, body.Seq) {
		t.Fatalf("tick %+v after head %s", tick, csub.Head)
	}
	// The clock resumes on ticks too: the next reconnect gets what passed.
	p, _ := pubsub.ParsePosition(tick.id)
	time.Sleep(1100 * time.Millisecond)
	ck2 := openRawSSE(t, addr, "/sse?topic=clock", pubsub.Position{Epoch: clockEpoch, Offset: p.Offset - 1}.String())
	if _, rec, _ := ck2.subscribed(t); len(rec) < 2 || rec[0].id != tick.id {
		t.Fatalf("clock resumed: %v", rec)
	}

	c := http.Client{Timeout: 5 * time.Second}
	for _, tc := range []struct {
		method, target, last string
		want                 int
	}{
		{"GET", "/sse?topic=nope", "", 404},
		{"GET", "/sse", "garbage", 400},
		{"HEAD", "/sse", "", 200},
		{"POST", "/sse", "", 405},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+addr+tc.target, nil)
		if tc.last != "" {
			req.Header.Set("Last-Event-ID", tc.last)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.target, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s (Last-Event-ID %q): %d, want %d", tc.method, tc.target, tc.last, resp.StatusCode, tc.want)
		}
	}

	// An unknown topic is quoted in the 404: a name that is not UTF-8
	// must not make the charset=UTF-8 body invalid.
	for _, target := range []string{"/sse?topic=%FF%FEx", "/poll-message?topic=%FF%FEx"} {
		resp, err := c.Get("http://" + addr + target)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || !utf8.Valid(body) || string(body) != "no such topic: \"\\xff\\xfex\"\n" {
			t.Errorf("%s: %d %q", target, resp.StatusCode, body)
		}
	}
}
