package bench

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// HistoryOptions configures the history scenario: the server memory one
// kept chat message costs.
type HistoryOptions struct {
	Base string // http://host:port of a fresh server
	// Messages is K, the messages published, default 1000. The server's
	// history must keep them all (tornago -longpoll-messages >= K and
	// -longpoll-bytes >= K*(Size+100)); the run checks that it did.
	Messages int
	// Size is B, each message body's length in bytes, default 1000 (at
	// most 6000: the body travels in /receive's request line).
	Size     int
	PID      int
	Progress Progress
}

// History publishes K messages of B bytes to the chat (GET /receive?msg=)
// of a fresh server and reports its memory growth per kept message:
// (RSS after - RSS before) / K, settled readings of the -pid's tree (Pss
// with several processes), and that minus B, the overhead of keeping one.
// It checks afterwards that the history still reaches back to the first
// of them (no "missed" after the position before the run).
func History(o HistoryOptions) (*Result, error) {
	if o.Messages <= 0 {
		o.Messages = 1000
	}
	if o.Size <= 0 {
		o.Size = 1000
	}
	if o.Size > 6000 {
		return nil, fmt.Errorf("history: -size %d: at most 6000 (the body travels in /receive's request line)", o.Size)
	}
	o.Base = strings.TrimSuffix(o.Base, "/")
	if err := CheckPID(o.PID, o.Base); err != nil {
		return nil, &InvalidError{"history", err.Error()}
	}
	res := &Result{Scenario: "history", URL: o.Base + "/receive", Client: "net/http, one keep-alive connection", Conns: 1}
	pub := newPublisher(o.Base)
	defer pub.hc.CloseIdleConnections()
	if err := pub.publish("history: measuring starts"); err != nil {
		return nil, &InvalidError{"history", err.Error()}
	}
	head0, err := pub.head()
	if err != nil {
		return nil, &InvalidError{"history", err.Error()}
	}
	measured := o.PID > 0
	var rss0 int64
	if measured {
		rss0 = settledRSS(func() int64 { return treeRSS(o.PID) })
	}
	m := startCPU(o.PID)
	bar := orNoProgress(o.Progress).Phase("publish", int64(o.Messages))
	var lat latencies
	var errs int64
	var last string
	for i := 1; i <= o.Messages; i++ {
		head := fmt.Sprintf(`{"seq":%d,"pad":"`, i)
		msg := head + strings.Repeat("x", max(o.Size-len(head)-2, 0)) + `"}`
		t0 := time.Now()
		if err := pub.publish(msg); err != nil {
			errs++
			last = err.Error()
		} else {
			lat.add(time.Since(t0))
		}
		if i%100 == 0 || i == o.Messages {
			bar.Set(int64(i), int64(i)-errs, errs)
		}
	}
	bar.Done()
	cpu := m.stop()
	var rss1 int64
	if measured {
		rss1 = settledRSS(func() int64 { return treeRSS(o.PID) })
	}
	res.Errors = errs
	res.finish(int64(o.Messages)-errs, lat.sorted(), cpu, 1)
	res.Pace = ""
	res.Extra = map[string]any{"history_messages": o.Messages, "message_bytes": o.Size, "start": head0}
	// The history must still reach back to the first message: otherwise
	// the server dropped some and the figure is per message it was given,
	// not per message kept.
	var kept error
	if resp, err := pub.hc.Get(o.Base + "/poll-message?since=" + url.QueryEscape(head0)); err != nil {
		kept = fmt.Errorf("history check: %w", err)
	} else {
		var pr pollReply
		err := json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		switch {
		case err != nil:
			kept = fmt.Errorf("history check: GET /poll-message: %w", err)
		case pr.Missed != 0:
			kept = fmt.Errorf("the server's history kept fewer than %d messages (missed %d after %s): start it with -longpoll-messages %d -longpoll-bytes %d or more",
				o.Messages, pr.Missed, head0, o.Messages, o.Messages*(o.Size+128))
		case len(pr.Messages) == 0 || !strings.HasPrefix(pr.Messages[0].Body, `{"seq":1,`):
			kept = fmt.Errorf("history check: the first message after %s is not the run's first", head0)
		}
		res.Extra["head"] = pr.Head
	}
	var shrank error
	if measured {
		res.Extra["rss_before_bytes"], res.Extra["rss_after_bytes"] = rss0, rss1
		per := float64(rss1-rss0) / float64(o.Messages)
		if rss1 < rss0-(1<<20) {
			shrank = fmt.Errorf("RSS per message is invalid: server RSS shrank by %.1f MB during the run: start a fresh server", float64(rss0-rss1)/1e6)
		} else {
			res.Extra["rss_per_message_bytes"] = per
			res.Extra["overhead_per_message_bytes"] = per - float64(o.Size)
		}
	}
	if last != "" {
		res.Extra["last_error"] = last
	}
	return res, invalidate(res, aliveCheck(o.PID), shrank, tooMany("publishes", errs, int64(o.Messages), last), kept)
}
