package realtime

import (
	"encoding/json"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// TestPresenceCost measures the figures of the README's "Presence"
// section: Go heap bytes per presence entry, presence_stats and presence
// latency with 100,000 members of one topic, and the heartbeat bytes per
// member on the broker (presence across processes uses heartbeats, not
// JetStream KV). Members are added through the group's add, the path a
// subscription takes, with ids, users and info shaped as the server's
// (node prefix + counter, a user per connection, a small info object).
func TestPresenceCost(t *testing.T) {
	const n = 100_000
	info := json.RawMessage(`{"name":"user"}`)
	members := make([]cp.ClientInfo, n)
	for i := range members {
		members[i] = cp.ClientInfo{Client: "a1b2c3d4e5f60718-" + strconv.Itoa(i), User: "user" + strconv.Itoa(i), Info: info}
	}
	g := NewPresenceGroup()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i, m := range members {
		// Client.ID builds its string per call: the entry holds its own
		// copy (the user and info are the connection's, shared).
		m.Client = "a1b2c3d4e5f60718-" + strconv.Itoa(i)
		g.add("chat:big", m, nil)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := float64(after.HeapAlloc-before.HeapAlloc) / n
	if got := g.stats("chat:big"); got.Clients != n || got.Users != n {
		t.Fatalf("stats = %+v, want %d clients and users", got, n)
	}

	// presence_stats: two map lengths under the group's mutex.
	const rounds = 1000
	start := time.Now()
	for range rounds {
		_ = g.stats("chat:big")
	}
	statsLat := time.Since(start) / rounds
	// presence: copies at most MaxPresenceMembers entries and sorts them.
	lim := Limits{}.withDefaults()
	start = time.Now()
	list, truncated := g.list("chat:big", lim.MaxPresenceMembers)
	listLat := time.Since(start)
	if !truncated || len(list) != lim.MaxPresenceMembers {
		t.Fatalf("list: %d members, truncated %v; want %d, true", len(list), truncated, lim.MaxPresenceMembers)
	}

	// Snapshot (sent when another process asks): one message per
	// presencePart members; a delta's addition costs the same.
	beat, err := json.Marshal(presenceMsg{Node: "a1b2c3d4e5f60718", Seq: 123456, Kind: "s", Snap: 123400, Topic: "chat:big", Add: members[:presencePart]})
	if err != nil {
		t.Fatal(err)
	}
	perMember := float64(len(beat)) / presencePart

	t.Logf("presence at %d members: Go heap %.0f bytes per entry (its own %d-byte client id included; user and %d-byte info shared with the connection); presence_stats %v; presence (first %d) %v",
		n, perEntry, len(members[n-1].Client), len(info), statsLat, lim.MaxPresenceMembers, listLat)
	t.Logf("JetStream: none, messages on the broker instead: %.0f bytes per member in a snapshot or a delta (%d-member parts)", perMember, presencePart)
	if perEntry > 1024 {
		t.Errorf("%.0f bytes per presence entry, want at most 1 KiB", perEntry)
	}
	if statsLat > time.Millisecond {
		t.Errorf("presence_stats %v at %d members, want under 1 ms", statsLat, n)
	}
	runtime.KeepAlive(members)
}

// countingBroker is a real broker that counts what one process publishes
// on it (its messages and bytes).
type countingBroker struct {
	pubsub.Broker
	msgs, bytes atomic.Int64
}

func (b *countingBroker) Publish(topic string, data []byte) error {
	b.msgs.Add(1)
	b.bytes.Add(int64(len(data)))
	return b.Broker.Publish(topic, data)
}

// TestPresenceBrokerBytes measures the README's figure of presence's
// cost on the broker: the bytes a process with 100,000 members in one
// topic and no churn publishes per heartbeat (2 s by default), once the
// other process has its members. Heartbeats here are 1 s apart; the
// bytes per heartbeat do not depend on the period.
func TestPresenceBrokerBytes(t *testing.T) {
	const n = 100_000
	const every = time.Second
	info := json.RawMessage(`{"name":"user"}`)
	mem := &pubsub.MemoryBroker{}
	g1, g2 := NewPresenceGroup(), NewPresenceGroup()
	for i := range n {
		g1.add("chat:big", cp.ClientInfo{Client: "a1b2c3d4e5f60718-" + strconv.Itoa(i), User: "user" + strconv.Itoa(i), Info: info}, nil)
	}
	b1 := &countingBroker{Broker: mem}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	stop2, err := g2.Share(mem, every)
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	stop1, err := g1.Share(b1, every)
	if err != nil {
		t.Fatal(err)
	}
	defer stop1()
	deadline := time.Now().Add(20 * time.Second)
	for g2.stats("chat:big").Clients != n {
		if time.Now().After(deadline) {
			t.Fatalf("the other process sees %+v, want %d clients", g2.stats("chat:big"), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	first := b1.bytes.Load()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perRemote := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	// Steady state: count whole heartbeats, once the start is over (two
	// processes starting together may each answer the other's first
	// request with a snapshot more, at most one a heartbeat; under the
	// race detector on a loaded machine a 7.8 MB snapshot outlasts a
	// heartbeat, and a second one may still be going when the first
	// window starts: up to three windows, the figure is the quietest;
	// a process that kept sending its members fails all three).
	time.Sleep(2*every + every/2)
	const beats = 3
	var msgs, bytes int64
	for try := 0; try < 3; try++ {
		m0, b0 := b1.msgs.Load(), b1.bytes.Load()
		time.Sleep(beats * every)
		msgs, bytes = b1.msgs.Load()-m0, b1.bytes.Load()-b0
		if bytes/beats <= 1024 {
			break
		}
		t.Logf("window %d: %d bytes in %d messages per heartbeat", try+1, bytes/beats, msgs/beats)
	}
	if got := g2.stats("chat:big").Clients; got != n {
		t.Fatalf("the other process sees %d clients, want %d", got, n)
	}
	t.Logf("broker bytes of a process with %d members in one topic, no churn: %d bytes in %d messages per heartbeat (%v by default); %d bytes until the other process had them all; Go heap per member of the other process: %d bytes",
		n, bytes/beats, msgs/beats, DefaultPresenceHeartbeat, first, perRemote)
	// Full heartbeats cost 7,818,170 bytes in 500 messages here.
	if bytes/beats > 1024 {
		t.Errorf("%d bytes per heartbeat without a change, want a keepalive (under 1 KiB)", bytes/beats)
	}
}
