package realtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// Presence messages between "processes" (PresenceGroups of their own)
// on a real broker: presence_share.go.

const (
	shareInterval = 50 * time.Millisecond  // JoinLeaveInterval
	shareEvery    = 200 * time.Millisecond // heartbeat
)

// proc is one "process": a Server on its own loop in a group of its own
// sharing presence on a broker.
type proc struct {
	s    *realtime.Server
	addr string
	g    *realtime.PresenceGroup
	stop func()
}

func startProc(t *testing.T, b pubsub.Broker) *proc {
	t.Helper()
	g := realtime.NewPresenceGroup()
	s, addr := start(t, realtime.Options{
		Namespaces: presenceNamespaces,
		Presence:   g,
		Authenticate: func(_ context.Context, c realtime.Credentials) (realtime.Identity, error) {
			info, _ := json.Marshal(map[string]string{"name": c.Token})
			return realtime.Identity{User: c.Token, Info: info}, nil
		},
		JoinLeaveInterval: shareInterval,
		JoinLeaveQuiet:    300 * time.Millisecond,
	}, nil)
	stop, err := g.Share(b, shareEvery)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return &proc{s: s, addr: addr, g: g, stop: stop}
}

// lossyBroker is a real broker that drops the next delta of the process
// publishing through it when told to, and counts its messages by kind.
type lossyBroker struct {
	pubsub.Broker
	dropDelta atomic.Bool
	mu        sync.Mutex
	kinds     map[string]int
	nodeID    string
}

func (b *lossyBroker) Publish(topic string, data []byte) error {
	var m struct {
		Node string `json:"node"`
		Kind string `json:"k"`
	}
	_ = json.Unmarshal(data, &m)
	b.mu.Lock()
	b.nodeID = m.Node
	if b.kinds == nil {
		b.kinds = map[string]int{}
	}
	b.kinds[m.Kind]++
	b.mu.Unlock()
	if m.Kind == "d" && b.dropDelta.CompareAndSwap(true, false) {
		return nil // lost on the way
	}
	return b.Broker.Publish(topic, data)
}

// node is the id of the process publishing through b.
func (b *lossyBroker) node() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nodeID
}

func (b *lossyBroker) count(kind string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kinds[kind]
}

// observe connects an observer to p subscribed to topic and returns its
// frames from then on.
func observe(t *testing.T, p *proc, topic string) <-chan frame {
	t.Helper()
	w := dial(t, p.addr)
	w.connect("observer")
	w.ok(w.cmd("subscribe", map[string]any{"topic": topic}), nil)
	return reader(w)
}

// waitPush returns the pushes of ch until one satisfies done, or fails
// after within.
func waitPush(t *testing.T, ch <-chan frame, within time.Duration, done func([]frame) bool) []frame {
	t.Helper()
	var fs []frame
	deadline := time.After(within)
	for !done(fs) {
		select {
		case f, ok := <-ch:
			if !ok {
				t.Fatalf("observer closed after %+v", fs)
			}
			if f.Push != nil {
				fs = append(fs, f)
			}
		case <-deadline:
			t.Fatalf("after %v: pushes %+v", within, fs)
		}
	}
	return fs
}

// names returns the clients joined and left in fs.
func names(fs []frame) (joined, left map[string]bool) {
	joined, left = map[string]bool{}, map[string]bool{}
	for _, f := range fs {
		for _, m := range f.Push.Join {
			joined[m.Client] = true
		}
		for _, m := range f.Push.Leave {
			left[m.Client] = true
		}
	}
	return joined, left
}

