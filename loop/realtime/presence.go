package realtime

import (
	"encoding/json"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/tornago/tornago/loop"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// Presence (namespaces with Presence): who is subscribed to a topic, on
// every loop of the process. Each loop's Server adds and removes its
// subscribers in a PresenceGroup shared by the process's Servers; a
// query reads it under its mutex, so presence_stats is two map lookups
// whatever the topic's size, and presence copies at most
// Limits.MaxPresenceMembers entries. Memory: one entry per subscription
// in such a namespace (bounded by the connections and
// Limits.Subscriptions); an entry's Info is the identity's own (shared,
// not copied), left out over Limits.MaxPresenceInfo.
//
// Join/leave (namespaces with JoinLeave): each loop gathers its
// subscribers' joins and leaves for Options.JoinLeaveInterval, then
// sends one push per topic to the topic's subscribers on every loop of
// the group (one callback per loop, the push encoded once). With
// PresenceGroup.Share, other processes' joins and leaves join the batch
// too (presence_share.go), so the push covers every process. A batch over
// Namespace.JoinLeaveMaxNames names, or a topic over that many
// subscribers, gives counts only; a batch keeps no names past it, so its
// memory is bounded too. A counts push costs a frame per subscriber, so
// it waits for the storm to end: until no join or leave came for
// Options.JoinLeaveQuiet, or the events are twice the subscribers, or
// Options.JoinLeaveMaxDelay passed since the first. N clients
// (re)connecting within the delay then cost one counts push to each
// (N frames) beside their connect and subscribe replies (2N), however
// the storm is spread (TestJoinLeaveStormSpread, TestJoinLeaveStormLong),
// not N pushes every interval.

// PresenceGroup is the presence shared by the Servers of one process:
// the members of every presence topic, and the Servers their join/leave
// pushes go to. Its methods are goroutine-safe.
type PresenceGroup struct {
	mu      sync.Mutex
	topics  map[string]*presenceTopic
	servers map[*Server]struct{}
	// pending are the join/leave batches of the interval, by topic;
	// armed is the Server whose timer flushes them (nil: none pending).
	pending map[string]*jlBatch
	armed   *Server
	// share is the sharing with other processes (presence_share.go),
	// nil unless Share; interval is the shortest JoinLeaveInterval of
	// the group's Servers (its deltas' coalescing).
	share    *presenceShare
	interval time.Duration
	flushed  time.Time // the last flush of the batches
}

// DefaultPresence is the group of the Servers whose Options.Presence is
// nil: every loop of the process.
var DefaultPresence = NewPresenceGroup()

// Goroutine-safe.
// NewPresenceGroup returns an empty group (for Servers that must not
// share the process-wide DefaultPresence, as tests running several
// "processes" in one).
func NewPresenceGroup() *PresenceGroup {
	return &PresenceGroup{topics: map[string]*presenceTopic{}, servers: map[*Server]struct{}{}, pending: map[string]*jlBatch{}}
}

// presenceTopic is one topic's members: by client id, and the number of
// connections of each user (anonymous ones not counted as a user).
type presenceTopic struct {
	members map[string]presenceMember
	users   map[string]int // local and remote members' users
	// remote are other processes' members by process (node) and client
	// id (presence_share.go), remoteN their number.
	remote  map[string]map[string]cp.ClientInfo
	remoteN int
	// ver counts the changes of the members (changed); enc is the
	// presence result encoded at version encVer with at most encMax
	// members, which presence commands reuse until the members change:
	// a flood of presence commands on a large topic costs a copy of
	// the encoded answer each, not a list, sort and encoding of up to
	// Limits.MaxPresenceMembers members each (bench attack t stalled the
	// loop for seconds without it). Shared by the group's loops, never
	// modified once stored.
	ver, encVer uint64
	enc         []byte
	encMax      int
}

// changed notes a change of pt's members: its encoded answer is stale.
// Under g.mu.
func (pt *presenceTopic) changed() {
	pt.ver++
	pt.enc = nil
}

type presenceMember struct {
	info cp.ClientInfo
	s    *Server
}

func (g *PresenceGroup) add(topic string, m cp.ClientInfo, s *Server) {
	g.mu.Lock()
	defer g.mu.Unlock()
	pt := g.topics[topic]
	if pt == nil {
		pt = &presenceTopic{members: map[string]presenceMember{}, users: map[string]int{}}
		g.topics[topic] = pt
	}
	if _, dup := pt.members[m.Client]; !dup {
		pt.members[m.Client] = presenceMember{info: m, s: s}
		pt.changed()
		if m.User != "" {
			pt.users[m.User]++
		}
		if g.share != nil {
			g.share.noteAdd(topic, m)
		}
	}
}

func (g *PresenceGroup) remove(topic, client string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if pt := g.topics[topic]; pt != nil {
		g.removeLocked(topic, pt, client)
	}
}

func (g *PresenceGroup) removeLocked(topic string, pt *presenceTopic, client string) {
	m, ok := pt.members[client]
	if !ok {
		return
	}
	delete(pt.members, client)
	pt.changed()
	if g.share != nil {
		g.share.noteDel(topic, client)
	}
	pt.dropUser(m.info.User)
	if pt.empty() {
		delete(g.topics, topic)
	}
}

// join registers s; leave forgets s and its members (its loop stopped).
func (g *PresenceGroup) join(s *Server) {
	g.mu.Lock()
	g.servers[s] = struct{}{}
	if g.interval == 0 || s.pres.interval < g.interval {
		g.interval = s.pres.interval
	}
	g.mu.Unlock()
}

func (g *PresenceGroup) leave(s *Server) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.servers, s)
	if g.armed == s {
		// Its timer will not fire: another loop flushes.
		g.armed = nil
		for other := range g.servers {
			g.armed = other
			other.l.CallLater(other.pres.interval, other.flushJoinLeave)
			break
		}
	}
	for name, pt := range g.topics {
		for id, m := range pt.members {
			if m.s == s {
				g.removeLocked(name, pt, id)
			}
		}
	}
}

