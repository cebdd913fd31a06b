package bench

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// BroadcastOptions configures the broadcast scenario.
type BroadcastOptions struct {
	// URL is the WebSocket route whose clients receive broadcasts (Tornago's
	// /ws); Trigger is the HTTP URL that fans out its msg argument to them
	// (default: same host, /receive).
	URL, Trigger string
	Conns        int           // N, default 1000
	Duration     time.Duration // default 10s
	// Window is how many broadcasts may be in flight (sent, not yet
	// delivered to all). Default 4.
	Window   int
	PID      int
	Open     OpenOptions
	Spread   SpreadOptions
	Progress Progress
}

// maxBroadcasts bounds the broadcasts of one run (ids are array indexes).
const maxBroadcasts = 1 << 20

// broadcastPart is one process's share of a broadcast run.
type broadcastPart struct {
	Ops    int64     `json:"ops"`    // deliveries while measuring, duplicates included
	Counts []int32   `json:"counts"` // clients that got broadcast i (once each)
	Last   []int64   `json:"last"`   // ns from broadcast i's send to its last delivery here
	Dups   int64     `json:"dups"`
	Bad    int64     `json:"bad"`
	Live   int       `json:"live"`
	Lat    latSet    `json:"lat"`
	Conn   connStats `json:"conn"`
}

// Broadcast connects N clients, then triggers fan-outs itself through
// GET Trigger?msg=b<id>_<unixnano> and measures delivered messages/s, the
// delivery latency, each broadcast's time to its last delivery, and the
// deliveries missed or duplicated, counted per client over every process.
func Broadcast(o BroadcastOptions) (*Result, error) {
	if o.Conns <= 0 {
		o.Conns = 1000
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 4
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("broadcast: %w", err)
	}
	if o.Trigger == "" {
		o.Trigger = "http://" + u.Host + "/receive"
	}
	if err := CheckPID(o.PID, o.URL); err != nil {
		return nil, &InvalidError{"broadcast", err.Error()}
	}
	p := orNoProgress(o.Progress)
	// A broadcast leaves the window when every process holding clients
	// has delivered it to all of them.
	sem := make(chan struct{}, o.Window)
	doneBy := make([]atomic.Int32, maxBroadcasts)
	released := make([]atomic.Bool, maxBroadcasts)
	var holders atomic.Int32
	holders.Store(1 << 30) // no release before the sides are counted
	onDone := func(e event) {
		id := e.A
		if e.Kind != "done" || id < 0 || id >= maxBroadcasts {
			return
		}
		if doneBy[id].Add(1) >= holders.Load() && released[id].CompareAndSwap(false, true) {
			<-sem
		}
	}
	spec := childSpec{Scenario: "broadcast", URL: o.URL, Conns: o.Conns, Open: o.Open, Client: ClientKind}
	ss, err := openSides(spec, o.Spread, onDone, p.Phase("connect", int64(o.Conns)))
	if err != nil {
		return nil, err
	}
	defer closeSides(ss)
	info := mergeOpen(ss)
	n := int32(0)
	for _, s := range ss {
		n += int32(btoi(s.info.Opened > 0))
	}
	holders.Store(n)
	res := &Result{Scenario: "broadcast", URL: o.URL, Client: clientName(len(ss)), Conns: info.Opened}
	if err := invalidate(res, info.check()); err != nil {
		res.Errors = info.Errors
		return res, err
	}
	time.Sleep(200 * time.Millisecond)
	hc := &http.Client{Timeout: 10 * time.Second}
	var triggerErrs, stalls int64
	var lastTrigger string
	sent := 0
	m := startCPU(o.PID, childPIDs(ss)...)
	if err := startSides(ss, time.Now().UnixNano()); err != nil {
		return res, err
	}
	bar := p.Timed("broadcast", o.Duration)
	t0 := time.Now()
	for ; time.Since(t0) < o.Duration && sent < maxBroadcasts; sent++ {
		select {
		case sem <- struct{}{}:
		case <-time.After(5 * time.Second):
			stalls++ // a broadcast never reached everyone; do not wait forever
		}
		msg := fmt.Sprintf("b%d_%d", sent, time.Now().UnixNano())
		resp, err := hc.Get(o.Trigger + "?msg=" + msg)
		if err != nil {
			triggerErrs++
			lastTrigger = err.Error()
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			triggerErrs++
			lastTrigger = o.Trigger + ": " + resp.Status
		}
		if sent%16 == 0 {
			bar.Set(int64(time.Since(t0)/time.Millisecond), localOps(ss), triggerErrs+stalls)
		}
	}
	// Wait for the broadcasts in flight to reach everyone (each releases
	// its place in the window), so that the last ones are not counted
	// missed and a run of one broadcast (-d 1ms) measures it whole.
	for range o.Window {
		select {
		case sem <- struct{}{}:
		case <-time.After(30 * time.Second):
			stalls++
		}
	}
	err = stopSides(ss, time.Now().UnixNano())
	cpu := m.stop()
	bar.Done()
	if err != nil {
		return res, err
	}
	parts, err := collectSides[broadcastPart](ss)
	if err != nil {
		return res, err
	}
	var ops, dups, bad int64
	var lats []latSet
	var cs []connStats
	live := 0
	got := make([]int64, sent)
	last := make([]time.Duration, sent)
	for _, pt := range parts {
		ops += pt.Ops
		dups += pt.Dups
		bad += pt.Bad
		live += pt.Live
		lats = append(lats, pt.Lat)
		cs = append(cs, pt.Conn)
		for i := 0; i < sent && i < len(pt.Counts); i++ {
			got[i] += int64(pt.Counts[i])
			last[i] = max(last[i], time.Duration(pt.Last[i]))
		}
	}
	var missed int64
	var lastDone []time.Duration
	for i := range sent {
		missed += int64(live) - got[i]
		if last[i] > 0 {
			lastDone = append(lastDone, last[i])
		}
	}
	ld := summarize(sortDur(lastDone))
	st := sumStats(cs)
	res.Errors = st.Errors + st.Closed + bad + triggerErrs
	res.finishSet(ops, mergeLat(lats...), cpu, spreadCores(len(ss)))
	res.Extra = map[string]any{"broadcasts": sent, "missed": missed, "duplicated": dups, "stalled_windows": stalls,
		"window": o.Window, "connect": info.Connect.summary().String(),
		"last_delivery": ld.String(), "last_delivery_p50_ms": ms(ld.P50), "last_delivery_p99_ms": ms(ld.P99)}
	var none error
	if ops == 0 {
		none = fmt.Errorf("no broadcast delivered%s", lastErr(lastTrigger+st.LastError))
	}
	return res, invalidate(res, aliveCheck(o.PID), none,
		tooMany("triggers ("+o.Trigger+")", triggerErrs, int64(sent), lastTrigger),
		tooMany("connections (closed during the run)", st.Closed, int64(res.Conns), st.LastError),
		tooMany("deliveries (missed)", missed, int64(sent)*int64(live), st.LastError))
}

