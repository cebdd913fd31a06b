package realtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
	cp "github.com/tornago/tornago/proto/clientproto"
)

var presenceNamespaces = []realtime.Namespace{
	{Name: "pres", Presence: true},
	{Name: "room", Presence: true, JoinLeave: true},
	{Name: "big", Presence: true, JoinLeave: true, JoinLeaveMaxNames: 5},
	{Name: "news"},
}

// startPresenceLoops runs n loops of one "process": their Servers share
// a PresenceGroup of their own and a MemoryBroker; the token is the user
// id, and the identity's Info is {"name": token} (or token's rest after
// "big:", a large Info). Each loop serves the server API with key "k".
func startPresenceLoops(t *testing.T, n int) ([]*realtime.Server, []string) {
	t.Helper()
	return startPresenceLoopsWith(t, n, nil)
}

// startPresenceLoopsWith is startPresenceLoops with edit applied to the
// Servers' options.
func startPresenceLoopsWith(t *testing.T, n int, edit func(*realtime.Options)) ([]*realtime.Server, []string) {
	t.Helper()
	api, err := realtime.NewAPI(realtime.APIOptions{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	g := realtime.NewPresenceGroup()
	broker := &pubsub.MemoryBroker{}
	var servers []*realtime.Server
	var addrs []string
	for range n {
		o := realtime.Options{
			Namespaces: presenceNamespaces,
			Presence:   g,
			Authenticate: func(_ context.Context, c realtime.Credentials) (realtime.Identity, error) {
				info, _ := json.Marshal(map[string]string{"name": c.Token})
				if rest, ok := strings.CutPrefix(c.Token, "big:"); ok {
					info, _ = json.Marshal(map[string]string{"name": strings.Repeat(rest, 1000)})
				}
				return realtime.Identity{User: c.Token, Info: info}, nil
			},
			JoinLeaveInterval: 50 * time.Millisecond,
			JoinLeaveMaxDelay: 300 * time.Millisecond,
		}
		if edit != nil {
			edit(&o)
		}
		s, addr := realtime.StartForTest(t, loop.Options{TimeoutResolution: 10 * time.Millisecond}, broker, o, func(s *realtime.Server, app *loop.Application) {
			api.Routes(app, s.APIBackend())
		})
		servers = append(servers, s)
		addrs = append(addrs, addr)
	}
	return servers, addrs
}

// waitStats polls s until topic has clients subscribers.
func waitStats(t *testing.T, s *realtime.Server, topic string, clients int) cp.PresenceStatsResult {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := s.PresenceStats(topic)
		if err != nil {
			t.Fatal(err)
		}
		if st.Clients == clients || time.Now().After(deadline) {
			if st.Clients != clients {
				t.Fatalf("stats of %s: %+v, want %d clients", topic, st, clients)
			}
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPresenceTwoLoops: presence and presence_stats see the subscribers
// of every loop of the process, through the commands, the Go API and the
// server API; a subscriber that leaves (unsubscribe or close) is gone
// from them; the rules (namespace, subscription, Info bound) hold.
func TestPresenceTwoLoops(t *testing.T) {
	servers, addrs := startPresenceLoops(t, 2)
	a := dial(t, addrs[0])
	ida := a.connect("alice").Client
	b := dial(t, addrs[1])
	idb := b.connect("bob").Client
	b2 := dial(t, addrs[1])
	idb2 := b2.connect("bob").Client
	for _, w := range []*wsc{a, b, b2} {
		w.ok(w.cmd("subscribe", map[string]any{"topic": "pres:x"}), nil)
	}

	var pr cp.PresenceResult
	a.ok(a.cmd("presence", map[string]any{"topic": "pres:x"}), &pr)
	got := map[string]string{}
	for _, m := range pr.Members {
		got[m.Client] = m.User + " " + string(m.Info)
	}
	want := map[string]string{ida: `alice {"name":"alice"}`, idb: `bob {"name":"bob"}`, idb2: `bob {"name":"bob"}`}
	if fmt.Sprint(got) != fmt.Sprint(want) || pr.Truncated {
		t.Fatalf("presence %+v, want %v", pr, want)
	}
	var st cp.PresenceStatsResult
	b.ok(b.cmd("presence_stats", map[string]any{"topic": "pres:x"}), &st)
	if st != (cp.PresenceStatsResult{Clients: 3, Users: 2}) {
		t.Fatalf("stats %+v", st)
	}

	// Server API, on either loop.
	code, body := apiPost(t, addrs[1], "presence_stats", "k", `{"topic":"pres:x"}`)
	if code != 200 || !strings.Contains(body, `"clients":3`) || !strings.Contains(body, `"users":2`) {
		t.Fatalf("api presence_stats: %d %s", code, body)
	}
	code, body = apiPost(t, addrs[0], "presence", "k", `{"topic":"pres:x"}`)
	if code != 200 || !strings.Contains(body, ida) || !strings.Contains(body, idb2) {
		t.Fatalf("api presence: %d %s", code, body)
	}
	if code, body = apiPost(t, addrs[0], "presence", "k", `{"topic":"news:x"}`); code != 403 || !strings.Contains(body, "108") {
		t.Fatalf("api presence without presence: %d %s", code, body)
	}
	if code, body = apiPost(t, addrs[0], "presence_stats", "k", `{"topic":"nope:x"}`); code != 400 || !strings.Contains(body, "102") {
		t.Fatalf("api presence_stats unknown topic: %d %s", code, body)
	}

	// Rules: subscribed only; a namespace with presence only.
	a.wantError(a.cmd("presence", map[string]any{"topic": "pres:y"}), cp.ErrNotSubscribed)
	a.ok(a.cmd("subscribe", map[string]any{"topic": "news:x"}), nil)
	a.wantError(a.cmd("presence_stats", map[string]any{"topic": "news:x"}), cp.ErrNotAvailable)
	a.wantError(a.cmd("presence", map[string]any{"topic": "nope:x"}), cp.ErrUnknownTopic)

	// Leaving: unsubscribe on loop 1, close on loop 2.
	b.ok(b.cmd("unsubscribe", map[string]any{"topic": "pres:x"}), nil)
	waitStats(t, servers[0], "pres:x", 2)
	b2.c.Close()
	if st := waitStats(t, servers[0], "pres:x", 1); st.Users != 1 {
		t.Fatalf("stats %+v", st)
	}
	ms, _, err := servers[1].Presence("pres:x")
	if err != nil || len(ms) != 1 || ms[0].Client != ida {
		t.Fatalf("Presence: %+v %v", ms, err)
	}

	// An Info over Limits.MaxPresenceInfo (256 B) is left out.
	h := dial(t, addrs[0])
	idh := h.connect("big:xyz").Client
	h.ok(h.cmd("subscribe", map[string]any{"topic": "pres:x"}), nil)
	var pr2 cp.PresenceResult
	h.ok(h.cmd("presence", map[string]any{"topic": "pres:x"}), &pr2)
	for _, m := range pr2.Members {
		if m.Client == idh && (m.Info != nil || m.User != "big:xyz") {
			t.Fatalf("large info kept: user %q, %d bytes of info", m.User, len(m.Info))
		}
	}
	if len(pr2.Members) != 2 {
		t.Fatalf("presence %+v", pr2)
	}
}

// TestPresenceStopForgets: a loop that stops takes its members out of
// the group.
func TestPresenceStopForgets(t *testing.T) {
	servers, addrs := startPresenceLoops(t, 2)
	a := dial(t, addrs[0])
	a.connect("alice")
	a.ok(a.cmd("subscribe", map[string]any{"topic": "pres:z"}), nil)
	b := dial(t, addrs[1])
	b.connect("bob")
	b.ok(b.cmd("subscribe", map[string]any{"topic": "pres:z"}), nil)
	waitStats(t, servers[0], "pres:z", 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	servers[1].Loop().Stop(ctx)
	waitStats(t, servers[0], "pres:z", 1)
}

// joinLeaveClients connects n clients spread over addrs, all with their
// subscribe commands sent at once; it returns them with their client ids,
// and each one's frames from then on (the subscribe replies first).
func joinLeaveClients(t *testing.T, addrs []string, n int, topic string) ([]*wsc, []string, []<-chan frame) {
	t.Helper()
	ws := make([]*wsc, n)
	ids := make([]string, n)
	for i := range ws {
		ws[i] = dial(t, addrs[i%len(addrs)])
		ids[i] = ws[i].connect(fmt.Sprintf("u%d", i)).Client
	}
	subs := make([]uint32, n)
	chs := make([]<-chan frame, n)
	for i, w := range ws {
		chs[i] = reader(w)
	}
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.next++
			subs[i] = w.next
			b, _ := json.Marshal(map[string]any{"id": w.next, "subscribe": map[string]any{"topic": topic}})
			_ = w.c.WriteMessage(websocket.TextMessage, b)
		}()
	}
	wg.Wait()
	return ws, ids, chs
}

// reader reads w's frames into a channel, from now on, until the
// connection fails (a gorilla connection is unusable after a read
// timeout: no deadline here).
func reader(w *wsc) <-chan frame {
	ch := make(chan frame, 1024)
	go func() {
		defer close(ch)
		for {
			w.c.SetReadDeadline(time.Time{})
			_, b, err := w.c.ReadMessage()
			if err != nil {
				return
			}
			var f frame
			_ = json.Unmarshal(b, &f)
			ch <- f
		}
	}()
	return ch
}

// drain returns the frames of ch until none comes for quiet.
func drain(ch <-chan frame, quiet time.Duration) []frame {
	var fs []frame
	for {
		select {
		case f, ok := <-ch:
			if !ok {
				return fs
			}
			fs = append(fs, f)
		case <-time.After(quiet):
			return fs
		}
	}
}

// drainAll drains every channel at once and returns their frames.
func drainAll(chs []<-chan frame, quiet time.Duration) [][]frame {
	out := make([][]frame, len(chs))
	var wg sync.WaitGroup
	for i, ch := range chs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = drain(ch, quiet)
		}()
	}
	wg.Wait()
	return out
}

// TestJoinLeaveCoalesced: N clients over two loops subscribing at once
// cost at most 3N frames in all (N replies and the coalesced join
// pushes), every join reaches the subscribers, and a leave is pushed.
func TestJoinLeaveCoalesced(t *testing.T) {
	const n = 40
	_, addrs := startPresenceLoops(t, 2)
	ws, ids, chs := joinLeaveClients(t, addrs, n, "room:r")
	frames, replies := 0, 0
	joined := map[string]bool{}
	for _, fs := range drainAll(chs, 400*time.Millisecond) {
		for _, f := range fs {
			frames++
			switch {
			case f.ID != 0:
				if f.Error != nil {
					t.Fatalf("subscribe: %+v", f.Error)
				}
				replies++
			case f.Push != nil && f.Push.Topic == "room:r" && f.Push.Counts == nil:
				for _, m := range f.Push.Join {
					joined[m.Client] = true
					if m.User == "" || len(m.Info) == 0 {
						t.Fatalf("join without user or info: %+v", m)
					}
				}
			default:
				t.Fatalf("frame %+v", f)
			}
		}
	}
	t.Logf("%d clients joining at once: %d frames (%d replies)", n, frames, replies)
	if replies != n || frames > 3*n {
		t.Fatalf("%d frames, %d replies for %d clients: want <= %d", frames, replies, n, 3*n)
	}
	for _, id := range ids {
		if !joined[id] {
			t.Fatalf("join of %s pushed to nobody", id)
		}
	}

	// One leaves: the others get it, once each.
	ws[0].c.Close()
	for _, fs := range drainAll(chs[1:], 300*time.Millisecond) {
		if len(fs) != 1 || fs[0].Push == nil || len(fs[0].Push.Leave) != 1 || fs[0].Push.Leave[0].Client != ids[0] || len(fs[0].Push.Join) != 0 {
			t.Fatalf("after a leave: %+v", fs)
		}
	}
}

// TestJoinLeaveCounts: over the namespace's JoinLeaveMaxNames the pushes
// carry counts only, still coalesced.
func TestJoinLeaveCounts(t *testing.T) {
	const n = 20
	_, addrs := startPresenceLoops(t, 2)
	_, _, chs := joinLeaveClients(t, addrs, n, "big:r")
	frames, maxClients := 0, 0
	for _, fs := range drainAll(chs, 600*time.Millisecond) {
		for _, f := range fs {
			frames++
			if f.Push != nil {
				if f.Push.Counts == nil {
					if len(f.Push.Join)+len(f.Push.Leave) > 5 {
						t.Fatalf("names over JoinLeaveMaxNames: %+v", f.Push)
					}
					continue
				}
				maxClients = max(maxClients, f.Push.Counts.Clients)
			}
		}
	}
	if frames > 3*n || maxClients != n {
		t.Fatalf("%d frames (want <= %d), clients counted %d (want %d)", frames, 3*n, maxClients, n)
	}
}

// startSharedPresence runs a Server on its own loop in a group of its
// own ("a process") that shares its presence on b every 50 ms; it
// returns the Server, its address and the stop of its sharing.
func startSharedPresence(t *testing.T, b pubsub.Broker) (*realtime.Server, string, func()) {
	t.Helper()
	g := realtime.NewPresenceGroup()
	stop, err := g.Share(b, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	s, addr := start(t, realtime.Options{
		Namespaces: presenceNamespaces,
		Presence:   g,
		Authenticate: func(_ context.Context, c realtime.Credentials) (realtime.Identity, error) {
			return realtime.Identity{User: c.Token}, nil
		},
	}, nil)
	return s, addr, stop
}

// TestPresenceAcrossProcesses: two "processes" (groups) sharing presence
// on a broker see each other's members; a leave is seen within a
// heartbeat or two, and the members of a process that stops
// heartbeating (dead) expire within 4 heartbeats.
func TestPresenceAcrossProcesses(t *testing.T) {
	broker := &pubsub.MemoryBroker{}
	s1, addr1, _ := startSharedPresence(t, broker)
	s2, addr2, stop2 := startSharedPresence(t, broker)
	a := dial(t, addr1)
	ida := a.connect("alice").Client
	a.ok(a.cmd("subscribe", map[string]any{"topic": "pres:p"}), nil)
	b := dial(t, addr2)
	idb := b.connect("bob").Client
	b.ok(b.cmd("subscribe", map[string]any{"topic": "pres:p"}), nil)
	b2 := dial(t, addr2)
	b2.connect("bob")
	b2.ok(b2.cmd("subscribe", map[string]any{"topic": "pres:p"}), nil)

	if st := waitStats(t, s1, "pres:p", 3); st.Users != 2 {
		t.Fatalf("stats on 1: %+v", st)
	}
	waitStats(t, s2, "pres:p", 3)
	var pr cp.PresenceResult
	a.ok(a.cmd("presence", map[string]any{"topic": "pres:p"}), &pr)
	seen := map[string]bool{}
	for _, m := range pr.Members {
		seen[m.Client] = true
	}
	if len(pr.Members) != 3 || !seen[ida] || !seen[idb] {
		t.Fatalf("presence on 1: %+v", pr)
	}

	// A leave in process 2.
	b2.ok(b2.cmd("unsubscribe", map[string]any{"topic": "pres:p"}), nil)
	if st := waitStats(t, s1, "pres:p", 2); st.Users != 2 {
		t.Fatalf("stats after a leave: %+v", st)
	}
	// Process 2 dies (stops heartbeating): its members expire on 1.
	stop2()
	begin := time.Now()
	if st := waitStats(t, s1, "pres:p", 1); st.Users != 1 {
		t.Fatalf("stats after process 2 died: %+v", st)
	}
	if d := time.Since(begin); d > 4*50*time.Millisecond+300*time.Millisecond {
		t.Fatalf("expired after %v, want within 4 heartbeats", d)
	}
	// Process 1's view of its own is intact, and bounded heartbeats
	// from elsewhere are refused (a forged one over the part size).
	big := make([]cp.ClientInfo, 201)
	for i := range big {
		big[i] = cp.ClientInfo{Client: fmt.Sprint("x", i)}
	}
	data, _ := json.Marshal(map[string]any{"node": "evil", "topic": "pres:p", "part": 0, "parts": 1, "members": big})
	_ = broker.Publish(realtime.PresenceTopic, data)
	time.Sleep(50 * time.Millisecond)
	if st, _ := s1.PresenceStats("pres:p"); st.Clients != 1 {
		t.Fatalf("forged heartbeat kept: %+v", st)
	}
}

// TestPresenceHostileFlood: rounds of 60 connections with a large Info
// joining and leaving a join_leave topic at once, beside a canary whose
// pings stay fast and an observer whose pushes stay small (Info over the
// bound left out, names only up to JoinLeaveMaxNames, counts past it).
func TestPresenceHostileFlood(t *testing.T) {
	servers, addrs := startPresenceLoops(t, 2)
	obs := dial(t, addrs[0])
	obs.connect("observer")
	obs.ok(obs.cmd("subscribe", map[string]any{"topic": "room:h"}), nil)
	obsFrames := reader(obs)
	canary := dial(t, addrs[0])
	canary.connect("canary")
	stopCanary := make(chan struct{})
	worst := make(chan time.Duration, 1)
	go func() {
		var w time.Duration
		for {
			select {
			case <-stopCanary:
				worst <- w
				return
			default:
			}
			begin := time.Now()
			canary.ok(canary.cmd("ping", map[string]any{}), nil)
			w = max(w, time.Since(begin))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for round := range 3 {
		ws := make([]*wsc, 60)
		for i := range ws {
			ws[i] = dial(t, addrs[i%2])
			ws[i].connect(fmt.Sprintf("big:%d-%d", round, i))
		}
		var wg sync.WaitGroup
		for _, w := range ws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.next++
				b, _ := json.Marshal(map[string]any{"id": w.next, "subscribe": map[string]any{"topic": "room:h"}})
				_ = w.c.WriteMessage(websocket.TextMessage, b)
			}()
		}
		wg.Wait()
		waitStats(t, servers[1], "room:h", 61)
		for _, w := range ws {
			w.c.Close()
		}
		waitStats(t, servers[1], "room:h", 1)
	}
	close(stopCanary)
	budget := 250 * time.Millisecond
	if raceOn {
		budget = time.Second // see TestPresenceQueryFlood
	}
	if w := <-worst; w > budget {
		t.Fatalf("canary ping took %v during the flood (budget %v)", w, budget)
	}
	pushes := 0
	for _, f := range drain(obsFrames, 300*time.Millisecond) {
		if f.Push == nil {
			continue
		}
		pushes++
		for _, m := range append(f.Push.Join, f.Push.Leave...) {
			if len(m.Info) > 256 {
				t.Fatalf("large info pushed: %d bytes", len(m.Info))
			}
		}
		if len(f.Push.Join)+len(f.Push.Leave) > 100 {
			t.Fatalf("a push of %d names", len(f.Push.Join)+len(f.Push.Leave))
		}
	}
	if pushes == 0 {
		t.Fatal("no join/leave push")
	}
}

// TestJoinLeaveStormSpread: 60 clients subscribing in 6 waves 50 ms apart
// to a topic over JoinLeaveMaxNames (counts) cost at most 3N frames: the
// counts pushes wait for JoinLeaveMaxDelay (or events twice the
// subscribers) instead of going to every subscriber each interval.
func TestJoinLeaveStormSpread(t *testing.T) {
	const n, waves = 60, 6
	_, addrs := startPresenceLoopsWith(t, 2, func(o *realtime.Options) { o.JoinLeaveMaxDelay = time.Second })
	var chs []<-chan frame
	for w := range waves {
		_, _, c := joinLeaveClients(t, addrs, n/waves, "big:storm")
		chs = append(chs, c...)
		if w < waves-1 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	frames, counted := 0, 0
	for _, fs := range drainAll(chs, 1500*time.Millisecond) {
		for _, f := range fs {
			frames++
			if f.Push != nil && f.Push.Counts != nil {
				counted = max(counted, f.Push.Counts.Clients)
			}
		}
	}
	t.Logf("%d clients in %d waves: %d frames", n, waves, frames)
	if frames > 3*n || counted != n {
		t.Fatalf("%d frames (want <= %d), clients counted %d (want %d)", frames, 3*n, counted, n)
	}
}

// TestJoinLeaveStormLong: with the default delays, 60 clients subscribing
// in 20 waves over 2.4 s (longer than the former fixed 2 s delay, after
// which counts pushes went out in the middle of the storm) still cost at
// most 3N frames: the counts push waits for the storm to end.
func TestJoinLeaveStormLong(t *testing.T) {
	const n, waves = 60, 20
	_, addrs := startPresenceLoopsWith(t, 2, func(o *realtime.Options) {
		o.JoinLeaveQuiet, o.JoinLeaveMaxDelay = 0, 0 // the defaults
	})
	var chs []<-chan frame
	start := time.Now()
	for w := range waves {
		_, _, c := joinLeaveClients(t, addrs, n/waves, "big:long")
		chs = append(chs, c...)
		if w < waves-1 {
			time.Sleep(125 * time.Millisecond)
		}
	}
	spread := time.Since(start)
	frames, counted, pushes := 0, 0, 0
	for _, fs := range drainAll(chs, 3*time.Second) {
		for _, f := range fs {
			frames++
			if f.Push != nil && f.Push.Counts != nil {
				pushes++
				counted = max(counted, f.Push.Counts.Clients)
			}
		}
	}
	// The frames here are the subscribe replies (N) and the pushes (the
	// connect replies, N more, were read before): the 3N of the storm
	// target leaves N for the pushes; a few names pushes reach the first
	// waves while the topic is small.
	t.Logf("%d clients in %d waves over %v: %d frames, %d counts pushes", n, waves, spread.Round(time.Millisecond), frames, pushes)
	if frames-n > n+n/5 || counted != n {
		t.Fatalf("%d frames after %d subscribe replies (want <= %d pushes), clients counted %d (want %d)", frames, n, n+n/5, counted, n)
	}
}