// list returns at most max members of topic, sorted by client id, and
// whether some were left out (then which ones is arbitrary).
func (g *PresenceGroup) list(topic string, max int) ([]cp.ClientInfo, bool) {
	ms, trunc, _, _ := g.listVer(topic, max)
	return ms, trunc
}

// encoded returns the presence result of topic (at most max members)
// encoded as JSON: the topic's cached encoding while its members have
// not changed since it was made, else a new one, cached. Never modify
// it. The list is sorted and encoded out of g.mu.
func (g *PresenceGroup) encoded(topic string, max int) []byte {
	g.mu.Lock()
	if pt := g.topics[topic]; pt != nil && pt.enc != nil && pt.encVer == pt.ver && pt.encMax == max {
		enc := pt.enc
		g.mu.Unlock()
		return enc
	}
	g.mu.Unlock()
	ms, trunc, pt, ver := g.listVer(topic, max)
	enc, err := json.Marshal(cp.PresenceResult{Members: ms, Truncated: trunc})
	if err != nil {
		return nil
	}
	if pt != nil {
		g.mu.Lock()
		if pt.ver == ver && g.topics[topic] == pt {
			pt.enc, pt.encVer, pt.encMax = enc, ver, max
		}
		g.mu.Unlock()
	}
	return enc
}

// listVer is list, with the topic's entry (nil: none) and its version
// when listed.
func (g *PresenceGroup) listVer(topic string, max int) ([]cp.ClientInfo, bool, *presenceTopic, uint64) {
	g.mu.Lock()
	pt := g.topics[topic]
	var ver uint64
	if pt != nil {
		ver = pt.ver
	}
	out := []cp.ClientInfo{}
	truncated := false
	if pt != nil {
		for _, m := range pt.members {
			if len(out) == max {
				truncated = true
				break
			}
			out = append(out, m.info)
		}
		for _, p := range pt.remote {
			if truncated {
				break
			}
			for _, m := range p {
				if len(out) == max {
					truncated = true
					break
				}
				out = append(out, m)
			}
		}
	}
	g.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Client < out[j].Client })
	return out, truncated, pt, ver
}

func (g *PresenceGroup) stats(topic string) cp.PresenceStatsResult {
	g.mu.Lock()
	defer g.mu.Unlock()
	pt := g.topics[topic]
	if pt == nil {
		return cp.PresenceStatsResult{}
	}
	return cp.PresenceStatsResult{Clients: len(pt.members) + pt.remoteN, Users: len(pt.users)}
}

