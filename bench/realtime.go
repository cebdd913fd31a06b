package bench

// Scenarios of the client protocol (proto/clientproto, served by
// loop/realtime at /connection/websocket), each measured against the raw
// /ws route of the same server in the same run, so the ratio says what the
// protocol costs over today's Hub fan-out:
//
//   - rt-idle: N raw /ws clients, then N protocol clients with 1
//     subscription, then N with 10 (each group held while the next opens):
//     the server's RSS per connection of each group.
//   - rt-push: N raw /ws clients get M chat messages (GET /receive); then
//     N protocol clients subscribed to one topic get M publications (a
//     protocol client publishes): the server's CPU per delivery of each.
//   - rt-storm: N protocol clients subscribed with positions; the server's
//     processes are killed (a -procs supervisor restarts them); the time
//     until every client is back and resubscribed, the server's peak CPU,
//     publications lost or repeated, and a canary's ping latency.
//
// The clients are rtclient.Clients on one loop of this process (no
// goroutine per connection), so N stays under the process's descriptor
// limit: at most 15,000 connections in all.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime/rtclient"
	"github.com/tornago/tornago/proto/clientproto"
)

// RealtimeOptions configures the rt-* scenarios.
type RealtimeOptions struct {
	// URL is the server, ws://host:port (a path is ignored): its raw route
	// is RawPath, its protocol endpoint Path.
	URL     string
	RawPath string // default "/ws"
	Path    string // default "/connection/websocket"
	// Conns is N, the clients of each group. Default 1000; rt-idle holds
	// (1+len(Subs))×N at once, which must stay ≤ 15000.
	Conns int
	// Subs are rt-idle's subscriptions per protocol client, one group per
	// entry. Default 1 and 10. Every client of a group subscribes to the
	// same topics (clock:idle-0 .. clock:idle-k-1): shared topics, the
	// per-topic state is counted once. The demo's clock namespace keeps no
	// presence: chat's does, which adds its entry (about 174 B,
	// TestPresenceCost) to every subscription, a cost of presence, not of
	// an idle connection.
	Subs []int
	// Topic is rt-push's and rt-storm's topic. Default "chat:bench" (the
	// server must let clients publish on it).
	Topic string
	// Messages is rt-push's publications per group (default 20), sent
	// Rate per second (default 4); rt-storm publishes Messages during the
	// storm.
	Messages int
	Rate     float64
	// Token is the connect token of every client ("" anonymous).
	Token string
	// TokenSecret, when set, replaces Token: each client i gets its own
	// HS256 JWT signed with it (sub "bench-i", exp in an hour), as the
	// server's -token-hmac-secret expects.
	TokenSecret string
	// TokenKey, when set (and TokenSecret not), signs each client's own
	// JWT instead: ES256 with an ECDSA P-256 key, RS256 with RSA, EdDSA
	// with Ed25519 (ParseTokenKey), as the server's -token-public-key
	// expects of the public half.
	TokenKey crypto.Signer
	PID      int // the server's PID: RSS and CPU from /proc over its tree
	Open     OpenOptions
	// Kill starts rt-storm's restart; nil sends SIGKILL to every child
	// process of PID (a tornago -procs supervisor restarts them).
	Kill     func() error
	Progress Progress
}

func (o *RealtimeOptions) defaults() error {
	if o.Conns <= 0 {
		o.Conns = 1000
	}
	if len(o.Subs) == 0 {
		o.Subs = []int{1, 10}
	}
	if o.RawPath == "" {
		o.RawPath = "/ws"
	}
	if o.Path == "" {
		o.Path = "/connection/websocket"
	}
	if o.Topic == "" {
		o.Topic = "chat:bench"
	}
	if o.Messages <= 0 {
		o.Messages = 20
	}
	if o.Rate <= 0 {
		o.Rate = 4
	}
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "ws" || u.Host == "" {
		return fmt.Errorf("realtime: URL %q: want ws://host:port", o.URL)
	}
	o.URL = "ws://" + u.Host
	return nil
}

