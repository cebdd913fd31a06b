package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// transport is how a Client's frames reach its client. Loop-only.
type transport interface {
	// write sends one frame (a reply or push); frame may be reused once
	// it returns.
	write(frame []byte) error
	// writeBcast sends a publication encoded once for every subscriber.
	writeBcast(b *bcast) error
	// end sends the disconnect push (already in frame) and ends the
	// connection with code.
	end(code cp.DisconnectCode, reason string, frame []byte)
	kind() string
}

const (
	stConnecting = iota // no connect yet, or one off the loop
	stConnected
	stClosed
)

// Client is one protocol connection (any transport) on the server's loop.
// Its methods are loop-only.
//
// An idle connection's memory is this struct (128 B, a size class:
// TestIdleSize) and 8 B per subscription here plus its topic's map entry:
// no map, timer or buffer of its own, so its fields are packed and what
// few connections use is in x.
type Client struct {
	s  *Server
	tr transport
	n  uint64 // the client id's number (ID)
	// The identity, unpacked (Identity holds a time.Time, 24 B); its
	// Info is in x.
	user  string
	exp   int64 // ExpiresAt, Unix ns (0: never)
	state uint8
	// busy: a command of this client is off the loop (a hook) or waits
	// for a topic's history; the commands after it wait in queue.
	busy       bool
	gotConnect bool
	rpcs       int16 // pending RPCs
	// refused counts the commands refused with 111 since overSince
	// (saturating): past floodFactor times the rate for that time, the
	// client is flooding, not a little over the limit. It fits beside
	// rpcs in what was padding (TestIdleSize: 128 B).
	refused   uint16
	tokens    float32
	overSince int32 // when the rate went over the limit, seconds of the server's clock (0: not over)
	last      int64 // tokens' last refill, Unix ns
	// queue holds the commands that arrive while busy (made then).
	queue *[]cp.Command
	// subs are the subscribed topics (at most Limits.Subscriptions,
	// searched by name): 8 B each, where a map cost 250 B at the first.
	subs []*topic
	// timer is the connect deadline until connected, then the earliest
	// of the identity's expiry and its subscriptions' (nil: none): one
	// timer entry per connection, whatever its subscriptions.
	timer *loop.Timeout
	// x is what Authenticate reads of the request, until connected (an
	// idle connection keeps no copy of its headers); then the identity's
	// Info and the subscriptions' expiries, nil when it has neither.
	x *clientExtra
}

// identity returns the connection's identity (for hooks).
func (c *Client) identity() Identity {
	id := Identity{User: c.user, Info: c.Info()}
	if c.exp != 0 {
		id.ExpiresAt = time.Unix(0, c.exp)
	}
	return id
}

// setIdentity keeps ident's fields (and the subscriptions' expiries).
func (c *Client) setIdentity(ident Identity) {
	c.user, c.exp = ident.User, 0
	if !ident.ExpiresAt.IsZero() {
		c.exp = ident.ExpiresAt.UnixNano()
	}
	var subExp []subExpiry
	if c.x != nil {
		subExp = c.x.subExp
	}
	switch {
	case ident.Info != nil || subExp != nil:
		c.x = &clientExtra{info: ident.Info, subExp: subExp}
	default:
		c.x = nil
	}
}

// subExpiry is when a subscription's token expires.
type subExpiry struct {
	t   *topic
	exp int64 // Unix ns
}

// setSubExp makes c's subscription to t end at exp (Unix ns; 0: never)
// and moves the connection's one timer entry.
func (c *Client) setSubExp(t *topic, exp int64) {
	c.forgetSubExp(t)
	if exp != 0 {
		if c.x == nil {
			c.x = &clientExtra{}
		}
		c.x.subExp = append(c.x.subExp, subExpiry{t: t, exp: exp})
	}
	c.armExpiry()
}

// forgetSubExp drops the expiry of c's subscription to t, if any (the
// timer entry is left: it finds nothing to do, or the next expiry).
func (c *Client) forgetSubExp(t *topic) {
	if c.x == nil {
		return
	}
	se := c.x.subExp
	for i := range se {
		if se[i].t == t {
			last := len(se) - 1
			se[i] = se[last]
			se[last] = subExpiry{}
			se = se[:last]
			break
		}
	}
	if len(se) == 0 {
		se = nil
	}
	c.x.subExp = se
	if se == nil && c.x.info == nil && c.x.header == nil {
		c.x = nil
	}
}

