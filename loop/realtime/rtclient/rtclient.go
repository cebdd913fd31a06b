// Package rtclient is a Go client of the Tornago client protocol
// (proto/clientproto, PROTOCOL.md) over WebSocket, built on the loop's own
// WebSocket client (loop.DialWebSocket): a connected client costs no
// goroutine and no timer, so thousands run on one loop (the bench harness
// does), and every callback runs on that loop.
//
// One Client is one logical session: it connects with a token, subscribes
// to topics with handlers, publishes with acknowledgements, calls RPCs and
// refreshes its token; when the connection drops for a reason the protocol
// says to reconnect on (3000-3499, 1001, 1006) it dials again after an
// exponential backoff with full jitter, and resubscribes every topic from
// the position of the last publication it handled, so that nothing is lost
// or repeated (the server pushes what was missed before the reply).
//
// Threading: the methods are goroutine-safe doors (from another goroutine
// they post to the loop); the callbacks (publication handlers, done
// functions, Options' On* hooks) run on the loop and must not block it.
// GetToken (Options' and SubscribeOptions') is the exception: it runs off
// the loop, on a goroutine of its own, and its result comes back through
// the loop's queue.
package rtclient

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/proto/clientproto"
	"github.com/tornago/tornago/proto/ws13"
)

// Errors a done callback or OnError may get besides a server's
// *clientproto.Error (which carries the protocol's error code).
var (
	// ErrClosed: the client was closed (Close, or a disconnect that does
	// not reconnect) before the command was answered.
	ErrClosed = errors.New("rtclient: client closed")
	// ErrTimeout: no reply within Options.Timeout. For a publish or an RPC
	// the outcome is unknown (the server may have done it).
	ErrTimeout = errors.New("rtclient: no reply in time")
	// ErrDisconnected: the connection ended after the command was sent and
	// before its reply; for a publish or an RPC the outcome is unknown, so
	// it is not sent again (that could repeat it).
	ErrDisconnected = errors.New("rtclient: disconnected before the reply")
	// ErrTooManyQueued: more than Options.MaxQueued commands wait for a
	// connection or a reply.
	ErrTooManyQueued = errors.New("rtclient: too many commands waiting")
	// ErrSubscribed: Subscribe to a topic the client already subscribes to.
	ErrSubscribed = errors.New("rtclient: already subscribed")
)

// State is where a Client stands.
type State uint8

// The states of a Client, in their usual order. A client goes back from
// Connected to Connecting when the connection drops and it reconnects.
const (
	Connecting State = iota // dialing, getting a token, waiting for connect's reply or a backoff
	Connected               // connect answered: commands flow
	Closed                  // Close, or a disconnect that does not reconnect: final
)

// Goroutine-safe.
// String names the state.
func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Closed:
		return "closed"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Publication is one message of a topic as a handler gets it. Data is the
// publisher's JSON value as the server sent it; it belongs to the handler.
// Pos is zero on a topic without history. Skipped counts the topic's
// publications the server did not send just before this one (a namespace
// with latest-value delivery, to a client that read too slowly).
type Publication struct {
	Topic   string
	Pos     pubsub.Position
	Data    json.RawMessage
	Skipped uint64
}

// SubscribeResult is what the server answered a (re)subscription: the
// head of the topic's history, how many missed publications it pushed
// before the reply, and whether the history no longer reached the
// position the client resumed from (Gone: publications were missed; the
// application should reload what it shows).
type SubscribeResult struct {
	Head      pubsub.Position
	Recovered int
	Gone      bool
	// TTL is how long the subscription lives (its token's exp) unless
	// refreshed: with SubscribeOptions.GetToken the client sends a
	// sub_refresh at four fifths of it. Zero: it does not expire.
	TTL time.Duration
}

// SubscribeOptions configures SubscribeWith.
type SubscribeOptions struct {
	// Since is the position to resume after (zero: from now).
	Since pubsub.Position
	// Token is the subscription token, for namespaces with
	// subscribe_token. When empty and GetToken is set, GetToken gives
	// the first one.
	Token string
	// GetToken returns a fresh subscription token for topic. It runs off
	// the loop (a goroutine of its own, with a context cancelled by Close
	// and bounded by Options.Timeout), so it may do I/O: before the
	// subscribe when Token is empty, at four fifths of the ttl of a
	// subscription whose token expires (a sub_refresh), and when the
	// server ended the subscription because its token expired (an unsub
	// push with 109) or refused an expired one at a resubscribe: then the
	// client subscribes again from its position, nothing lost on a topic
	// with history. Without it a subscription whose token expires ends
	// then (OnSubscribe gets the 109 error).
	GetToken func(ctx context.Context, topic string) (string, error)
}