// begin is the protocol scenarios' prologue: o's defaults, at most
// rtMaxConns connections (o.Conns and extra clients of the scenario's
// own, such as a canary), and a server process (PID) that serves o.Path,
// or o.RawPath when raw. It returns the client loop (the caller stops
// it) and the scenario's Result to fill.
func (o *RealtimeOptions) begin(name string, extra int, raw bool) (*loopDriver, *Result, error) {
	if err := o.defaults(); err != nil {
		return nil, nil, err
	}
	if o.Conns+extra > rtMaxConns {
		return nil, nil, fmt.Errorf("%s: %d connections, over %d per process", name, o.Conns, rtMaxConns)
	}
	path := o.Path
	if raw {
		path = o.RawPath
	}
	if err := CheckPID(o.PID, o.URL+path); err != nil {
		return nil, nil, &InvalidError{name, err.Error()}
	}
	d := newLoopDriver()
	return d, &Result{Scenario: name, URL: o.URL + o.Path, Client: "rtclient-loop", Extra: map[string]any{}}, nil
}

// tokenFor is client i's connect token.
func (o *RealtimeOptions) tokenFor(i int) string {
	var m jwt.SigningMethod
	var key any
	switch {
	case o.TokenSecret != "":
		m, key = jwt.SigningMethodHS256, []byte(o.TokenSecret)
	case o.TokenKey != nil:
		m, key = tokenMethod(o.TokenKey), o.TokenKey
	default:
		return o.Token
	}
	t, err := jwt.NewWithClaims(m, jwt.RegisteredClaims{
		Subject:   "bench-" + strconv.Itoa(i),
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(key)
	if err != nil {
		return "" // refused by the server: counted as a failed connect
	}
	return t
}

// rtGroup is a set of protocol clients opened together.
type rtGroup struct {
	clients []*rtclient.Client
	ready   atomic.Int64 // connected and every subscription answered
	errs    atomic.Int64
	closed  atomic.Int64 // disconnects after opening
	closing atomic.Bool
	lat     latencies // dial to the last subscription's reply
	lastErr atomic.Value
}

// openRT opens n protocol clients on l at opt's rate, each subscribing to
// topics (onPub gets their publications, on l), and waits until all are
// ready or failed.
func openRT(l *loop.Loop, rawURL string, n int, topics []string, tokenFor func(int) string, opt OpenOptions,
	reconnect bool, onPub func(rtclient.Publication), bar ProgressBar) *rtGroup {
	return openRTWith(l, rawURL, n, topics, rtclient.Options{Reconnect: reconnect}, tokenFor, opt, onPub, bar)
}

// openRTWith is openRT with the clients' options (WebSocket and timeouts
// are set here; OnDisconnect is wrapped).
func openRTWith(l *loop.Loop, rawURL string, n int, topics []string, base rtclient.Options, tokenFor func(i int) string,
	opt OpenOptions, onPub func(rtclient.Publication), bar ProgressBar) *rtGroup {
	opt.defaults(n)
	g := &rtGroup{clients: make([]*rtclient.Client, 0, n)}
	start := time.Now()
	deadline := start.Add(opt.Timeout)
	var done atomic.Int64
	all := make(chan struct{})
	finish := func() {
		if done.Add(1) == int64(n) {
			close(all)
		}
		if bar != nil {
			bar.Set(done.Load(), 0, g.errs.Load())
		}
	}
	fail := func(err error) {
		g.errs.Add(1)
		g.lastErr.Store(err.Error())
	}
	for i := 0; i < n; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(opt.Rate))); wait > 0 {
			time.Sleep(wait)
		}
		t0 := time.Now()
		var once sync.Once
		left := len(topics)
		settle := func(err error) {
			once.Do(func() {
				if err != nil {
					fail(err)
				} else {
					g.ready.Add(1)
					g.lat.add(time.Since(t0))
				}
				finish()
			})
		}
		co := base
		co.Timeout = 30 * time.Second
		if co.MinBackoff == 0 {
			co.MinBackoff, co.MaxBackoff = 200*time.Millisecond, 5*time.Second
		}
		// No client pings: the load must not add traffic of its own to
		// what is measured; the server pings.
		co.WebSocket = loop.ClientOptions{LocalAddr: srcAddr(i, opt.Src, opt.SrcBase),
			HandshakeTimeout: 20 * time.Second, PingInterval: -1}
		co.OnDisconnect = func(c *rtclient.Client, d clientproto.Disconnect) {
			if !g.closing.Load() {
				g.closed.Add(1)
				g.lastErr.Store(fmt.Sprintf("disconnect %d %s", d.Code, d.Reason))
			}
			if base.OnDisconnect != nil {
				base.OnDisconnect(c, d)
			}
		}
		if tokenFor != nil {
			co.Token = tokenFor(i)
		}
		if len(topics) == 0 {
			// Ready once connected; a client that closes first failed.
			co.OnConnect = func(c *rtclient.Client, r clientproto.ConnectResult) {
				settle(nil)
				if base.OnConnect != nil {
					base.OnConnect(c, r)
				}
			}
			co.OnState = func(c *rtclient.Client, st rtclient.State) {
				if st == rtclient.Closed {
					settle(errors.New("closed before connecting"))
				}
				if base.OnState != nil {
					base.OnState(c, st)
				}
			}
			co.OnError = func(c *rtclient.Client, err error) {
				g.lastErr.Store(err.Error())
				if base.OnError != nil {
					base.OnError(c, err)
				}
			}
		}
		c, err := rtclient.Dial(l, rawURL, co)
		if err != nil {
			settle(err)
			continue
		}
		g.clients = append(g.clients, c)
		for _, t := range topics {
			c.Subscribe(t, pubsub.Position{}, onPub, func(_ rtclient.SubscribeResult, err error) {
				if err != nil {
					settle(fmt.Errorf("subscribe %s: %w", t, err))
					return
				}
				if left--; left == 0 {
					settle(nil)
				}
			})
		}
	}
	select {
	case <-all:
	case <-time.After(time.Until(deadline) + time.Second):
	}
	if bar != nil {
		bar.Done()
	}
	return g
}

