package realtime

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// Server speaks the client protocol (PROTOCOL.md in proto/clientproto) on
// one loop: connections on WebSocket, SSE and long polling, their
// subscriptions through the Server's Hub, publications, RPCs. One Server
// per loop, like an Application; every loop of a process gets its own,
// sharing a broker through their hubs.
type Server struct {
	l      *loop.Loop
	hub    *loop.Hub
	o      Options
	lim    Limits
	log    *slog.Logger
	ns     map[string]*Namespace
	rpc    map[string]RPCHandler
	topics map[string]*topic
	kept   map[string]bool          // history topics whose KeepHistory is done
	keep   map[string][]func(error) // KeepHistory calls under way, with their waiters
	// byUser are the connected clients of each user but "" (anonymous:
	// one entry less per connection, found in clients).
	byUser map[string]map[*Client]struct{}
	// clients are every open connection (connected or not yet).
	clients map[*Client]struct{}
	// sessions are the emulated transports' connections by session id.
	sessions map[string]*session
	// pollSessions counts the long-polling sessions not forgotten yet
	// (Limits.MaxPollSessions).
	pollSessions int
	prefix       string // client ids: prefix + counter, unique across loops and processes
	node         string // session ids' node part (relay.go)
	// relayReqs are this loop's polls relayed to another process,
	// waiting for its answer.
	relayReqs map[uint64]*relayReq
	relaySeq  uint64
	localOnly bool // tests: sessions found on this server only, as in a process of its own
	nextID    uint64
	start     int64 // Unix ns at New: seconds' origin
	m         metrics
	scratch   []byte           // replies' encoding, shared by the clients (writes copy)
	lags      map[*Client]*lag // lagging subscribers of Latest topics (latest.go)
	idem      idemWindow       // client publishes' idempotency keys (idempotency.go)
	pres      *serverPresence
}

// RPCHandler answers one rpc command on the loop: it calls reply once,
// now or later (from any goroutine) within Limits.RPCTimeout, with the
// answer's data (a JSON value; nil: none) or an error (a
// *clientproto.Error's code goes to the client, any other is error 100).
type RPCHandler func(c *Client, data json.RawMessage, reply func(json.RawMessage, error))

// topic is a topic with subscribers on this loop: the Server follows it
// once on its hub and fans each publication out, encoded once.
type topic struct {
	name   string
	hist   bool
	latest bool // Namespace.Latest (latest.go)
	// subs are the subscribers (8 B an entry).
	subs map[*Client]struct{}
	// skips are the subscribers that already had publications beyond
	// this loop's head when they subscribed (rare: a lagging loop), with
	// the position they had: the publications up to it are not sent to
	// them again. Nil when none.
	skips  map[*Client]pubsub.Position
	cancel func()
}

// add makes c a subscriber of t, skipping the publications up to skip.
func (t *topic) add(c *Client, skip pubsub.Position) {
	t.subs[c] = struct{}{}
	if skip != (pubsub.Position{}) {
		if t.skips == nil {
			t.skips = map[*Client]pubsub.Position{}
		}
		t.skips[c] = skip
	}
}

// drop forgets subscriber c.
func (t *topic) drop(c *Client) {
	delete(t.subs, c)
	if t.skips != nil {
		delete(t.skips, c)
		if len(t.skips) == 0 {
			t.skips = nil
		}
	}
}

