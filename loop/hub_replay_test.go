package loop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop/pubsub"
)

// replayMsg is message i of the large-history tests: 64 KB, its number
// first.
func replayMsg(i int) []byte {
	b := fmt.Appendf(nil, "m%d:", i)
	return append(b, bytes.Repeat([]byte{'x'}, 64<<10-len(b))...)
}

// replayRoute subscribes with ?since= and, once the replay is written,
// says {"caught":true} (AfterReplay).
type replayRoute struct {
	WebSocketBase
	hub *Hub
}

func (h replayRoute) Open(w *WebSocket) {
	since, _ := pubsub.ParsePosition(w.Request().GetArgument("since", ""))
	if _, err := h.hub.SubscribeSince("t", w, since); err != nil {
		w.Close(CloseInternalError, err.Error())
		return
	}
	if err := h.hub.AfterReplay("t", w, func() { w.WriteText([]byte(`{"caught":true}`)) }); err != nil {
		w.Close(CloseInternalError, err.Error())
	}
}

// TestHubReplayLargeHistory: a client resuming from the start of 8 MB of
// history (130 × 64 KB, eight times MaxUnsentPerConn) gets every message
// once, in order, then the live ones, on one connection, WebSocket and SSE
// alike; messages published during the replay come once, in their place;
// AfterReplay's message follows the replay; an echo beside stays fast.
// Before the replay was paced, the WebSocket was closed as a slow consumer
// after about 16 messages and the stream after about 16 events.
func TestHubReplayLargeHistory(t *testing.T) {
	t.Run("hub", func(t *testing.T) { testReplayLargeHistory(t, nil) })
	// The history in the broker: the replay reads it with History.
	t.Run("memorybroker", func(t *testing.T) { testReplayLargeHistory(t, &pubsub.MemoryBroker{}) })
}

func testReplayLargeHistory(t *testing.T, broker pubsub.Broker) {
	const kept, during = 130, 5
	var hub *Hub
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, broker)
		hub.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 1000}, func(err error) {
			if err != nil {
				t.Error(err)
			}
		})
		app.HandleWebSocket("/h", func(*Request) WebSocketHandler { return replayRoute{hub: hub} }, WSOptions{})
		app.HandleWebSocket("/echo", wsEchoRoute(WSOptions{}), WSOptions{})
		app.Handle("/sse", Methods{Get: func(r *Request) {
			es, err := r.EventStream(EventStreamOptions{})
			if err != nil {
				return
			}
			since, _ := pubsub.ParsePosition(es.LastEventID())
			if _, err := hub.SubscribeStream("t", es, since); err != nil {
				es.Close()
				return
			}
			hub.AfterStreamReplay("t", es, func() { es.Send("", "caught", []byte("true")) })
		}})
	})
	for i := 1; i <= kept; i++ {
		onLoop(l, func() error { return hub.Publish("t", replayMsg(i)) })
	}
	var head pubsub.Position
	waitFor(t, "the history to hold every message", func() bool {
		head = onLoop(l, func() pubsub.Position { p, _ := hub.Head("t"); return p })
		return head.Offset == kept
	})
	start := pubsub.Position{Epoch: head.Epoch}.String() // before the first

	ws := gorillaDial(t, addr, "/h?since="+start, nil)
	resp, err := http.Get("http://" + addr + "/sse?lastEventId=" + start)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sse := bufio.NewReaderSize(resp.Body, 128<<10)
	echo := gorillaDial(t, addr, "/echo", nil)

	type got struct {
		pos    pubsub.Position
		data   string
		caught bool
	}
	readWS := func() (got, error) {
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, m, err := ws.ReadMessage()
		if err != nil {
			return got{}, err
		}
		if string(m) == `{"caught":true}` {
			return got{caught: true}, nil
		}
		ps, data, _ := strings.Cut(string(m), "\n")
		p, err := pubsub.ParsePosition(ps)
		if err != nil {
			return got{}, fmt.Errorf("not a positioned frame: %.20q", m)
		}
		return got{pos: p, data: data}, nil
	}
	readSSE := func() (got, error) {
		var g got
		id := ""
		for {
			line, err := sse.ReadString('\n')
			if err != nil {
				return g, err
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "" && g.caught:
				return g, nil
			case line == "" && id != "":
				p, err := pubsub.ParsePosition(id)
				g.pos = p
				return g, err
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case line == "event: caught":
				g.caught = true
			case strings.HasPrefix(line, "data: "):
				g.data = line[6:]
			}
		}
	}
	// Both read at full speed, one goroutine each; the test
	// publishes during the replay, and once more when both caught up.
	caughtCh, results := make(chan string, 2), make(chan error, 2)
	liveSent := make(chan struct{})
	check := func(name string, read func() (got, error)) {
		results <- func() error {
			next, caught, signalled := 1, false, false
			for next <= kept+during+1 {
				if caught && next == kept+during+1 && !signalled {
					signalled = true
					caughtCh <- name
					<-liveSent
				}
				g, err := read()
				if err != nil {
					return fmt.Errorf("%s: after %d messages: %w", name, next-1, err)
				}
				switch {
				case g.caught && (caught || next <= kept):
					return fmt.Errorf("%s: caught-up marker after %d messages", name, next-1)
				case g.caught:
					caught = true
					continue
				case g.pos.Offset != int64(next) || g.pos.Epoch != head.Epoch:
					return fmt.Errorf("%s: got %v, want offset %d", name, g.pos, next)
				case g.data != string(replayMsg(next)):
					return fmt.Errorf("%s: message %d: wrong data (%d bytes)", name, next, len(g.data))
				}
				next++
			}
			if !caught {
				return fmt.Errorf("%s: no caught-up marker", name)
			}
			return nil
		}()
	}
	go check("websocket", readWS)
	go check("sse", readSSE)
	for i := kept + 1; i <= kept+during; i++ {
		onLoop(l, func() error { return hub.Publish("t", replayMsg(i)) })
	}
	// The canary: echo round trips while both replays run.
	for range 5 {
		t0 := time.Now()
		echo.WriteMessage(gws.TextMessage, []byte("ping"))
		if m := readText(t, echo); m != "ping" {
			t.Fatalf("echo %q", m)
		}
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("echo took %v during the replays", d)
		}
	}
	timeout := time.After(20 * time.Second)
	for caught := 0; caught < 2; {
		select {
		case <-caughtCh:
			caught++
		case err := <-results:
			t.Fatal(err) // ended before catching up
		case <-timeout:
			t.Fatal("timed out waiting for the replays to catch up")
		}
	}
	onLoop(l, func() error { return hub.Publish("t", replayMsg(kept+during+1)) })
	close(liveSent)
	for range 2 {
		select {
		case err := <-results:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatal("timed out waiting for the live message")
		}
	}
	// Caught up: the cursors are gone, both are live subscribers.
	n := onLoop(l, func() int {
		th := hub.topics["t"].hist
		return len(th.wsReplays) + len(th.esReplays)*10 + len(th.pos)*100 + len(th.streams)*1000
	})
	if n != 1100 {
		t.Fatalf("replays/subscribers: %d, want 1100 (no replay, one of each)", n)
	}
}