func (g *rtGroup) closeAll() {
	g.closing.Store(true)
	for _, c := range g.clients {
		c.Close()
	}
}

// rtMaxConns is what one harness process holds at once (fd limit 20000).
const rtMaxConns = 15000

// rtRSS reads the server's RSS after a settling second; 0 unmeasured.
func rtRSS(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	time.Sleep(time.Second)
	return treeRSS(pid)
}

// RealtimeIdle is rt-idle: RSS per connection of N raw /ws clients, then
// of N protocol clients per entry of Subs, all held at once, in one run.
func RealtimeIdle(o RealtimeOptions) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if total := o.Conns * (1 + len(o.Subs)); total > rtMaxConns {
		return nil, fmt.Errorf("rt-idle: %d groups of %d = %d connections, over %d per process", 1+len(o.Subs), o.Conns, total, rtMaxConns)
	}
	if err := CheckPID(o.PID, o.URL+o.RawPath); err != nil {
		return nil, &InvalidError{"rt-idle", err.Error()}
	}
	p := orNoProgress(o.Progress)
	d := newLoopDriver()
	defer d.Stop()
	res := &Result{Scenario: "rt-idle", URL: o.URL + o.Path, Client: "rtclient-loop", Extra: map[string]any{}}
	var rss0 int64
	if o.PID > 0 {
		rss0 = settledRSS(func() int64 { return treeRSS(o.PID) })
		res.Extra["rss_before_bytes"] = rss0
	}
	m := startCPU(o.PID)
	raw := openConns(d, o.URL+o.RawPath, o.Conns, o.Open, func(int) handler { return handler{} }, p.Phase("raw /ws", int64(o.Conns)))
	defer raw.closeAll()
	rawLive := len(raw.live())
	var errs = raw.errs.Load()
	rss := rtRSS(o.PID)
	var rawPer float64
	if o.PID > 0 && rawLive > 0 {
		rawPer = float64(rss-rss0) / float64(rawLive)
		res.Extra["raw_rss_per_conn_bytes"] = rawPer
	}
	res.Extra["raw_conns"] = rawLive
	prev := rss
	live := rawLive
	var lat []time.Duration
	var checks []error
	for _, k := range o.Subs {
		topics := make([]string, k)
		for i := range topics {
			topics[i] = "clock:idle-" + strconv.Itoa(i)
		}
		g := openRT(d.l, o.URL+o.Path, o.Conns, topics, o.tokenFor, o.Open, false, nil,
			p.Phase(fmt.Sprintf("protocol, %d subscriptions", k), int64(o.Conns)))
		defer g.closeAll()
		ready := int(g.ready.Load())
		errs += g.errs.Load()
		live += ready
		lat = append(lat, g.lat.sorted()...)
		key := fmt.Sprintf("rt_%dsub", k)
		res.Extra[key+"_conns"] = ready
		if last, ok := g.lastErr.Load().(string); ok {
			res.Extra[key+"_last_error"] = last
		}
		checks = append(checks, tooMany(fmt.Sprintf("protocol clients (%d subscriptions)", k), g.errs.Load(), int64(o.Conns), ""))
		rss = rtRSS(o.PID)
		if o.PID > 0 && ready > 0 {
			per := float64(rss-prev) / float64(ready)
			res.Extra[key+"_rss_per_conn_bytes"] = per
			if rawPer > 0 {
				res.Extra[key+"_vs_raw"] = per / rawPer
			}
		}
		prev = rss
	}
	cpu := m.stop()
	res.Conns = live
	res.Errors = errs
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.finish(0, lat, cpu, 1)
	res.Pace = ""
	if o.PID > 0 {
		res.Extra["rss_after_bytes"] = rss
	}
	checks = append(checks, aliveCheck(o.PID), tooMany("raw connections", raw.errs.Load(), int64(o.Conns), ""))
	return res, invalidate(res, checks...)
}