// Goroutine-safe (call it before l starts, or on l).
// New returns the protocol server of l, whose topics go through hub (a
// Hub of l made for this server alone: NewHub(l, loop.Text, broker)).
// Register its routes with Routes.
func New(l *loop.Loop, hub *loop.Hub, o Options) (*Server, error) {
	if l == nil || hub == nil {
		return nil, errors.New("realtime: New needs a loop and a hub")
	}
	s := &Server{l: l, hub: hub, o: o, lim: o.Limits.withDefaults(), log: slog.Default(),
		ns: map[string]*Namespace{}, rpc: map[string]RPCHandler{}, topics: map[string]*topic{},
		kept: map[string]bool{}, keep: map[string][]func(error){}, byUser: map[string]map[*Client]struct{}{}, clients: map[*Client]struct{}{},
		sessions: map[string]*session{}, relayReqs: map[uint64]*relayReq{}, start: time.Now().UnixNano()}
	if o.Logger != nil {
		s.log = o.Logger
	}
	if s.o.HookTimeout <= 0 {
		s.o.HookTimeout = 10 * time.Second
	}
	for i := range o.Namespaces {
		n := o.Namespaces[i]
		if _, dup := s.ns[n.Name]; dup {
			return nil, fmt.Errorf("realtime: namespace %q configured twice", n.Name)
		}
		s.ns[n.Name] = &n
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	s.node = hex.EncodeToString(b[:])
	s.prefix = s.node + "-"
	s.initPresence()
	return s, nil
}

// Goroutine-safe.
// Loop returns the server's loop.
func (s *Server) Loop() *loop.Loop { return s.l }

// Goroutine-safe.
// Hub returns the server's hub (its methods are loop-only).
func (s *Server) Hub() *loop.Hub { return s.hub }

// Loop-only, or before the loop starts.
// HandleRPC registers fn for the rpc method; a method without a handler
// is answered with error 104.
func (s *Server) HandleRPC(method string, fn RPCHandler) { s.rpc[method] = fn }

// Loop-only, or before the loop starts.
// Routes registers the protocol's endpoints on app (the Application of
// the server's loop): /connection/websocket, /connection/sse,
// /connection/poll, /connection/command, and /tornago.js and
// /tornago.d.ts (JSHandler).
func (s *Server) Routes(app *loop.Application) {
	wo := s.o.WebSocket
	// Commands over CommandBytes close with 3505 (OnMessage); the route's
	// own bound, 4x, only keeps a hostile frame from being read whole.
	// A frame over it closes with the same 3505, not 1009.
	wo.MaxMessageSize = int64(4 * s.lim.CommandBytes)
	wo.TooBigCode = loop.StatusCode(cp.DisconnectTooLarge)
	app.HandleWebSocket("/connection/websocket", s.newWebSocket, wo)
	app.HandleFunc("/connection/sse", s.serveSSE)
	app.HandleFunc("/connection/poll", s.servePoll)
	app.HandleFunc("/connection/command", s.serveCommand)
	app.Handle("/tornago.js", JSHandler())
	app.Handle("/tornago.d.ts", JSHandler())
	s.startRelay()
}

// HubTopicPrefix starts the name of every topic a Server gives its hub
// (and so its broker): a broker filter (natsbroker.Options.Accept) lets
// these through, each message one JSON value.
const HubTopicPrefix = "rt."

// hubTopic is the hub's (and the broker's) name of a protocol topic:
// "rt." and the topic with '.', '*', '>' and '%' escaped as %XX, so that a
// topic is one NATS subject token and never a wildcard ("user:>" must not
// follow every personal topic), and never meets the hub topics of other
// code sharing the broker.
func hubTopic(topic string) string {
	if !strings.ContainsAny(topic, ".*>%") {
		return HubTopicPrefix + topic
	}
	b := make([]byte, 0, len(topic)+12)
	b = append(b, HubTopicPrefix...)
	for i := 0; i < len(topic); i++ {
		switch c := topic[i]; c {
		case '.', '*', '>', '%':
			b = append(b, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// seconds returns Unix ns now as whole seconds since New, plus one (never
// 0): a time a Client keeps in 4 bytes.
func (s *Server) seconds(now int64) int32 { return int32((now-s.start)/int64(time.Second)) + 1 }

// namespace returns topic's namespace, nil when none is configured.
func (s *Server) namespace(topic string) *Namespace { return s.ns[cp.Namespace(topic)] }

// ensureKept makes a history topic keep history (KeepHistory at first
// use), then calls fn on the loop; at once for other topics.
func (s *Server) ensureKept(name string, ns *Namespace, fn func(error)) {
	if ns == nil || !ns.History.Keeps() || s.kept[name] {
		fn(nil)
		return
	}
	if w, ok := s.keep[name]; ok {
		s.keep[name] = append(w, fn)
		return
	}
	if len(s.kept)+len(s.keep) >= s.lim.MaxHistoryTopics {
		fn(fmt.Errorf("realtime: keep history of %q: %w", name, ErrTooManyTopics))
		return
	}
	s.keep[name] = []func(error){fn}
	s.hub.KeepHistory(hubTopic(name), ns.History, func(err error) {
		ws := s.keep[name]
		delete(s.keep, name)
		if err == nil {
			s.kept[name] = true
		} else {
			s.log.Error("realtime: keep history", "topic", name, "err", err)
		}
		for _, w := range ws {
			w(err)
		}
	})
}

// follow returns the loop's topic name, following it on the hub at first
// use. Loop-only; for a history topic, after ensureKept.
func (s *Server) follow(name string, ns *Namespace) (*topic, error) {
	if t := s.topics[name]; t != nil {
		return t, nil
	}
	t := &topic{name: name, subs: map[*Client]struct{}{}, hist: ns != nil && ns.History.Keeps(), latest: ns != nil && ns.Latest}
	var err error
	if t.hist {
		t.cancel, err = s.hub.Watch(hubTopic(name), func(m pubsub.Message) { s.fanOut(t, m.Pos, m.Data) })
	} else {
		t.cancel, err = s.hub.Follow(hubTopic(name), func(data []byte) { s.fanOut(t, pubsub.Position{}, data) })
	}
	if err != nil {
		return nil, err
	}
	s.topics[name] = t
	return t, nil
}

// unfollow drops t once it has no subscriber.
func (s *Server) unfollow(t *topic) {
	if len(t.subs) > 0 || s.topics[t.name] != t {
		return
	}
	delete(s.topics, t.name)
	t.cancel()
}

// bcast is one publication's push, encoded once per loop, and its
// transport framings, made at most once each.
type bcast struct {
	frame []byte
	ws    *loop.PreparedMessage
	ev    *loop.PreparedEvent
}

// fanOut sends a publication of t to its subscribers, encoded once.
func (s *Server) fanOut(t *topic, pos pubsub.Position, data []byte) {
	if len(t.subs) == 0 {
		return
	}
	b := &bcast{frame: cp.AppendPublicationPush(make([]byte, 0, 64+len(t.name)+len(data)), t.name, pos, data)}
	for c := range t.subs {
		if t.skips != nil {
			if skip, ok := t.skips[c]; ok && skip.Offset != 0 && skip.Epoch == pos.Epoch && pos.Offset <= skip.Offset {
				continue // it has this one already
			}
		}
		if t.latest && s.holdLatest(c, t, pos, data, b) {
			continue
		}
		c.deliver(b)
	}
}

// Loop-only.
// Publish publishes data (one JSON value) on topic, to this loop's
// subscribers and, through the hub's broker, everyone's. On a topic with
// history ordered by this process (no broker) it returns the position the
// publication got; with a broker, or for a topic without history, the
// zero Position (the broker orders it: PublishAsync's done gets the
// position, and the publish command's reply carries it). A history topic's first
// publication with a broker waits for its KeepHistory: it is then
// published once that is done (an error is logged).
func (s *Server) Publish(topic string, data json.RawMessage) (pubsub.Position, error) {
	if err := cp.ValidTopic(topic); err != nil {
		return pubsub.Position{}, fmt.Errorf("realtime: publish: %w", err)
	}
	if !json.Valid(data) {
		return pubsub.Position{}, fmt.Errorf("realtime: publish %q: data is not one JSON value", topic)
	}
	var pos pubsub.Position
	var perr error
	sync := true
	s.publish(topic, data, func(p pubsub.Position, err error) {
		if !sync && err != nil {
			s.log.Warn("realtime: publish", "topic", topic, "err", err)
		}
		pos, perr = p, err
	})
	sync = false
	return pos, perr
}

// Goroutine-safe.
// PublishAsync is Publish from any goroutine: data is copied, Publish runs
// on the loop, and done (may be nil) gets its result there. It returns an
// error, and done is not called, when the loop's queue is over its bound
// (loop.ErrLoopBacklog) or the loop stopped.
func (s *Server) PublishAsync(topic string, data json.RawMessage, done func(pubsub.Position, error)) error {
	cpy := append(json.RawMessage(nil), data...)
	return s.l.AddDataCallback(len(cpy), func() {
		if err := cp.ValidTopic(topic); err != nil {
			if done != nil {
				done(pubsub.Position{}, fmt.Errorf("realtime: publish: %w", err))
			}
			return
		}
		if !json.Valid(cpy) {
			if done != nil {
				done(pubsub.Position{}, fmt.Errorf("realtime: publish %q: data is not one JSON value", topic))
			}
			return
		}
		s.publish(topic, cpy, func(p pubsub.Position, err error) {
			if done != nil {
				done(p, err)
			}
		})
	})
}

// publish publishes on the loop and calls done with the position (see
// Publish), at once or once the topic keeps history.
func (s *Server) publish(topic string, data []byte, done func(pubsub.Position, error)) {
	s.publishID(topic, data, "", done)
}

// publishID is publish with the broker's deduplication id (none: ""). done
// gets the position the message got on a history topic, on every broker
// (the hub's own ordering, MemoryBroker's, JetStream's ack): for an id the
// broker already published, the first publication's.
func (s *Server) publishID(topic string, data []byte, id string, done func(pubsub.Position, error)) {
	ns := s.namespace(topic)
	s.ensureKept(topic, ns, func(err error) {
		if err != nil {
			done(pubsub.Position{}, err)
			return
		}
		hist := ns != nil && ns.History.Keeps()
		if err := s.hub.PublishAck(hubTopic(topic), data, id, func(pos pubsub.Position, err error) {
			if !hist {
				pos = pubsub.Position{}
			}
			done(pos, err)
		}); err != nil {
			done(pubsub.Position{}, err)
		}
	})
}

// Goroutine-safe.
// DisconnectUser ends every connection of user on this loop with code
// (3503 when 0) and reason.
func (s *Server) DisconnectUser(user string, code cp.DisconnectCode, reason string) {
	if code == 0 {
		code = cp.DisconnectForced
	}
	s.l.AddCallback(func() {
		for _, c := range s.forUser(user) {
			c.Disconnect(code, reason)
		}
	})
}

// Goroutine-safe.
// SubscribeUser subscribes every connection of user on this loop to topic
// (no hook is asked; the namespace's limit of subscriptions is not
// applied), and tells each client with a sub push.
func (s *Server) SubscribeUser(user, topic string) {
	if cp.ValidTopic(topic) != nil {
		return
	}
	s.l.AddCallback(func() {
		for _, c := range s.forUser(user) {
			c.serverSubscribe(topic)
		}
	})
}

// forUser returns user's connected clients (anonymous ones for "").
func (s *Server) forUser(user string) []*Client {
	var cs []*Client
	if user != "" {
		for c := range s.byUser[user] {
			cs = append(cs, c)
		}
		return cs
	}
	for c := range s.clients {
		if c.state == stConnected && c.user == "" {
			cs = append(cs, c)
		}
	}
	return cs
}

// Metrics are a Server's counters.
type Metrics struct {
	Connections int64            // connected now (after connect), all transports
	Sessions    map[string]int64 // connections now by transport: websocket, sse, poll
	Commands    int64            // commands received
	Errors      map[cp.ErrorCode]int64
	Disconnects map[cp.DisconnectCode]int64
	// LatestSkipped counts the publications of Latest namespaces not
	// delivered to a lagging subscriber (replaced by a newer one).
	LatestSkipped int64
}

type metrics struct {
	connections  atomic.Int64
	ws, sse, pol atomic.Int64
	commands     atomic.Int64
	skipped      atomic.Int64 // Metrics.LatestSkipped
	mu           sync.Mutex
	errors       map[cp.ErrorCode]int64
	disconnects  map[cp.DisconnectCode]int64
}

func (m *metrics) countError(code cp.ErrorCode) {
	m.mu.Lock()
	if m.errors == nil {
		m.errors = map[cp.ErrorCode]int64{}
	}
	m.errors[code]++
	m.mu.Unlock()
}

func (m *metrics) countDisconnect(code cp.DisconnectCode) {
	m.mu.Lock()
	if m.disconnects == nil {
		m.disconnects = map[cp.DisconnectCode]int64{}
	}
	m.disconnects[code]++
	m.mu.Unlock()
}

func (m *metrics) transport(kind string) *atomic.Int64 {
	switch kind {
	case TransportWebSocket:
		return &m.ws
	case TransportSSE:
		return &m.sse
	}
	return &m.pol
}

// Goroutine-safe.
// Metrics returns a snapshot of the server's counters.
func (s *Server) Metrics() Metrics {
	m := &s.m
	out := Metrics{Connections: m.connections.Load(), Commands: m.commands.Load(), LatestSkipped: m.skipped.Load(),
		Sessions: map[string]int64{TransportWebSocket: m.ws.Load(), TransportSSE: m.sse.Load(), TransportPoll: m.pol.Load()},
		Errors:   map[cp.ErrorCode]int64{}, Disconnects: map[cp.DisconnectCode]int64{}}
	m.mu.Lock()
	for k, v := range m.errors {
		out.Errors[k] = v
	}
	for k, v := range m.disconnects {
		out.Disconnects[k] = v
	}
	m.mu.Unlock()
	return out
}

// The transports' names (Credentials.Transport, Metrics.Sessions).
const (
	TransportWebSocket = "websocket"
	TransportSSE       = "sse"
	TransportPoll      = "poll"
)

// Loop-only.
// PublishLocal sends data (one JSON value) to this loop's subscribers of
// topic only, without broker, history or position: for what every loop
// makes alike on its own (a clock's tick), which the broker would
// otherwise deliver once per loop.
func (s *Server) PublishLocal(topic string, data json.RawMessage) error {
	if !s.l.InLoop() {
		return fmt.Errorf("realtime: publish local %q: %w", topic, loop.ErrNotOnLoop)
	}
	if t := s.topics[topic]; t != nil {
		s.fanOut(t, pubsub.Position{}, data)
	}
	return nil
}

// Loop-only.
// Shutdown ends every connection of the server with 3000 (shutdown: the
// clients reconnect, to another process or after the restart). Call it on
// the loop before Loop.Stop: a parked poll is answered at once, instead of
// holding the stop up to its PollWait.
func (s *Server) Shutdown() {
	for c := range s.clients {
		c.Disconnect(cp.DisconnectShutdown, "shutdown")
	}
	for _, ss := range s.sessions {
		ss.forget()
	}
}

// Goroutine-safe.
// HistoryAsync reads the kept publications of history topic after since
// (the zero Position: every kept one), oldest first, with the topic's head
// on this loop, and gives them to done on the loop (the messages' Data is
// read-only). The topic keeps history from its first use on this loop
// (subscribe, publish or this call; with a broker the history is the
// broker's, the same everywhere). A topic whose namespace keeps no history
// gets an error wrapping pubsub.ErrNoHistory; a since the history no
// longer reaches, one wrapping pubsub.ErrHistoryGone. It returns an error,
// and done is not called, when the loop stopped.
func (s *Server) HistoryAsync(topic string, since pubsub.Position, done func([]pubsub.Message, pubsub.Position, error)) error {
	if err := cp.ValidTopic(topic); err != nil {
		return fmt.Errorf("realtime: history: %w", err)
	}
	return s.l.AddDataCallback(64, func() {
		ns := s.namespace(topic)
		if ns == nil || !ns.History.Keeps() {
			done(nil, pubsub.Position{}, fmt.Errorf("realtime: history %q: %w", topic, pubsub.ErrNoHistory))
			return
		}
		s.ensureKept(topic, ns, func(err error) {
			if err != nil {
				done(nil, pubsub.Position{}, err)
				return
			}
			ht := hubTopic(topic)
			head, err := s.hub.Head(ht)
			if err != nil {
				done(nil, head, err)
				return
			}
			if since == (pubsub.Position{}) {
				if head.Offset == 0 {
					done(nil, head, nil)
					return
				}
				since = pubsub.Position{Epoch: head.Epoch, Offset: -1}
			}
			msgs, head, err := s.hub.History(ht, since, nil)
			done(msgs, head, err)
		})
	})
}
