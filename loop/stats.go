package loop

import (
	"sync"
	"sync/atomic"
	"time"
)

// The loop's counters for Metrics. Each is written by the loop goroutine
// alone, with a plain read and an atomic store (a MOV on amd64, no locked
// instruction), and read by Metrics with atomic loads: the hot path takes
// no lock and an embedder who never calls Metrics pays a few stores per
// event. Nothing here allocates on the loop.

// bump adds n to a counter only the loop goroutine writes. Loop-only.
func bump(p *int64, n int64) { atomic.StoreInt64(p, *p+n) }

// loopStats are the loop-wide counters (Loop.st).
type loopStats struct {
	refusedMax       int64 // accepts refused at MaxConns
	refusedStopping  int64 // accepts refused while stopping
	openWS           int64 // WebSockets open (server and dialed)
	pendingAsync     int64 // asynchronous requests dispatched and not finished (long polls)
	openEventStreams int64 // event streams open (eventstream.go)
	status           [len(httpCodes) + 1]int64
	closeSent        [closeCodeSlots]int64
	closeRecv        [closeCodeSlots]int64
	lag              histogram // enqueue → run of a callback batch's oldest callback
	batch            histogram // the run of one callback batch
	queueSince       int64     // loop clock of the oldest queued callback; under Loop.mu
}

// httpCodes are the HTTP statuses counted one by one; the rest count as
// "other" (Code 0), so the label set stays bounded whatever handlers set.
var httpCodes = [...]int{100, 101, 200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308,
	400, 401, 403, 404, 405, 408, 409, 410, 411, 413, 414, 415, 416, 417, 426, 429, 431,
	500, 501, 502, 503, 504, 505}

// httpIndex maps a status to its slot in loopStats.status (len(httpCodes)
// for other).
var httpIndex = func() (t [600]uint8) {
	for i := range t {
		t[i] = uint8(len(httpCodes))
	}
	for i, c := range httpCodes {
		t[c] = uint8(i)
	}
	return t
}()

func statusIndex(code int) int {
	if code >= 0 && code < len(httpIndex) {
		return int(httpIndex[code])
	}
	return len(httpCodes)
}

func (s *loopStats) countStatus(code int) { bump(&s.status[statusIndex(code)], 1) }

// Close codes 1000..1015 are counted one by one, others (the application
// range 3000-4999, invalid ones) as other.
const closeCodeSlots = 17

func closeIndex(code StatusCode) int {
	if code == 0 {
		code = CloseNoStatus // a close frame without a code
	}
	if code >= 1000 && code <= 1015 {
		return int(code - 1000)
	}
	return closeCodeSlots - 1
}

// histBounds are the upper bounds of the loop's histogram buckets; a last
// bucket holds what is above them.
var histBounds = [...]time.Duration{
	10 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 500 * time.Millisecond, time.Second, 5 * time.Second,
}

// histogram is a fixed-bucket histogram of durations written by the loop.
type histogram struct {
	counts [len(histBounds) + 1]int64
	sum    int64 // nanoseconds
}

func (h *histogram) observe(d int64) {
	i := 0
	for i < len(histBounds) && d > int64(histBounds[i]) {
		i++
	}
	bump(&h.counts[i], 1)
	bump(&h.sum, d)
}

func (h *histogram) snapshot() Histogram {
	s := Histogram{Bounds: histBounds[:], Counts: make([]int64, len(h.counts))}
	for i := range h.counts {
		s.Counts[i] = atomic.LoadInt64(&h.counts[i])
	}
	s.Sum = time.Duration(atomic.LoadInt64(&h.sum))
	return s
}

// routeStats are one WebSocket route's counters (wsRoute.st). A route's
// Application serves one loop, so the loop alone writes them; dialed
// WebSockets have none.
type routeStats struct {
	pattern  string
	accepted int64
	rejected [len(httpCodes) + 1]int64
	msgsIn   int64
	msgsOut  int64
	bytesIn  int64
	bytesOut int64
}

// routeList holds an Application's route counters for Metrics: appended
// by HandleWebSocket (before Start or on the loop), read by Metrics from
// any goroutine.
type routeList struct {
	mu   sync.Mutex
	list []*routeStats
}

func (rl *routeList) add(pattern string) *routeStats {
	st := &routeStats{pattern: pattern}
	rl.mu.Lock()
	rl.list = append(rl.list, st)
	rl.mu.Unlock()
	return st
}

// Hooks called from the read, write, close and upgrade paths. Loop-only.

func (w *WebSocket) countIn(n int) {
	if st := w.route().st; st != nil {
		bump(&st.msgsIn, 1)
		bump(&st.bytesIn, int64(n))
	}
}