// rtMarker starts every bench message, followed by "SEQ-UNIXNANO".
const rtMarker = "rtbench-"

// rtStamp reads the send time from a message holding rtMarker.
func rtStamp(data []byte) (time.Time, bool) {
	s := string(data)
	i := strings.Index(s, rtMarker)
	if i < 0 {
		return time.Time{}, false
	}
	s = s[i+len(rtMarker):]
	_, s, _ = strings.Cut(s, "-")
	j := 0
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	ns, err := strconv.ParseInt(s[:j], 10, 64)
	return time.Unix(0, ns), err == nil
}

// rtPhase is one group's push figures.
type rtPhase struct {
	Deliveries int64   `json:"deliveries"`
	Expected   int64   `json:"expected"`
	CPUPerUS   float64 `json:"server_cpu_per_delivery_us,omitempty"`
	Latency    string  `json:"latency"`
	Errors     int64   `json:"publish_errors"`
}

// rtPush sends M messages with send(seq, text) at rate, then waits until
// delivered reaches expected (or 10 s after the last send), measuring the
// server's CPU over that window.
func rtPush(o RealtimeOptions, bar ProgressBar, delivered *atomic.Int64, expected int64,
	send func(seq int, text string) error) (CPU, int64) {
	m := startCPU(o.PID)
	var errs int64
	start := time.Now()
	for i := 0; i < o.Messages; i++ {
		if wait := time.Until(start.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))); wait > 0 {
			time.Sleep(wait)
		}
		if err := send(i, fmt.Sprintf("%s%d-%d", rtMarker, i, time.Now().UnixNano())); err != nil {
			errs++
		}
		bar.Set(int64(i+1), delivered.Load(), errs)
	}
	for t0 := time.Now(); delivered.Load() < expected && time.Since(t0) < 10*time.Second; {
		time.Sleep(20 * time.Millisecond)
	}
	bar.Done()
	return m.stop(), errs
}