// sub returns c's subscription to name, nil when none.
func (c *Client) sub(name string) *topic {
	for _, t := range c.subs {
		if t.name == name {
			return t
		}
	}
	return nil
}

// unsubscribe ends c's subscription to t: out of the topic, its
// presence and its expiry; the topic is unfollowed when it was the last.
func (c *Client) unsubscribe(t *topic) {
	c.dropSub(t)
	t.drop(c)
	c.s.presenceLeave(c, t)
	c.s.unfollow(t)
}

// dropSub forgets c's subscription to t (order does not matter).
func (c *Client) dropSub(t *topic) {
	c.forgetSubExp(t)
	for i, u := range c.subs {
		if u == t {
			last := len(c.subs) - 1
			c.subs[i] = c.subs[last]
			c.subs[last] = nil
			c.subs = c.subs[:last]
			if last == 0 {
				c.subs = nil
			}
			return
		}
	}
}

// clientExtra is the part of a connection's request Credentials carry
// (until connected), then the identity's Info.
type clientExtra struct {
	header http.Header
	ip     netip.Addr
	info   json.RawMessage
	// subExp are the subscriptions whose token expires (few: a linear
	// search), nil when none.
	subExp []subExpiry
}

// requestExtra is r's part Credentials carry.
func requestExtra(r *loop.Request) *clientExtra {
	return &clientExtra{header: r.HeaderMap(), ip: remoteIP(r)}
}

func (s *Server) newClient(tr transport, x *clientExtra) *Client {
	c := &Client{s: s, x: x}
	s.register(c, tr)
	return c
}

// register opens c (made with its s and x) on transport tr.
func (s *Server) register(c *Client, tr transport) {
	s.nextID++
	c.tr, c.n, c.tokens, c.last = tr, s.nextID, float32(s.lim.CommandBurst), time.Now().UnixNano()
	c.timer = s.l.CallLater(s.lim.ConnectTimeout, func() {
		if c.state == stConnecting {
			c.Disconnect(cp.DisconnectStale, "no connect in time")
		}
	})
	s.m.transport(tr.kind()).Add(1)
	s.clients[c] = struct{}{}
}

// Loop-only.
// ID returns the client id sent in the connect result.
func (c *Client) ID() string { return c.s.prefix + strconv.FormatUint(c.n, 10) }

// Loop-only.
// User returns the connection's user id ("" when anonymous).
func (c *Client) User() string { return c.user }

// Loop-only.
// Info returns the information Authenticate attached to the identity.
func (c *Client) Info() json.RawMessage {
	if c.x == nil {
		return nil
	}
	return c.x.info
}

// Loop-only.
// Transport returns "websocket", "sse" or "poll".
func (c *Client) Transport() string { return c.tr.kind() }

// Loop-only.
// Disconnect ends the connection with code and reason: the client gets a
// disconnect push (and on WebSocket a close frame with the same code).
// A no-op once it ended.
func (c *Client) Disconnect(code cp.DisconnectCode, reason string) {
	if c.state == stClosed {
		return
	}
	c.s.m.countDisconnect(code)
	c.cleanup()
	c.tr.end(code, reason, cp.AppendDisconnect(nil, code, reason))
}

// gone is the transport's end (the client left): cleanup without frames.
func (c *Client) gone() {
	if c.state != stClosed {
		c.cleanup()
	}
}

func (c *Client) cleanup() {
	s := c.s
	if c.state == stConnected {
		s.m.connections.Add(-1)
		if us := s.byUser[c.user]; us != nil {
			delete(us, c)
			if len(us) == 0 {
				delete(s.byUser, c.user)
			}
		}
	}
	c.state = stClosed
	delete(s.clients, c)
	delete(s.lags, c)
	s.m.transport(c.tr.kind()).Add(-1)
	s.l.RemoveTimeout(c.timer)
	c.timer = nil
	subs := c.subs
	c.subs = nil
	for _, t := range subs {
		t.drop(c)
		s.presenceLeave(c, t)
		s.unfollow(t)
	}
	c.queue = nil
}

// send writes one frame; a failed write ended the connection (the
// transport tells gone).
func (c *Client) send(frame []byte) {
	if c.state != stClosed {
		_ = c.tr.write(frame)
	}
}