func (w *WebSocket) countOut(n int) {
	if st := w.route().st; st != nil {
		bump(&st.msgsOut, 1)
		bump(&st.bytesOut, int64(n))
	}
}

// countRejected counts a refused upgrade by the status sent (its
// response is counted by appendResponse).
func (wr *wsRoute) countRejected(status int) {
	if wr.st != nil {
		bump(&wr.st.rejected[statusIndex(status)], 1)
	}
}

// countUpgraded counts an accepted upgrade and its 101 (which does not go
// through Request.appendResponse).
func (wr *wsRoute) countUpgraded(l *Loop) {
	if wr.st != nil {
		bump(&wr.st.accepted, 1)
	}
	l.st.countStatus(101)
}

// Metrics is a snapshot of a loop's counters and gauges, for monitoring
// (the Prometheus collector in loop/metrics exports it). Counters count
// since New; gauges are as of the call.
type Metrics struct {
	// SlowConsumerCloses counts the WebSockets closed for unsent output
	// over their bound (SlowClose).
	SlowConsumerCloses int64
	// StreamSlowConsumerCloses counts the streamed HTTP responses (event
	// streams, Request.Flush bodies) closed for unsent output over their
	// bound.
	StreamSlowConsumerCloses int64
	// SlowConsumerSkips counts the messages dropped for a lagging client
	// (SlowSkip).
	SlowConsumerSkips int64
	// AcceptsRefused counts the connections answered 503 and closed:
	// Options.MaxConns reached, or the loop stopping.
	AcceptsRefused int64
	// OpenConns is the connections open now (served and dialed).
	OpenConns int64
	// UnsentBytes is the output written but not taken by the sockets yet,
	// loop-wide (what Options.MaxUnsentTotal bounds), as of the loop's last
	// look (every 5 ms while there is any).
	UnsentBytes int64
	// HeldInputBytes is the input HTTP connections hold behind a request
	// in flight (pipelined behind a long poll or a stream), loop-wide:
	// what Options.MaxHeldInputTotal bounds.
	HeldInputBytes int64
	// HeldInputCloses counts the HTTP connections closed for input held
	// behind a request in flight over AppOptions.MaxHeldInputPerConn or
	// Options.MaxHeldInputTotal.
	HeldInputCloses int64

	// OpenWebSockets is the WebSockets open now (served and dialed); the
	// other OpenConns speak HTTP (or are handshaking).
	OpenWebSockets int64
	// PendingAsync is the asynchronous requests (Request.Async: long
	// polls, streamed responses and event streams) whose handler returned
	// and that are not finished yet; each holds one HTTP connection.
	PendingAsync int64
	// OpenEventStreams is the event streams (Request.EventStream) open
	// now; each is also counted in PendingAsync.
	OpenEventStreams int64
	// RefusedMaxConns and RefusedStopping split AcceptsRefused by cause:
	// Options.MaxConns reached, or the loop stopping.
	RefusedMaxConns int64
	RefusedStopping int64
	// HTTPResponses counts the responses written, by status (101 for each
	// accepted WebSocket upgrade, Code 0 for statuses outside a fixed set
	// of common ones). Only non-zero entries are listed.
	HTTPResponses []CodeCount
	// ClosesSent and ClosesReceived count WebSocket close frames by code
	// (1005 for a close frame without one, Code 0 for codes outside
	// 1000-1015). Only non-zero entries are listed.
	ClosesSent     []CodeCount
	ClosesReceived []CodeCount
	// Routes has one entry per WebSocket route of the loop's
	// Applications, in the order they were added.
	Routes []RouteMetrics
	// CallbackLag is the delay between the enqueue of the oldest
	// callback of each batch AddCallback queued and the start of the
	// batch's run: how far behind the loop is.
	CallbackLag Histogram
	// CallbackBatch is the time one batch of queued callbacks took to run.
	CallbackBatch Histogram
	// CallbacksQueued is the callbacks waiting to run (AddCallback and the
	// writes of other goroutines).
	CallbacksQueued int
	// TimeoutsPending is the pending CallLater/CallAt entries (and the
	// loop's own, such as the timing wheel's tick).
	TimeoutsPending int
	// ExecutorQueued is the RunInExecutor work waiting for a worker.
	ExecutorQueued int
	// BlockedStalls counts the stalls the watchdog reported
	// (Options.BlockThreshold); 0 when it is off.
	BlockedStalls int64
}

// CodeCount is a count for one status or close code; Code 0 stands for
// every code outside the set counted one by one.
type CodeCount struct {
	Code  int
	Count int64
}