// RealtimePush is rt-push: CPU per delivery of the Hub's /ws fan-out and
// of the protocol's, to N clients each, in one run.
func RealtimePush(o RealtimeOptions) (*Result, error) {
	d, res, err := o.begin("rt-push", 1, true)
	if err != nil {
		return nil, err
	}
	defer d.Stop()
	p := orNoProgress(o.Progress)

	// Today's Hub: /ws clients, messages through GET /receive.
	var rawLat, rtLat latencies
	var rawN atomic.Int64
	raw := openConns(d, o.URL+o.RawPath, o.Conns, o.Open, func(int) handler {
		return handler{onMessage: func(_ conn, data []byte) {
			if ts, ok := rtStamp(data); ok {
				rawN.Add(1)
				rawLat.add(time.Since(ts))
			}
		}}
	}, p.Phase("raw /ws", int64(o.Conns)))
	rawLive := int64(len(raw.live()))
	httpBase := "http://" + strings.TrimPrefix(o.URL, "ws://")
	hc := &http.Client{Timeout: 10 * time.Second}
	rawCPU, rawErrs := rtPush(o, p.Phase("publish /receive", int64(o.Messages)), &rawN, rawLive*int64(o.Messages),
		func(_ int, text string) error {
			resp, err := hc.Get(httpBase + "/receive?msg=" + url.QueryEscape(text))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("/receive: %s", resp.Status)
			}
			return nil
		})
	raw.closeAll()
	rawPhase := rtPhase{Deliveries: rawN.Load(), Expected: rawLive * int64(o.Messages), Errors: rawErrs,
		Latency: summarize(rawLat.sorted()).String()}
	if rawCPU.Server != nil && rawPhase.Deliveries > 0 {
		rawPhase.CPUPerUS = *rawCPU.Server / float64(rawPhase.Deliveries) * 1e6
	}
	time.Sleep(time.Second)

	// The protocol: N subscribers, one publishing client.
	var rtN atomic.Int64
	g := openRT(d.l, o.URL+o.Path, o.Conns, []string{o.Topic}, o.tokenFor, o.Open, false, func(pb rtclient.Publication) {
		var text string
		if json.Unmarshal(pb.Data, &text) == nil {
			if ts, ok := rtStamp([]byte(text)); ok {
				rtN.Add(1)
				rtLat.add(time.Since(ts))
			}
		}
	}, p.Phase("protocol subscribers", int64(o.Conns)))
	defer g.closeAll()
	pubs := openRT(d.l, o.URL+o.Path, 1, nil, o.tokenFor, OpenOptions{}, false, nil, nil)
	defer pubs.closeAll()
	ready := g.ready.Load()
	var lastPubErr atomic.Value
	rtCPU, rtErrs := rtPush(o, p.Phase("publish (protocol)", int64(o.Messages)), &rtN, ready*int64(o.Messages),
		func(_ int, text string) error {
			if len(pubs.clients) == 0 {
				return errors.New("no publisher")
			}
			data, _ := json.Marshal(text)
			errc := make(chan error, 1)
			pubs.clients[0].Publish(o.Topic, data, func(_ pubsub.Position, err error) { errc <- err })
			err := <-errc
			if err != nil {
				lastPubErr.Store(err.Error())
			}
			return err
		})
	rtPhase := rtPhase{Deliveries: rtN.Load(), Expected: ready * int64(o.Messages), Errors: rtErrs,
		Latency: summarize(rtLat.sorted()).String()}
	if rtCPU.Server != nil && rtPhase.Deliveries > 0 {
		rtPhase.CPUPerUS = *rtCPU.Server / float64(rtPhase.Deliveries) * 1e6
	}
	res.Extra["raw"] = rawPhase
	res.Extra["rt"] = rtPhase
	if rawPhase.CPUPerUS > 0 && rtPhase.CPUPerUS > 0 {
		res.Extra["rt_vs_raw_cpu_per_delivery"] = rtPhase.CPUPerUS / rawPhase.CPUPerUS
	}
	if e, ok := lastPubErr.Load().(string); ok {
		res.Extra["last_publish_error"] = e
	}
	if e, ok := g.lastErr.Load().(string); ok {
		res.Extra["last_error"] = e
	}
	res.Conns = int(rawLive + ready)
	res.Errors = raw.errs.Load() + g.errs.Load() + rawErrs + rtErrs
	lat := rtLat.sorted()
	res.finish(rtPhase.Deliveries, lat, rtCPU, 1)
	res.Pace = ""
	return res, invalidate(res, aliveCheck(o.PID),
		tooMany("raw connections", raw.errs.Load(), int64(o.Conns), ""),
		tooMany("protocol clients", g.errs.Load(), int64(o.Conns), ""),
		tooMany("raw deliveries", rawPhase.Expected-rawPhase.Deliveries, rawPhase.Expected, ""),
		tooMany("protocol deliveries", rtPhase.Expected-rtPhase.Deliveries, rtPhase.Expected, ""))
}