// broadcastWorker holds one process's broadcast clients.
type broadcastWorker struct {
	d         driver
	op        *opened
	live      atomic.Int32   // set once opened; read on the client's goroutine
	counts    []atomic.Int32 // distinct clients per broadcast
	last      []atomic.Int64 // latest delivery latency per broadcast, ns
	top       atomic.Int64   // highest broadcast id seen
	delivered atomic.Int64   // every delivery (the ops)
	distinct  atomic.Int64
	dups, bad atomic.Int64
	lat       latencies
	final     int64
	conns     []*bcastConn
	welcomed  atomic.Int64
	emit      func(event)
}

// bcastConn is one client's received broadcasts, a bit per id.
type bcastConn struct {
	mu  sync.Mutex
	got []uint64
}

// first records id and reports whether it is the first time.
func (c *bcastConn) first(id int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := id / 64
	for len(c.got) <= w {
		c.got = append(c.got, 0)
	}
	bit := uint64(1) << (id % 64)
	if c.got[w]&bit != 0 {
		return false
	}
	c.got[w] |= bit
	return true
}

func newBroadcastWorker(spec childSpec, emit func(event), bar ProgressBar) (*broadcastWorker, openInfo) {
	w := &broadcastWorker{d: newDriver(), emit: emit, counts: make([]atomic.Int32, maxBroadcasts),
		last: make([]atomic.Int64, maxBroadcasts), conns: make([]*bcastConn, spec.Conns)}
	w.top.Store(-1)
	for i := range w.conns {
		w.conns[i] = &bcastConn{}
	}
	w.op = openConns(w.d, spec.URL, spec.Conns, spec.Open, func(i int) handler {
		st := w.conns[i]
		return handler{onMessage: func(c conn, data []byte) {
			now := time.Now().UnixNano()
			i := bytes.Index(data, []byte("b"))
			j := bytes.IndexByte(data, '_')
			if i < 0 || j < i {
				w.welcomed.Add(1) // "Welcome" or other greeting
				return
			}
			id, e1 := strconv.Atoi(string(data[i+1 : j]))
			ts, e2 := strconv.ParseInt(string(data[j+1:]), 10, 64)
			if e1 != nil || e2 != nil || id < 0 || id >= maxBroadcasts {
				w.bad.Add(1)
				return
			}
			l := now - ts
			w.lat.add(time.Duration(l))
			w.delivered.Add(1)
			for m := w.top.Load(); int64(id) > m && !w.top.CompareAndSwap(m, int64(id)); m = w.top.Load() {
			}
			for m := w.last[id].Load(); l > m && !w.last[id].CompareAndSwap(m, l); m = w.last[id].Load() {
			}
			if !st.first(id) {
				w.dups.Add(1)
				return
			}
			w.distinct.Add(1)
			if w.counts[id].Add(1) == w.live.Load() {
				w.emit(event{Kind: "done", A: int64(id)})
			}
		}}
	}, bar)
	w.live.Store(int32(len(w.op.live())))
	return w, infoOf(spec.Conns, w.op)
}

func (w *broadcastWorker) start(int64) { w.delivered.Store(0) }

func (w *broadcastWorker) stop(int64) { w.final = w.delivered.Load() }

func (w *broadcastWorker) progress() int64 { return w.delivered.Load() }

func (w *broadcastWorker) result() any {
	settle(w.distinct.Load)
	n := int(w.top.Load()) + 1
	pt := broadcastPart{Ops: w.final, Counts: make([]int32, n), Last: make([]int64, n), Dups: w.dups.Load(),
		Bad: w.bad.Load(), Live: int(w.live.Load()), Lat: rawSet(w.lat.sorted()), Conn: statsOf(w.op)}
	for i := range n {
		pt.Counts[i], pt.Last[i] = w.counts[i].Load(), w.last[i].Load()
	}
	return pt
}

func (w *broadcastWorker) close() {
	w.op.closeAll()
	w.d.Stop()
}
