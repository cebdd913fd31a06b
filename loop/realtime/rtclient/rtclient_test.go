package rtclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime/rtclient"
	"github.com/tornago/tornago/proto/clientproto"
)

// clientLoop starts a loop for clients (no listener) and stops it at the
// end of the test.
func clientLoop(t testing.TB) *loop.Loop {
	t.Helper()
	l := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	go l.Start()
	<-l.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
	})
	return l
}

// recv waits for a value on ch.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// events records a client's callbacks as strings, in order.
type events chan string

func (e events) options(o rtclient.Options) rtclient.Options {
	o.OnState = func(_ *rtclient.Client, s rtclient.State) { e <- "state " + s.String() }
	o.OnDisconnect = func(_ *rtclient.Client, d clientproto.Disconnect) {
		e <- fmt.Sprintf("disconnect %d %v", d.Code, d.Reconnect)
	}
	o.OnSubscribe = func(_ *rtclient.Client, topic string, r rtclient.SubscribeResult, err error) {
		if err != nil {
			e <- "subscribe " + topic + " error " + err.Error()
			return
		}
		e <- fmt.Sprintf("subscribe %s head %s recovered %d gone %v", topic, r.Head, r.Recovered, r.Gone)
	}
	return o
}

// expect waits for an event with the given prefix, skipping others.
func (e events) expect(t testing.TB, prefix string) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case s := <-e:
			if strings.HasPrefix(s, prefix) {
				return s
			}
		case <-deadline:
			t.Fatalf("timed out waiting for event %q", prefix)
		}
	}
}