// Options configures Dial. The zero value connects anonymously, does not
// reconnect, and uses the defaults below.
type Options struct {
	// Token is the connect token (a JWT, or what the server's
	// Authenticate hook reads). When empty and GetToken is set, GetToken
	// gives the first one.
	Token string
	// GetToken returns a fresh token. It runs off the loop (on a goroutine
	// of its own, with a context cancelled by Close and bounded by
	// Timeout), so it may do I/O: before the first connect when Token is
	// empty, before reconnecting after a 3005 (token expired) disconnect,
	// and for the automatic refresh before a token expires (at four fifths
	// of the ttl the server announced). Without it, an expiring token is
	// not refreshed, the server disconnects when it expires (3005), and
	// the client does not reconnect (the same token would be refused).
	GetToken func(ctx context.Context) (string, error)
	// Name and Version identify the client to the server (connect's name
	// and version). Defaults: "tornago-go" and "1".
	Name, Version string
	// Data is sent with connect (any JSON value; nil: none).
	Data json.RawMessage
	// Reconnect makes the client reconnect after a disconnect whose code
	// says so (PROTOCOL.md: 3000-3499, 1001, 1006) or a failed dial,
	// waiting a backoff drawn uniformly from [0, d] ("full jitter"), d
	// being MinBackoff doubled per consecutive failure up to MaxBackoff.
	// A successful connect resets it. Default: false.
	Reconnect bool
	// MinBackoff and MaxBackoff bound the reconnect backoff. Defaults:
	// 500ms and 20s.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds the wait for a reply to each command (connect,
	// subscribe, publish, rpc, refresh, ping): a command over it fails
	// with ErrTimeout (a connect or subscribe over it also drops the
	// connection, which reconnects). The timer runs from the call, so a
	// command queued while disconnected fails if no connection comes in
	// time. Default: 10s.
	Timeout time.Duration
	// MaxQueued bounds the commands waiting for a connection or a reply
	// (publish, rpc, refresh, ping); more fail at once with
	// ErrTooManyQueued. Default: 1024.
	MaxQueued int
	// WebSocket configures the underlying connection (headers, source
	// address, client pings, message size). Its Reconnect and Resume are
	// ignored: this client reconnects and resumes by itself.
	WebSocket loop.ClientOptions

	// OnState reports each state change (on the loop).
	OnState func(c *Client, s State)
	// OnConnect reports each successful connect (also after reconnects):
	// the client id, limits and token expiry the server announced.
	OnConnect func(c *Client, r clientproto.ConnectResult)
	// OnDisconnect reports each lost connection: the code and reason
	// (the server's disconnect frame, else the WebSocket close code; 1006
	// when the connection just broke) and whether the client reconnects.
	OnDisconnect func(c *Client, d clientproto.Disconnect)
	// OnError reports what no command's done gets: a failed dial, a
	// refused connect, a token GetToken could not give, an automatic
	// refresh that failed, a frame that is not the protocol.
	OnError func(c *Client, err error)
	// OnSubscribe reports the reply to each (re)subscription of a topic,
	// or its error (a subscription refused is removed and not retried,
	// except for temporary errors, retried after a backoff). It also
	// reports a subscription the server ended (an "unsub" push), with a
	// *clientproto.Error holding its code.
	OnSubscribe func(c *Client, topic string, r SubscribeResult, err error)
	// OnPublication gets the publications of topics the client did not
	// subscribe to itself: those the server subscribed it to (server API,
	// a "sub" push). Nil: they are dropped.
	OnPublication func(c *Client, p Publication)
	// OnJoinLeave gets the join/leave pushes of subscribed topics
	// (namespaces with join_leave): p's Join and Leave, or its Counts.
	// Called on the loop; nil: they are dropped.
	OnJoinLeave func(c *Client, p *clientproto.TopicPush)
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = "tornago-go"
	}
	if o.Version == "" {
		o.Version = "1"
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 20 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = 1024
	}
	o.WebSocket.Reconnect = false
	o.WebSocket.Resume = false
	return o
}

// Client is one protocol session (and its reconnects), made by Dial.
type Client struct {
	l      *loop.Loop
	url    string
	o      Options
	ctx    context.Context // cancelled by Close: GetToken's parent
	cancel context.CancelFunc

	// Loop-only.
	state      State
	closed     bool
	token      string
	ws         *loop.Client    // the current attempt or connection
	w          *loop.WebSocket // open connection (connect may still be pending)
	connectID  uint32
	result     clientproto.ConnectResult
	disconnect *clientproto.Disconnect // the server's disconnect frame on this connection
	drop       bool                    // the client dropped the connection itself (timeout): reconnect
	needToken  bool                    // get a new token before the next connect (3005)
	failures   int
	retry      *loop.Timeout
	refreshT   *loop.Timeout
	nextID     uint32
	pending    map[uint32]*command
	queue      []*command // waiting for Connected
	subs       map[string]*subscription
	scratch    []byte
}

// command is a sent or queued command waiting for its reply.
type command struct {
	id    uint32
	frame clientproto.Command
	timer *loop.Timeout
	sent  bool
	sub   *subscription // a subscribe
	done  func(json.RawMessage, error)
}

type subscription struct {
	topic string
	pos   pubsub.Position
	onPub func(Publication)
	cmd   *command
	retry *loop.Timeout
	// token is the subscription token (""), getToken SubscribeOptions',
	// refreshT the sub_refresh at four fifths of the ttl.
	token    string
	getToken func(ctx context.Context, topic string) (string, error)
	refreshT *loop.Timeout
	// fetching: getToken runs for the next subscribe; needToken: the
	// token expired, get another before subscribing.
	fetching, needToken bool
	server              bool // the server subscribed us (sub push): not resubscribed by the client
	removed             bool
	first               func(SubscribeResult, error) // Subscribe's done, until the first reply
}