// TestJoinLeaveAcrossProcesses: clients joining on process 1 are pushed
// to a subscriber on process 2 within an interval and the broker's
// latency, coalesced with process 2's own joins: one push per interval,
// every join named with its user and info; a leave on process 1 is
// pushed on process 2. With names (a small topic), N clients joining at
// once on two processes cost a reply and one or two pushes each: the
// local joins' push, then the other process's a little later (at most
// 4N frames in all; counts pushes wait for the storm to end, 2N:
// TestJoinLeaveCountsAcrossProcesses).
func TestJoinLeaveAcrossProcesses(t *testing.T) {
	broker := &pubsub.MemoryBroker{}
	p1, p2 := startProc(t, broker), startProc(t, broker)
	obs := observe(t, p2, "room:x")
	time.Sleep(shareEvery) // the processes know each other

	// A single join on process 1: its latency to process 2.
	w := dial(t, p1.addr)
	first := w.connect("first").Client
	begin := time.Now()
	w.ok(w.cmd("subscribe", map[string]any{"topic": "room:x"}), nil)
	fs := waitPush(t, obs, 2*time.Second, func(fs []frame) bool { j, _ := names(fs); return j[first] })
	lat := time.Since(begin)
	t.Logf("a join on process 1 pushed on process 2 after %v (interval %v)", lat, shareInterval)
	if lat > shareInterval+150*time.Millisecond {
		t.Fatalf("join pushed after %v, want within an interval and the broker's latency", lat)
	}
	if m := fs[len(fs)-1].Push.Join[0]; m.User != "first" || string(m.Info) != `{"name":"first"}` {
		t.Fatalf("remote join %+v, want its user and info", m)
	}

	// 20 more at once, half on each process.
	const n = 20
	_, ids, chs := joinLeaveClients(t, []string{p1.addr, p2.addr}, n, "room:x")
	var pushAt []time.Time
	var obsFrames []frame
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case f := <-obs:
				if f.Push != nil {
					obsFrames = append(obsFrames, f)
					pushAt = append(pushAt, time.Now())
				}
			case <-time.After(500 * time.Millisecond):
				return
			}
		}
	}()
	frames := 0
	for _, fs := range drainAll(chs, 500*time.Millisecond) {
		frames += len(fs)
	}
	<-done
	joined, _ := names(obsFrames)
	for _, id := range ids {
		if !joined[id] {
			t.Fatalf("join of %s not pushed to the observer: %+v", id, obsFrames)
		}
	}
	for i := 1; i < len(pushAt); i++ {
		if d := pushAt[i].Sub(pushAt[i-1]); d < shareInterval/2 {
			t.Fatalf("two pushes %v apart, want one per interval (%v)", d, shareInterval)
		}
	}
	t.Logf("%d clients on 2 processes: %d frames to them, %d pushes to the observer", n, frames, len(obsFrames))
	if frames > 4*n || len(obsFrames) > 4 {
		t.Fatalf("%d frames (want <= %d), %d pushes to the observer", frames, 4*n, len(obsFrames))
	}
	waitStats(t, p2.s, "room:x", n+2)

	// A leave on process 1.
	w.c.Close()
	waitPush(t, obs, 2*time.Second, func(fs []frame) bool { _, l := names(fs); return l[first] })
	waitStats(t, p2.s, "room:x", n+1)
}

