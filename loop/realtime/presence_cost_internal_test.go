package realtime

import (
	"encoding/json"
	"runtime"
	"strconv"
	"testing"
	"time"

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

	// Heartbeat: one message per presencePart members every heartbeat.
	beat, err := json.Marshal(presenceBeat{Node: "a1b2c3d4e5f60718", Topic: "chat:big", Part: 0, Parts: n / presencePart, Members: members[:presencePart]})
	if err != nil {
		t.Fatal(err)
	}
	perMember := float64(len(beat)) / presencePart

	t.Logf("presence at %d members: Go heap %.0f bytes per entry (its own %d-byte client id included; user and %d-byte info shared with the connection); presence_stats %v; presence (first %d) %v",
		n, perEntry, len(members[n-1].Client), len(info), statsLat, lim.MaxPresenceMembers, listLat)
	t.Logf("JetStream: none, heartbeats instead: %.0f bytes per member per %v on the broker (%d-member parts)", perMember, DefaultPresenceHeartbeat, presencePart)
	if perEntry > 1024 {
		t.Errorf("%.0f bytes per presence entry, want at most 1 KiB", perEntry)
	}
	if statsLat > time.Millisecond {
		t.Errorf("presence_stats %v at %d members, want under 1 ms", statsLat, n)
	}
	runtime.KeepAlive(members)
}