// Goroutine-safe.
// Dial starts a client of the protocol's WebSocket endpoint at rawURL
// (ws://host:port/connection/websocket) on loop l and returns at once;
// Options' callbacks report the outcome, on l. It returns an error only
// for a URL or WebSocket options the loop's client refuses (not ws://, no
// host, a handshake header among Header) or a stopped loop. It may be
// called before l.Start.
func Dial(l *loop.Loop, rawURL string, o Options) (*Client, error) {
	// The loop's own check, now rather than at every (re)connect.
	if _, _, err := ws13.CheckDial(rawURL, o.WebSocket.Header, o.WebSocket.Subprotocols); err != nil {
		return nil, fmt.Errorf("rtclient: dial %s: %w", rawURL, err)
	}
	select {
	case <-l.Done():
		return nil, fmt.Errorf("rtclient: dial %s: %w", rawURL, loop.ErrStopped)
	default:
	}
	c := &Client{l: l, url: rawURL, o: o.withDefaults(), token: o.Token}
	if c.o.GetToken != nil {
		c.ctx, c.cancel = context.WithCancel(context.Background())
	}
	l.AddCallback(c.start)
	return c, nil
}

// Goroutine-safe.
// Loop returns the loop the client runs on.
func (c *Client) Loop() *loop.Loop { return c.l }

// Loop-only.
// State returns where the client stands.
func (c *Client) State() State { return c.state }

// Loop-only.
// ID returns the client id the server gave on the last connect ("" before
// the first).
func (c *Client) ID() string { return c.result.Client }

// Loop-only.
// Position returns the position of the last publication handled on
// topic (what a resubscription resumes from), or the head the last
// subscription reply announced; zero when none.
func (c *Client) Position(topic string) pubsub.Position {
	if s := c.subs[topic]; s != nil {
		return s.pos
	}
	return pubsub.Position{}
}

// Loop-only.
// WebSocket returns the open connection, nil between connections.
func (c *Client) WebSocket() *loop.WebSocket { return c.w }

// onLoop runs fn on the loop: at once when called there, else queued.
func (c *Client) onLoop(fn func()) {
	if c.l.InLoop() {
		fn()
		return
	}
	c.l.AddCallback(fn)
}

func (c *Client) setState(s State) {
	if c.state == s {
		return
	}
	c.state = s
	if c.o.OnState != nil {
		c.o.OnState(c, s)
	}
}

func (c *Client) report(err error) {
	if c.o.OnError != nil {
		c.o.OnError(c, err)
	}
}

// start gets a token if needed, then dials. Loop-only.
func (c *Client) start() {
	if c.closed {
		return
	}
	if c.o.GetToken != nil && (c.token == "" || c.needToken) {
		c.fetchToken(func(tok string, err error) {
			if err != nil {
				c.report(fmt.Errorf("rtclient: get a token: %w", err))
				c.scheduleRetry()
				return
			}
			c.token, c.needToken = tok, false
			c.dial()
		})
		return
	}
	c.dial()
}

// fetchToken runs GetToken off the loop and hands its result to done on
// the loop (not after Close).
func (c *Client) fetchToken(done func(string, error)) {
	c.runGetToken(c.o.GetToken, done)
}

// runGetToken runs get off the loop, with the client's context bounded
// by Options.Timeout, and hands its result to done on the loop (not after
// Close).
func (c *Client) runGetToken(get func(ctx context.Context) (string, error), done func(string, error)) {
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithCancel(context.Background())
	}
	ctx, o := c.ctx, c.o
	go func() {
		tctx, cancel := context.WithTimeout(ctx, o.Timeout)
		tok, err := get(tctx)
		cancel()
		c.l.AddCallback(func() {
			if !c.closed {
				done(tok, err)
			}
		})
	}()
}

func (c *Client) dial() {
	if c.closed || c.ws != nil {
		return
	}
	c.disconnect, c.drop = nil, false
	ws, err := c.l.DialWebSocket(c.url, loop.ClientHandler{
		OnOpen:    c.onOpen,
		OnMessage: c.onMessage,
		OnError:   c.onDialError,
		OnClose:   c.onClose,
	}, c.o.WebSocket)
	if err != nil {
		c.report(fmt.Errorf("rtclient: dial: %w", err))
		c.scheduleRetry()
		return
	}
	c.ws = ws
}

func (c *Client) onDialError(_ *loop.Client, err error) {
	c.ws = nil
	if c.closed {
		return
	}
	c.report(fmt.Errorf("rtclient: %w", err))
	c.scheduleRetry()
}

// scheduleRetry waits the backoff, then starts again; without Reconnect
// the client closes. Loop-only.
func (c *Client) scheduleRetry() {
	if c.closed {
		return
	}
	if !c.o.Reconnect {
		c.shut(ErrClosed)
		return
	}
	if c.retry != nil {
		return
	}
	d := c.o.MinBackoff
	for i := 0; i < c.failures && d < c.o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.o.MaxBackoff)
	c.failures++
	c.retry = c.l.CallLater(rand.N(d+1), func() {
		c.retry = nil
		c.start()
	})
}

