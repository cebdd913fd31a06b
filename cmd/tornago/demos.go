package main

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
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
	ws.WriteText(data)
}

// chatTopic is the hub topic of the /ws clients: the tutorial's ProStatus
// registry (there a dict of sets that crashed on removal).
const chatTopic = "chat"

type chat struct {
	loop.WebSocketBase
	hub *loop.Hub
	// members counts the chat's subscribers on every loop of the process
	// (the count /receive reports); shared by the loops' chats.
	members *atomic.Int64
	refused map[*loop.WebSocket]struct{} // whose Open failed to subscribe
}

func (c *chat) Open(ws *loop.WebSocket) {
	if since, ok := sinceArgument(ws.Request()); ok {
		// The positioned protocol: resume, then live, each message "E-N\n" + body.
		if !subscribeSince(c.hub, chatTopic, ws, since) {
			c.refuse(ws)
			return
		}
		c.members.Add(1)
		return
	}
	if err := c.hub.Subscribe(chatTopic, ws); err != nil {
		c.refuse(ws)
		ws.Close(loop.CloseTryAgainLater, "broker unavailable")
		return
	}
	c.members.Add(1)
	ws.WriteText([]byte("Welcome"))
}

// refuse remembers a connection whose Open failed to subscribe, so that
// OnClose does not count it out. (A context value per member would cost an
// allocation each.)
func (c *chat) refuse(ws *loop.WebSocket) {
	if c.refused == nil {
		c.refused = map[*loop.WebSocket]struct{}{}
	}
	c.refused[ws] = struct{}{}
}

// sinceArgument returns the request's since argument, and whether it asks
// for the positioned protocol (present, even empty: from now).
func sinceArgument(r *loop.Request) (string, bool) {
	const absent = "\x00"
	s := r.GetArgument("since", absent)
	return s, s != absent
}

// subscribeSince subscribes ws to a history topic from since (the client's
// last position, "" for from now), writes the control frame that ends the
// recovered messages once they are written, and reports whether ws is subscribed; when not, it
// closed ws with a reason. Loop-only.
func subscribeSince(hub *loop.Hub, topic string, ws *loop.WebSocket, since string) bool {
	pos, err := pubsub.ParsePosition(since)
	if err != nil {
		ws.Close(loop.ClosePolicy, "since must be EPOCH-OFFSET")
		return false
	}
	n, err := hub.SubscribeSince(topic, ws, pos)
	gone := errors.Is(err, pubsub.ErrHistoryGone)
	if err != nil && !gone {
		ws.Close(loop.CloseTryAgainLater, "history unavailable")
		return false
	}
	// After the replay, which a large history writes at the client's
	// pace, after SubscribeSince returned.
	hub.AfterReplay(topic, ws, func() { ws.WriteText(subscribedJSON(clientHead(hub, topic, pos, gone), n, gone)) })
	return true
}

// clientHead is the position a client resuming from since has once it is
// subscribed: the topic's head on this loop, or since when the client saw
// more on a node further along (reporting the lower head would make it
// take those messages again). When the hub answered gone (since older than
// the history, or beyond it: pubsub.Position.Beyond) it is the head: the
// client's own position is of no use any more.
func clientHead(hub *loop.Hub, topic string, since pubsub.Position, gone bool) pubsub.Position {
	head, _ := hub.Head(topic)
	if !gone && head.Less(since) {
		return since
	}
	return head
}

// serveSSE is GET /sse: a history topic (?topic=, default the chat) as
// Server-Sent Events, resuming after Last-Event-ID (or ?lastEventId= or
// ?since=). After the recovered events comes one "subscribed" event whose
// id is the client's position, so that the browser resumes from there even
// when no message came. Loop-only.
func serveSSE(r *loop.Request, hubs map[string]*loop.Hub, heartbeat time.Duration) {
	topic := r.GetArgument("topic", chatTopic)
	hub := hubs[topic]
	if hub == nil {
		httpError(r, 404, "no such topic: "+strconv.Quote(topic)) // quoted: a name that is not UTF-8 comes out escaped
		return
	}
	since := r.Header("Last-Event-ID")
	if since == "" {
		since = r.GetArgument("lastEventId", r.GetArgument("since", ""))
	}
	pos, err := pubsub.ParsePosition(since)
	if err != nil {
		httpError(r, 400, "Last-Event-ID (or since) must be EPOCH-OFFSET")
		return
	}
	es, err := r.EventStream(loop.EventStreamOptions{Heartbeat: heartbeat, Retry: 2 * time.Second})
	if err != nil || es.Closed() {
		return // HEAD, or the loop is stopping: the stream is already ended
	}
	n, err := hub.SubscribeStream(topic, es, pos)
	gone := errors.Is(err, pubsub.ErrHistoryGone)
	if err != nil && !gone {
		es.Close()
		return
	}
	hub.AfterStreamReplay(topic, es, func() {
		head := clientHead(hub, topic, pos, gone)
		es.Send(head.String(), "subscribed", subscribedJSON(head, n, gone))
	})
}

