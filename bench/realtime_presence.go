package bench

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tornago/tornago/loop/realtime/rtclient"
	"github.com/tornago/tornago/proto/clientproto"
)

// Issue 22's scenarios: storm (join/leave of N clients subscribing at
// once) and presence (presence and presence_stats on a topic of N
// members). Both need the topic in a namespace with presence (storm:
// and join_leave), as the demo's chat namespace.

// stormTopic is storm's and presence's topic: Topic with the scenario's
// suffix, so that a run does not meet the members of another.
func stormTopic(o RealtimeOptions, suffix string) string { return o.Topic + "-" + suffix }

// RealtimeJoinLeaveStorm is storm: N protocol clients open at Open.Rate
// (default 2000/s, "at once") and subscribe to one topic of a join_leave
// namespace beside a canary pinging every 50 ms. It counts the frames
// the clients received (connect and subscribe replies, join/leave
// pushes) against 3N (the target) and N² (one push per join to every
// member), the server's CPU and the canary's worst round trip against
// RealtimeCanaryBudget. It waits for the last coalesced push (the
// server's JoinLeaveMaxDelay, 2 s by default) before counting.
func RealtimeJoinLeaveStorm(o RealtimeOptions) (*Result, error) {
	d, res, err := o.begin("storm", 1, false)
	if err != nil {
		return nil, err
	}
	defer d.Stop()
	topic := stormTopic(o, "storm")
	p := orNoProgress(o.Progress)
	k, err := startRTCanary(d.l, o.URL+o.Path, o.tokenFor(o.Conns))
	if err != nil {
		return res, invalidate(res, err)
	}
	var pushes, counts, names atomic.Int64
	base := rtclient.Options{OnJoinLeave: func(_ *rtclient.Client, tp *clientproto.TopicPush) {
		pushes.Add(1)
		if tp.Counts != nil {
			counts.Add(1)
		}
		names.Add(int64(len(tp.Join) + len(tp.Leave)))
	}}
	m := startCPU(o.PID)
	t0 := time.Now()
	g := openRTWith(d.l, o.URL+o.Path, o.Conns, []string{topic}, base, o.tokenFor, o.Open, nil, p.Phase("subscribe", int64(o.Conns)))
	opened := time.Since(t0)
	// The last pushes wait up to the server's JoinLeaveMaxDelay: count
	// once none came for 3 s (at most 20 s).
	last, quiet := pushes.Load(), time.Now()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end) && time.Since(quiet) < 3*time.Second; {
		time.Sleep(100 * time.Millisecond)
		if n := pushes.Load(); n != last {
			last, quiet = n, time.Now()
		}
	}
	cpu := m.stop()
	canary := k.finish()
	g.closeAll()
	n := int64(o.Conns)
	ready := g.ready.Load()
	// Every ready client got its connect reply and its subscribe reply.
	frames := 2*ready + pushes.Load()
	res.Conns = int(ready)
	res.Errors = g.errs.Load()
	res.finish(ready, g.lat.sorted(), cpu, 1)
	res.Pace = ""
	res.Extra["topic"] = topic
	res.Extra["open_s"] = opened.Seconds()
	res.Extra["frames"] = frames
	res.Extra["replies"] = 2 * ready
	res.Extra["join_leave_pushes"] = pushes.Load()
	res.Extra["counts_pushes"] = counts.Load()
	res.Extra["names_carried"] = names.Load()
	res.Extra["frames_per_client"] = float64(frames) / float64(max(ready, 1))
	res.Extra["frames_3n"] = 3 * n
	res.Extra["frames_n2"] = n * n
	res.Extra["frames_ok"] = frames <= 3*n
	// Without the connect replies (what a subscribe costs with join/leave
	// on: its reply and the pushes, as the server's doc counts).
	res.Extra["frames_subscribe"] = ready + pushes.Load()
	res.Extra["frames_subscribe_ok"] = ready+pushes.Load() <= 3*n
	k.report(res, canary)
	if e, ok := g.lastErr.Load().(string); ok {
		res.Extra["last_error"] = e
	}
	var noPush error
	if ready > 1 && pushes.Load() == 0 {
		noPush = fmt.Errorf("storm: no join/leave push on %s: is its namespace join_leave?", topic)
	}
	return res, invalidate(res, noPush, aliveCheck(o.PID), tooMany("subscribes", g.errs.Load(), n, ""))
}