func (c *Client) onOpen(w *loop.WebSocket) {
	c.w = w
	if c.closed {
		w.Close(loop.CloseNormal, "")
		return
	}
	c.connectID = c.newID()
	req := &clientproto.ConnectRequest{Token: c.token, Name: c.o.Name, Version: c.o.Version, Data: c.o.Data}
	cmd := &command{id: c.connectID, frame: clientproto.Command{ID: c.connectID, Connect: req}}
	cmd.done = func(res json.RawMessage, err error) { c.connected(res, err) }
	c.send(cmd)
}

func (c *Client) newID() uint32 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

// send writes cmd on the open connection and arms its timeout when not
// yet armed. Loop-only.
func (c *Client) send(cmd *command) {
	if cmd.timer == nil {
		cmd.timer = c.l.CallLater(c.o.Timeout, func() { c.timedOut(cmd) })
	}
	if cmd.id == 0 || cmd.sent {
		cmd.id = c.newID()
	}
	cmd.frame.ID = cmd.id
	var err error
	c.scratch, err = appendJSON(c.scratch[:0], &cmd.frame)
	if err == nil {
		err = c.w.WriteText(c.scratch)
	}
	if cap(c.scratch) > 64<<10 {
		c.scratch = nil
	}
	if c.pending == nil {
		c.pending = make(map[uint32]*command)
	}
	cmd.sent = true
	c.pending[cmd.id] = cmd
	if err != nil {
		// The connection is closing: its OnClose settles cmd.
		slog.Debug("rtclient: write a command", "err", err)
	}
}

func appendJSON(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(dst, b...), err
}

func (c *Client) timedOut(cmd *command) {
	cmd.timer = nil
	if cmd.sent {
		delete(c.pending, cmd.id)
	} else {
		c.unqueue(cmd)
	}
	if cmd.id == c.connectID || cmd.sub != nil {
		// A connect or subscribe without a reply leaves the session in an
		// unknown state: drop the connection, the reconnect starts clean.
		if cmd.sub != nil {
			cmd.sub.cmd = nil
		}
		if c.w != nil {
			c.drop = true
			c.w.Close(loop.CloseNormal, "reply timeout")
		}
		if cmd.sub != nil && cmd.sent {
			return
		}
	}
	if cmd.done != nil {
		cmd.done(nil, ErrTimeout)
	}
}

func (c *Client) unqueue(cmd *command) {
	for i, q := range c.queue {
		if q == cmd {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			return
		}
	}
}

// connected handles connect's reply. Loop-only.
func (c *Client) connected(res json.RawMessage, err error) {
	if err != nil {
		if errors.Is(err, ErrTimeout) || errors.Is(err, ErrDisconnected) {
			return // the close path reconnects
		}
		c.report(fmt.Errorf("rtclient: connect refused: %w", err))
		// The server ends the connection (3500); its code decides.
		return
	}
	var r clientproto.ConnectResult
	if err := json.Unmarshal(res, &r); err != nil {
		c.report(fmt.Errorf("rtclient: connect result: %w", err))
		c.drop = true
		c.w.Close(loop.CloseNormal, "bad connect result")
		return
	}
	c.result = r
	c.failures = 0
	c.setState(Connected)
	if c.o.OnConnect != nil {
		c.o.OnConnect(c, r)
	}
	c.armRefresh()
	for _, s := range c.subs {
		if !s.server && s.cmd == nil && s.retry == nil && !s.fetching && c.w != nil {
			c.subscribeCmd(s)
		}
	}
	q := c.queue
	c.queue = nil
	for _, cmd := range q {
		if c.w == nil || c.state != Connected {
			c.queue = append(c.queue, cmd)
			continue
		}
		c.send(cmd)
	}
}

// armRefresh schedules the automatic refresh at four fifths of the ttl.
func (c *Client) armRefresh() {
	c.l.RemoveTimeout(c.refreshT)
	c.refreshT = nil
	if !c.result.Expires || c.o.GetToken == nil || c.result.TTL <= 0 {
		return
	}
	d := time.Duration(c.result.TTL) * time.Second * 4 / 5
	c.refreshT = c.l.CallLater(d, func() {
		c.refreshT = nil
		c.refresh("", func(err error) {
			if err != nil {
				c.report(fmt.Errorf("rtclient: automatic refresh: %w", err))
			}
		})
	})
}

func (c *Client) onMessage(w *loop.WebSocket, typ loop.MessageType, data []byte) {
	if typ != loop.Text {
		c.report(errors.New("rtclient: a binary frame (the protocol's are text): ignored"))
		return
	}
	if topic, pos, d, ok := parsePubPush(data); ok {
		c.publication(topic, string(pos), d, 0, true)
		return
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		c.report(fmt.Errorf("rtclient: a frame that is not JSON: %w", err))
		return
	}
	switch {
	case f.ID != 0:
		cmd := c.pending[f.ID]
		if cmd == nil {
			return // timed out already
		}
		delete(c.pending, f.ID)
		c.l.RemoveTimeout(cmd.timer)
		cmd.timer = nil
		if cmd.sub != nil {
			c.subscribed(cmd.sub, cmd, f.Result, f.Error)
			return
		}
		var err error
		if f.Error != nil {
			err = f.Error
		}
		if cmd.done != nil {
			cmd.done(f.Result, err)
		}
	case f.Push != nil:
		c.push(f.Push)
	case f.Disconnect != nil:
		d := *f.Disconnect
		c.disconnect = &d
	}
}