// serverPresence is one Server's part: its group and the interval of
// its join/leave pushes.
type serverPresence struct {
	g        *PresenceGroup
	interval time.Duration
	quiet    time.Duration
	maxDelay time.Duration
	// budget is the bytes of presence answers this loop may still write
	// (refilled at Limits.PresenceBytesPerSecond, up to a tenth of it; it
	// goes below 0 by the last answer), budgetAt its last refill (Unix
	// ns).
	budget   float64
	budgetAt int64
}

// presenceAllowed takes the cost of a presence command from c's command
// tokens (Limits.PresenceCost, the command's own already taken) when the
// loop's budget of answer bytes is not spent, or answers id with error
// 111 and says false. Checked before the answer is listed or encoded:
// a refusal costs neither. The caller takes the answer's bytes from the
// budget.
func (c *Client) presenceAllowed(id uint32) bool {
	lim, p := c.s.lim, c.s.pres
	// A burst under the cost would refuse every presence: at most the
	// burst.
	extra := float32(min(lim.PresenceCost, lim.CommandBurst) - 1)
	if c.tokens < extra {
		c.fail(id, cp.ErrTooManyRequests, "too many presence requests")
		return false
	}
	now := time.Now().UnixNano()
	// At most a tenth of a second's bytes at once: a burst of answers
	// holds the loop for no longer than a tenth of what a second's do.
	rate := float64(lim.PresenceBytesPerSecond)
	if p.budgetAt == 0 {
		p.budget = rate / 10
	} else {
		p.budget = min(rate/10, p.budget+float64(now-p.budgetAt)/1e9*rate)
	}
	p.budgetAt = now
	if p.budget < 0 {
		c.fail(id, cp.ErrTooManyRequests, "presence busy")
		return false
	}
	c.tokens -= extra
	return true
}

// jlBatch is one topic's joins and leaves of an interval in the group:
// names up to the namespace's JoinLeaveMaxNames, counts always.
type jlBatch struct {
	join, leave  []cp.ClientInfo
	joined, left int
	overflow     bool
	maxNames     int
	first, last  time.Time // its first and its latest join or leave
}

// initPresence is New's: join the group, leave it when the loop stops.
func (s *Server) initPresence() {
	g := s.o.Presence
	if g == nil {
		g = DefaultPresence
	}
	iv := s.o.JoinLeaveInterval
	if iv <= 0 {
		iv = 100 * time.Millisecond
	}
	q := s.o.JoinLeaveQuiet
	if q <= 0 {
		q = DefaultJoinLeaveQuiet
	}
	md := s.o.JoinLeaveMaxDelay
	if md <= 0 {
		md = DefaultJoinLeaveMaxDelay
	}
	s.pres = &serverPresence{g: g, interval: iv, quiet: q, maxDelay: md}
	for _, ns := range s.ns {
		if ns.Presence {
			g.join(s)
			_ = s.l.AddOnStop(func() { g.leave(s) })
			return
		}
	}
}

// presenceNS returns t's namespace when it keeps presence, else nil.
func (s *Server) presenceNS(name string) *Namespace {
	if ns := s.namespace(name); ns != nil && ns.Presence {
		return ns
	}
	return nil
}

// clientInfo is c as presence shows it.
func (c *Client) clientInfo() cp.ClientInfo {
	m := cp.ClientInfo{Client: c.ID(), User: c.user}
	if info := c.Info(); len(info) <= c.s.lim.MaxPresenceInfo {
		m.Info = info
	}
	return m
}

// presenceJoin is called once c subscribed to t.
func (s *Server) presenceJoin(c *Client, t *topic) {
	ns := s.presenceNS(t.name)
	if ns == nil {
		return
	}
	m := c.clientInfo()
	s.pres.g.add(t.name, m, s)
	if ns.JoinLeave {
		s.queueJoinLeave(t.name, ns, m, true)
	}
}

// presenceLeave is called once c's subscription to t ended.
func (s *Server) presenceLeave(c *Client, t *topic) {
	ns := s.presenceNS(t.name)
	if ns == nil {
		return
	}
	m := c.clientInfo()
	s.pres.g.remove(t.name, m.Client)
	if ns.JoinLeave {
		s.queueJoinLeave(t.name, ns, m, false)
	}
}