func (c *Client) deliver(b *bcast) {
	if c.state != stClosed {
		_ = c.tr.writeBcast(b)
	}
}

func (c *Client) reply(id uint32, result any) {
	var b []byte
	if result == nil {
		b = cp.AppendReply(c.s.scratch[:0], id, nil)
	} else {
		b = cp.AppendResult(c.s.scratch[:0], id, result)
	}
	c.send(b)
	c.keepScratch(b)
}

func (c *Client) fail(id uint32, code cp.ErrorCode, msg string) {
	c.s.m.countError(code)
	b := cp.AppendError(c.s.scratch[:0], id, cp.NewError(code, msg))
	c.send(b)
	c.keepScratch(b)
}

func (c *Client) failErr(id uint32, err error, def cp.ErrorCode) {
	if busy(err) {
		c.fail(id, cp.ErrInternal, "server busy")
		return
	}
	var e *cp.Error
	if errors.As(err, &e) {
		c.s.m.countError(e.Code)
		b := cp.AppendError(c.s.scratch[:0], id, e)
		c.send(b)
		c.keepScratch(b)
		return
	}
	msg := "internal error"
	switch def {
	case cp.ErrPermissionDenied:
		msg = "permission denied"
	case cp.ErrTokenExpired:
		msg = "token expired"
	case cp.ErrUnauthorized:
		msg = "unauthorized"
	}
	c.fail(id, def, msg)
}

// keepScratch keeps b as the server's scratch (shared by its clients:
// every write copies) unless a large frame grew it.
func (c *Client) keepScratch(b []byte) {
	if cap(b) <= 16<<10 {
		c.s.scratch = b[:0]
	} else {
		c.s.scratch = nil
	}
}

// onFrame handles one command frame from the transport (its size checked
// already). Loop-only.
func (c *Client) onFrame(b []byte) {
	if c.state == stClosed {
		return
	}
	c.s.m.commands.Add(1)
	cmd, err := cp.DecodeCommand(b)
	if err != nil {
		if cmd.ID == 0 || !c.gotConnect {
			c.Disconnect(cp.DisconnectBadRequest, "bad request: "+truncate(err.Error(), 100))
			return
		}
		c.fail(cmd.ID, cp.ErrBadRequest, truncate(err.Error(), 200))
		return
	}
	if !c.gotConnect {
		if cmd.Connect == nil {
			c.fail(cmd.ID, cp.ErrUnauthorized, "connect first")
			c.Disconnect(cp.DisconnectUnauthorized, "command before connect")
			return
		}
		c.gotConnect = true
	} else if cmd.Connect != nil {
		c.fail(cmd.ID, cp.ErrBadRequest, "already connected")
		return
	}
	if !c.allow() {
		sec := c.s.seconds(time.Now().UnixNano())
		if c.refused < math.MaxUint16 {
			c.refused++
		}
		// Sustained 5 s, or a flood: every refused command costs the
		// loop a decode and a reply, and thousands arriving at once
		// would hold it (attack o of the bench).
		over := int(sec - c.overSince)
		if c.overSince != 0 && over >= 5 || int(c.refused) > floodFactor*c.s.lim.CommandsPerSecond*(over+1) {
			c.Disconnect(cp.DisconnectTooManyRequests, "too many requests")
			return
		}
		c.fail(cmd.ID, cp.ErrTooManyRequests, "too many requests")
		return
	}
	if !c.busy && c.queue == nil {
		c.handle(cmd) // the usual case: no queue made
		c.pump()
		return
	}
	if c.queue == nil {
		c.queue = new([]cp.Command)
	}
	if len(*c.queue) >= c.s.lim.CommandBurst {
		c.fail(cmd.ID, cp.ErrTooManyRequests, "too many commands waiting")
		return
	}
	*c.queue = append(*c.queue, cmd)
	c.pump()
}

// floodFactor times CommandsPerSecond refused within a second ends a
// connection with 3004 at once (PROTOCOL.md, Limits).
const floodFactor = 20