// frame is any server frame: a reply (ID set) or a push.
type frame struct {
	ID         uint32                  `json:"id"`
	Result     json.RawMessage         `json:"result"`
	Error      *clientproto.Error      `json:"error"`
	Push       *clientproto.TopicPush  `json:"push"`
	Disconnect *clientproto.Disconnect `json:"disconnect"`
}

func (c *Client) push(p *clientproto.TopicPush) {
	s := c.subs[p.Topic]
	switch {
	case p.Pub != nil:
		c.publication([]byte(p.Topic), p.Pub.Pos, p.Pub.Data, p.Pub.Skipped, false)
	case p.Sub != nil:
		if s == nil {
			s = &subscription{topic: p.Topic, server: true}
			if c.subs == nil {
				c.subs = make(map[string]*subscription)
			}
			c.subs[p.Topic] = s
		}
		head, _ := pubsub.ParsePosition(p.Sub.Head)
		if s.pos == (pubsub.Position{}) {
			s.pos = head
		}
		if c.o.OnSubscribe != nil {
			c.o.OnSubscribe(c, p.Topic, SubscribeResult{Head: head}, nil)
		}
	case p.Join != nil || p.Leave != nil || p.Counts != nil:
		if c.o.OnJoinLeave != nil {
			c.o.OnJoinLeave(c, p)
		}
	case p.Unsub != nil:
		if s == nil {
			return
		}
		e := &clientproto.Error{Code: p.Unsub.Code, Message: p.Unsub.Reason}
		if p.Unsub.Code == clientproto.ErrTokenExpired && s.getToken != nil && !s.server {
			// The subscription's token expired unrefreshed (PROTOCOL.md,
			// subscription expiry): a new token, and again from the
			// position.
			c.l.RemoveTimeout(s.refreshT)
			s.refreshT = nil
			s.needToken = true
			if c.o.OnSubscribe != nil {
				c.o.OnSubscribe(c, p.Topic, SubscribeResult{}, e)
			}
			if !s.removed && s.cmd == nil && !s.fetching && c.state == Connected && c.w != nil {
				c.subscribeCmd(s)
			}
			return
		}
		c.forget(s)
		if c.o.OnSubscribe != nil {
			c.o.OnSubscribe(c, p.Topic, SubscribeResult{}, e)
		}
	}
}

// publication hands one publication to its handler; topic and (when
// borrowed) data alias the frame, and are copied only when delivered.
func (c *Client) publication(topic []byte, posText string, data []byte, skipped uint64, borrowed bool) {
	pos, err := pubsub.ParsePosition(posText)
	if err != nil {
		c.report(fmt.Errorf("rtclient: publication on %s: %w", topic, err))
		return
	}
	s := c.subs[string(topic)] // no allocation for the lookup
	if s != nil && pos != (pubsub.Position{}) {
		// Never repeat: a publication at or before the one handled (same
		// history) was handled already.
		if s.pos.Epoch == pos.Epoch && pos.Offset <= s.pos.Offset {
			return
		}
		s.pos = pos
	}
	var fn func(Publication)
	switch {
	case s != nil && s.onPub != nil:
		fn = s.onPub
	case c.o.OnPublication != nil:
		fn = func(p Publication) { c.o.OnPublication(c, p) }
	default:
		return
	}
	if borrowed {
		data = bytes.Clone(data)
	}
	name := ""
	if s != nil {
		name = s.topic
	} else {
		name = string(topic)
	}
	fn(Publication{Topic: name, Pos: pos, Data: data, Skipped: skipped})
}

func (c *Client) forget(s *subscription) {
	s.removed = true
	c.l.RemoveTimeout(s.retry)
	s.retry = nil
	c.l.RemoveTimeout(s.refreshT)
	s.refreshT = nil
	if c.subs[s.topic] == s {
		delete(c.subs, s.topic)
	}
}

// subscribed handles a subscribe reply. Loop-only.
func (c *Client) subscribed(s *subscription, cmd *command, res json.RawMessage, e *clientproto.Error) {
	if s.cmd == cmd {
		s.cmd = nil
	}
	if s.removed {
		return
	}
	if e != nil {
		if e.Code == clientproto.ErrTokenExpired && s.getToken != nil && !c.closed {
			// The token expired while disconnected: a new one, then
			// again (after a backoff: a GetToken that keeps giving
			// expired tokens must not spin).
			s.needToken = true
			e = &clientproto.Error{Code: e.Code, Message: e.Message, Temporary: true}
		}
		if e.Temporary && !c.closed {
			// e.g. 111 (too many requests): try again after a backoff.
			s.retry = c.l.CallLater(rand.N(c.o.MinBackoff*2+1), func() {
				s.retry = nil
				if !s.removed && c.state == Connected && s.cmd == nil {
					c.subscribeCmd(s)
				}
			})
		} else {
			c.forget(s)
		}
		if c.o.OnSubscribe != nil {
			c.o.OnSubscribe(c, s.topic, SubscribeResult{}, e)
		}
		if !e.Temporary || c.closed {
			s.firstReply(SubscribeResult{}, e)
		}
		return
	}
	var r clientproto.SubscribeResult
	if err := json.Unmarshal(res, &r); err != nil {
		c.report(fmt.Errorf("rtclient: subscribe result for %s: %w", s.topic, err))
		return
	}
	head, _ := pubsub.ParsePosition(r.Head)
	// From now on, resume from the head when no publication moves the
	// position: the history restarted (gone) or there was none.
	if r.Gone || s.pos == (pubsub.Position{}) || s.pos.Less(head) && s.pos.Epoch != head.Epoch {
		s.pos = head
	}
	sr := SubscribeResult{Head: head, Recovered: r.Recovered, Gone: r.Gone}
	if r.Expires {
		sr.TTL = time.Duration(r.TTL) * time.Second
	}
	c.armSubRefresh(s, r.Expires, r.TTL)
	if c.o.OnSubscribe != nil {
		c.o.OnSubscribe(c, s.topic, sr, nil)
	}
	s.firstReply(sr, nil)
}

