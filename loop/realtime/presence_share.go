package realtime

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// Presence across processes: each process's PresenceGroup publishes, on
// PresenceTopic every heartbeat, its own members of every presence topic
// (in parts of at most presencePart members), and keeps the other
// processes' parts it receives. A part replaces the same process's part
// of the topic; a process says how many parts a topic has now (0 once it
// has no member left), so a leave is seen elsewhere within a heartbeat;
// a part not refreshed for 3 heartbeats (a dead process) expires, at the
// next heartbeat: within 4 heartbeats (8 s by default).

// PresenceTopic is the broker topic of the presence heartbeats.
const PresenceTopic = "_tornago_presence"

// presencePart bounds the members of one heartbeat message (with Info at
// most Limits.MaxPresenceInfo, about 100 KiB at the defaults).
const presencePart = 200

// maxRemoteParts bounds the parts kept of one process's topic.
const maxRemoteParts = 1000

// DefaultPresenceHeartbeat is Share's default heartbeat.
const DefaultPresenceHeartbeat = 2 * time.Second

type partKey struct {
	node string
	part int
}

type remotePart struct {
	members []cp.ClientInfo
	at      time.Time
}

// presenceBeat is one heartbeat message.
type presenceBeat struct {
	Node    string          `json:"node"`
	Topic   string          `json:"topic"`
	Part    int             `json:"part"`
	Parts   int             `json:"parts"`
	Members []cp.ClientInfo `json:"members,omitempty"`
}

// Goroutine-safe.
// Share shares g's presence with the other processes on b (their groups
// Share on the same broker): every heartbeat (every; 0: 2 s) it publishes
// its members and drops the parts of processes silent for 3 heartbeats.
// Presence then answers for every process; join/leave pushes stay within
// the process. stop ends the sharing (the others forget this process's
// members within 4 of their heartbeats).
func (g *PresenceGroup) Share(b pubsub.Broker, every time.Duration) (stop func(), err error) {
	if every <= 0 {
		every = DefaultPresenceHeartbeat
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	node := hex.EncodeToString(id[:])
	cancel, err := b.Subscribe(PresenceTopic, func(data []byte) { g.receive(node, data) })
	if err != nil {
		return nil, fmt.Errorf("realtime: presence: subscribe %q: %w", PresenceTopic, err)
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		sent := map[string]bool{}
		for {
			g.beat(b, node, sent)
			g.expire(time.Now().Add(-3 * every))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
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
	}, nil
}

// beat publishes g's own members; sent are the topics of the last beat
// (a topic no longer there is published once with 0 parts).
func (g *PresenceGroup) beat(b pubsub.Broker, node string, sent map[string]bool) {
	g.mu.Lock()
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
	publish := func(beat presenceBeat) {
		data, err := json.Marshal(beat)
		if err == nil {
			err = b.Publish(PresenceTopic, data)
		}
		if err != nil {
			slog.Warn("realtime: presence heartbeat", "topic", beat.Topic, "err", err)
		}
	}
	for name := range sent {
		if _, ok := snap[name]; !ok {
			publish(presenceBeat{Node: node, Topic: name})
			delete(sent, name)
		}
	}
	for name, ms := range snap {
		parts := (len(ms) + presencePart - 1) / presencePart
		for i := 0; i < parts; i++ {
			publish(presenceBeat{Node: node, Topic: name, Part: i, Parts: parts, Members: ms[i*presencePart : min(len(ms), (i+1)*presencePart)]})
		}
		sent[name] = true
	}
}

var errBadBeat = errors.New("realtime: bad presence heartbeat")

// receive keeps another process's part.
func (g *PresenceGroup) receive(self string, data []byte) {
	var beat presenceBeat
	if err := json.Unmarshal(data, &beat); err != nil || beat.Node == "" || cp.ValidTopic(beat.Topic) != nil ||
		beat.Parts < 0 || beat.Parts > maxRemoteParts || len(beat.Members) > presencePart ||
		(beat.Parts > 0 && (beat.Part < 0 || beat.Part >= beat.Parts)) {
		slog.Warn("realtime: presence heartbeat dropped", "err", errBadBeat, "bytes", len(data))
		return
	}
	if beat.Node == self {
		return
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	pt := g.topics[beat.Topic]
	if pt == nil {
		if beat.Parts == 0 {
			return
		}
		pt = &presenceTopic{members: map[string]presenceMember{}, users: map[string]int{}}
		g.topics[beat.Topic] = pt
	}
	// Parts past the count are gone (members left).
	for k := range pt.remote {
		if k.node == beat.Node && k.part >= beat.Parts {
			pt.dropRemote(k)
		}
	}
	if beat.Parts > 0 {
		k := partKey{beat.Node, beat.Part}
		pt.dropRemote(k)
		if pt.remote == nil {
			pt.remote = map[partKey]*remotePart{}
		}
		pt.remote[k] = &remotePart{members: beat.Members, at: now}
		pt.remoteN += len(beat.Members)
		for _, m := range beat.Members {
			if m.User != "" {
				pt.users[m.User]++
			}
		}
	}
	if pt.empty() {
		delete(g.topics, beat.Topic)
	}
}

// expire drops the parts received before old.
func (g *PresenceGroup) expire(old time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, pt := range g.topics {
		for k, p := range pt.remote {
			if p.at.Before(old) {
				pt.dropRemote(k)
			}
		}
		if pt.empty() {
			delete(g.topics, name)
		}
	}
}

// dropRemote forgets part k, if kept. Under g.mu.
func (pt *presenceTopic) dropRemote(k partKey) {
	p := pt.remote[k]
	if p == nil {
		return
	}
	delete(pt.remote, k)
	pt.remoteN -= len(p.members)
	for _, m := range p.members {
		if m.User != "" {
			if pt.users[m.User]--; pt.users[m.User] <= 0 {
				delete(pt.users, m.User)
			}
		}
	}
}

func (pt *presenceTopic) empty() bool { return len(pt.members) == 0 && len(pt.remote) == 0 }