// allow takes a token of the client's command bucket.
func (c *Client) allow() bool {
	now := time.Now().UnixNano()
	lim := c.s.lim
	c.tokens = float32(min(float64(lim.CommandBurst), float64(c.tokens)+float64(now-c.last)/1e9*float64(lim.CommandsPerSecond)))
	c.last = now
	if c.tokens >= 1 {
		c.tokens--
		if c.tokens >= max(1, float32(lim.CommandBurst)/2) {
			// Half the burst left: the client backed off. A client over
			// the rate gets a command through now and then, with (almost)
			// none left after it, and stays over.
			c.overSince, c.refused = 0, 0
		}
		return true
	}
	if c.overSince == 0 {
		c.overSince, c.refused = c.s.seconds(now), 0
	}
	return false
}

// pump handles queued commands until one goes off the loop.
func (c *Client) pump() {
	for !c.busy && c.queue != nil && len(*c.queue) > 0 && c.state != stClosed {
		q := *c.queue
		cmd := q[0]
		q[0] = cp.Command{}
		*c.queue = q[1:]
		c.handle(cmd)
	}
	if c.queue != nil && len(*c.queue) == 0 {
		c.queue = nil
	}
}

// offLoop runs work on the loop's executor with a context bounded by
// HookTimeout, the client busy meanwhile, then done on the loop (unless
// the client closed) and the commands queued behind. A panicking hook is
// an error.
func offLoop[T any](c *Client, work func(ctx context.Context) (T, error), done func(T, error)) {
	c.busy = true
	timeout := c.s.o.HookTimeout
	finished := false
	finish := func(v T, err error) {
		if finished {
			return // the other of the hook's result and the deadline came first
		}
		finished = true
		c.busy = false
		if c.state == stClosed {
			return
		}
		done(v, err)
		c.pump()
	}
	// A hook that ignores its context must not hold the connection's
	// commands for ever: a second after its deadline the command fails
	// (busy), and the hook's late result is dropped.
	deadline := c.s.l.CallLater(timeout+time.Second, func() {
		var zero T
		finish(zero, fmt.Errorf("realtime: hook still running after %v: %w", timeout, context.DeadlineExceeded))
	})
	loop.RunInExecutor(c.s.l, func() (v T, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("realtime: hook panicked: %v", r)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return work(ctx)
	}, func(v T, err error) {
		c.s.l.RemoveTimeout(deadline)
		finish(v, err)
	})
}

func (c *Client) handle(cmd cp.Command) {
	switch {
	case cmd.Connect != nil:
		c.connect(cmd.ID, cmd.Connect)
	case cmd.Subscribe != nil:
		c.subscribe(cmd.ID, cmd.Subscribe)
	case cmd.Unsubscribe != nil:
		t := c.sub(cmd.Unsubscribe.Topic)
		if t == nil {
			c.fail(cmd.ID, cp.ErrNotSubscribed, "not subscribed")
			return
		}
		c.unsubscribe(t)
		c.reply(cmd.ID, nil)
	case cmd.Publish != nil:
		c.publish(cmd.ID, cmd.Publish)
	case cmd.RPC != nil:
		c.callRPC(cmd.ID, cmd.RPC)
	case cmd.Refresh != nil:
		c.refresh(cmd.ID, cmd.Refresh)
	case cmd.SubRefresh != nil:
		c.subRefresh(cmd.ID, cmd.SubRefresh)
	case cmd.Ping != nil:
		c.reply(cmd.ID, nil)
	case cmd.Presence != nil:
		c.presenceCommand(cmd.ID, cmd.Presence.Topic, false)
	case cmd.PresenceStats != nil:
		c.presenceCommand(cmd.ID, cmd.PresenceStats.Topic, true)
	}
}

func (c *Client) credentials(req *cp.ConnectRequest, token string) Credentials {
	cr := Credentials{Token: token, Transport: c.tr.kind()}
	if c.x != nil {
		cr.Header, cr.RemoteIP = c.x.header, c.x.ip
	}
	if req != nil {
		cr.Name, cr.Version, cr.Data = req.Name, req.Version, req.Data
	}
	return cr
}

func (c *Client) connect(id uint32, req *cp.ConnectRequest) {
	auth := c.s.o.Authenticate
	if auth == nil {
		c.connected(id, Identity{}, nil)
		return
	}
	cr := c.credentials(req, req.Token)
	offLoop(c, func(ctx context.Context) (Identity, error) { return auth(ctx, cr) }, func(ident Identity, err error) {
		c.connected(id, ident, err)
	})
}

