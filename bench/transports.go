package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TransportKinds are the transports the transports scenario runs, in
// order; the first (WebSocket) is the one the others are compared with.
var TransportKinds = []string{"websocket", "sse", "long-poll", "short-poll"}

// TransportsOptions configures the transports scenario against a server
// with Tornago's demo protocol (issue 12): GET /receive?msg= publishes to
// the chat topic, which clients follow by /ws?since=, GET /sse, POST
// /update-message (long poll) and GET /poll-message (short poll), each
// resuming from the position "E-N" of the last message it has.
type TransportsOptions struct {
	Base     string        // http://host:port
	Conns    int           // clients per transport, default 100
	Duration time.Duration // publishing time per transport, default 10s
	// Every is the publish interval, default 100ms (10 messages/s).
	Every time.Duration
	// PollEvery is the short-poll interval, default 1s.
	PollEvery time.Duration
	// Kinds are the transports to run (of TransportKinds), default all.
	Kinds []string
	// NoReconnect leaves the clients' connections alone; by default every
	// client drops its connection half way through publishing and resumes
	// from the last position it has.
	NoReconnect bool
	PID         int
	Progress    Progress
}

// countingConn counts the TCP payload bytes both ways.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n.Add(int64(k))
	return k, err
}

func (c countingConn) Write(p []byte) (int, error) {
	k, err := c.Conn.Write(p)
	c.n.Add(int64(k))
	return k, err
}

