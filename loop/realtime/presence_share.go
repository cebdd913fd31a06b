package realtime

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// Presence across processes: each process's PresenceGroup (a "node",
// with a random id) publishes on PresenceTopic, every message numbered
// (seq, 1, 2, 3... per node):
//
//   - deltas ("d"): the changes of its own members of a topic since its
//     last delta (members added with their info, client ids removed; the
//     net change of a client within the interval), coalesced for the
//     group's JoinLeaveInterval (100 ms) after the first change, at most
//     presencePart additions and removals a message;
//   - a keepalive ("a") every heartbeat (2 s): a few dozen bytes, what a
//     process with no change costs the broker, whatever its members;
//   - a snapshot ("s" parts of at most presencePart members of a topic,
//     then "e"), all its members: when it starts, and when another node
//     asks for it ("r"), at most once per heartbeat however many ask. A
//     process that starts asks every node ("r" to "*"), so it knows the
//     others' members within an interval or so.
//
// A receiver applies a node's deltas while it has the node's state and
// has seen every seq since: a gap in the numbers (a lost message, or a
// node first heard of) makes it ask that node for a snapshot (at most
// once per heartbeat per node) and ignore its deltas until the snapshot
// is in; the snapshot replaces what it had of the node. The changes a
// receiver applies (a delta, the difference a snapshot makes, a node's
// expiry) are joins and leaves: in namespaces with JoinLeave they go into
// the receiver's pending batch of the topic (batchLocked) beside its own
// subscribers', so a subscriber still gets one push per topic per
// interval whatever the number of processes, names or counts over the
// whole topic. A join on one process reaches a subscriber on another
// within about an interval and the broker's latency: the sender
// coalesced for an interval, so the receiver's batch waits only until an
// interval after its last push. A node silent for 3 heartbeats (a dead
// process) is dropped at the receiver's next heartbeat, within 4
// heartbeats (8 s), and its members are pushed as leaves (a counts push
// may then wait JoinLeaveQuiet more). A process that stops sharing sends
// its last deltas first (its members that left), and is then dropped
// like a dead one.
//
// Hostile broker input is checked like a client's: a message over
// maxPresenceMsg bytes, malformed, with an invalid topic, over
// presencePart members or removals, or a member's id or user over
// maxRemoteID bytes is dropped (logged at most once a second); an Info
// over maxRemoteInfo is left out; work per message is bounded by its
// size (a snapshot's end by what the node sent). Memory: at most
// maxRemoteNodes nodes and maxRemoteMembers members of other processes.
// The broker itself is trusted as the hub's topics are: whoever can
// publish there can speak for a process.
//
// Deltas carry net changes: a client that joins and leaves within one
// interval is no change for the other processes, whose subscribers get
// no push for it (its own process's do).

// PresenceTopic is the broker topic of the presence messages.
const PresenceTopic = "_tornago_presence"

// DefaultPresenceHeartbeat is Share's default heartbeat.
const DefaultPresenceHeartbeat = 2 * time.Second

const (
	// presencePart bounds the members, and the removals, of one message
	// (with Info at most Limits.MaxPresenceInfo, about 100 KiB at the
	// defaults).
	presencePart = 200
	// maxPresenceMsg bounds a message received.
	maxPresenceMsg = 1 << 20
	// maxRemoteID bounds a node id, a member's client id and user id.
	maxRemoteID = 256
	// maxRemoteInfo bounds a remote member's Info kept.
	maxRemoteInfo = 4096
	// maxRemoteNodes bounds the other processes kept.
	maxRemoteNodes = 1024
	// maxRemoteMembers bounds the members of other processes kept.
	maxRemoteMembers = 4 << 20
)

// presenceMsg is one message on PresenceTopic.
type presenceMsg struct {
	Node string `json:"node"`
	Seq  uint64 `json:"seq"`
	// Kind: "d" delta, "a" keepalive, "s" snapshot part, "e" snapshot
	// end, "r" snapshot request.
	Kind  string          `json:"k"`
	Topic string          `json:"topic,omitempty"`
	Add   []cp.ClientInfo `json:"add,omitempty"`
	Del   []string        `json:"del,omitempty"`
	// Snap is the seq of a snapshot's first message, on its every
	// message; To the node asked for a snapshot.
	Snap uint64 `json:"snap,omitempty"`
	To   string `json:"to,omitempty"`
}