// busy reports whether err says the server could not run a hook (its
// executor's queue is full, the hook timed out, the loop stops) rather
// than the hook's refusal: the client may retry.
func busy(err error) bool {
	return errors.Is(err, loop.ErrExecutorFull) || errors.Is(err, loop.ErrStopped) || errors.Is(err, context.DeadlineExceeded)
}

// authCode is the disconnect code for Authenticate's error.
func authCode(err error) (cp.DisconnectCode, string) {
	switch {
	case busy(err):
		return cp.DisconnectServerBusy, "server busy"
	case errors.Is(err, ErrTokenExpired):
		return cp.DisconnectTokenExpired, "token expired"
	case errors.Is(err, ErrUnauthorized):
		return cp.DisconnectUnauthorized, "unauthorized"
	}
	return cp.DisconnectPermissionDenied, "permission denied"
}

func (c *Client) connected(id uint32, ident Identity, err error) {
	s := c.s
	if err == nil && !ident.ExpiresAt.IsZero() && !ident.ExpiresAt.After(time.Now()) {
		err = ErrTokenExpired
	}
	if err != nil {
		code, reason := authCode(err)
		if code == cp.DisconnectServerBusy {
			c.fail(id, cp.ErrInternal, reason)
		} else {
			c.fail(id, cp.ErrUnauthorized, reason)
		}
		c.Disconnect(code, reason)
		return
	}
	c.setIdentity(ident) // and the request's part is dropped: kept only for Authenticate
	c.state = stConnected
	s.l.RemoveTimeout(c.timer)
	c.timer = nil
	s.m.connections.Add(1)
	if ident.User != "" { // anonymous connections: found in s.clients (forUser)
		us := s.byUser[ident.User]
		if us == nil {
			us = map[*Client]struct{}{}
			s.byUser[ident.User] = us
		}
		us[c] = struct{}{}
	}
	c.armExpiry()
	res := cp.ConnectResult{Client: c.ID(), Version: s.o.Version, Ping: int(s.pingInterval().Seconds()),
		Limits: cp.Limits{Subscriptions: s.lim.Subscriptions, CommandBytes: s.lim.CommandBytes,
			CommandsPerSecond: s.lim.CommandsPerSecond, PendingRPCs: s.lim.PendingRPCs}}
	res.Expires, res.TTL = c.ttl()
	if ss, ok := c.tr.(*session); ok {
		res.Session = ss.id
		ss.register()
	}
	c.reply(id, res)
}

func (s *Server) pingInterval() time.Duration {
	if d := s.o.WebSocket.PingInterval; d > 0 {
		return d
	}
	return 25 * time.Second
}

func (c *Client) ttl() (bool, int64) { return ttlOf(c.exp) }

// armExpiry schedules the end of a connection whose identity expires,
// and of its subscriptions whose tokens do: one timer entry per such
// connection, at the earliest of them, moved by refresh, sub_refresh,
// subscribe and each expiry (no timer per subscription).
func (c *Client) armExpiry() {
	c.s.l.RemoveTimeout(c.timer)
	c.timer = nil
	next := c.exp
	if c.x != nil {
		for _, e := range c.x.subExp {
			if next == 0 || e.exp < next {
				next = e.exp
			}
		}
	}
	if next == 0 || c.state != stConnected {
		return
	}
	c.timer = c.s.l.CallAt(time.Unix(0, next), c.expire)
}

// expirySlack is how early an expiry may be handled: the timer's and the
// wall clock's ends of a millisecond.
const expirySlack = int64(time.Millisecond)

// expire ends what expired: the connection (3005) when its identity
// did, else each subscription whose token did (an unsub push with 109:
// the client gets a new token and subscribes again from its position),
// then waits for the next expiry.
func (c *Client) expire() {
	c.timer = nil
	if c.state != stConnected {
		return
	}
	now := time.Now().UnixNano() + expirySlack
	if c.exp != 0 && c.exp <= now {
		c.Disconnect(cp.DisconnectTokenExpired, "token expired")
		return
	}
	for c.x != nil {
		var t *topic
		for _, e := range c.x.subExp {
			if e.exp <= now {
				t = e.t
				break
			}
		}
		if t == nil {
			break
		}
		c.unsubscribe(t)
		push := cp.AppendPush(c.s.scratch[:0], cp.Push{Push: &cp.TopicPush{Topic: t.name,
			Unsub: &cp.UnsubPush{Code: cp.ErrTokenExpired, Reason: SubscriptionExpiredReason}}})
		c.send(push)
		c.keepScratch(push)
		if c.state != stConnected {
			return // the push ended it (slow)
		}
	}
	c.armExpiry()
}