// RouteMetrics are one WebSocket route's counters. Messages and bytes are
// data messages (text and binary) and their payload bytes (as the
// application sees them: inflated, before compression).
type RouteMetrics struct {
	Pattern          string // the pattern given to HandleWebSocket
	UpgradesAccepted int64
	UpgradesRejected []CodeCount // by the status sent (403, 426, what newHandler set, ...); non-zero only
	MessagesIn       int64
	MessagesOut      int64 // written, or buffered for writing (not refused as a slow consumer's)
	BytesIn          int64
	BytesOut         int64
}

// Histogram is a fixed-bucket histogram of durations. Counts[i] counts
// the observations in (Bounds[i-1], Bounds[i]]; the last entry of Counts
// (one more than Bounds) counts those above the last bound.
type Histogram struct {
	Bounds []time.Duration
	Counts []int64
	Sum    time.Duration
}

// Goroutine-safe. Count is the number of observations.
func (h Histogram) Count() int64 {
	var n int64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

func codeCounts(codes []int, counts []int64) []CodeCount {
	var out []CodeCount
	for i := range counts {
		if n := atomic.LoadInt64(&counts[i]); n > 0 {
			code := 0
			if i < len(codes) {
				code = codes[i]
			}
			out = append(out, CodeCount{Code: code, Count: n})
		}
	}
	return out
}

var closeCodes = func() (c [closeCodeSlots - 1]int) {
	for i := range c {
		c[i] = 1000 + i
	}
	return c
}()

// Goroutine-safe. Metrics returns a snapshot of the loop's counters: it
// takes the callback queue's and the timers' locks
// briefly, never waits for the loop (it answers while the loop is blocked),
// and allocates.
func (l *Loop) Metrics() Metrics {
	s := &l.st
	m := Metrics{
		SlowConsumerCloses:       l.slowCloses.Load(),
		StreamSlowConsumerCloses: l.streamSlow.Load(),
		SlowConsumerSkips:        l.slowSkips.Load(),
		AcceptsRefused:           l.refused.Load(),
		OpenConns:                l.openConns.Load(),
		UnsentBytes:              l.unsentPub.Load(),
		HeldInputBytes:           l.heldPub.Load(),
		HeldInputCloses:          l.heldCloses.Load(),
		OpenWebSockets:           atomic.LoadInt64(&s.openWS),
		PendingAsync:             atomic.LoadInt64(&s.pendingAsync),
		OpenEventStreams:         atomic.LoadInt64(&s.openEventStreams),
		RefusedMaxConns:          atomic.LoadInt64(&s.refusedMax),
		RefusedStopping:          atomic.LoadInt64(&s.refusedStopping),
		HTTPResponses:            codeCounts(httpCodes[:], s.status[:]),
		ClosesSent:               codeCounts(closeCodes[:], s.closeSent[:]),
		ClosesReceived:           codeCounts(closeCodes[:], s.closeRecv[:]),
		CallbackLag:              s.lag.snapshot(),
		CallbackBatch:            s.batch.snapshot(),
		TimeoutsPending:          l.pendingTimeouts(),
		ExecutorQueued:           len(l.exec.jobs),
	}
	if l.wd != nil {
		m.BlockedStalls = l.wd.stalls.Load()
	}
	l.mu.Lock()
	m.CallbacksQueued = len(l.queue)
	lns := l.listeners // under mu: Listen appends to it before Start
	l.mu.Unlock()
	for i, ln := range lns {
		app := ln.app
		if seenApp(lns[:i], app) {
			continue
		}
		app.wsStats.mu.Lock()
		for _, st := range app.wsStats.list {
			m.Routes = append(m.Routes, RouteMetrics{
				Pattern:          st.pattern,
				UpgradesAccepted: atomic.LoadInt64(&st.accepted),
				UpgradesRejected: codeCounts(httpCodes[:], st.rejected[:]),
				MessagesIn:       atomic.LoadInt64(&st.msgsIn),
				MessagesOut:      atomic.LoadInt64(&st.msgsOut),
				BytesIn:          atomic.LoadInt64(&st.bytesIn),
				BytesOut:         atomic.LoadInt64(&st.bytesOut),
			})
		}
		app.wsStats.mu.Unlock()
	}
	return m
}

// seenApp reports whether app serves one of lns (two listeners may share
// an Application).
func seenApp(lns []listener, app *Application) bool {
	for _, ln := range lns {
		if ln.app == app {
			return true
		}
	}
	return false
}

// asyncPending counts r, an asynchronous request whose handler returned
// unfinished (a long poll). Loop-only.
func (s *loopStats) asyncPending(r *Request) {
	r.pending = true
	bump(&s.pendingAsync, 1)
}

// asyncDone uncounts r once it finished or its client left. Loop-only.
func (s *loopStats) asyncDone(r *Request) {
	if r.pending {
		r.pending = false
		bump(&s.pendingAsync, -1)
	}
}