// queueJoinLeave adds a join or leave to the group's batch of name; the
// first of an interval arms this loop's timer, whose flush sends every
// loop's joins and leaves of the interval: one push per topic per
// interval in the whole group, whatever the number of loops.
func (s *Server) queueJoinLeave(name string, ns *Namespace, m cp.ClientInfo, join bool) {
	g := s.pres.g
	g.mu.Lock()
	g.batchLocked(name, ns, m, join)
	arm := g.armed == nil
	if arm {
		g.armed = s
	}
	g.mu.Unlock()
	if arm {
		s.l.CallLater(s.pres.interval, s.flushJoinLeave)
	}
}

// batchLocked adds a join or leave of topic name (its namespace ns) to
// the group's pending batch (this process's, or another's received:
// presence_share.go). Under g.mu.
func (g *PresenceGroup) batchLocked(name string, ns *Namespace, m cp.ClientInfo, join bool) {
	b := g.pending[name]
	if b == nil {
		maxNames := ns.JoinLeaveMaxNames
		if maxNames <= 0 {
			maxNames = 100
		}
		b = &jlBatch{maxNames: maxNames, first: time.Now()}
		g.pending[name] = b
	}
	b.last = time.Now()
	if join {
		b.joined++
	} else {
		b.left++
	}
	if !b.overflow && b.joined+b.left > b.maxNames {
		b.overflow, b.join, b.leave = true, nil, nil // counts only from now: bounded
	}
	if !b.overflow {
		if join {
			b.join = append(b.join, m)
		} else {
			b.leave = append(b.leave, m)
		}
	}
}

// flushJoinLeave sends the group's pending batches to every loop of the
// group: one push per topic, encoded once, one callback per other loop.
func (s *Server) flushJoinLeave() {
	g := s.pres.g
	g.mu.Lock()
	pending := g.pending
	g.pending = map[string]*jlBatch{}
	g.armed = nil
	g.flushed = time.Now()
	type out struct {
		topic string
		frame []byte
	}
	frames := make([]out, 0, len(pending))
	now := time.Now()
	for name, b := range pending {
		tp := &cp.TopicPush{Topic: name}
		size := 0
		if pt := g.topics[name]; pt != nil {
			size = len(pt.members) + pt.remoteN
		}
		counts := b.overflow || size > b.maxNames
		if counts && b.joined+b.left < 2*size && now.Sub(b.last) < s.pres.quiet && now.Sub(b.first) < s.pres.maxDelay {
			// A large topic: a counts push costs a frame per subscriber,
			// so it waits for the storm to end (JoinLeaveQuiet without
			// an event), or for its events to be twice the subscribers,
			// or JoinLeaveMaxDelay. A reconnect storm of N within the
			// delay then costs one push to each: N frames. (A push in
			// the middle of a storm would cost up to N more: at 2 s and
			// 4 s of a 5 s storm, 1.2 N.)
			g.pending[name] = b
			continue
		}
		if counts {
			tp.Counts = &cp.JoinLeaveCounts{Joined: b.joined, Left: b.left, Clients: size}
		} else {
			tp.Join, tp.Leave = b.join, b.leave
		}
		frames = append(frames, out{name, cp.AppendPush(nil, cp.Push{Push: tp})})
	}
	servers := make([]*Server, 0, len(g.servers))
	for srv := range g.servers {
		servers = append(servers, srv)
	}
	rearm := len(g.pending) > 0
	if rearm {
		g.armed = s
	}
	g.mu.Unlock()
	if rearm {
		s.l.CallLater(s.pres.interval, s.flushJoinLeave)
	}
	if len(frames) == 0 {
		return
	}
	deliver := func(srv *Server) {
		for _, f := range frames {
			srv.pushLocal(f.topic, f.frame)
		}
	}
	for _, srv := range servers {
		if srv == s {
			deliver(s)
			continue
		}
		srv.l.AddCallback(func() { deliver(srv) })
	}
}

// pushLocal sends frame (shared, never modified) to this loop's
// subscribers of name.
func (s *Server) pushLocal(name string, frame []byte) {
	t := s.topics[name]
	if t == nil || len(t.subs) == 0 {
		return
	}
	b := &bcast{frame: frame}
	for c := range t.subs {
		c.deliver(b)
	}
}