// Transports publishes the same stream (one message every Every, each
// carrying its send time and a sequence number) to Conns clients over
// each transport in turn (WebSocket, SSE, long polling, short polling) and
// reports per transport: client bytes on the wire per delivered message,
// delivery latency, server CPU per delivered message, connections and HTTP
// requests per minute, and the messages each client lost or got twice
// across the forced reconnect at mid-run (counted by sequence number
// against what was published).
func Transports(o TransportsOptions) ([]*Result, error) {
	if o.Conns <= 0 {
		o.Conns = 100
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Every <= 0 {
		o.Every = 100 * time.Millisecond
	}
	if o.PollEvery <= 0 {
		o.PollEvery = time.Second
	}
	if len(o.Kinds) == 0 {
		o.Kinds = TransportKinds
	}
	for _, k := range o.Kinds {
		if !contains(TransportKinds, k) {
			return nil, fmt.Errorf("transports: unknown transport %q (known: %s)", k, strings.Join(TransportKinds, ", "))
		}
	}
	o.Base = strings.TrimSuffix(o.Base, "/")
	if err := CheckPID(o.PID, o.Base); err != nil {
		return nil, &InvalidError{"transports", err.Error()}
	}
	var out []*Result
	for _, t := range o.Kinds {
		r, err := transportRun(o, t)
		if r != nil {
			out = append(out, r)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// publisher sends GET /receive?msg= on its own connection (not counted
// as the clients').
type publisher struct {
	base string
	hc   *http.Client
}

func newPublisher(base string) *publisher {
	return &publisher{base: base, hc: &http.Client{Timeout: 10 * time.Second}}
}

func (p *publisher) publish(msg string) error {
	resp, err := p.hc.Get(p.base + "/receive?msg=" + url.QueryEscape(msg))
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != 200 {
		return fmt.Errorf("publish: GET /receive: %s %.200s", resp.Status, b)
	}
	return nil
}

// head is the chat's position now: the "head" of a short poll without a
// cursor, followed while "more" (a page ends at its last message).
func (p *publisher) head() (string, error) {
	since := ""
	for page := 0; page < 10000; page++ {
		resp, err := p.hc.Get(p.base + "/poll-message?since=" + url.QueryEscape(since))
		if err != nil {
			return "", fmt.Errorf("chat head: %w", err)
		}
		var pr pollReply
		err = json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			return "", fmt.Errorf("chat head: GET /poll-message: %s: %v", resp.Status, err)
		}
		if pr.Head == "" {
			return "", fmt.Errorf("chat head: GET /poll-message answered no \"head\" (a server without positions?)")
		}
		if !pr.More {
			return pr.Head, nil
		}
		since = pr.Head
	}
	return "", fmt.Errorf("chat head: GET /poll-message: still \"more\" after 10000 pages")
}

func runTag() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func transportRun(o TransportsOptions, kind string) (*Result, error) {
	res := &Result{Scenario: "transports", Server: kind, URL: o.Base, Client: "net/http + gorilla, one connection pool per client", Conns: o.Conns}
	pub := newPublisher(o.Base)
	defer pub.hc.CloseIdleConnections()
	// A first message gives a fresh server a position to start from.
	if err := pub.publish("transports: " + kind + " starts"); err != nil {
		return nil, &InvalidError{"transports", kind + ": " + err.Error()}
	}
	head0, err := pub.head()
	if err != nil {
		return nil, &InvalidError{"transports", kind + ": " + err.Error()}
	}
	tag := runTag() + "-" + kind
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	drop, dropNow := context.WithCancel(ctx)
	defer dropNow()
	r := &txRun{o: o, kind: kind, tag: []byte(`"run":"` + tag + `"`), head0: head0, drop: drop}

	m := startCPU(o.PID)
	t0 := time.Now()
	clients := make([]*txClient, o.Conns)
	var wg sync.WaitGroup
	for i := range clients {
		c := newTxClient(r)
		clients[i] = c
		wg.Add(1)
		go func() { defer wg.Done(); c.run(ctx) }()
	}
	// Clients start from head0, so what is published before one is
	// connected still reaches it (from the history); the pause only keeps
	// the connecting storm out of the first latencies.
	time.Sleep(300 * time.Millisecond)
	bar := orNoProgress(o.Progress).Timed(kind, o.Duration)
	published := 0
	dropped := o.NoReconnect
	var pubErrs int64
	for tp := time.Now(); time.Since(tp) < o.Duration; {
		if !dropped && time.Since(tp) >= o.Duration/2 {
			dropNow()
			dropped = true
		}
		next := tp.Add(time.Duration(published+1) * o.Every)
		msg := fmt.Sprintf(`{"run":"%s","seq":%d,"ts":%d}`, tag, published+1, time.Now().UnixNano())
		if err := pub.publish(msg); err != nil {
			pubErrs++
			r.fail(err)
			// The sequence number is used: the message may have been
			// published without its answer arriving.
		}
		published++
		bar.Set(int64(time.Since(tp)/time.Millisecond), r.delivered.Load(), r.errs.Load())
		time.Sleep(time.Until(next))
	}
	// Let the last messages reach every client (short polls wait up to
	// PollEvery), then stop the clock.
	want := int64(published) * int64(o.Conns)
	for grace := time.Now(); r.delivered.Load() < want && time.Since(grace) < o.PollEvery+3*time.Second; {
		time.Sleep(20 * time.Millisecond)
	}
	cpu := m.stop()
	wall := time.Since(t0)
	bar.Done()
	cancel()
	wg.Wait()
	for _, c := range clients {
		if c.tr != nil {
			c.tr.CloseIdleConnections()
		}
	}

	var lost, repeated int64
	for _, c := range clients {
		l, rp := c.tally(published)
		lost += l
		repeated += rp
	}
	n := r.delivered.Load()
	res.Errors = r.errs.Load()
	res.finish(n, r.lat.sorted(), cpu, harnessCores())
	res.Pace = ""
	bytes := r.wire.Load()
	mins := wall.Minutes()
	res.Extra = map[string]any{"transport": kind, "published": published, "expected": want, "delivered": n,
		"lost": lost, "repeated": repeated, "reconnect": !o.NoReconnect, "resumed_clients": r.resumed.Load(),
		"history_gone": r.gone.Load(), "wire_bytes": bytes,
		"conns_opened": r.dials.Load(), "conns_per_min": float64(r.dials.Load()) / mins,
		"http_requests": r.requests.Load(), "http_requests_per_min": float64(r.requests.Load()) / mins,
		"every_ms": ms(o.Every), "start": head0}
	if kind == "short-poll" {
		res.Extra["poll_every_ms"] = ms(o.PollEvery)
	}
	if n > 0 {
		res.Extra["wire_bytes_per_delivered"] = float64(bytes) / float64(n)
	}
	if f := r.foreign.Load(); f > 0 {
		res.Extra["foreign_messages"] = f
	}
	last, _ := r.lastErr.Load().(string)
	if last != "" {
		res.Extra["last_error"] = last
	}
	var none, notResumed error
	if n == 0 {
		none = fmt.Errorf("%s: no message delivered%s", kind, lastErr(last))
	}
	if !o.NoReconnect {
		notResumed = tooMany(kind+" clients resumed after the drop (not)", int64(o.Conns)-r.resumed.Load(), int64(o.Conns), last)
	}
	return res, invalidate(res, aliveCheck(o.PID), none,
		tooMany(kind+" publishes", pubErrs, int64(published), last),
		tooMany(kind+" deliveries (lost)", lost, want, last), notResumed)
}
