package rtclient_test

// A small server of the protocol, on a real loop and real sockets, for the
// client's own tests: it implements PROTOCOL.md's WebSocket side as
// literally as possible (history with positions, since, publish with
// positions, rpc, refresh, disconnect frames), so that the client's
// behaviour at each edge (resume, gone, timeouts, disconnect codes) can be
// provoked on purpose. The real server (loop/realtime) is tested with this
// client in realtime_test.go.

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/proto/clientproto"
)

// pserver is the protocol server's state; it outlives its loops, so a
// "restart" (a new loop on the same address) keeps the history when keep
// is set (as JetStream would) or starts a new epoch.
type pserver struct {
	t    testing.TB
	addr string

	mu       sync.Mutex // guards the fields below (loops come and go)
	epoch    int64
	hist     map[string][]clientproto.Publication
	conns    map[*pconn]bool
	ttl      int64 // connect result ttl (s); 0: no expiry
	connects int
	cmds     []string          // command kinds received, in order
	idem     map[string]string // publishes' positions by user and idempotency key
	l        *loop.Loop
}

type pconn struct {
	loop.WebSocketBase
	s    *pserver
	w    *loop.WebSocket
	user string
	subs map[string]bool
	ok   bool // connected
}

func newPServer(t testing.TB) *pserver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &pserver{t: t, addr: addr, epoch: 7, hist: map[string][]clientproto.Publication{}, conns: map[*pconn]bool{}}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *pserver) url() string { return "ws://" + s.addr + "/connection/websocket" }

func (s *pserver) start() {
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/connection/websocket", func(r *loop.Request) loop.WebSocketHandler {
		return &pconn{s: s, subs: map[string]bool{}}
	}, loop.WSOptions{})
	l := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err := l.Listen(s.addr, app); err != nil {
		s.t.Fatal(err)
	}
	go l.Start()
	<-l.Ready()
	s.mu.Lock()
	s.l = l
	s.mu.Unlock()
}

// stop stops the loop: its connections close with 1001 (going away).
func (s *pserver) stop() {
	s.mu.Lock()
	l := s.l
	s.l = nil
	s.mu.Unlock()
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l.Stop(ctx)
	s.mu.Lock()
	s.conns = map[*pconn]bool{}
	s.mu.Unlock()
}

// restart stops and starts again; without keep the history is lost (a new
// epoch, as memory storage after a restart).
func (s *pserver) restart(keep bool) {
	s.stop()
	s.mu.Lock()
	if !keep {
		s.epoch++
		s.hist = map[string][]clientproto.Publication{}
	}
	s.mu.Unlock()
	s.start()
}

// onLoop runs fn on the server's loop and waits.
func (s *pserver) onLoop(fn func()) {
	s.mu.Lock()
	l := s.l
	s.mu.Unlock()
	done := make(chan struct{})
	l.AddCallback(func() { fn(); close(done) })
	<-done
}

// publish appends to topic's history and pushes to its subscribers. On the
// server's loop, mu held by the caller.
func (s *pserver) publishLocked(topic string, data json.RawMessage) string {
	h := s.hist[topic]
	pos := pubsub.Position{Epoch: s.epoch, Offset: int64(len(h) + 1)}.String()
	s.hist[topic] = append(h, clientproto.Publication{Pos: pos, Data: data})
	for c := range s.conns {
		if c.subs[topic] {
			c.write(clientproto.Push{Push: &clientproto.TopicPush{Topic: topic, Pub: &clientproto.Publication{Pos: pos, Data: data}}})
		}
	}
	return pos
}

// Publish publishes from outside (the test), as the server API would.
func (s *pserver) Publish(topic, data string) {
	s.onLoop(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.publishLocked(topic, json.RawMessage(data))
	})
}

// kick sends every connection a disconnect frame and closes it with code.
func (s *pserver) kick(code clientproto.DisconnectCode, reason string) {
	s.onLoop(func() {
		s.mu.Lock()
		conns := make([]*pconn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.write(clientproto.Push{Disconnect: &clientproto.Disconnect{Code: code, Reason: reason, Reconnect: code.Reconnect()}})
			c.w.Close(loop.StatusCode(code), reason)
		}
	})
}

func (s *pserver) stats() (connects int, cmds []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connects, append([]string(nil), s.cmds...)
}

func (c *pconn) Open(w *loop.WebSocket) {
	c.w = w
	c.s.mu.Lock()
	c.s.conns[c] = true
	c.s.mu.Unlock()
}

func (c *pconn) OnClose(w *loop.WebSocket) {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
}

func (c *pconn) write(v any) {
	b, _ := json.Marshal(v)
	c.w.WriteText(b)
}

func (c *pconn) reply(id uint32, res any, e *clientproto.Error) {
	r := clientproto.Reply{ID: id, Error: e}
	if e == nil {
		r.Result, _ = json.Marshal(res)
	}
	c.write(r)
}