// presenceCommand answers presence and presence_stats.
func (c *Client) presenceCommand(id uint32, name string, stats bool) {
	s := c.s
	ns := s.namespace(name)
	switch {
	case ns == nil:
		c.fail(id, cp.ErrUnknownTopic, "unknown topic")
		return
	case !ns.Presence:
		c.fail(id, cp.ErrNotAvailable, "no presence in this namespace")
		return
	case c.sub(name) == nil:
		c.fail(id, cp.ErrNotSubscribed, "not subscribed")
		return
	}
	if stats {
		c.reply(id, s.pres.g.stats(name))
		return
	}
	if !c.presenceAllowed(id) {
		return
	}
	enc := s.pres.g.encoded(name, s.lim.MaxPresenceMembers)
	if enc == nil {
		c.fail(id, cp.ErrInternal, "internal error")
		return
	}
	s.pres.budget -= float64(len(enc))
	b := cp.AppendReply(c.s.scratch[:0], id, enc)
	c.send(b)
	c.keepScratch(b)
}

// presenceErr checks topic for the Go API and the server API.
func (s *Server) presenceErr(topic string) error {
	if err := cp.ValidTopic(topic); err != nil {
		return err
	}
	ns := s.namespace(topic)
	if ns == nil {
		return &cp.Error{Code: cp.ErrUnknownTopic, Message: "no namespace for topic " + strconv.Quote(topic)}
	}
	if !ns.Presence {
		return &cp.Error{Code: cp.ErrNotAvailable, Message: "namespace " + strconv.Quote(ns.Name) + " keeps no presence"}
	}
	return nil
}

// Goroutine-safe.
// Presence returns the subscribers of topic on every loop of the
// server's PresenceGroup (the process): at most
// Limits.MaxPresenceMembers, sorted by client id, and whether some were
// left out. With PresenceGroup.Share, other processes' members too. A
// topic outside the namespaces, or in one without Presence, gets a
// *clientproto.Error (102, 108).
func (s *Server) Presence(topic string) ([]cp.ClientInfo, bool, error) {
	if err := s.presenceErr(topic); err != nil {
		return nil, false, err
	}
	ms, trunc := s.pres.g.list(topic, s.lim.MaxPresenceMembers)
	return ms, trunc, nil
}

// Goroutine-safe.
// PresenceStats returns the numbers of subscribers (connections) and of
// distinct users (anonymous connections not counted) of topic on every
// loop of the server's PresenceGroup (and other processes, with
// PresenceGroup.Share); cheap whatever the topic's size.
// Errors as Presence.
func (s *Server) PresenceStats(topic string) (cp.PresenceStatsResult, error) {
	if err := s.presenceErr(topic); err != nil {
		return cp.PresenceStatsResult{}, err
	}
	return s.pres.g.stats(topic), nil
}

// PresenceBackend is an APIBackend that answers the server API's
// presence and presence_stats (serverBackend is one).
type PresenceBackend interface {
	// Goroutine-safe. Presence as Server.Presence.
	Presence(topic string) ([]cp.ClientInfo, bool, error)
	// Goroutine-safe. PresenceStats as Server.PresenceStats.
	PresenceStats(topic string) (cp.PresenceStatsResult, error)
}

func (b serverBackend) Presence(topic string) ([]cp.ClientInfo, bool, error) {
	return b.s.Presence(topic)
}

func (b serverBackend) PresenceStats(topic string) (cp.PresenceStatsResult, error) {
	return b.s.PresenceStats(topic)
}

// apiPresence serves POST /api/presence and /api/presence_stats.
func (a *API) apiPresence(r *loop.Request, b APIBackend, stats bool) error {
	var req struct {
		Topic string `json:"topic"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := checkTopic(req.Topic); err != nil {
		return err
	}
	pb, ok := b.(PresenceBackend)
	if !ok {
		return &apiError{status: 404, Code: cp.ErrMethodNotFound, Msg: "this backend keeps no presence"}
	}
	if stats {
		st, err := pb.PresenceStats(req.Topic)
		if err != nil {
			return err
		}
		a.reply(r, st)
		return nil
	}
	ms, trunc, err := pb.Presence(req.Topic)
	if err != nil {
		return err
	}
	a.reply(r, cp.PresenceResult{Members: ms, Truncated: trunc})
	return nil
}
