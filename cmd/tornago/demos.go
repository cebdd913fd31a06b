package main

import (
	_ "embed"
	"time"

	"github.com/tornago/tornago/loop"
)

// indexPage is the browser demo of /clock, /ws and /receive: one
// self-contained file (no CDN), so the binary alone serves it.
//
//go:embed page/index.html
var indexPage []byte

// echo is the pure echo route conformance suites and benchmarks use. It is
// stateless, so one value serves every connection.
type echo struct{ loop.WebSocketBase }

func (echo) OnMessage(ws *loop.WebSocket, typ loop.MessageType, data []byte) {
	if typ == loop.Binary {
		ws.WriteBinary(data)
		return
	}
	ws.WriteMessage(data)
}

// chatTopic is the hub topic of the /ws clients: the tutorial's ProStatus
// registry (there a dict of sets that crashed on removal).
const chatTopic = "chat"

type chat struct {
	loop.WebSocketBase
	hub *loop.Hub
}

func (c *chat) Open(ws *loop.WebSocket) {
	if err := c.hub.Subscribe(chatTopic, ws); err != nil {
		ws.Close(loop.CloseTryAgainLater, "broker unavailable")
		return
	}
	ws.WriteString("Welcome")
}
func (c *chat) OnClose(ws *loop.WebSocket) { c.hub.Unsubscribe(chatTopic, ws) }
func (c *chat) OnMessage(ws *loop.WebSocket, _ loop.MessageType, data []byte) {
	ws.WriteString("new message :" + string(data))
}

// clock pushes the time every second to every client, from a
// PeriodicCallback on the loop (the tutorial pushed from a thread).
type clock struct {
	loop.WebSocketBase
	byID map[string]*loop.WebSocket
	anon map[*loop.WebSocket]struct{}
	seq  int64
}

type clockID struct{ id string }

func (c *clock) Open(ws *loop.WebSocket) {
	id := ws.Request().GetArgument("Id", "")
	if id == "" {
		c.anon[ws] = struct{}{}
		return
	}
	ws.SetContext(clockID{id})
	if old := c.byID[id]; old != nil {
		old.SetContext(nil)
		old.Close(4000, "replaced by a new connection with the same Id")
	}
	c.byID[id] = ws
}

func (c *clock) OnClose(ws *loop.WebSocket) {
	delete(c.anon, ws)
	if k, ok := ws.Context().(clockID); ok && c.byID[k.id] == ws {
		delete(c.byID, k.id)
	}
}

func (c *clock) tick() {
	c.seq++
	now := time.Now()
	msg := loop.PrepareJSON(map[string]any{"time": now.Format(time.RFC3339Nano), "ts": now.UnixNano(), "seq": c.seq})
	for _, ws := range c.byID {
		ws.WritePrepared(msg)
	}
	for ws := range c.anon {
		ws.WritePrepared(msg)
	}
}

// addDemos adds the demo routes. broker, when not nil, carries /receive
// pushes to the /ws clients of every node sharing it (see -nats). ping is
// every WebSocket route's PingInterval (0: the default, negative: none).
func addDemos(l *loop.Loop, app *loop.Application, broker loop.Broker, ping time.Duration) {
	app.Handle("/", loop.Methods{Get: func(r *loop.Request) {
		r.SetHeader("Content-Type", "text/html; charset=UTF-8")
		r.SetHeader("Cache-Control", "no-cache")
		r.Write(indexPage)
	}})
	app.HandleFunc("/index", func(r *loop.Request) { r.Write("Hello world") })
	app.HandleWebSocket("/echo", func(*loop.Request) loop.WebSocketHandler { return echo{} },
		loop.WSOptions{MaxMessageSize: 64 << 20, CheckOrigin: loop.AnyOrigin, PingInterval: ping})
	// The same echo with permessage-deflate for clients that offer it
	// (/echo stays uncompressed: the benchmarks measure framing, not zlib).
	app.HandleWebSocket("/echo-deflate", func(*loop.Request) loop.WebSocketHandler { return echo{} },
		loop.WSOptions{MaxMessageSize: 64 << 20, CheckOrigin: loop.AnyOrigin, PingInterval: ping,
			Compression: &loop.CompressionOptions{}})

	ch := &chat{hub: loop.NewHub(l, loop.Text, broker)}
	app.HandleWebSocket("/ws", func(*loop.Request) loop.WebSocketHandler { return ch }, loop.WSOptions{CheckOrigin: loop.AnyOrigin, PingInterval: ping})
	app.Handle("/receive", loop.Methods{Get: func(r *loop.Request) {
		// delivered counts this node's clients; with a broker the other
		// nodes' clients get the message too, a moment later.
		n := ch.hub.Subscribers(chatTopic)
		if err := ch.hub.Publish(chatTopic, []byte(r.GetArgument("msg", ""))); err != nil {
			r.SendError(503)
			return
		}
		r.Write(map[string]any{"delivered": n})
	}})

	ck := &clock{byID: map[string]*loop.WebSocket{}, anon: map[*loop.WebSocket]struct{}{}}
	app.HandleWebSocket("/clock", func(*loop.Request) loop.WebSocketHandler { return ck }, loop.WSOptions{CheckOrigin: loop.AnyOrigin, PingInterval: ping})
	pc := l.NewPeriodicCallback(ck.tick, time.Second, 0)
	l.AddCallback(pc.Start)
}