// SubscriptionExpiredReason is the reason of the unsub push that ends a
// subscription whose token expired without a sub_refresh (code 109).
const SubscriptionExpiredReason = "subscription token expired"

// ttlOf is a result's expires and ttl (whole seconds left) for
// something expiring at exp (Unix ns; 0: never): a connection's identity
// or a subscription's token.
func ttlOf(exp int64) (bool, int64) {
	if exp == 0 {
		return false, 0
	}
	return true, max((exp-time.Now().UnixNano())/int64(time.Second), 0)
}

// subRefresh checks a new token for a subscription exactly as subscribe
// does (off the loop) and moves the subscription's expiry to its exp.
func (c *Client) subRefresh(id uint32, req *cp.SubRefreshRequest) {
	s := c.s
	name := req.Topic
	ns := s.namespace(name)
	verify := s.o.VerifySubscribeToken
	switch {
	case c.sub(name) == nil:
		c.fail(id, cp.ErrNotSubscribed, "not subscribed")
		return
	case ns == nil || !ns.SubscribeToken || verify == nil:
		c.fail(id, cp.ErrNotAvailable, "no subscription tokens in this namespace")
		return
	}
	user, token := c.user, req.Token
	offLoop(c, func(ctx context.Context) (int64, error) { return verifySubToken(ctx, verify, token, user, name) },
		func(exp int64, err error) {
			t := c.sub(name)
			switch {
			case errors.Is(err, ErrTokenExpired):
				c.fail(id, cp.ErrTokenExpired, "subscription token expired")
			case err != nil:
				c.failErr(id, err, cp.ErrPermissionDenied)
			case t == nil: // it expired, or the server ended it, meanwhile
				c.fail(id, cp.ErrNotSubscribed, "not subscribed")
			default:
				c.setSubExp(t, exp)
				var r cp.RefreshResult
				r.Expires, r.TTL = ttlOf(exp)
				c.reply(id, r)
			}
		})
}

// verifySubToken runs verify (off the loop) and returns the token's exp
// in Unix ns (0: none); an exp already past is ErrTokenExpired.
func verifySubToken(ctx context.Context, verify func(ctx context.Context, token, user, topic string) (time.Time, error), token, user, topic string) (int64, error) {
	exp, err := verify(ctx, token, user, topic)
	switch {
	case err != nil:
		return 0, err
	case exp.IsZero():
		return 0, nil
	case !exp.After(time.Now()):
		return 0, ErrTokenExpired
	}
	return exp.UnixNano(), nil
}

func (c *Client) refresh(id uint32, req *cp.RefreshRequest) {
	auth := c.s.o.Authenticate
	if auth == nil {
		c.reply(id, cp.RefreshResult{})
		return
	}
	cr := c.credentials(nil, req.Token)
	offLoop(c, func(ctx context.Context) (Identity, error) { return auth(ctx, cr) }, func(ident Identity, err error) {
		switch {
		case err == nil && ident.User != c.user:
			c.fail(id, cp.ErrUnauthorized, "the token names another user")
		case errors.Is(err, ErrTokenExpired), err == nil && !ident.ExpiresAt.IsZero() && !ident.ExpiresAt.After(time.Now()):
			c.fail(id, cp.ErrTokenExpired, "token expired")
		case busy(err):
			c.fail(id, cp.ErrInternal, "server busy")
		case err != nil:
			c.fail(id, cp.ErrUnauthorized, "unauthorized")
		default:
			c.setIdentity(ident)
			c.armExpiry()
			var r cp.RefreshResult
			r.Expires, r.TTL = c.ttl()
			c.reply(id, r)
		}
	})
}