func (c *pconn) OnMessage(w *loop.WebSocket, typ loop.MessageType, data []byte) {
	var cmd clientproto.Command
	if err := json.Unmarshal(data, &cmd); err != nil {
		w.Close(loop.StatusCode(clientproto.DisconnectBadRequest), "bad request")
		return
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case cmd.Connect != nil:
		s.cmds = append(s.cmds, "connect:"+cmd.Connect.Token)
		if cmd.Connect.Token == "bad" {
			c.reply(cmd.ID, nil, &clientproto.Error{Code: clientproto.ErrUnauthorized, Message: "unauthorized"})
			c.write(clientproto.Push{Disconnect: &clientproto.Disconnect{Code: clientproto.DisconnectUnauthorized, Reason: "unauthorized"}})
			w.Close(loop.StatusCode(clientproto.DisconnectUnauthorized), "unauthorized")
			return
		}
		s.connects++
		c.ok = true
		c.user = cmd.Connect.Token
		c.reply(cmd.ID, clientproto.ConnectResult{Client: "c" + strconv.Itoa(s.connects), Version: "test", Ping: 25,
			Expires: s.ttl > 0, TTL: s.ttl, Limits: clientproto.Limits{Subscriptions: 128}}, nil)
	case !c.ok:
		c.reply(cmd.ID, nil, &clientproto.Error{Code: clientproto.ErrUnauthorized, Message: "connect first"})
		w.Close(loop.StatusCode(clientproto.DisconnectUnauthorized), "unauthorized")
	case cmd.Subscribe != nil:
		topic := cmd.Subscribe.Topic
		s.cmds = append(s.cmds, "subscribe:"+topic+"@"+cmd.Subscribe.Since)
		if topic == "mute" && s.connects == 1 { // no reply on the first connection
			return
		}
		if topic == "forbidden" {
			c.reply(cmd.ID, nil, &clientproto.Error{Code: clientproto.ErrPermissionDenied, Message: "permission denied"})
			return
		}
		since, err := pubsub.ParsePosition(cmd.Subscribe.Since)
		if err != nil {
			c.reply(cmd.ID, nil, &clientproto.Error{Code: clientproto.ErrBadRequest, Message: err.Error()})
			return
		}
		h := s.hist[topic]
		res := clientproto.SubscribeResult{Head: pubsub.Position{Epoch: s.epoch, Offset: int64(len(h))}.String()}
		if since != (pubsub.Position{}) {
			if since.Epoch != s.epoch || since.Offset > int64(len(h)) {
				res.Gone = true
			} else {
				for _, p := range h[since.Offset:] {
					c.write(clientproto.Push{Push: &clientproto.TopicPush{Topic: topic, Pub: &p}})
					res.Recovered++
				}
			}
		}
		c.subs[topic] = true
		c.reply(cmd.ID, res, nil)
	case cmd.Unsubscribe != nil:
		s.cmds = append(s.cmds, "unsubscribe:"+cmd.Unsubscribe.Topic)
		delete(c.subs, cmd.Unsubscribe.Topic)
		c.reply(cmd.ID, struct{}{}, nil)
	case cmd.Publish != nil:
		s.cmds = append(s.cmds, "publish:"+cmd.Publish.Topic)
		if k := cmd.Publish.Idem; k != "" {
			// Exactly once, per user and key (the real server's rule).
			if s.idem == nil {
				s.idem = map[string]string{}
			}
			if pos, ok := s.idem[c.user+"\x00"+k]; ok {
				c.reply(cmd.ID, clientproto.PublishResult{Pos: pos}, nil)
				return
			}
			s.idem[c.user+"\x00"+k] = s.publishLocked(cmd.Publish.Topic, cmd.Publish.Data)
			if cmd.Publish.Topic == "lost" && s.connects == 1 {
				// Published, but the connection ends before the reply.
				w.Close(loop.StatusCode(1001), "going away")
				return
			}
			c.reply(cmd.ID, clientproto.PublishResult{Pos: s.idem[c.user+"\x00"+k]}, nil)
			return
		}
		pos := s.publishLocked(cmd.Publish.Topic, cmd.Publish.Data)
		c.reply(cmd.ID, clientproto.PublishResult{Pos: pos}, nil)
	case cmd.RPC != nil:
		s.cmds = append(s.cmds, "rpc:"+cmd.RPC.Method)
		switch cmd.RPC.Method {
		case "echo":
			c.reply(cmd.ID, clientproto.RPCResult{Data: cmd.RPC.Data}, nil)
		case "hostile": // frames a client must survive, then the reply
			w.WriteText([]byte("not json"))
			w.WriteText([]byte(`{"id": 4000000, "result": {}}`)) // no such command
			w.WriteText([]byte(`{"push": {"topic": "chat", "pub": {"pos": "E-+1", "data": 1}}}`))
			w.WriteText([]byte(`{"push": {"topic": "nobody", "pub": {"pos": "1-1", "data": 1}}}`))
			w.WriteText([]byte(`{"id": ` + strconv.Itoa(int(cmd.ID)) + `0, "error": null}`))
			w.WriteBinary([]byte(`{"push": {}}`))
			w.WriteText(append(append([]byte(`"`), make([]byte, 1<<20)...), '"'))
			w.WriteText([]byte(`{}`))
			c.reply(cmd.ID, clientproto.RPCResult{Data: json.RawMessage(`"survived"`)}, nil)
		case "silent": // never answers
		default:
			c.reply(cmd.ID, nil, &clientproto.Error{Code: clientproto.ErrMethodNotFound, Message: "method not found"})
		}
	case cmd.Refresh != nil:
		s.cmds = append(s.cmds, "refresh:"+cmd.Refresh.Token)
		c.user = cmd.Refresh.Token
		c.reply(cmd.ID, clientproto.RefreshResult{Expires: s.ttl > 0, TTL: s.ttl}, nil)
	case cmd.Ping != nil:
		c.reply(cmd.ID, struct{}{}, nil)
	default:
		c.reply(cmd.ID, nil, &clientproto.Error{Code: clientproto.ErrBadRequest, Message: "bad request"})
	}
}