// TestSlowConsumerCloseFrame: a WebSocket closed as a slow consumer gets
// its close frame (1008) once it reads, after what was queued before it,
// and an event stream ends with its last chunk, so that EventSource
// resumes at once; a canary reading beside gets everything. Before, the
// unsent output was dropped with the close frame and the client saw a
// bare FIN (a browser reports 1006), and the stream ended without its
// last chunk (net/http: unexpected EOF).
func TestSlowConsumerCloseFrame(t *testing.T) {
	var hub *Hub
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, nil)
		hub.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 4}, nil)
		app.HandleWebSocket("/h", func(*Request) WebSocketHandler { return replayRoute{hub: hub} }, WSOptions{MaxUnsentPerConn: 256 << 10})
		// The canary may hold every message unsent: it reads, but the
		// test publishes faster than a client under -race reads.
		app.HandleWebSocket("/canary", func(*Request) WebSocketHandler { return replayRoute{hub: hub} }, WSOptions{MaxUnsentPerConn: 8 << 20})
		app.Handle("/sse", Methods{Get: func(r *Request) {
			es, err := r.EventStream(EventStreamOptions{MaxUnsentPerConn: 256 << 10})
			if err == nil {
				hub.SubscribeStream("t", es, pubsub.Position{})
			}
		}})
	})
	slow := gorillaDial(t, addr, "/h?since=", nil)
	canary := gorillaDial(t, addr, "/canary?since=", nil)
	if m := readText(t, slow); m != `{"caught":true}` {
		t.Fatalf("slow: %q", m)
	}
	if m := readText(t, canary); m != `{"caught":true}` {
		t.Fatalf("canary: %q", m)
	}
	resp, err := http.Get("http://" + addr + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	waitFor(t, "three subscribers", func() bool {
		return onLoop(l, func() int {
			th := hub.topics["t"].hist
			return len(th.pos) + len(th.streams)
		}) == 3
	})
	const msgs = 60 // 3.8 MB: far past 256 KB and the kernel's buffers
	canaryDone := make(chan error, 1)
	go func() {
		for i := 1; i <= msgs; i++ {
			canary.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, m, err := canary.ReadMessage()
			if err != nil {
				canaryDone <- err
				return
			}
			if _, data, _ := strings.Cut(string(m), "\n"); data != string(replayMsg(i)) {
				canaryDone <- fmt.Errorf("canary: message %d wrong", i)
				return
			}
		}
		canaryDone <- nil
	}()
	for i := 1; i <= msgs; i++ {
		onLoop(l, func() error { return hub.Publish("t", replayMsg(i)) })
	}
	if err := <-canaryDone; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the slow ones dropped", func() bool {
		return onLoop(l, func() int {
			th := hub.topics["t"].hist
			return len(th.pos) + len(th.streams)
		}) == 1
	})
	time.Sleep(100 * time.Millisecond) // the loop would have dropped the output by now
	// The slow clients read now (both at once: each has a second before
	// the loop drops its output). The WebSocket: the messages queued
	// before the close, in order, then the close frame. The stream:
	// events, then the end of the body.
	sseEnd := make(chan error, 1)
	go func() {
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			err = fmt.Errorf("slow stream ended with %v after %d bytes, want a clean end", err, n)
		}
		sseEnd <- err
	}()
	for i := 1; ; i++ {
		slow.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, m, err := slow.ReadMessage()
		if err != nil {
			var ce *gws.CloseError
			if !errors.As(err, &ce) || ce.Code != int(ClosePolicy) {
				t.Fatalf("slow websocket ended with %v after %d messages, want close 1008", err, i-1)
			}
			break
		}
		if _, data, _ := strings.Cut(string(m), "\n"); data != string(replayMsg(i)) {
			t.Fatalf("slow websocket: message %d wrong", i)
		}
	}
	if err := <-sseEnd; err != nil {
		t.Fatal(err)
	}
	// The canary is still subscribed and live.
	onLoop(l, func() error { return hub.Publish("t", []byte("after")) })
	if _, data, _ := strings.Cut(readText(t, canary), "\n"); data != "after" {
		t.Fatalf("canary after: %q", data)
	}
}