func (c *Client) subscribe(id uint32, req *cp.SubscribeRequest) {
	s := c.s
	name := req.Topic
	ns := s.namespace(name)
	switch {
	case ns == nil:
		c.fail(id, cp.ErrUnknownTopic, "unknown topic")
		return
	case c.sub(name) != nil:
		c.fail(id, cp.ErrAlreadySubscribed, "already subscribed")
		return
	case len(c.subs) >= s.lim.Subscriptions:
		c.fail(id, cp.ErrLimitExceeded, "too many subscriptions")
		return
	}
	if u, ok := cp.PersonalUser(name); ok && (u == "" || u != c.user) {
		c.fail(id, cp.ErrPermissionDenied, "permission denied")
		return
	}
	since, _ := pubsub.ParsePosition(req.Since) // checked by DecodeCommand
	ident := c.identity()
	verify, can := s.o.VerifySubscribeToken, s.o.CanSubscribe
	if ns.SubscribeToken && (verify == nil || req.Token == "") {
		c.fail(id, cp.ErrPermissionDenied, "subscription token required")
		return
	}
	attach := func(exp int64) {
		c.busy = true
		async := false
		s.ensureKept(name, ns, func(err error) {
			c.busy = false
			if c.state == stClosed {
				return
			}
			switch {
			case errors.Is(err, ErrTooManyTopics):
				c.fail(id, cp.ErrLimitExceeded, "too many history topics on this server")
			case err != nil:
				c.fail(id, cp.ErrInternal, "topic unavailable")
			default:
				c.attach(id, name, ns, since, exp)
			}
			if async {
				c.pump() // else the pump that called us goes on
			}
		})
		async = true
	}
	if !ns.SubscribeToken && can == nil {
		attach(0)
		return
	}
	token := req.Token
	offLoop(c, func(ctx context.Context) (int64, error) {
		var exp int64
		if ns.SubscribeToken {
			var err error
			if exp, err = verifySubToken(ctx, verify, token, ident.User, name); err != nil {
				return 0, err
			}
		}
		if can != nil {
			return exp, can(ctx, ident, name)
		}
		return exp, nil
	}, func(exp int64, err error) {
		switch {
		case errors.Is(err, ErrTokenExpired):
			c.fail(id, cp.ErrTokenExpired, "subscription token expired")
		case err != nil:
			c.failErr(id, err, cp.ErrPermissionDenied)
		default:
			attach(exp)
		}
	})
}

// attach subscribes c to name once its history is kept: the kept
// publications after since first, then the reply, then live ones (all in
// this one loop turn, so none is lost or repeated). A subscription whose
// token expires (exp, Unix ns; 0: never) ends then unless refreshed.
func (c *Client) attach(id uint32, name string, ns *Namespace, since pubsub.Position, exp int64) {
	s := c.s
	t, err := s.follow(name, ns)
	if err != nil {
		s.log.Error("realtime: follow topic", "topic", name, "err", err)
		c.fail(id, cp.ErrInternal, "topic unavailable")
		return
	}
	res := cp.SubscribeResult{}
	var skip pubsub.Position
	if t.hist {
		msgs, head, err := s.hub.History(hubTopic(name), since, nil)
		res.Head = head.String()
		res.Gone = errors.Is(err, pubsub.ErrHistoryGone)
		if err == nil && since.Epoch == head.Epoch && head.Less(since) {
			// The client saw more elsewhere (this loop lags, within
			// pubsub.MaxLead): what it has must not come again.
			skip = since
		}
		size := 0
		for _, m := range msgs {
			size += len(m.Data) + len(name) + 64
		}
		if size > s.lim.MaxRecoverBytes {
			msgs, res.Gone = nil, true // too much to replay at once: reload
		}
		for _, m := range msgs {
			c.s.scratch = cp.AppendPublicationPush(c.s.scratch[:0], name, m.Pos, m.Data)
			c.send(c.s.scratch)
		}
		res.Recovered = len(msgs)
		c.keepScratch(c.s.scratch)
		if c.state == stClosed {
			return
		}
	}
	// Subscribed, in presence too, before the reply goes: a client that
	// asks for presence on another loop once it has the reply must find
	// itself there (TestPresenceTwoLoops failed in CI when the reply
	// went first). Nothing is published in between: this is one turn.
	t.add(c, skip)
	c.subs = append(c.subs, t)
	s.presenceJoin(c, t)
	if exp != 0 {
		c.setSubExp(t, exp)
		res.Expires, res.TTL = ttlOf(exp)
	}
	c.reply(id, res)
}