// firstReply calls Subscribe's done once.
func (s *subscription) firstReply(r SubscribeResult, err error) {
	if f := s.first; f != nil {
		s.first = nil
		f(r, err)
	}
}

func (c *Client) subscribeCmd(s *subscription) {
	if s.getToken != nil && (s.token == "" || s.needToken) {
		s.fetching = true
		c.subToken(s, func(tok string, err error) {
			s.fetching = false
			if s.removed {
				return
			}
			if err != nil {
				c.report(fmt.Errorf("rtclient: get a subscription token for %s: %w", s.topic, err))
				// Again after a backoff, while connected.
				c.l.RemoveTimeout(s.retry)
				s.retry = c.l.CallLater(rand.N(c.o.MinBackoff*2+1), func() {
					s.retry = nil
					if !s.removed && c.state == Connected && c.w != nil && s.cmd == nil && !s.fetching {
						c.subscribeCmd(s)
					}
				})
				return
			}
			s.token, s.needToken = tok, false
			if c.state == Connected && c.w != nil && s.cmd == nil {
				c.subscribeCmd(s)
			} // else the next connect subscribes
		})
		return
	}
	cmd := &command{sub: s, frame: clientproto.Command{Subscribe: &clientproto.SubscribeRequest{Topic: s.topic, Since: s.pos.String(), Token: s.token}}}
	s.cmd = cmd
	c.send(cmd)
}

// subToken runs s's GetToken off the loop.
func (c *Client) subToken(s *subscription, done func(string, error)) {
	get, topic := s.getToken, s.topic
	c.runGetToken(func(ctx context.Context) (string, error) { return get(ctx, topic) }, done)
}

// armSubRefresh schedules s's sub_refresh at four fifths of its ttl (s),
// when its token expires and it has a GetToken: a new token, sent with
// sub_refresh; a refused one is reported, and the server then ends the
// subscription at its expiry (unsub 109: subscribed again).
func (c *Client) armSubRefresh(s *subscription, expires bool, ttl int64) {
	c.l.RemoveTimeout(s.refreshT)
	s.refreshT = nil
	if !expires || s.getToken == nil || s.removed {
		return
	}
	d := time.Duration(max(ttl, 0)) * time.Second * 4 / 5
	s.refreshT = c.l.CallLater(d, func() {
		s.refreshT = nil
		c.subToken(s, func(tok string, err error) {
			if s.removed || c.state != Connected || c.subs[s.topic] != s {
				return
			}
			if err != nil {
				c.report(fmt.Errorf("rtclient: get a subscription token for %s: %w", s.topic, err))
				return
			}
			s.token = tok
			cmd := &command{frame: clientproto.Command{SubRefresh: &clientproto.SubRefreshRequest{Topic: s.topic, Token: tok}}}
			cmd.done = func(res json.RawMessage, err error) {
				if err != nil {
					if !errors.Is(err, ErrDisconnected) && !errors.Is(err, ErrClosed) {
						c.report(fmt.Errorf("rtclient: sub_refresh %s: %w", s.topic, err))
					}
					return
				}
				var r clientproto.RefreshResult
				if err := json.Unmarshal(res, &r); err != nil {
					c.report(fmt.Errorf("rtclient: sub_refresh result: %w", err))
					return
				}
				if !s.removed && c.subs[s.topic] == s {
					c.armSubRefresh(s, r.Expires, r.TTL)
				}
			}
			c.do(cmd)
		})
	})
}

func (c *Client) onClose(w *loop.WebSocket) {
	if c.w == w {
		c.w = nil
	}
	c.ws = nil
	c.l.RemoveTimeout(c.refreshT)
	c.refreshT = nil
	for _, s := range c.subs {
		// Subscribed again on the next connection, whose reply arms it.
		c.l.RemoveTimeout(s.refreshT)
		s.refreshT = nil
	}
	d := clientproto.Disconnect{Code: clientproto.DisconnectCode(w.CloseCode()), Reason: w.CloseReason()}
	if c.disconnect != nil {
		d = *c.disconnect
	}
	// Reconnect says what this client does: the code's advice (or its
	// own drop), if it reconnects at all.
	d.Reconnect = (d.Code.Reconnect() || c.drop) && c.o.Reconnect && !c.closed
	// Commands sent on this connection: subscribes go again on the next
	// one, the others' outcome is unknown.
	for id, cmd := range c.pending {
		delete(c.pending, id)
		if p := cmd.frame.Publish; p != nil && p.Idem != "" && d.Reconnect {
			// Sent again with the same key on the next connection, within
			// its timeout: the server publishes it once (idempotency.go).
			cmd.sent = false
			c.queue = append(c.queue, cmd)
			continue
		}
		c.l.RemoveTimeout(cmd.timer)
		cmd.timer = nil
		if cmd.sub != nil {
			if cmd.sub.cmd == cmd {
				cmd.sub.cmd = nil
			}
			continue
		}
		if cmd.id == c.connectID {
			continue
		}
		if cmd.done != nil {
			cmd.done(nil, ErrDisconnected)
		}
	}
	for _, s := range c.subs {
		if s.server {
			c.forget(s) // the server subscribes again if it wants to
		}
	}
	if d.Code == clientproto.DisconnectTokenExpired {
		// The same token would be refused again: without GetToken the
		// client cannot come back by itself.
		c.needToken = true
		if c.o.GetToken == nil {
			d.Reconnect = false
		}
	}
	if c.o.OnDisconnect != nil {
		c.o.OnDisconnect(c, d)
	}
	if c.closed {
		return
	}
	if !d.Reconnect {
		c.shut(ErrClosed)
		return
	}
	c.setState(Connecting)
	c.scheduleRetry()
}