// subscribedJSON is the control message that follows the recovered
// messages, on /ws?since= and /sse alike: head is the position the client
// has now (it resumes from it even if no message comes), gone that the
// history no longer reached back to its since.
func subscribedJSON(head pubsub.Position, recovered int, gone bool) []byte {
	b := append([]byte(nil), `{"type":"subscribed","head":"`...)
	b = head.Append(b)
	b = append(b, `","recovered":`...)
	b = strconv.AppendInt(b, int64(recovered), 10)
	b = append(b, `,"gone":`...)
	b = strconv.AppendBool(b, gone)
	return append(b, '}')
}

func (c *chat) OnClose(ws *loop.WebSocket) {
	if _, ok := c.refused[ws]; ok {
		delete(c.refused, ws)
		return
	}
	c.members.Add(-1)
	c.hub.Unsubscribe(chatTopic, ws)
}

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
	ws.WriteText(append([]byte("new message :"), data...))
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

// demoEnv is what the demos of every loop of a process share.
type demoEnv struct {
	// broker, when not nil, carries /receive pushes to the /ws clients of
	// every loop and node sharing it, and /clock Id claims.
	broker pubsub.Broker
	// ping is every WebSocket route's PingInterval (0: the default,
	// negative: none).
	ping time.Duration
	// proc names this process in /clock claims (its pid).
	proc string
	log  *slog.Logger
	// chatMembers counts the /ws subscribers of all the process's loops.
	chatMembers atomic.Int64
	// lp bounds the chat's history and the poll answers.
	lp longPollOptions
	// sseHeartbeat is the /sse comment-line interval (0: the default).
	sseHeartbeat time.Duration
	// auth checks the protocol's tokens (-token-hmac-secret; nil:
	// anonymous users). namespaces are the -config file's (nil: the
	// built-in ones).
	auth       *tokenAuth
	namespaces []realtime.Namespace
}

// demoNode is one loop's demo state the server reaches after setup.
type demoNode struct {
	polls map[string]*topicPoll
	// chat is the seeds' chat hub (/ws, /receive), which the server API's
	// topic "chat" reaches too (api.go).
	chat *loop.Hub
	rt   *realtime.Server // the protocol server (realtime.go)
	// err is what kept the demos from being set up (the broker keeps no
	// history, say); the server refuses to start with it.
	err error
}

// stop answers the parked polls (an empty page: the client polls again).
// Loop-only; run it before Loop.Stop, which waits for in-flight requests.
func (n *demoNode) stop() {
	for _, p := range n.polls {
		p.stop()
	}
	if n.rt != nil {
		n.rt.Shutdown()
	}
}

// clockHistory keeps the last 5 minutes of ticks on each loop.
const clockHistory = 300