// RealtimeStorm is rt-storm: N protocol clients subscribed to Topic (with
// history), the server's processes killed (Kill), and every client
// reconnecting with backoff and full jitter and resubscribing from its
// position. It reports the time until all are back, the server's peak CPU
// (100 ms samples), the publications (made during the storm) each client
// missed or got twice, how many resubscriptions said gone, and a canary
// client's ping latency over the storm.
func RealtimeStorm(o RealtimeOptions) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if o.Conns+2 > rtMaxConns {
		return nil, fmt.Errorf("rt-storm: %d connections, over %d per process", o.Conns, rtMaxConns)
	}
	if o.PID <= 0 && o.Kill == nil {
		return nil, errors.New("rt-storm: needs -pid (its child processes are killed) or a Kill function")
	}
	kill := o.Kill
	if kill == nil {
		kill = func() error {
			kids, ok := childrenOf(o.PID)
			if !ok || len(kids) == 0 {
				return fmt.Errorf("rt-storm: process %d has no child to kill (run the server with -procs)", o.PID)
			}
			for _, k := range kids {
				if err := syscall.Kill(k, syscall.SIGKILL); err != nil {
					return fmt.Errorf("rt-storm: kill %d: %w", k, err)
				}
			}
			return nil
		}
	}
	p := orNoProgress(o.Progress)
	d := newLoopDriver()
	defer d.Stop()
	res := &Result{Scenario: "rt-storm", URL: o.URL + o.Path, Client: "rtclient-loop", Extra: map[string]any{}}

	// Per client (on the loop only): the last position and the counts.
	type track struct {
		last pubsub.Position
		back bool // resubscribed since the kill
	}
	var gone, back, gaps, dups, got atomic.Int64
	var stormAt atomic.Int64 // unix ns of the kill; 0 before
	tracks := make(map[*rtclient.Client]*track)
	var mu sync.Mutex // tracks is filled from this goroutine, read on the loop
	trackOf := func(c *rtclient.Client) *track {
		mu.Lock()
		defer mu.Unlock()
		t := tracks[c]
		if t == nil {
			t = &track{}
			tracks[c] = t
		}
		return t
	}
	var g *rtGroup
	base := rtclient.Options{Reconnect: true, MinBackoff: 500 * time.Millisecond, MaxBackoff: 10 * time.Second}
	base.OnSubscribe = func(c *rtclient.Client, _ string, r rtclient.SubscribeResult, err error) {
		if err != nil || stormAt.Load() == 0 {
			return
		}
		t := trackOf(c)
		if r.Gone {
			gone.Add(1)
			t.last = r.Head
		}
		if !t.back {
			t.back = true
			back.Add(1)
		}
	}
	g = openRTWith(d.l, o.URL+o.Path, o.Conns, nil, base, o.tokenFor, o.Open, nil, p.Phase("connect", int64(o.Conns)))
	defer g.closeAll()
	subscribed := make(chan error, len(g.clients))
	for _, c := range g.clients {
		c := c
		t := trackOf(c)
		c.Subscribe(o.Topic, pubsub.Position{}, func(pb rtclient.Publication) {
			got.Add(1)
			if pb.Pos.Epoch == t.last.Epoch && t.last.Offset != 0 {
				switch {
				case pb.Pos.Offset <= t.last.Offset:
					dups.Add(1)
				case pb.Pos.Offset > t.last.Offset+1:
					gaps.Add(pb.Pos.Offset - t.last.Offset - 1)
				}
			}
			t.last = pb.Pos
		}, func(r rtclient.SubscribeResult, err error) {
			if err == nil && t.last == (pubsub.Position{}) {
				t.last = r.Head
			}
			subscribed <- err
		})
	}
	var subErrs int64
	for range g.clients {
		select {
		case err := <-subscribed:
			if err != nil {
				subErrs++
				g.lastErr.Store(err.Error())
			}
		case <-time.After(30 * time.Second):
			subErrs++
		}
	}
	n := int64(len(g.clients)) - subErrs

	// The canary: pings every 50 ms; the publisher: Messages at Rate.
	// The canary pings only while connected (it is on a killed process
	// too): its round trips are the server's responsiveness during the
	// storm, not its own reconnect.
	var side0 atomic.Pointer[rtclient.Client]
	var canaryUp atomic.Bool
	canaryUp.Store(true)
	side := openRTWith(d.l, o.URL+o.Path, 2, nil, rtclient.Options{Reconnect: true,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		OnState: func(c *rtclient.Client, s rtclient.State) {
			if c == side0.Load() {
				canaryUp.Store(s == rtclient.Connected)
			}
		}}, o.tokenFor, OpenOptions{}, nil, nil)
	defer side.closeAll()
	if len(side.clients) < 2 || side.ready.Load() < 2 {
		return res, invalidate(res, errors.New("canary and publisher did not connect"))
	}
	canary, pub := side.clients[0], side.clients[1]
	side0.Store(canary)
	var canaryLat latencies
	var canaryFail atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if !canaryUp.Load() {
				continue
			}
			t0 := time.Now()
			errc := make(chan error, 1)
			canary.Ping(func(err error) { errc <- err })
			if err := <-errc; err != nil {
				canaryFail.Add(1)
			} else if stormAt.Load() != 0 {
				canaryLat.add(time.Since(t0))
			}
		}
	}()
	var published, pubErrs atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		for i := 0; i < o.Messages; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Until(start.Add(time.Duration(float64(i) / o.Rate * float64(time.Second))))):
			}
			for stormAt.Load() == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			errc := make(chan error, 1)
			data, _ := json.Marshal(fmt.Sprintf("%s%d-%d", rtMarker, i, time.Now().UnixNano()))
			pub.Publish(o.Topic, data, func(_ pubsub.Position, err error) { errc <- err })
			if err := <-errc; err != nil {
				pubErrs.Add(1)
			} else {
				published.Add(1)
			}
		}
	}()

	// The storm, with the server's CPU sampled every 100 ms.
	m := startCPU(o.PID)
	t0 := time.Now()
	stormAt.Store(t0.UnixNano())
	if err := kill(); err != nil {
		close(stop)
		wg.Wait()
		return res, err
	}
	var peak float64
	prevT, prevAt := int64(0), time.Now()
	if o.PID > 0 {
		prevT, _ = treeCPU(o.PID)
	}
	bar := p.Phase("reconnect", n)
	var allBack time.Duration
	for time.Since(t0) < 60*time.Second {
		time.Sleep(100 * time.Millisecond)
		if o.PID > 0 {
			t, _ := treeCPU(o.PID)
			if dt := time.Since(prevAt).Seconds(); dt > 0 {
				peak = max(peak, float64(t-prevT)/100/dt*100)
			}
			prevT, prevAt = t, time.Now()
		}
		b := back.Load()
		bar.Set(min(b, n), 0, 0)
		if b >= n {
			allBack = time.Since(t0)
			break
		}
	}
	bar.Done()
	// Let the publisher finish, then the last deliveries arrive.
	for i := 0; i < 100 && published.Load()+pubErrs.Load() < int64(o.Messages); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	cpu := m.stop()
	res.Conns = int(n)
	res.Errors = subErrs + g.errs.Load()
	lat := canaryLat.sorted()
	res.finish(back.Load(), lat, cpu, 1)
	res.Pace = ""
	res.Extra["all_back_s"] = allBack.Seconds()
	res.Extra["back"] = back.Load()
	res.Extra["server_peak_cpu_pct"] = peak
	res.Extra["resubscribed_gone"] = gone.Load()
	res.Extra["published_during_storm"] = published.Load()
	res.Extra["publish_errors"] = pubErrs.Load()
	res.Extra["deliveries"] = got.Load()
	res.Extra["missed"] = gaps.Load()
	res.Extra["repeated"] = dups.Load()
	res.Extra["canary"] = summarize(lat).String()
	res.Extra["canary_ping_failures"] = canaryFail.Load()
	if e, ok := g.lastErr.Load().(string); ok {
		res.Extra["last_error"] = e
	}
	var notBack error
	if allBack == 0 {
		notBack = fmt.Errorf("only %d of %d clients back after 60 s", back.Load(), n)
	}
	return res, invalidate(res, notBack, tooMany("protocol clients", subErrs+g.errs.Load(), int64(o.Conns), ""))
}

