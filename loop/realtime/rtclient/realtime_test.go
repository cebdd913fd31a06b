package rtclient_test

// The client against the real server (loop/realtime) on real sockets.

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
	"github.com/tornago/tornago/loop/realtime/rtclient"
	"github.com/tornago/tornago/proto/clientproto"
)

var rtNamespaces = []realtime.Namespace{
	{Name: "chat", Publish: true, History: pubsub.HistoryOptions{MaxMessages: 100}},
	{Name: "news"},
}

// rtServer is a realtime server on a loop of its own at addr, its topics
// on broker (shared by the servers of one test, as processes share NATS).
type rtServer struct {
	l   *loop.Loop
	s   *realtime.Server
	url string
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startRT(t testing.TB, addr string, broker pubsub.Broker, o realtime.Options) *rtServer {
	t.Helper()
	if o.Namespaces == nil {
		o.Namespaces = rtNamespaces
	}
	l := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	s, err := realtime.New(l, loop.NewHub(l, loop.Text, broker), o)
	if err != nil {
		t.Fatal(err)
	}
	s.HandleRPC("sum", func(_ *realtime.Client, data json.RawMessage, reply func(json.RawMessage, error)) {
		var xs []int
		if err := json.Unmarshal(data, &xs); err != nil {
			reply(nil, &clientproto.Error{Code: 1000, Message: "want numbers"})
			return
		}
		n := 0
		for _, x := range xs {
			n += x
		}
		reply(json.RawMessage(strconv.Itoa(n)), nil)
	})
	app := loop.NewApplication(loop.AppOptions{})
	s.Routes(app)
	if err := l.Listen(addr, app); err != nil {
		t.Fatal(err)
	}
	go l.Start()
	<-l.Ready()
	r := &rtServer{l: l, s: s, url: "ws://" + addr + "/connection/websocket"}
	t.Cleanup(r.stop)
	return r
}

func (r *rtServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r.l.Stop(ctx)
}

// publish publishes on the server's loop, as the server API does.
func (r *rtServer) publish(t testing.TB, topic, data string) pubsub.Position {
	t.Helper()
	ch := make(chan error, 1)
	var pos pubsub.Position
	r.l.AddCallback(func() {
		var err error
		pos, err = r.s.Publish(topic, json.RawMessage(data))
		ch <- err
	})
	if err := recv(t, ch, "server publish"); err != nil {
		t.Fatal(err)
	}
	return pos
}

func TestRealServerCommands(t *testing.T) {
	srv := startRT(t, freeAddr(t), nil, realtime.Options{})
	l := clientLoop(t)
	ev := make(events, 100)
	c, err := rtclient.Dial(l, srv.url, ev.options(rtclient.Options{Token: "x", Name: "test"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan rtclient.Publication, 10)
	subbed := make(chan error, 4)
	c.Subscribe("chat:lobby", pubsub.Position{}, func(p rtclient.Publication) { got <- p },
		func(_ rtclient.SubscribeResult, err error) { subbed <- err })
	if err := recv(t, subbed, "subscribe"); err != nil {
		t.Fatal(err)
	}
	acks := make(chan error, 4)
	var ackPos pubsub.Position
	c.Publish("chat:lobby", json.RawMessage(`{"text":"hi"}`), func(p pubsub.Position, err error) { ackPos = p; acks <- err })
	if err := recv(t, acks, "publish ack"); err != nil {
		t.Fatal(err)
	}
	p := recv(t, got, "publication")
	if p.Topic != "chat:lobby" || p.Pos != ackPos || p.Pos.Offset != 1 || string(p.Data) != `{"text":"hi"}` {
		t.Errorf("publication %+v %s, ack %v", p, p.Data, ackPos)
	}

	var pe *clientproto.Error
	c.Publish("news:x", json.RawMessage(`1`), func(_ pubsub.Position, err error) { acks <- err })
	if err := recv(t, acks, "publish ack"); !errors.As(err, &pe) || pe.Code != clientproto.ErrNotAvailable {
		t.Errorf("publish on news: %v, want 108", err)
	}
	c.Subscribe("nowhere:x", pubsub.Position{}, nil, func(_ rtclient.SubscribeResult, err error) { subbed <- err })
	if err := recv(t, subbed, "subscribe"); !errors.As(err, &pe) || pe.Code != clientproto.ErrUnknownTopic {
		t.Errorf("subscribe nowhere: %v, want 102", err)
	}

	type res struct {
		d   json.RawMessage
		err error
	}
	rpcs := make(chan res, 3)
	c.RPC("sum", json.RawMessage(`[1,2,3]`), func(d json.RawMessage, err error) { rpcs <- res{d, err} })
	if r := recv(t, rpcs, "rpc"); r.err != nil || string(r.d) != "6" {
		t.Errorf("rpc sum: %s %v", r.d, r.err)
	}
	c.RPC("sum", json.RawMessage(`"x"`), func(d json.RawMessage, err error) { rpcs <- res{d, err} })
	if r := recv(t, rpcs, "rpc"); !errors.As(r.err, &pe) || pe.Code != 1000 {
		t.Errorf("rpc sum of a string: %v, want the application's 1000", r.err)
	}
	c.RPC("nope", nil, func(d json.RawMessage, err error) { rpcs <- res{d, err} })
	if r := recv(t, rpcs, "rpc"); !errors.As(r.err, &pe) || pe.Code != clientproto.ErrMethodNotFound {
		t.Errorf("rpc nope: %v, want 104", r.err)
	}
	pinged := make(chan error, 1)
	c.Ping(func(err error) { pinged <- err })
	if err := recv(t, pinged, "ping"); err != nil {
		t.Error(err)
	}
	ids := make(chan string, 1)
	l.AddCallback(func() { ids <- c.ID() })
	if id := recv(t, ids, "id"); id == "" {
		t.Error("no client id")
	}
}

// TestRealServerResumeAcrossRestart: the server's loop stops while another
// server (sharing the broker, as processes share NATS JetStream) publishes;
// a new server on the same address takes the client back, which
// resubscribes from its position and gets every missed publication once,
// in order, then the live ones.
func TestRealServerResumeAcrossRestart(t *testing.T) {
	broker := &pubsub.MemoryBroker{}
	addr := freeAddr(t)
	a := startRT(t, addr, broker, realtime.Options{})
	other := startRT(t, freeAddr(t), broker, realtime.Options{})
	l := clientLoop(t)
	ev := make(events, 100)
	c, _ := rtclient.Dial(l, a.url, ev.options(rtclient.Options{Reconnect: true,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}))
	defer c.Close()
	got := make(chan string, 100)
	c.Subscribe("chat:room", pubsub.Position{}, collect(got), nil)
	ev.expect(t, "subscribe chat:room")
	other.publish(t, "chat:room", "1")
	a.publish(t, "chat:room", "2")
	recv(t, got, "1")
	recv(t, got, "2")

	a.stop()
	d := ev.expect(t, "disconnect")
	if !strings.HasSuffix(d, " true") {
		t.Fatalf("%s: the client does not reconnect", d)
	}
	for i := 3; i <= 5; i++ {
		other.publish(t, "chat:room", strconv.Itoa(i))
	}
	startRT(t, addr, broker, realtime.Options{})
	if s := ev.expect(t, "subscribe chat:room"); !strings.Contains(s, "recovered 3 gone false") {
		t.Errorf("resubscription: %s, want 3 recovered", s)
	}
	other.publish(t, "chat:room", "6")
	for i := 3; i <= 6; i++ {
		if v := recv(t, got, "publication"); v != strconv.Itoa(i) {
			t.Fatalf("got %s, want %d", v, i)
		}
	}
	pinged := make(chan error, 1)
	c.Ping(func(err error) { pinged <- err })
	recv(t, pinged, "ping")
	select {
	case v := <-got:
		t.Errorf("a publication repeated or extra: %s", v)
	default:
	}
}

// TestRealServerTokenRefresh: tokens of 2 s; the client refreshes with
// GetToken before each expires and is never disconnected. Without
// GetToken, the server ends the connection with 3005 at expiry.
func TestRealServerTokenRefresh(t *testing.T) {
	var auths, c2auths atomic.Int32
	srv := startRT(t, freeAddr(t), nil, realtime.Options{
		Authenticate: func(_ context.Context, cr realtime.Credentials) (realtime.Identity, error) {
			auths.Add(1)
			tok, name, _ := strings.Cut(cr.Token, ";")
			if name == "c2" {
				c2auths.Add(1)
			}
			ms, err := strconv.ParseInt(strings.TrimPrefix(tok, "until="), 10, 64)
			if err != nil {
				return realtime.Identity{}, realtime.ErrUnauthorized
			}
			exp := time.UnixMilli(ms)
			if time.Now().After(exp) {
				return realtime.Identity{}, realtime.ErrTokenExpired
			}
			return realtime.Identity{User: "u", ExpiresAt: exp}, nil
		},
	})
	l := clientLoop(t)
	ev := make(events, 100)
	errs := make(chan error, 10)
	o := ev.options(rtclient.Options{Reconnect: true, GetToken: func(context.Context) (string, error) { return until(2 * time.Second), nil }})
	o.OnError = func(_ *rtclient.Client, err error) { errs <- err }
	c, _ := rtclient.Dial(l, srv.url, o)
	defer c.Close()
	ev.expect(t, "state connected")
	time.Sleep(4500 * time.Millisecond)
	if n := auths.Load(); n < 3 {
		t.Errorf("%d authentications (connect + refreshes), want at least 3", n)
	}
	select {
	case e := <-ev:
		t.Errorf("event while refreshing: %s", e)
	case err := <-errs:
		t.Errorf("error while refreshing: %v", err)
	default:
	}

	// Without GetToken the client cannot renew its token: at expiry, 3005
	// ends it, and it does not reconnect (even with Reconnect) to be
	// refused again and again.
	ev2 := make(events, 100)
	c2, _ := rtclient.Dial(l, srv.url, ev2.options(rtclient.Options{Token: until(time.Second) + ";c2", Reconnect: true}))
	defer c2.Close()
	ev2.expect(t, "state connected")
	ev2.expect(t, "disconnect 3005 false")
	ev2.expect(t, "state closed")
	time.Sleep(1500 * time.Millisecond)
	if n := c2auths.Load() - 1; n != 0 {
		t.Errorf("%d connects after 3005 without GetToken", n)
	}

	ev3 := make(events, 100)
	c3, _ := rtclient.Dial(l, srv.url, ev3.options(rtclient.Options{Token: "garbage", Reconnect: true}))
	defer c3.Close()
	ev3.expect(t, "disconnect 3500 false")
	ev3.expect(t, "state closed")
}

// until is a test token valid for d.
func until(d time.Duration) string {
	return "until=" + strconv.FormatInt(time.Now().Add(d).UnixMilli(), 10)
}

// TestRealServerSubscribesTheUser: the server subscribes a user's
// connections (server API); the client hears it through OnSubscribe and
// gets the topic's publications through OnPublication.
func TestRealServerSubscribesTheUser(t *testing.T) {
	srv := startRT(t, freeAddr(t), nil, realtime.Options{
		Authenticate: func(_ context.Context, cr realtime.Credentials) (realtime.Identity, error) {
			return realtime.Identity{User: cr.Token}, nil
		},
	})
	l := clientLoop(t)
	ev := make(events, 100)
	pubs := make(chan rtclient.Publication, 10)
	o := ev.options(rtclient.Options{Token: "42"})
	o.OnPublication = func(_ *rtclient.Client, p rtclient.Publication) { pubs <- p }
	c, _ := rtclient.Dial(l, srv.url, o)
	defer c.Close()
	ev.expect(t, "state connected")
	srv.s.SubscribeUser("42", "news:for-42")
	ev.expect(t, "subscribe news:for-42 head")
	srv.publish(t, "news:for-42", `"yours"`)
	if p := recv(t, pubs, "publication"); p.Topic != "news:for-42" || string(p.Data) != `"yours"` {
		t.Errorf("publication %+v %s", p, p.Data)
	}
}