// shut makes the client Closed: every waiting command fails with err.
func (c *Client) shut(err error) {
	c.closed = true
	if c.cancel != nil {
		c.cancel()
	}
	c.l.RemoveTimeout(c.retry)
	c.retry = nil
	c.l.RemoveTimeout(c.refreshT)
	c.refreshT = nil
	for _, s := range c.subs {
		c.l.RemoveTimeout(s.retry)
		s.retry = nil
		c.l.RemoveTimeout(s.refreshT)
		s.refreshT = nil
		s.firstReply(SubscribeResult{}, err)
	}
	q := c.queue
	c.queue = nil
	for _, cmd := range q {
		c.l.RemoveTimeout(cmd.timer)
		if cmd.done != nil {
			cmd.done(nil, err)
		}
	}
	if c.w == nil {
		for id, cmd := range c.pending {
			delete(c.pending, id)
			c.l.RemoveTimeout(cmd.timer)
			if cmd.done != nil && cmd.sub == nil && id != c.connectID {
				cmd.done(nil, err)
			}
		}
	}
	c.setState(Closed)
}

// Goroutine-safe.
// Close ends the session: no more reconnects, the connection closes with
// 1000, commands waiting fail with ErrClosed (those already sent get
// ErrDisconnected when the connection is gone). Idempotent.
func (c *Client) Close() {
	c.onLoop(func() {
		if c.closed {
			return
		}
		w, ws := c.w, c.ws
		c.shut(ErrClosed)
		if w != nil {
			w.Close(loop.CloseNormal, "")
		} else if ws != nil {
			ws.Close()
			c.ws = nil
		}
	})
}

// Goroutine-safe.
// Subscribe subscribes to topic, resuming after since (zero: from now),
// and calls onPub on the loop for each publication, in position order,
// none repeated. The client keeps the position of the last publication
// handled and, after a reconnect, resubscribes from it, so the server
// pushes what was missed first. Options.OnSubscribe reports each reply.
// done (may be nil) gets the first reply: the result, or the error (a
// *clientproto.Error, ErrSubscribed, ErrClosed); a refused subscription
// is forgotten (except after a temporary error, retried).
func (c *Client) Subscribe(topic string, since pubsub.Position, onPub func(Publication), done func(SubscribeResult, error)) {
	c.SubscribeWith(topic, SubscribeOptions{Since: since}, onPub, done)
}

// Goroutine-safe.
// SubscribeWith is Subscribe with options: a subscription token and the
// GetToken that renews it before it expires (SubscribeOptions).
func (c *Client) SubscribeWith(topic string, o SubscribeOptions, onPub func(Publication), done func(SubscribeResult, error)) {
	since := o.Since
	c.onLoop(func() {
		if c.closed {
			if done != nil {
				done(SubscribeResult{}, ErrClosed)
			}
			return
		}
		if s := c.subs[topic]; s != nil && !s.server {
			if done != nil {
				done(SubscribeResult{}, ErrSubscribed)
			}
			return
		}
		s := &subscription{topic: topic, pos: since, onPub: onPub, first: done, token: o.Token, getToken: o.GetToken}
		if c.subs == nil {
			c.subs = make(map[string]*subscription)
		}
		c.subs[topic] = s
		if c.state == Connected && c.w != nil {
			c.subscribeCmd(s)
		}
	})
}

// Goroutine-safe.
// Unsubscribe ends the subscription to topic (no more onPub calls from
// now on) and tells the server when connected.
func (c *Client) Unsubscribe(topic string) {
	c.onLoop(func() {
		s := c.subs[topic]
		if s == nil {
			return
		}
		c.forget(s)
		s.firstReply(SubscribeResult{}, ErrClosed)
		if c.state == Connected && c.w != nil {
			c.send(&command{frame: clientproto.Command{Unsubscribe: &clientproto.UnsubscribeRequest{Topic: topic}}})
		}
	})
}