// TestJoinLeaveDeadProcess: the members of a process that stops sending
// (dead) are pushed as leaves on the others within 4 heartbeats and an
// interval, and leave their presence.
func TestJoinLeaveDeadProcess(t *testing.T) {
	broker := &pubsub.MemoryBroker{}
	p1, p2 := startProc(t, broker), startProc(t, broker)
	obs := observe(t, p2, "room:d")
	var ids []string
	for i := range 3 {
		w := dial(t, p1.addr)
		ids = append(ids, w.connect(fmt.Sprint("d", i)).Client)
		w.ok(w.cmd("subscribe", map[string]any{"topic": "room:d"}), nil)
	}
	waitPush(t, obs, 2*time.Second, func(fs []frame) bool { j, _ := names(fs); return j[ids[0]] && j[ids[1]] && j[ids[2]] })
	waitStats(t, p2.s, "room:d", 4)

	p1.stop() // no more messages: as if killed
	begin := time.Now()
	waitPush(t, obs, 5*time.Second, func(fs []frame) bool {
		_, l := names(fs)
		return l[ids[0]] && l[ids[1]] && l[ids[2]]
	})
	d := time.Since(begin)
	t.Logf("a dead process's members pushed as leaves after %v (heartbeat %v)", d, shareEvery)
	if d > 4*shareEvery+shareInterval+250*time.Millisecond {
		t.Fatalf("leaves after %v, want within 4 heartbeats and an interval", d)
	}
	if st := waitStats(t, p2.s, "room:d", 1); st.Users != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPresenceResyncAfterGap: a delta lost on the way leaves a gap in the
// sender's numbers: the receiver sees it at the next message (a
// keepalive at the latest), asks for a snapshot, and gets the member and
// its join push from it.
func TestPresenceResyncAfterGap(t *testing.T) {
	mem := &pubsub.MemoryBroker{}
	lossy := &lossyBroker{Broker: mem}
	p1, p2 := startProc(t, lossy), startProc(t, mem)
	obs := observe(t, p2, "room:g")
	time.Sleep(shareEvery)
	snaps := lossy.count("e")

	lossy.dropDelta.Store(true)
	w := dial(t, p1.addr)
	id := w.connect("lost").Client
	w.ok(w.cmd("subscribe", map[string]any{"topic": "room:g"}), nil)
	begin := time.Now()
	waitPush(t, obs, 3*time.Second, func(fs []frame) bool { j, _ := names(fs); return j[id] })
	d := time.Since(begin)
	t.Logf("a lost delta's join pushed after %v through a snapshot (heartbeat %v)", d, shareEvery)
	if lossy.dropDelta.Load() {
		t.Fatal("no delta was dropped")
	}
	if got := lossy.count("e") - snaps; got != 1 {
		t.Fatalf("%d snapshots sent after the gap, want 1", got)
	}
	if d > 2*shareEvery+3*shareInterval+100*time.Millisecond {
		t.Fatalf("resync after %v, want within a heartbeat and a few intervals", d)
	}
	waitStats(t, p2.s, "room:g", 2)
	// In sync again: the next change goes by delta.
	w.c.Close()
	waitPush(t, obs, time.Second, func(fs []frame) bool { _, l := names(fs); return l[id] })
	waitStats(t, p2.s, "room:g", 1)
}

// TestPresenceHostileBroker: messages on the presence topic that are
// malformed, oversized or over the bounds are dropped without harm; a
// flood of snapshot requests costs at most a snapshot per heartbeat;
// joins across processes beside them (the canary) are pushed and
// counted; a forged gap in a process's numbers costs a resync, not its
// members.
func TestPresenceHostileBroker(t *testing.T) {
	mem := &pubsub.MemoryBroker{}
	counted := &lossyBroker{Broker: mem}
	p1, p2 := startProc(t, counted), startProc(t, mem)
	obs := observe(t, p2, "room:h")
	w0 := dial(t, p1.addr)
	w0.connect("zero")
	w0.ok(w0.cmd("subscribe", map[string]any{"topic": "room:h"}), nil)
	waitStats(t, p2.s, "room:h", 2)
	p1node := counted.node()

	many := make([]cp.ClientInfo, 201)
	for i := range many {
		many[i] = cp.ClientInfo{Client: fmt.Sprint("x", i)}
	}
	big, _ := json.Marshal(map[string]any{"node": "evil2", "seq": 1, "k": "s", "snap": 1, "topic": "room:h", "add": many})
	hostile := [][]byte{
		[]byte("not json"),
		[]byte(`{"node":"evil","seq":1,"k":"s","snap":1,"topic":"room:h","add":[{"client":"x"}]` + strings.Repeat(" ", 1<<20) + `}`),
		[]byte(`{"node":"evil","seq":1,"k":"s","snap":1,"topic":"bad topic","add":[{"client":"x"}]}`),
		[]byte(`{"node":"evil","seq":1,"k":"zz"}`),
		[]byte(`{"node":"evil","seq":0,"k":"a"}`),
		[]byte(`{"node":"","seq":1,"k":"a"}`),
		[]byte(`{"node":"evil","seq":1,"k":"e","snap":2}`),
		[]byte(`{"node":"evil","seq":1,"k":"s","snap":1,"topic":"room:h","add":[{"client":"` + strings.Repeat("y", 300) + `"}]}`),
		[]byte(`{"node":"evil","seq":1,"k":"d","topic":"room:h","del":["` + strings.Repeat("y", 300) + `"]}`),
		[]byte(`{"node":"evil","seq":"x","k":"a"}`),
		[]byte(`{"node":"evil","seq":1,"k":"d","topic":"room:h","add":[{"client":"forged"}]}`), // never synced: ignored
		[]byte(`[1,2,3]`),
		[]byte(`{"node":"evil","seq":1,"k":"d","topic":"room:h","add":[{"client":"forged"}],"del":` + strings.Repeat("[", 10000) + `}`),
		big,
	}
	sBefore, floodBegin := counted.count("e"), time.Now()
	stopFlood := make(chan struct{})
	floodDone := make(chan int)
	go func() {
		rounds := 0
		defer func() { floodDone <- rounds }()
		for ; ; rounds++ {
			select {
			case <-stopFlood:
				return
			default:
			}
			for _, h := range hostile {
				_ = mem.Publish(realtime.PresenceTopic, h)
			}
			// Snapshot requests to p1, from many "nodes".
			for i := range 20 {
				r, _ := json.Marshal(map[string]any{"node": fmt.Sprint("asker", i), "seq": rounds + 1, "k": "r", "to": p1node})
				_ = mem.Publish(realtime.PresenceTopic, r)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// The canary: joins on p1 pushed on p2 while the flood goes on.
	var canaries []string
	floodEnd := time.Now().Add(3 * shareEvery)
	for i := 0; time.Now().Before(floodEnd); i++ {
		w := dial(t, p1.addr)
		canaries = append(canaries, w.connect(fmt.Sprint("canary", i)).Client)
		w.ok(w.cmd("subscribe", map[string]any{"topic": "room:h"}), nil)
		// Longer than an interval: a join and leave within one are no
		// change for the other processes.
		time.Sleep(3 * shareInterval)
		w.c.Close()
	}
	close(stopFlood)
	rounds := <-floodDone
	snaps, flood := counted.count("e")-sBefore, time.Since(floodBegin)
	t.Logf("%d rounds of %d hostile messages and 20 snapshot requests; snapshots sent by p1: %d in %v (heartbeat %v); %d canaries", rounds, len(hostile), snaps, flood, shareEvery, len(canaries))
	if limit := 1 + int(flood/(shareEvery*9/10)); snaps > limit {
		t.Fatalf("%d snapshots in %v, want at most one per heartbeat (%d)", snaps, flood, limit)
	}
	fs := waitPush(t, obs, 2*time.Second, func(fs []frame) bool {
		j, l := names(fs)
		for _, id := range canaries {
			if !j[id] || !l[id] {
				return false
			}
		}
		return true
	})
	for _, f := range fs {
		for _, m := range append(f.Push.Join, f.Push.Leave...) {
			if m.Client == "forged" || strings.HasPrefix(m.Client, "x") || strings.HasPrefix(m.Client, "y") {
				t.Fatalf("forged member pushed: %+v", m)
			}
		}
	}
	// p2 counts p1's one member and its own observer, none forged.
	wantPresence := func() {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			ms, _, err := p2.s.Presence("room:h")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, m.User)
			}
			if len(ms) == 2 && (got[0] == "zero" || got[1] == "zero") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("presence on p2: %v, want the observer and zero", got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wantPresence()

	// Someone who knows p1's node id forges a message far ahead in its
	// numbers: p2 resyncs from p1 (a snapshot), keeps p1's members, and
	// p1's next join is pushed.
	gap, _ := json.Marshal(map[string]any{"node": p1node, "seq": 1 << 40, "k": "d", "topic": "room:h", "add": []cp.ClientInfo{{Client: "forged2"}}})
	_ = mem.Publish(realtime.PresenceTopic, gap)
	wantPresence()
	w := dial(t, p1.addr)
	last := w.connect("last").Client
	w.ok(w.cmd("subscribe", map[string]any{"topic": "room:h"}), nil)
	fs = waitPush(t, obs, 3*time.Second, func(fs []frame) bool { j, _ := names(fs); return j[last] })
	for _, f := range fs {
		for _, m := range f.Push.Join {
			if m.Client == "forged2" {
				t.Fatal("forged member pushed")
			}
		}
	}
	waitStats(t, p2.s, "room:h", 3)
}

// TestJoinLeaveCountsAcrossProcesses: over JoinLeaveMaxNames (5 in
// "big") the pushes carry counts of the whole topic, both processes'
// joins in them, and N clients joining at once over two processes cost
// at most 3N frames in all (the counts push waits for the storm to end,
// remote joins included).
func TestJoinLeaveCountsAcrossProcesses(t *testing.T) {
	const n = 30
	broker := &pubsub.MemoryBroker{}
	p1, p2 := startProc(t, broker), startProc(t, broker)
	time.Sleep(shareEvery)
	_, _, chs := joinLeaveClients(t, []string{p1.addr, p2.addr}, n, "big:c")
	frames, pushes, counted := 0, 0, 0
	for _, fs := range drainAll(chs, time.Second) {
		for _, f := range fs {
			frames++
			if f.Push == nil {
				continue
			}
			pushes++
			if f.Push.Counts == nil {
				if len(f.Push.Join)+len(f.Push.Leave) > 5 {
					t.Fatalf("names over JoinLeaveMaxNames: %+v", f.Push)
				}
				continue
			}
			counted = max(counted, f.Push.Counts.Clients)
		}
	}
	t.Logf("%d clients on 2 processes: %d frames (%d pushes), clients counted %d", n, frames, pushes, counted)
	if frames > 3*n || counted != n {
		t.Fatalf("%d frames (want <= %d), clients counted %d (want %d)", frames, 3*n, counted, n)
	}
	waitStats(t, p1.s, "big:c", n)
	waitStats(t, p2.s, "big:c", n)
}