// RealtimePresence is presence: N protocol clients subscribe to one topic
// of a presence namespace; then they ask presence_stats Messages×50 times
// and presence Messages times, one at a time (round the clients, within
// their commands-per-second limit), and it
// reports their round trips (the server answers from its process-wide
// presence table: two map lookups for presence_stats, a copy of at most
// its MaxPresenceMembers for presence) and the counts answered.
func RealtimePresence(o RealtimeOptions) (*Result, error) {
	d, res, err := o.begin("presence", 0, false)
	if err != nil {
		return nil, err
	}
	defer d.Stop()
	topic := stormTopic(o, "presence")
	p := orNoProgress(o.Progress)
	rss0 := rtRSS(o.PID)
	g := openRT(d.l, o.URL+o.Path, o.Conns, []string{topic}, o.tokenFor, o.Open, false, nil, p.Phase("subscribe", int64(o.Conns)))
	defer g.closeAll()
	rss1 := rtRSS(o.PID)
	if len(g.clients) == 0 || g.ready.Load() == 0 {
		return res, invalidate(res, errors.New("presence: no client subscribed"))
	}
	// A client may send CommandsPerSecond (50) with a burst of 100: the
	// queries go round the members, one at a time.
	cs := g.clients
	var statsLat, listLat latencies
	var stats clientproto.PresenceStatsResult
	var listed int
	var truncated bool
	var qerr error
	m := startCPU(o.PID)
	for i := 0; i < o.Messages*50 && qerr == nil; i++ {
		t0 := time.Now()
		done := make(chan error, 1)
		cs[i%len(cs)].PresenceStats(topic, func(r clientproto.PresenceStatsResult, err error) { stats = r; done <- err })
		if qerr = <-done; qerr == nil {
			statsLat.add(time.Since(t0))
		}
	}
	// A loop writes at most Limits.PresenceBytesPerSecond of presence
	// answers (a tenth of it at once): an answer refused as busy (111,
	// temporary) is asked again 100 ms later, and counted.
	busy := 0
	for i := 0; i < o.Messages && qerr == nil; i++ {
		t0 := time.Now()
		done := make(chan error, 1)
		cs[(i+1)%len(cs)].Presence(topic, func(ms []clientproto.ClientInfo, tr bool, err error) { listed, truncated = len(ms), tr; done <- err })
		var ce *clientproto.Error
		if qerr = <-done; qerr == nil {
			listLat.add(time.Since(t0))
		} else if errors.As(qerr, &ce) && ce.Code == clientproto.ErrTooManyRequests && ce.Temporary && busy < 100*o.Messages {
			busy++
			qerr = nil
			i--
			time.Sleep(100 * time.Millisecond)
		}
	}
	cpu := m.stop()
	ready := g.ready.Load()
	res.Conns = int(ready)
	res.Errors = g.errs.Load()
	res.finish(int64(o.Messages*51), statsLat.sorted(), cpu, 1)
	res.Pace = ""
	res.Extra["topic"] = topic
	res.Extra["presence_stats"] = summarize(statsLat.sorted()).String()
	res.Extra["presence_stats_clients"] = stats.Clients
	res.Extra["presence_stats_users"] = stats.Users
	res.Extra["presence"] = summarize(listLat.sorted()).String()
	res.Extra["presence_listed"] = listed
	res.Extra["presence_truncated"] = truncated
	res.Extra["presence_busy_retries"] = busy
	if rss0 > 0 && rss1 > rss0 && ready > 0 {
		res.Extra["rss_per_member_bytes"] = (rss1 - rss0) / ready
	}
	var wrong error
	if qerr != nil {
		wrong = fmt.Errorf("presence: %w", qerr)
	} else if int64(stats.Clients) != ready {
		wrong = fmt.Errorf("presence: presence_stats says %d clients, %d subscribed", stats.Clients, ready)
	}
	return res, invalidate(res, wrong, aliveCheck(o.PID), tooMany("subscribes", g.errs.Load(), int64(o.Conns), ""))
}