// TestHubReplayOvertaken: a resuming client that stops reading holds at
// most half its bound of replay (not closed as a slow consumer); when the
// history's bounds drop what it has not read yet, it gets the messages it
// had in order and then close 1013, never a silent gap, and resumes.
func TestHubReplayOvertaken(t *testing.T) {
	const limit = 1 << 20
	var hub *Hub
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, nil)
		hub.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 40}, nil)
		app.HandleWebSocket("/h", func(*Request) WebSocketHandler { return replayRoute{hub: hub} }, WSOptions{MaxUnsentPerConn: limit})
	})
	for i := 1; i <= 40; i++ {
		onLoop(l, func() error { return hub.Publish("t", replayMsg(i)) })
	}
	head := onLoop(l, func() pubsub.Position { p, _ := hub.Head("t"); return p })
	c := gorillaDial(t, addr, "/h?since="+pubsub.Position{Epoch: head.Epoch}.String(), nil)
	waitFor(t, "the replay to wait for the client", func() bool {
		return onLoop(l, func() int { return len(hub.topics["t"].hist.wsReplays) }) == 1
	})
	time.Sleep(50 * time.Millisecond) // a few polls: nothing more is written
	if m := l.Metrics(); m.UnsentBytes > limit/2+64<<10 || m.SlowConsumerCloses != 0 {
		t.Fatalf("a replaying non-reader holds %d bytes unsent, %d slow closes; want <= half its bound, none", m.UnsentBytes, m.SlowConsumerCloses)
	}
	// 40 more: the history (40 kept) no longer has what comes next.
	for i := 41; i <= 80; i++ {
		onLoop(l, func() error { return hub.Publish("t", replayMsg(i)) })
	}
	for i := 1; ; i++ {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, m, err := c.ReadMessage()
		if err != nil {
			var ce *gws.CloseError
			if !errors.As(err, &ce) || ce.Code != int(CloseTryAgainLater) || i == 1 || i > 40 {
				t.Fatalf("after %d messages: %v, want close 1013 mid-replay", i-1, err)
			}
			break
		}
		if _, data, _ := strings.Cut(string(m), "\n"); data != string(replayMsg(i)) {
			t.Fatalf("message %d wrong (%.12q)", i, m)
		}
	}
	waitFor(t, "the replay dropped", func() bool {
		return onLoop(l, func() int { th := hub.topics["t"].hist; return len(th.wsReplays) + len(th.pos) }) == 0
	})
}