func TestSubscribePublishRPC(t *testing.T) {
	s := newPServer(t)
	l := clientLoop(t)
	ev := make(events, 100)
	c, err := rtclient.Dial(l, s.url(), ev.options(rtclient.Options{Token: "ann", Timeout: 300 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pubs := make(chan rtclient.Publication, 10)
	subDone := make(chan error, 1)
	c.Subscribe("chat", pubsub.Position{}, func(p rtclient.Publication) { pubs <- p },
		func(_ rtclient.SubscribeResult, err error) { subDone <- err })
	ev.expect(t, "state connected")
	if err := recv(t, subDone, "subscribe reply"); err != nil {
		t.Fatal(err)
	}

	acked := make(chan pubsub.Position, 1)
	c.Publish("chat", json.RawMessage(`{"text":"hi"}`), func(p pubsub.Position, err error) {
		if err != nil {
			t.Error(err)
		}
		acked <- p
	})
	if p := recv(t, acked, "publish ack"); p != (pubsub.Position{Epoch: 7, Offset: 1}) {
		t.Errorf("publish ack: %v, want 7-1", p)
	}
	p := recv(t, pubs, "publication")
	if p.Topic != "chat" || p.Pos.String() != "7-1" || string(p.Data) != `{"text":"hi"}` {
		t.Errorf("publication: %+v %s", p, p.Data)
	}

	type rpcRes struct {
		data json.RawMessage
		err  error
	}
	rpcs := make(chan rpcRes, 3)
	done := func(d json.RawMessage, err error) { rpcs <- rpcRes{d, err} }
	c.RPC("echo", json.RawMessage(`[1,2]`), done)
	if r := recv(t, rpcs, "rpc"); r.err != nil || string(r.data) != "[1,2]" {
		t.Errorf("rpc echo: %s %v", r.data, r.err)
	}
	c.RPC("nope", nil, done)
	var pe *clientproto.Error
	if r := recv(t, rpcs, "rpc"); !errors.As(r.err, &pe) || pe.Code != clientproto.ErrMethodNotFound {
		t.Errorf("rpc nope: %v, want error 104", r.err)
	}
	c.RPC("silent", nil, done)
	if r := recv(t, rpcs, "rpc"); !errors.Is(r.err, rtclient.ErrTimeout) {
		t.Errorf("rpc silent: %v, want ErrTimeout", r.err)
	}

	c.Subscribe("forbidden", pubsub.Position{}, nil, func(_ rtclient.SubscribeResult, err error) { subDone <- err })
	if err := recv(t, subDone, "subscribe reply"); !errors.As(err, &pe) || pe.Code != clientproto.ErrPermissionDenied {
		t.Errorf("subscribe forbidden: %v, want error 103", err)
	}
	c.Subscribe("chat", pubsub.Position{}, nil, func(_ rtclient.SubscribeResult, err error) { subDone <- err })
	if err := recv(t, subDone, "subscribe reply"); !errors.Is(err, rtclient.ErrSubscribed) {
		t.Errorf("subscribe twice: %v, want ErrSubscribed", err)
	}
	pinged := make(chan error, 1)
	c.Ping(func(err error) { pinged <- err })
	if err := recv(t, pinged, "ping"); err != nil {
		t.Error(err)
	}
	c.Unsubscribe("chat")
	c.Ping(func(err error) { pinged <- err }) // the server has the unsubscribe when it answers
	recv(t, pinged, "ping")
	s.Publish("chat", `"after"`)
	c.Ping(func(err error) { pinged <- err }) // a round trip after the publication
	recv(t, pinged, "ping")
	select {
	case p := <-pubs:
		t.Errorf("publication after Unsubscribe: %+v", p)
	default:
	}
	_, cmds := s.stats()
	if !strings.Contains(strings.Join(cmds, " "), "unsubscribe:chat") {
		t.Errorf("the server got no unsubscribe: %v", cmds)
	}
}

// collect returns a handler that sends each publication's data as text.
func collect(ch chan string) func(rtclient.Publication) {
	return func(p rtclient.Publication) { ch <- string(p.Data) }
}

// TestResumeAcrossRestart: the server stops (1001), publications happen
// meanwhile (the history is kept, as with JetStream), the client reconnects
// and resubscribes from its position: it gets every missed publication
// once, in order, then the live ones.
func TestResumeAcrossRestart(t *testing.T) {
	s := newPServer(t)
	l := clientLoop(t)
	ev := make(events, 100)
	c, _ := rtclient.Dial(l, s.url(), ev.options(rtclient.Options{Token: "ann", Reconnect: true,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}))
	defer c.Close()
	got := make(chan string, 100)
	c.Subscribe("news", pubsub.Position{}, collect(got), nil)
	ev.expect(t, "subscribe news head 7-0 recovered 0")
	s.Publish("news", "1")
	s.Publish("news", "2")
	recv(t, got, "1")
	recv(t, got, "2")

	s.stop()
	ev.expect(t, "disconnect 1001 true")
	s.mu.Lock() // published on another process while this one was down
	for i := 3; i <= 5; i++ {
		s.hist["news"] = append(s.hist["news"], clientproto.Publication{Pos: "7-" + strconv.Itoa(i), Data: json.RawMessage(strconv.Itoa(i))})
	}
	s.mu.Unlock()
	s.start()
	ev.expect(t, "subscribe news head 7-5 recovered 3 gone false")
	s.Publish("news", "6")
	for i := 3; i <= 6; i++ {
		if v := recv(t, got, "publication"); v != strconv.Itoa(i) {
			t.Fatalf("got %s, want %d", v, i)
		}
	}
	_, cmds := s.stats()
	if !strings.Contains(strings.Join(cmds, " "), "subscribe:news@7-2") {
		t.Errorf("the client did not resubscribe from 7-2: %v", cmds)
	}
	ping := make(chan error, 1)
	c.Ping(func(err error) { ping <- err })
	recv(t, ping, "ping")
	select {
	case v := <-got:
		t.Errorf("a publication repeated or extra: %s", v)
	default:
	}
	done := make(chan pubsub.Position, 1)
	l.AddCallback(func() { done <- c.Position("news") })
	if p := recv(t, done, "position"); p.String() != "7-6" {
		t.Errorf("position %v, want 7-6", p)
	}
}

// TestGoneAfterLostHistory: the server restarts without its history (a
// new epoch); the resubscription says gone and the client resumes from
// the new head.
func TestGoneAfterLostHistory(t *testing.T) {
	s := newPServer(t)
	l := clientLoop(t)
	ev := make(events, 100)
	c, _ := rtclient.Dial(l, s.url(), ev.options(rtclient.Options{Reconnect: true, MinBackoff: 50 * time.Millisecond}))
	defer c.Close()
	got := make(chan string, 100)
	c.Subscribe("news", pubsub.Position{}, collect(got), nil)
	ev.expect(t, "subscribe news")
	s.Publish("news", "1")
	recv(t, got, "1")
	s.restart(false)
	ev.expect(t, "subscribe news head 8-0 recovered 0 gone true")
	s.Publish("news", `"new"`)
	if v := recv(t, got, "publication"); v != `"new"` {
		t.Errorf("got %s, want new", v)
	}
}

// TestDisconnectCodes: 3500 (unauthorized) closes for good; 3005 (token
// expired) reconnects with a token from GetToken, which runs off the loop.
func TestDisconnectCodes(t *testing.T) {
	s := newPServer(t)
	l := clientLoop(t)

	ev := make(events, 100)
	var n atomic.Int32
	offLoop := make(chan bool, 10)
	c, _ := rtclient.Dial(l, s.url(), ev.options(rtclient.Options{Reconnect: true, MinBackoff: 20 * time.Millisecond,
		GetToken: func(context.Context) (string, error) {
			offLoop <- !l.InLoop()
			return "tok" + strconv.Itoa(int(n.Add(1))), nil
		}}))
	defer c.Close()
	ev.expect(t, "state connected")
	s.kick(clientproto.DisconnectTokenExpired, "token expired")
	ev.expect(t, "disconnect 3005 true")
	ev.expect(t, "state connected")
	s.kick(clientproto.DisconnectShutdown, "shutdown") // reconnects with the same token
	ev.expect(t, "disconnect 3000 true")
	ev.expect(t, "state connected")
	_, cmds := s.stats()
	if got := strings.Join(cmds, " "); got != "connect:tok1 connect:tok2 connect:tok2" {
		t.Errorf("server saw %q", got)
	}
	for range 2 {
		if !recv(t, offLoop, "GetToken") {
			t.Error("GetToken ran on the loop")
		}
	}

	s.kick(clientproto.DisconnectForced, "disconnected")
	ev.expect(t, "disconnect 3503 false")
	ev.expect(t, "state closed")
	pubErr := make(chan error, 1)
	c.Publish("x", nil, func(_ pubsub.Position, err error) { pubErr <- err })
	if err := recv(t, pubErr, "publish after close"); !errors.Is(err, rtclient.ErrClosed) {
		t.Errorf("publish after close: %v", err)
	}

	// A refused connect: error reported, 3500, no reconnect.
	ev2 := make(events, 100)
	errs := make(chan error, 10)
	o := ev2.options(rtclient.Options{Token: "bad", Reconnect: true, MinBackoff: 20 * time.Millisecond})
	o.OnError = func(_ *rtclient.Client, err error) { errs <- err }
	c2, _ := rtclient.Dial(l, s.url(), o)
	defer c2.Close()
	var pe *clientproto.Error
	if err := recv(t, errs, "connect error"); !errors.As(err, &pe) || pe.Code != clientproto.ErrUnauthorized {
		t.Errorf("connect error %v, want 101", err)
	}
	ev2.expect(t, "disconnect 3500 false")
	ev2.expect(t, "state closed")
}

// TestAutoRefresh: with a ttl, the client refreshes at four fifths of it
// with GetToken's token.
func TestAutoRefresh(t *testing.T) {
	s := newPServer(t)
	s.ttl = 1
	l := clientLoop(t)
	var n atomic.Int32
	c, _ := rtclient.Dial(l, s.url(), rtclient.Options{GetToken: func(context.Context) (string, error) {
		return "t" + strconv.Itoa(int(n.Add(1))), nil
	}})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, cmds := s.stats()
		if strings.Join(cmds, " ") == "connect:t1 refresh:t2 refresh:t3" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, cmds := s.stats()
	t.Errorf("server saw %v, want connect:t1 refresh:t2 refresh:t3", cmds)
}

// TestQueuedWhileReconnecting: a publish made while the client is
// disconnected waits for the next connection and is acknowledged; one
// that waits longer than Timeout fails with ErrTimeout.
func TestQueuedWhileReconnecting(t *testing.T) {
	s := newPServer(t)
	l := clientLoop(t)
	ev := make(events, 100)
	c, _ := rtclient.Dial(l, s.url(), ev.options(rtclient.Options{Reconnect: true, Timeout: 2 * time.Second,
		MinBackoff: 300 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}))
	defer c.Close()
	ev.expect(t, "state connected")
	s.stop()
	ev.expect(t, "disconnect 1001 true")
	acked := make(chan error, 1)
	c.Publish("q", json.RawMessage(`1`), func(_ pubsub.Position, err error) { acked <- err })
	s.start()
	if err := recv(t, acked, "publish ack"); err != nil {
		t.Error(err)
	}
	s.stop()
	ev.expect(t, "disconnect 1001 true")
	c.Publish("q", json.RawMessage(`2`), func(_ pubsub.Position, err error) { acked <- err })
	if err := recv(t, acked, "publish ack"); !errors.Is(err, rtclient.ErrTimeout) {
		t.Errorf("publish while the server stays down: %v, want ErrTimeout", err)
	}
}

// TestManyClientsOneLoop: 300 clients on one loop, each subscribed; one
// publication reaches all of them.
func TestManyClientsOneLoop(t *testing.T) {
	s := newPServer(t)
	l := clientLoop(t)
	const n = 300
	subscribed := make(chan error, n)
	got := make(chan string, n)
	for range n {
		c, err := rtclient.Dial(l, s.url(), rtclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Subscribe("all", pubsub.Position{}, collect(got), func(_ rtclient.SubscribeResult, err error) { subscribed <- err })
	}
	for range n {
		if err := recv(t, subscribed, "subscribe"); err != nil {
			t.Fatal(err)
		}
	}
	s.Publish("all", `"x"`)
	for range n {
		recv(t, got, "publication")
	}
}

// TestHostileServerFrames: frames that are not the protocol (not JSON, a
// reply to no command, a bad position, a binary frame, 1 MiB of NUL
// bytes) are reported through OnError and skipped; the client keeps its
// connection and the RPC's real reply arrives, and a canary client on the
// same loop is not disturbed.
func TestHostileServerFrames(t *testing.T) {
	s := newPServer(t)
	l := clientLoop(t)
	errs := make(chan error, 100)
	ev := make(events, 100)
	o := ev.options(rtclient.Options{})
	o.OnError = func(_ *rtclient.Client, err error) { errs <- err }
	c, _ := rtclient.Dial(l, s.url(), o)
	defer c.Close()
	canary, _ := rtclient.Dial(l, s.url(), rtclient.Options{})
	defer canary.Close()
	got := make(chan rtclient.Publication, 10)
	subbed := make(chan error, 1)
	c.Subscribe("chat", pubsub.Position{}, func(p rtclient.Publication) { got <- p },
		func(_ rtclient.SubscribeResult, err error) { subbed <- err })
	recv(t, subbed, "subscribe")
	type res struct {
		d   json.RawMessage
		err error
	}
	rpcs := make(chan res, 1)
	c.RPC("hostile", nil, func(d json.RawMessage, err error) { rpcs <- res{d, err} })
	if r := recv(t, rpcs, "rpc"); r.err != nil || string(r.d) != `"survived"` {
		t.Fatalf("rpc: %s %v", r.d, r.err)
	}
	var msgs []string
	for len(errs) > 0 {
		msgs = append(msgs, (<-errs).Error())
	}
	// not JSON, bad position, binary, NUL bytes (a JSON string, but not
	// a frame object).
	if len(msgs) < 4 {
		t.Errorf("reported %d errors, want at least 4: %q", len(msgs), msgs)
	}
	select {
	case p := <-got:
		t.Errorf("a bad publication reached the handler: %+v", p)
	case e := <-ev:
		if !strings.HasPrefix(e, "state connected") {
			t.Errorf("event %s", e)
		}
	default:
	}
	for _, cl := range []*rtclient.Client{c, canary} {
		pinged := make(chan error, 1)
		cl.Ping(func(err error) { pinged <- err })
		if err := recv(t, pinged, "ping"); err != nil {
			t.Error(err)
		}
	}
}

// TestSubscribeTimeoutReconnects: a subscribe with no reply within Timeout
// leaves the session in an unknown state, so the client drops the
// connection and, on the next, subscribes again; done gets that reply.
func TestSubscribeTimeoutReconnects(t *testing.T) {
	s := newPServer(t)
	l := clientLoop(t)
	ev := make(events, 100)
	c, _ := rtclient.Dial(l, s.url(), ev.options(rtclient.Options{Reconnect: true, Timeout: 300 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}))
	defer c.Close()
	done := make(chan error, 2)
	c.Subscribe("mute", pubsub.Position{}, nil, func(_ rtclient.SubscribeResult, err error) { done <- err })
	ev.expect(t, "disconnect 1000 true")
	ev.expect(t, "subscribe mute head")
	if err := recv(t, done, "subscribe"); err != nil {
		t.Errorf("subscribe: %v", err)
	}
	connects, cmds := s.stats()
	if connects != 2 || strings.Count(strings.Join(cmds, " "), "subscribe:mute") != 2 {
		t.Errorf("%d connects, commands %v", connects, cmds)
	}
}

// TestDialRefusesBadURLs: what the loop's client would refuse at every
// reconnect is refused at once.
func TestDialRefusesBadURLs(t *testing.T) {
	l := clientLoop(t)
	for _, u := range []string{"http://127.0.0.1:1/connection/websocket", "ws:///connection/websocket", "wss://127.0.0.1:1/x", "::"} {
		if _, err := rtclient.Dial(l, u, rtclient.Options{}); err == nil {
			t.Errorf("Dial(%q): no error", u)
		}
	}
}

// A publish whose connection ends before its reply is sent again on the
// next connection with the same idempotency key: the server (which
// published it) answers with the first position and publishes nothing
// more. Without a key it fails with ErrDisconnected.
func TestPublishRetriedWithKey(t *testing.T) {
	s := newPServer(t)
	l := clientLoop(t)
	ev := make(events, 100)
	c, err := rtclient.Dial(l, s.url(), ev.options(rtclient.Options{Token: "ann", Reconnect: true, Timeout: 3 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ev.expect(t, "state connected")
	type res struct {
		p   pubsub.Position
		err error
	}
	acked := make(chan res, 1)
	c.Publish("lost", json.RawMessage(`1`), func(p pubsub.Position, err error) { acked <- res{p, err} })
	r := recv(t, acked, "publish ack")
	if r.err != nil || r.p != (pubsub.Position{Epoch: 7, Offset: 1}) {
		t.Fatalf("publish: %v %v, want 7-1", r.p, r.err)
	}
	connects, cmds := s.stats()
	n := 0
	for _, cmd := range cmds {
		if cmd == "publish:lost" {
			n++
		}
	}
	s.mu.Lock()
	kept := len(s.hist["lost"])
	s.mu.Unlock()
	if connects != 2 || n != 2 || kept != 1 {
		t.Fatalf("%d connects, %d publish commands, %d publications; want 2, 2 (the retry), 1", connects, n, kept)
	}
	c.PublishIdem("lost", json.RawMessage(`2`), "", func(p pubsub.Position, err error) { acked <- res{p, err} })
	if r := recv(t, acked, "publish ack"); r.err != nil {
		t.Fatal(r.err)
	}
}