// Goroutine-safe.
// Publish publishes data (a JSON value; nil is null) on topic. done (may
// be nil) gets, on the loop, the position the server gave it (zero on a
// topic without history, or when a broker such as NATS orders the topic:
// the position then comes with the publication only), or the error: a *clientproto.Error from the
// server, ErrTimeout (outcome unknown), ErrDisconnected (the connection
// ended for good before the reply: outcome unknown), ErrTooManyQueued,
// ErrClosed. While the client reconnects the publish waits for the
// connection, within Options.Timeout. Each publish carries a fresh
// idempotency key (PROTOCOL.md, idem): one sent on a connection that
// ends before its reply is sent again on the next, with the same key,
// so that the server publishes it once.
func (c *Client) Publish(topic string, data json.RawMessage, done func(pubsub.Position, error)) {
	c.PublishIdem(topic, data, newIdem(), done)
}

// Goroutine-safe.
// PublishIdem is Publish with the application's idempotency key idem (at
// most 64 bytes; "" for none: then a publish whose connection ends before
// its reply fails with ErrDisconnected and is not sent again). An
// application that retries a publish itself, after a restart say, sends
// the same key again within the server's window (2 min by default).
func (c *Client) PublishIdem(topic string, data json.RawMessage, idem string, done func(pubsub.Position, error)) {
	if data == nil {
		data = json.RawMessage("null")
	}
	cmd := &command{frame: clientproto.Command{Publish: &clientproto.PublishRequest{Topic: topic, Data: data, Idem: idem}}}
	if done != nil {
		cmd.done = func(res json.RawMessage, err error) {
			if err != nil {
				done(pubsub.Position{}, err)
				return
			}
			var r clientproto.PublishResult
			if err := json.Unmarshal(res, &r); err != nil {
				done(pubsub.Position{}, fmt.Errorf("rtclient: publish result: %w", err))
				return
			}
			p, err := pubsub.ParsePosition(r.Pos)
			done(p, err)
		}
	}
	c.onLoop(func() { c.do(cmd) })
}

// Goroutine-safe.
// RPC calls the server application's method with data (a JSON value, nil
// for none); done (may be nil) gets, on the loop, the application's answer
// or the error, as Publish's (ErrTimeout and ErrDisconnected: outcome
// unknown, not called again).
func (c *Client) RPC(method string, data json.RawMessage, done func(json.RawMessage, error)) {
	cmd := &command{frame: clientproto.Command{RPC: &clientproto.RPCRequest{Method: method, Data: data}}}
	if done != nil {
		cmd.done = func(res json.RawMessage, err error) {
			if err != nil {
				done(nil, err)
				return
			}
			var r clientproto.RPCResult
			if err := json.Unmarshal(res, &r); err != nil {
				done(nil, fmt.Errorf("rtclient: rpc result: %w", err))
				return
			}
			done(r.Data, nil)
		}
	}
	c.onLoop(func() { c.do(cmd) })
}

// Goroutine-safe.
// Ping asks the server for an empty reply; done (may be nil) gets nil or
// the error, on the loop.
func (c *Client) Ping(done func(error)) {
	cmd := &command{frame: clientproto.Command{Ping: &clientproto.PingRequest{}}}
	if done != nil {
		cmd.done = func(_ json.RawMessage, err error) { done(err) }
	}
	c.onLoop(func() { c.do(cmd) })
}

// Goroutine-safe.
// Refresh replaces the connection's token before it expires: with token,
// or, when token is "", with one from Options.GetToken (called off the
// loop). The token is also the one the next reconnect uses. done (may be
// nil) gets nil or the error, on the loop. The client refreshes by itself
// when GetToken is set; Refresh is for tokens the application gets
// otherwise.
func (c *Client) Refresh(token string, done func(error)) {
	c.onLoop(func() { c.refresh(token, done) })
}

func (c *Client) refresh(token string, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	if c.closed {
		done(ErrClosed)
		return
	}
	if token == "" {
		if c.o.GetToken == nil {
			done(errors.New("rtclient: refresh: no token and no GetToken"))
			return
		}
		c.fetchToken(func(tok string, err error) {
			if err != nil {
				done(fmt.Errorf("rtclient: get a token: %w", err))
				return
			}
			c.refresh(tok, done)
		})
		return
	}
	c.token = token
	cmd := &command{frame: clientproto.Command{Refresh: &clientproto.RefreshRequest{Token: token}}}
	cmd.done = func(res json.RawMessage, err error) {
		if err != nil {
			done(err)
			return
		}
		var r clientproto.RefreshResult
		if err := json.Unmarshal(res, &r); err != nil {
			done(fmt.Errorf("rtclient: refresh result: %w", err))
			return
		}
		c.result.Expires, c.result.TTL = r.Expires, r.TTL
		c.armRefresh()
		done(nil)
	}
	c.do(cmd)
}

// do sends cmd when connected, else queues it for the next connection.
// Loop-only.
func (c *Client) do(cmd *command) {
	if c.closed {
		if cmd.done != nil {
			cmd.done(nil, ErrClosed)
		}
		return
	}
	if len(c.pending)+len(c.queue) >= c.o.MaxQueued {
		if cmd.done != nil {
			cmd.done(nil, ErrTooManyQueued)
		}
		return
	}
	if c.state == Connected && c.w != nil {
		c.send(cmd)
		return
	}
	cmd.timer = c.l.CallLater(c.o.Timeout, func() { c.timedOut(cmd) })
	c.queue = append(c.queue, cmd)
}

// newIdem returns a fresh idempotency key: 96 random bits.
func newIdem() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