// serverSubscribe is SubscribeUser's, for one connection.
func (c *Client) serverSubscribe(name string) {
	if c.state != stConnected || c.sub(name) != nil {
		return
	}
	s := c.s
	ns := s.namespace(name)
	s.ensureKept(name, ns, func(err error) {
		if err != nil || c.state != stConnected || c.sub(name) != nil {
			return
		}
		t, err := s.follow(name, ns)
		if err != nil {
			return
		}
		var head pubsub.Position
		if t.hist {
			head, _ = s.hub.Head(hubTopic(name))
		}
		c.send(cp.AppendPush(nil, cp.Push{Push: &cp.TopicPush{Topic: name, Sub: &cp.SubPush{Head: head.String()}}}))
		t.add(c, pubsub.Position{})
		c.subs = append(c.subs, t)
		s.presenceJoin(c, t)
	})
}

func (c *Client) publish(id uint32, req *cp.PublishRequest) {
	s := c.s
	name := req.Topic
	ns := s.namespace(name)
	switch {
	case ns == nil:
		c.fail(id, cp.ErrUnknownTopic, "unknown topic")
		return
	case !ns.Publish:
		c.fail(id, cp.ErrNotAvailable, "clients may not publish here")
		return
	case ns.MaxDataBytes > 0 && len(req.Data) > ns.MaxDataBytes:
		c.fail(id, cp.ErrTooLarge, "data over "+strconv.Itoa(ns.MaxDataBytes)+" bytes")
		return
	case len(req.Idem) > cp.MaxIdemBytes:
		c.fail(id, cp.ErrBadRequest, "idem over "+strconv.Itoa(cp.MaxIdemBytes)+" bytes")
		return
	}
	if u, ok := cp.PersonalUser(name); ok && (u == "" || u != c.user) {
		c.fail(id, cp.ErrPermissionDenied, "permission denied")
		return
	}
	data, idem := req.Data, req.Idem
	do := func() {
		c.busy = true
		async := false
		s.publishOnce(c.user, idem, name, data, func(pos pubsub.Position, err error) {
			c.busy = false
			if c.state == stClosed {
				return
			}
			switch {
			case errors.Is(err, ErrTooManyTopics):
				c.fail(id, cp.ErrLimitExceeded, "too many history topics on this server")
			case err != nil:
				s.log.Warn("realtime: client publish", "topic", name, "err", err)
				c.fail(id, cp.ErrInternal, "publish failed")
			default:
				c.reply(id, cp.PublishResult{Pos: pos.String()})
			}
			if async {
				c.pump() // else the pump that called us goes on
			}
		})
		async = true
	}
	can := s.o.CanPublish
	if can == nil {
		do()
		return
	}
	ident := c.identity()
	offLoop(c, func(ctx context.Context) (struct{}, error) { return struct{}{}, can(ctx, ident, name, data) },
		func(_ struct{}, err error) {
			if err != nil {
				c.failErr(id, err, cp.ErrPermissionDenied)
				return
			}
			do()
		})
}

func (c *Client) callRPC(id uint32, req *cp.RPCRequest) {
	s := c.s
	fn := s.rpc[req.Method]
	switch {
	case fn == nil:
		c.fail(id, cp.ErrMethodNotFound, "method not found")
		return
	case int(c.rpcs) >= s.lim.PendingRPCs || c.rpcs == math.MaxInt16:
		c.fail(id, cp.ErrLimitExceeded, "too many pending RPCs")
		return
	}
	c.rpcs++
	done := false
	var timer *loop.Timeout
	finish := func(data json.RawMessage, err error) {
		if done {
			return
		}
		done = true
		c.rpcs--
		s.l.RemoveTimeout(timer)
		if c.state == stClosed {
			return
		}
		switch {
		case err != nil:
			c.failErr(id, err, cp.ErrInternal)
		case len(data) > 0 && !json.Valid(data):
			s.log.Warn("realtime: rpc answered data that is not JSON", "method", req.Method)
			c.fail(id, cp.ErrInternal, "internal error")
		default:
			c.reply(id, cp.RPCResult{Data: data})
		}
	}
	timer = s.l.CallLater(s.lim.RPCTimeout, func() { finish(nil, cp.NewError(cp.ErrTimeout, "timeout")) })
	reply := func(data json.RawMessage, err error) {
		if s.l.InLoop() {
			finish(data, err)
			return
		}
		data = append(json.RawMessage(nil), data...)
		s.l.AddCallback(func() { finish(data, err) })
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("realtime: rpc handler panicked", "method", req.Method, "panic", r)
				finish(nil, cp.NewError(cp.ErrInternal, "internal error"))
			}
		}()
		fn(c, req.Data, reply)
	}()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