// addDemos adds the demo routes of loop i of the process.
func addDemos(l *loop.Loop, i int, app *loop.Application, env *demoEnv) *demoNode {
	node := &demoNode{polls: map[string]*topicPoll{}}
	ping := env.ping
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
	// It keeps four 64 MiB inflate buffers between messages (freed after a
	// second unused): four clients streaming large compressed messages
	// (the bench's deflate bomb) reuse them instead of allocating and
	// zeroing 64 MiB per message, which kept the collector running.
	app.HandleWebSocket("/echo-deflate", func(*loop.Request) loop.WebSocketHandler { return echo{} },
		loop.WSOptions{MaxMessageSize: 64 << 20, CheckOrigin: loop.AnyOrigin, PingInterval: ping,
			Compression: &loop.CompressionOptions{KeepInflateBytes: 4 * (64<<20 + 1)}})

	ch := &chat{hub: loop.NewHub(l, loop.Text, env.broker), members: &env.chatMembers}
	node.chat = ch.hub
	lp := env.lp.withDefaults()
	// Before Start: the broker's calls are made here and done runs before
	// KeepHistory returns.
	var kept error
	ch.hub.KeepHistory(chatTopic, pubsub.HistoryOptions{MaxMessages: lp.MaxMessages, MaxBytes: lp.MaxBytes}, func(err error) { kept = err })
	if kept != nil {
		node.err = fmt.Errorf("chat history: %w", kept)
		return node
	}
	// /ws and /clock keep the same-origin default (CheckOrigin nil): the
	// page is served from this server, and another site's page must not
	// join the chat with its visitors' browsers.
	app.HandleWebSocket("/ws", func(*loop.Request) loop.WebSocketHandler { return ch }, loop.WSOptions{PingInterval: ping})
	app.Handle("/receive", loop.Methods{Get: func(r *loop.Request) {
		msg, ok := textArgument(r, "msg", receiveMax)
		if !ok {
			return
		}
		// delivered counts this process's clients, on all its loops; with
		// NATS the other processes' clients get the message too.
		n := ch.members.Load()
		if err := ch.hub.Publish(chatTopic, []byte(msg)); err != nil {
			httpError(r, 503, "broker unavailable")
			return
		}
		r.Write(map[string]any{"delivered": n})
	}})

	ck := newClock(l, env.broker, fmt.Sprintf("%s.%d", env.proc, i), env.log)
	app.HandleWebSocket("/clock", func(*loop.Request) loop.WebSocketHandler { return ck }, loop.WSOptions{PingInterval: ping})

	for topic, hub := range map[string]*loop.Hub{chatTopic: ch.hub, clockTopic: ck.hub} {
		p, err := newTopicPoll(l, hub, topic, lp)
		if err != nil {
			node.err = fmt.Errorf("%s polls: %w", topic, err)
			return node
		}
		node.polls[topic] = p
	}
	addPolls(app, ch.hub, node.polls, lp)
	hubs := map[string]*loop.Hub{chatTopic: ch.hub, clockTopic: ck.hub}
	app.Handle("/sse", loop.Methods{Get: func(r *loop.Request) { serveSSE(r, hubs, env.sseHeartbeat) }})
	rt, err := addRealtime(l, app, env, ck.hub)
	if err != nil {
		node.err = err
	}
	node.rt = rt
	return node
}

// chatBroker returns the broker for the demos' hubs, from b, the process's
// broker (nil: none, each loop alone): b itself when it keeps the chat's
// history (MemoryBroker, natsbroker over JetStream), else b wrapped in
// pubsub.LocalHistory with a warning: messages still travel through b, but
// positions are then this process's own, and a client resuming on another
// process is told its history is gone. Call it once per process.
func chatBroker(b pubsub.Broker, lp longPollOptions, log *slog.Logger) pubsub.Broker {
	if b == nil {
		return nil
	}
	lp = lp.withDefaults()
	o := pubsub.HistoryOptions{MaxMessages: lp.MaxMessages, MaxBytes: lp.MaxBytes}
	if hb, ok := b.(pubsub.HistoryBroker); ok {
		err := hb.KeepHistory(chatTopic, o)
		if err == nil {
			return b
		}
		log.Warn("chat: the broker keeps no history; positions are this process's own", "err", err)
	} else {
		log.Warn("chat: the broker keeps no history; positions are this process's own", "broker", fmt.Sprintf("%T", b))
	}
	return pubsub.LocalHistory(b)
}

// acceptFromBroker is the natsbroker's Options.Accept of the demos: what
// arrives from NATS must be what the demos' own handlers could have
// published, since anything that can publish on the NATS server (another
// program on a shared server, a node of another version) bypasses
// /receive's checks. Chat messages are text frames to browsers, so they
// must be UTF-8 and within the largest /receive or /new-message message;
// /clock claims within the same bound; other topics are not the demos'.
func acceptFromBroker(lp longPollOptions) func(topic string, data []byte) error {
	lp = lp.withDefaults()
	limit := max(lp.MaxMessageBytes, receiveMax)
	return func(topic string, data []byte) error {
		if strings.HasPrefix(topic, realtime.HubTopicPrefix) {
			return acceptRealtime(data)
		}
		switch {
		case topic == realtime.APIControlTopic:
			return nil // the server API checks its signature, age and size
		case topic == realtime.PresenceTopic:
			return nil // realtime checks a presence message's form and bounds
		case strings.HasPrefix(topic, "rt."):
			// The protocol server's topics (realtime's hubTopic): each
			// message is a publication's data, written into every
			// subscriber's push as is, so it must be one JSON value, and
			// within what a client's command or the server API could
			// have published.
			if n := max(limit, realtime.DefaultAPIBodyBytes); len(data) > n {
				return fmt.Errorf("%d bytes, over the limit of %d", len(data), n)
			}
			if !json.Valid(data) {
				return errors.New("a protocol publication that is not one JSON value")
			}
			return nil
		case topic != chatTopic && topic != clockClaimTopic:
			return fmt.Errorf("not a topic of the demos")
		case len(data) > limit:
			return fmt.Errorf("%d bytes, over the limit of %d", len(data), limit)
		case topic == chatTopic && !utf8.Valid(data):
			return errors.New("a chat message that is not valid UTF-8")
		}
		return nil
	}
}