// presenceShare is a group's sharing; under the group's mutex.
type presenceShare struct {
	node  string
	every time.Duration
	// out are this process's changes not yet published, by topic.
	out map[string]*outDelta
	// nodes are the other processes heard of; total their members.
	nodes map[string]*remoteNode
	total int
	// ask are the nodes to ask for a snapshot; wantSnap: one asked us.
	ask      map[string]bool
	wantSnap bool
	// kick wakes the sender (a change, a request to send).
	kick chan struct{}
}

// outDelta is a topic's net change: a client is in add (present now,
// with its info) or in del (gone), not both.
type outDelta struct {
	add map[string]cp.ClientInfo
	del map[string]struct{}
}

// remoteNode is another process as this one knows it.
type remoteNode struct {
	seq    uint64    // its last message's
	seen   time.Time // its last message's arrival
	synced bool      // its members are known: its deltas apply
	asked  time.Time // our last snapshot request to it
	topics map[string]struct{}
	// staging is the snapshot being received (nil: none), snap its id.
	staging  map[string]map[string]cp.ClientInfo
	stagingN int
	snap     uint64
}

func (sh *presenceShare) wake() {
	select {
	case sh.kick <- struct{}{}:
	default:
	}
}

func (sh *presenceShare) delta(topic string) *outDelta {
	d := sh.out[topic]
	if d == nil {
		d = &outDelta{add: map[string]cp.ClientInfo{}, del: map[string]struct{}{}}
		sh.out[topic] = d
	}
	return d
}

// noteAdd and noteDel record a change of the group's own members.
func (sh *presenceShare) noteAdd(topic string, m cp.ClientInfo) {
	d := sh.delta(topic)
	delete(d.del, m.Client)
	d.add[m.Client] = m
	sh.wake()
}

func (sh *presenceShare) noteDel(topic, client string) {
	d := sh.delta(topic)
	// Added since the last delta or not, others may have it: a removal
	// of a client they do not have is a no-op there.
	delete(d.add, client)
	d.del[client] = struct{}{}
	sh.wake()
}

var errShared = errors.New("realtime: presence group already shared")

