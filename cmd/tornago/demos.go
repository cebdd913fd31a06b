package main

import (
	_ "embed"
	"fmt"
	"time"
	"unicode/utf8"

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

// closeUnsupportedData is RFC 6455's 1003: "an endpoint that understands
// only text data MAY send this if it receives a binary message".
const closeUnsupportedData loop.StatusCode = 1003

func (c *chat) OnMessage(ws *loop.WebSocket, typ loop.MessageType, data []byte) {
	// The seed's chat is text: it prefixes "new message :" to a string
	// (Tornado's str + bytes would fail). Echoing binary bytes in a Text
	// frame could send invalid UTF-8, which browsers answer with 1007.
	if typ != loop.Text {
		ws.Close(closeUnsupportedData, "text messages only")
		return
	}
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

// maxChatMessage bounds one /receive or /new-message message in bytes
// (413 beyond): a message is copied to every client or kept in the
// long-poll store, so its size multiplies.
const maxChatMessage = 64 << 10

// receiveMax bounds a /receive message (-receive-bytes; the bench's attacks
// raise it to show the loop's own output bounds at work).
var receiveMax = maxChatMessage

// textArgument returns the argument name as a chat message, or writes a
// 400 or 413 saying why it cannot be one and returns ok false. Loop-only.
func textArgument(r *loop.Request, name string, max int) (string, bool) {
	v := r.GetArgument(name, "")
	switch {
	case v == "":
		httpError(r, 400, name+" is required")
	case !utf8.ValidString(v):
		// Text frames and JSON strings must be UTF-8; Tornado's
		// get_argument refuses such input with 400 as well.
		httpError(r, 400, name+" is not valid UTF-8")
	case len(v) > max:
		httpError(r, 413, fmt.Sprintf("%s is %d bytes, over the limit of %d bytes", name, len(v), max))
	default:
		return v, true
	}
	return "", false
}

// httpError finishes r with status code and a plain-text reason, so that
// curl users and the page see why (SendError gives only the status text).
func httpError(r *loop.Request, code int, reason string) {
	r.SetStatus(code)
	r.SetHeader("Content-Type", "text/plain; charset=UTF-8")
	r.Write(reason + "\n")
	r.Finish()
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
		// Any origin: a bench target for tools and other pages, which holds
		// no state and no one's session.
		loop.WSOptions{MaxMessageSize: 64 << 20, CheckOrigin: loop.AnyOrigin, PingInterval: ping})
	// The same echo with permessage-deflate for clients that offer it
	// (/echo stays uncompressed: the benchmarks measure framing, not zlib).
	app.HandleWebSocket("/echo-deflate", func(*loop.Request) loop.WebSocketHandler { return echo{} },
		loop.WSOptions{MaxMessageSize: 64 << 20, CheckOrigin: loop.AnyOrigin, PingInterval: ping,
			Compression: &loop.CompressionOptions{}})

	ch := &chat{hub: loop.NewHub(l, loop.Text, broker)}
	// /ws and /clock keep the same-origin default (CheckOrigin nil): the
	// page is served from this server, and another site's page must not
	// join the chat with its visitors' browsers.
	app.HandleWebSocket("/ws", func(*loop.Request) loop.WebSocketHandler { return ch }, loop.WSOptions{PingInterval: ping})
	app.Handle("/receive", loop.Methods{Get: func(r *loop.Request) {
		msg, ok := textArgument(r, "msg", receiveMax)
		if !ok {
			return
		}
		// delivered counts this node's clients; with a broker the other
		// nodes' clients get the message too, a moment later.
		n := ch.hub.Subscribers(chatTopic)
		if err := ch.hub.Publish(chatTopic, []byte(msg)); err != nil {
			httpError(r, 503, "broker unavailable")
			return
		}
		r.Write(map[string]any{"delivered": n})
	}})

	ck := &clock{byID: map[string]*loop.WebSocket{}, anon: map[*loop.WebSocket]struct{}{}}
	app.HandleWebSocket("/clock", func(*loop.Request) loop.WebSocketHandler { return ck }, loop.WSOptions{PingInterval: ping})
	pc := l.NewPeriodicCallback(ck.tick, time.Second, 0)
	l.AddCallback(pc.Start)
}