// rtCanary is a protocol client pinging every 50 ms while connected, from
// a goroutine of its own; stop ends it and returns the round trips.
type rtCanary struct {
	c    *rtclient.Client
	up   atomic.Bool
	lat  latencies
	fail atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func startRTCanary(l *loop.Loop, url, token string) (*rtCanary, error) {
	k := &rtCanary{stop: make(chan struct{}), done: make(chan struct{})}
	connected := make(chan error, 1)
	var last atomic.Value // the last disconnect or error, for a canary that never connects
	c, err := rtclient.Dial(l, url, rtclient.Options{Token: token, Reconnect: true,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		WebSocket: loop.ClientOptions{PingInterval: -1},
		OnDisconnect: func(_ *rtclient.Client, d clientproto.Disconnect) {
			last.Store(fmt.Sprintf("disconnected %d %s", d.Code, d.Reason))
		},
		OnError: func(_ *rtclient.Client, err error) { last.Store(err.Error()) },
		OnState: func(_ *rtclient.Client, s rtclient.State) {
			k.up.Store(s == rtclient.Connected)
			var err error
			switch s {
			case rtclient.Connected:
			case rtclient.Closed:
				err = fmt.Errorf("canary: closed (%v)", last.Load())
			default:
				return
			}
			select {
			case connected <- err:
			default:
			}
		}})
	if err != nil {
		return nil, err
	}
	k.c = c
	select {
	case err := <-connected:
		if err != nil {
			return nil, err
		}
	case <-time.After(10 * time.Second):
		c.Close()
		return nil, fmt.Errorf("canary: not connected after 10 s (%v)", last.Load())
	}
	go func() {
		defer close(k.done)
		for {
			select {
			case <-k.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if !k.up.Load() {
				continue
			}
			t0 := time.Now()
			errc := make(chan error, 1)
			c.Ping(func(err error) { errc <- err })
			if err := <-errc; err != nil {
				k.fail.Add(1)
			} else {
				k.lat.add(time.Since(t0))
			}
		}
	}()
	return k, nil
}

func (k *rtCanary) finish() Percentiles {
	close(k.stop)
	<-k.done
	k.c.Close()
	return summarize(k.lat.sorted())
}

// report puts the canary's round trips p (finish's) and its failed pings
// in res, p judged against RealtimeCanaryBudget.
func (k *rtCanary) report(res *Result, p Percentiles) {
	res.Extra["canary"] = p.String()
	res.Extra["canary_max_ms"] = ms(p.Max)
	res.Extra["canary_ok"] = p.Max <= RealtimeCanaryBudget
	res.Extra["canary_ping_failures"] = k.fail.Load()
}

// RealtimeCanaryBudget is the worst canary round trip rt-connect accepts.
const RealtimeCanaryBudget = 250 * time.Millisecond

// RealtimeConnect is rt-connect: N protocol clients connect at Open.Rate
// (each with its own HS256 token when TokenSecret is set: the server
// checks a JWT per connect, off its loop) beside a canary pinging every
// 50 ms; it reports connects per second, the server's CPU per connect,
// connect latency (dial to connect's reply) and the canary's round trips
// against RealtimeCanaryBudget.
func RealtimeConnect(o RealtimeOptions) (*Result, error) {
	d, res, err := o.begin("rt-connect", 1, false)
	if err != nil {
		return nil, err
	}
	defer d.Stop()
	p := orNoProgress(o.Progress)
	k, err := startRTCanary(d.l, o.URL+o.Path, o.tokenFor(o.Conns))
	if err != nil {
		return res, invalidate(res, err)
	}
	m := startCPU(o.PID)
	g := openRTWith(d.l, o.URL+o.Path, o.Conns, nil, rtclient.Options{}, o.tokenFor, o.Open, nil, p.Phase("connect", int64(o.Conns)))
	cpu := m.stop()
	time.Sleep(200 * time.Millisecond)
	canary := k.finish()
	g.closeAll()
	res.Conns = int(g.ready.Load())
	res.Errors = g.errs.Load()
	res.finish(g.ready.Load(), g.lat.sorted(), cpu, 1)
	res.Pace = ""
	alg := "none"
	if o.TokenSecret != "" {
		alg = "HS256"
	} else if o.TokenKey != nil {
		alg = tokenMethod(o.TokenKey).Alg()
	} else if o.Token != "" {
		alg = "one shared token"
	}
	res.Extra["tokens"] = alg
	k.report(res, canary)
	if e, ok := g.lastErr.Load().(string); ok {
		res.Extra["last_error"] = e
	}
	return res, invalidate(res, aliveCheck(o.PID), tooMany("connects", g.errs.Load(), int64(o.Conns), ""))
}

// tokenMethod is the JWT algorithm of a private key's type.
func tokenMethod(k crypto.Signer) jwt.SigningMethod {
	switch k.(type) {
	case *rsa.PrivateKey:
		return jwt.SigningMethodRS256
	case ed25519.PrivateKey:
		return jwt.SigningMethodEdDSA
	}
	return jwt.SigningMethodES256
}

// Goroutine-safe.
// ParseTokenKey reads a PEM private key ("PRIVATE KEY" PKCS #8, "EC
// PRIVATE KEY" or "RSA PRIVATE KEY") for RealtimeOptions.TokenKey: ECDSA
// P-256 (ES256), RSA (RS256) or Ed25519 (EdDSA).
func ParseTokenKey(pemData []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(pemData)
	if b == nil {
		return nil, errors.New("token key: no PEM block")
	}
	var k any
	var err error
	switch b.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("token key: ECDSA keys must be P-256 (ES256)")
		}
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("token key: %T is not ECDSA, RSA or Ed25519", k)
}