// Goroutine-safe.
// Share shares g's presence with the other processes on b (their groups
// Share on the same broker): deltas of g's members as they change
// (coalesced for the group's JoinLeaveInterval), a keepalive every
// heartbeat (every; 0: 2 s), a snapshot of them when a process asks;
// other processes' joins and leaves are pushed to g's subscribers in
// namespaces with JoinLeave. Presence then answers for every process. A
// process silent for 3 heartbeats is dropped (its members pushed as
// leaves) within 4. stop sends g's last changes and ends the sharing (the
// others drop this process within 4 of their heartbeats); a group is
// shared on one broker at a time.
func (g *PresenceGroup) Share(b pubsub.Broker, every time.Duration) (stop func(), err error) {
	if every <= 0 {
		every = DefaultPresenceHeartbeat
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	sh := &presenceShare{
		node: hex.EncodeToString(id[:]), every: every,
		out: map[string]*outDelta{}, nodes: map[string]*remoteNode{},
		// A new process tells the others its members, and asks for
		// theirs (To "*": every node).
		wantSnap: true, ask: map[string]bool{"*": true},
		kick: make(chan struct{}, 1),
	}
	g.mu.Lock()
	if g.share != nil {
		g.mu.Unlock()
		return nil, errShared
	}
	g.share = sh
	g.mu.Unlock()
	cancel, err := b.Subscribe(PresenceTopic, func(data []byte) { g.receive(sh, data) })
	if err != nil {
		g.mu.Lock()
		g.share = nil
		g.mu.Unlock()
		return nil, fmt.Errorf("realtime: presence: subscribe %q: %w", PresenceTopic, err)
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		g.sender(b, sh, done)
	}()
	return func() {
		select {
		case <-done:
			return
		default:
		}
		close(done)
		<-finished
		cancel()
		g.mu.Lock()
		defer g.mu.Unlock()
		g.share = nil
		for id, n := range sh.nodes {
			g.dropNode(sh, id, n, false)
		}
	}, nil
}

// sender is Share's goroutine: the only one that publishes (a broker may
// deliver within Publish, to a receiver that must not publish), so seq
// needs no lock.
func (g *PresenceGroup) sender(b pubsub.Broker, sh *presenceShare, done <-chan struct{}) {
	var seq uint64
	publish := func(m *presenceMsg) {
		seq++
		m.Node, m.Seq = sh.node, seq
		if m.Snap == snapFirst {
			m.Snap = seq // a snapshot's id is its first message's seq
		}
		data, err := json.Marshal(m)
		if err == nil {
			err = b.Publish(PresenceTopic, data)
		}
		if err != nil {
			slog.Warn("realtime: presence publish", "kind", m.Kind, "topic", m.Topic, "err", err)
		}
	}
	var lastSnap time.Time
	// send publishes the changes, the requests, and a snapshot if one
	// was asked and the last is a heartbeat old (a bit less: ticks
	// jitter).
	send := func() {
		g.sendDeltas(sh, publish)
		g.mu.Lock()
		var asks []string
		for id := range sh.ask {
			asks = append(asks, id)
		}
		clear(sh.ask)
		snap := sh.wantSnap && time.Since(lastSnap) >= sh.every*9/10
		g.mu.Unlock()
		for _, id := range asks {
			publish(&presenceMsg{Kind: "r", To: id})
		}
		if snap {
			lastSnap = time.Now()
			g.sendSnapshot(sh, publish)
		}
	}
	t := time.NewTicker(sh.every)
	defer t.Stop()
	send()
	publish(&presenceMsg{Kind: "a"})
	for {
		select {
		case <-done:
			g.sendDeltas(sh, publish)
			return
		case <-t.C:
			send()
			publish(&presenceMsg{Kind: "a"})
			g.expire(sh, time.Now().Add(-3*sh.every))
		case <-sh.kick:
			// Coalesce the changes of an interval.
			g.mu.Lock()
			iv := g.interval
			g.mu.Unlock()
			if iv <= 0 {
				iv = 100 * time.Millisecond
			}
			select {
			case <-done:
				g.sendDeltas(sh, publish)
				return
			case <-time.After(iv):
			}
			send()
		}
	}
}

// sendDeltas publishes and forgets the group's own changes.
func (g *PresenceGroup) sendDeltas(sh *presenceShare, publish func(*presenceMsg)) {
	g.mu.Lock()
	out := sh.out
	sh.out = map[string]*outDelta{}
	g.mu.Unlock()
	for topic, d := range out {
		add := make([]cp.ClientInfo, 0, len(d.add))
		for _, m := range d.add {
			add = append(add, m)
		}
		del := make([]string, 0, len(d.del))
		for id := range d.del {
			del = append(del, id)
		}
		for len(add) > 0 || len(del) > 0 {
			na, nd := min(len(add), presencePart), min(len(del), presencePart)
			publish(&presenceMsg{Kind: "d", Topic: topic, Add: add[:na], Del: del[:nd]})
			add, del = add[na:], del[nd:]
		}
	}
}

// sendSnapshot publishes all of the group's own members. Changes made
// while it goes are in the next deltas, which the others apply on top.
func (g *PresenceGroup) sendSnapshot(sh *presenceShare, publish func(*presenceMsg)) {
	g.mu.Lock()
	sh.wantSnap = false
	snap := make(map[string][]cp.ClientInfo, len(g.topics))
	for name, pt := range g.topics {
		if len(pt.members) == 0 {
			continue
		}
		ms := make([]cp.ClientInfo, 0, len(pt.members))
		for _, m := range pt.members {
			ms = append(ms, m.info)
		}
		snap[name] = ms
	}
	g.mu.Unlock()
	first := snapFirst
	pub := func(m *presenceMsg) {
		m.Snap = first
		publish(m)
		first = m.Snap
	}
	for name, ms := range snap {
		for len(ms) > 0 {
			n := min(len(ms), presencePart)
			pub(&presenceMsg{Kind: "s", Topic: name, Add: ms[:n]})
			ms = ms[n:]
		}
	}
	pub(&presenceMsg{Kind: "e"})
}

// snapFirst marks the first message of a snapshot for publish.
const snapFirst = ^uint64(0)

var dropped struct {
	n    atomic.Int64
	last atomic.Int64 // unix nanoseconds of the last log
}

// drop logs a refused message, at most once a second (a hostile flood
// must not flood the log).
func drop(data []byte, why string) {
	n := dropped.n.Add(1)
	now := time.Now().UnixNano()
	last := dropped.last.Load()
	if now-last < int64(time.Second) || !dropped.last.CompareAndSwap(last, now) {
		return
	}
	slog.Warn("realtime: presence message dropped", "why", why, "bytes", len(data), "dropped_so_far", n)
}

// valid checks a received message's form and bounds.
func (m *presenceMsg) valid() string {
	switch {
	case m.Node == "" || len(m.Node) > maxRemoteID:
		return "node id"
	case m.Seq == 0:
		return "seq"
	case len(m.Add) > presencePart || len(m.Del) > presencePart:
		return "over the part size"
	case len(m.To) > maxRemoteID:
		return "to"
	}
	switch m.Kind {
	case "a", "e", "r":
	case "d", "s":
		if cp.ValidTopic(m.Topic) != nil {
			return "topic"
		}
	default:
		return "kind"
	}
	if (m.Kind == "s" || m.Kind == "e") && (m.Snap == 0 || m.Snap > m.Seq) {
		return "snapshot id"
	}
	for i := range m.Add {
		a := &m.Add[i]
		if a.Client == "" || len(a.Client) > maxRemoteID || len(a.User) > maxRemoteID {
			return "member"
		}
		if len(a.Info) > maxRemoteInfo {
			a.Info = nil
		}
	}
	for _, id := range m.Del {
		if id == "" || len(id) > maxRemoteID {
			return "removal"
		}
	}
	return ""
}

// receive applies a message of another process.
func (g *PresenceGroup) receive(sh *presenceShare, data []byte) {
	if len(data) > maxPresenceMsg {
		drop(data, "size")
		return
	}
	var m presenceMsg
	if err := json.Unmarshal(data, &m); err != nil {
		drop(data, "malformed")
		return
	}
	if why := m.valid(); why != "" {
		drop(data, why)
		return
	}
	if m.Node == sh.node {
		return
	}
	now := time.Now()
	g.mu.Lock()
	if g.share != sh {
		g.mu.Unlock()
		return // stopped
	}
	n := sh.nodes[m.Node]
	if n == nil {
		if len(sh.nodes) >= maxRemoteNodes {
			g.mu.Unlock()
			drop(data, "too many processes")
			return
		}
		n = &remoteNode{topics: map[string]struct{}{}}
		sh.nodes[m.Node] = n
	}
	n.seen = now
	if n.seq != 0 && m.Seq != n.seq+1 {
		// A gap (or a node that restarted its numbering): what we have
		// of it may be stale, and a snapshot under way is incomplete.
		n.synced, n.staging = false, nil
	}
	n.seq = m.Seq
	var arm []armAt
	switch m.Kind {
	case "r":
		if m.To == sh.node || m.To == "*" {
			sh.wantSnap = true
			sh.wake()
		}
		if m.To == "*" && !n.synced && n.staging == nil {
			// A process that starts: its snapshot follows; ask it only
			// if none came within a heartbeat.
			n.asked = now
		}
	case "d":
		if n.synced {
			for i := range m.Add {
				arm = g.remoteSet(sh, m.Node, n, m.Topic, m.Add[i], arm)
			}
			for _, id := range m.Del {
				arm = g.remoteDel(sh, m.Node, n, m.Topic, id, arm)
			}
		}
	case "s", "e":
		if n.synced {
			break // up to date: the snapshot is for others
		}
		if m.Snap == m.Seq {
			n.staging, n.stagingN, n.snap = map[string]map[string]cp.ClientInfo{}, 0, m.Snap
		}
		if n.staging == nil || n.snap != m.Snap {
			break
		}
		if m.Kind == "s" {
			ms := n.staging[m.Topic]
			if ms == nil {
				ms = map[string]cp.ClientInfo{}
				n.staging[m.Topic] = ms
			}
			for _, a := range m.Add {
				if _, dup := ms[a.Client]; !dup {
					if sh.total+n.stagingN >= maxRemoteMembers {
						continue
					}
					n.stagingN++
				}
				ms[a.Client] = a
			}
			break
		}
		arm = g.replaceNode(sh, m.Node, n, arm)
	}
	if !n.synced && n.staging == nil && now.Sub(n.asked) >= sh.every {
		n.asked = now
		sh.ask[m.Node] = true
		sh.wake()
	}
	g.mu.Unlock()
	g.arm(arm)
}

// replaceNode makes n's staged snapshot its state: members it no longer
// has leave, new ones join. Under g.mu.
func (g *PresenceGroup) replaceNode(sh *presenceShare, id string, n *remoteNode, arm []armAt) []armAt {
	staging := n.staging
	n.staging, n.stagingN, n.synced = nil, 0, true
	for topic := range n.topics {
		pt := g.topics[topic]
		if pt == nil {
			continue
		}
		for client := range pt.remote[id] {
			if _, keep := staging[topic][client]; !keep {
				arm = g.remoteDel(sh, id, n, topic, client, arm)
			}
		}
	}
	for topic, ms := range staging {
		for _, m := range ms {
			arm = g.remoteSet(sh, id, n, topic, m, arm)
		}
	}
	return arm
}

// remoteSet adds or updates node id's member m of topic; a new one is a
// join. Under g.mu.
func (g *PresenceGroup) remoteSet(sh *presenceShare, id string, n *remoteNode, topic string, m cp.ClientInfo, arm []armAt) []armAt {
	pt := g.topics[topic]
	if pt == nil {
		pt = &presenceTopic{members: map[string]presenceMember{}, users: map[string]int{}}
		g.topics[topic] = pt
	}
	ms := pt.remote[id]
	old, had := ms[m.Client]
	if !had && sh.total >= maxRemoteMembers {
		if pt.empty() {
			delete(g.topics, topic)
		}
		return arm
	}
	if ms == nil {
		if pt.remote == nil {
			pt.remote = map[string]map[string]cp.ClientInfo{}
		}
		ms = map[string]cp.ClientInfo{}
		pt.remote[id] = ms
		n.topics[topic] = struct{}{}
	}
	if had {
		pt.dropUser(old.User)
	} else {
		sh.total++
		pt.remoteN++
	}
	ms[m.Client] = m
	pt.changed()
	if m.User != "" {
		pt.users[m.User]++
	}
	if had {
		return arm
	}
	return g.remoteEvent(topic, m, true, arm)
}

// remoteDel removes node id's member client of topic, if kept: a leave.
// Under g.mu.
func (g *PresenceGroup) remoteDel(sh *presenceShare, id string, n *remoteNode, topic, client string, arm []armAt) []armAt {
	pt := g.topics[topic]
	if pt == nil {
		return arm
	}
	ms := pt.remote[id]
	m, had := ms[client]
	if !had {
		return arm
	}
	delete(ms, client)
	pt.changed()
	sh.total--
	pt.remoteN--
	pt.dropUser(m.User)
	if len(ms) == 0 {
		delete(pt.remote, id)
		delete(n.topics, topic)
	}
	if pt.empty() {
		delete(g.topics, topic)
	}
	return g.remoteEvent(topic, m, false, arm)
}

// remoteEvent adds another process's join or leave to the group's batch
// of topic when its namespace has JoinLeave; it returns arm with the
// Server whose timer must flush the batch, if none is armed. Under g.mu.
func (g *PresenceGroup) remoteEvent(topic string, m cp.ClientInfo, join bool, arm []armAt) []armAt {
	for s := range g.servers {
		ns := s.presenceNS(topic)
		if ns == nil || !ns.JoinLeave {
			return arm
		}
		g.batchLocked(topic, ns, m, join)
		if g.armed == nil {
			// The sender coalesced its changes for an interval already:
			// the flush waits only until an interval after the last one
			// (one push per topic per interval still), so a join
			// elsewhere is pushed within about an interval and the
			// broker's latency.
			g.armed = s
			arm = append(arm, armAt{s, max(0, time.Until(g.flushed.Add(s.pres.interval)))})
		}
		return arm
	}
	return arm
}

// armAt is a flush timer to start: the Server's, after d.
type armAt struct {
	s *Server
	d time.Duration
}

// arm starts the flush timers that remote events need (out of g.mu).
func (g *PresenceGroup) arm(timers []armAt) {
	for _, a := range timers {
		a.s.l.CallLater(a.d, a.s.flushJoinLeave)
	}
}

// dropNode forgets node id and its members, pushed as leaves when push.
// Under g.mu.
func (g *PresenceGroup) dropNode(sh *presenceShare, id string, n *remoteNode, push bool) []armAt {
	var arm []armAt
	for topic := range n.topics {
		pt := g.topics[topic]
		if pt == nil {
			continue
		}
		for client, m := range pt.remote[id] {
			if push {
				arm = g.remoteDel(sh, id, n, topic, client, arm)
				continue
			}
			sh.total--
			pt.remoteN--
			pt.dropUser(m.User)
		}
		delete(pt.remote, id)
		pt.changed()
		if pt.empty() {
			delete(g.topics, topic)
		}
	}
	delete(sh.nodes, id)
	return arm
}

// expire drops the nodes silent since old, their members pushed as
// leaves.
func (g *PresenceGroup) expire(sh *presenceShare, old time.Time) {
	g.mu.Lock()
	var arm []armAt
	for id, n := range sh.nodes {
		if n.seen.Before(old) {
			arm = append(arm, g.dropNode(sh, id, n, true)...)
		}
	}
	g.mu.Unlock()
	g.arm(arm)
}

// dropUser counts one connection less of user. Under g.mu.
func (pt *presenceTopic) dropUser(user string) {
	if user == "" {
		return
	}
	if pt.users[user]--; pt.users[user] <= 0 {
		delete(pt.users, user)
	}
}

func (pt *presenceTopic) empty() bool { return len(pt.members) == 0 && len(pt.remote) == 0 }
