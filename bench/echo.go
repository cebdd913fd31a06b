package bench

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
)

// EchoOptions configures the echo scenario.
type EchoOptions struct {
	URL      string        // an echo route, e.g. ws://127.0.0.1:8888/echo
	Conns    int           // C connections, default 1000
	Size     int           // S bytes per message, default 64 (at least 8)
	Duration time.Duration // D, default 10s
	PID      int           // server PID for CPU, 0 = not measured
	Open     OpenOptions
	Spread   SpreadOptions
	Progress Progress
}

// echoPart is one process's share of an echo run.
type echoPart struct {
	Count int64     `json:"count"` // echoes during the measured phase
	Bad   int64     `json:"bad"`   // wrong size or unsent
	Lat   latSet    `json:"lat"`
	Conn  connStats `json:"conn"`
}

// Echo runs C connections each doing request/response with S-byte binary
// messages for D seconds: messages/s, latency percentiles, errors, and the
// server's CPU per echoed message.
func Echo(o EchoOptions) (*Result, error) {
	if o.Conns <= 0 {
		o.Conns = 1000
	}
	if o.Size < 8 {
		o.Size = 64
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if err := CheckPID(o.PID, o.URL); err != nil {
		return nil, &InvalidError{"echo", err.Error()}
	}
	p := orNoProgress(o.Progress)
	spec := childSpec{Scenario: "echo", URL: o.URL, Conns: o.Conns, Open: o.Open, Client: ClientKind, Size: o.Size}
	ss, err := openSides(spec, o.Spread, func(event) {}, p.Phase("connect", int64(o.Conns)))
	if err != nil {
		return nil, err
	}
	defer closeSides(ss)
	info := mergeOpen(ss)
	res := &Result{Scenario: "echo", URL: o.URL, Client: clientName(len(ss)), Conns: info.Opened}
	if err := invalidate(res, info.check()); err != nil {
		res.Errors = info.Errors
		return res, err
	}
	m := startCPU(o.PID, childPIDs(ss)...)
	if err := startSides(ss, time.Now().UnixNano()); err != nil {
		return res, err
	}
	bar := p.Timed("echo", o.Duration)
	for t0 := time.Now(); time.Since(t0) < o.Duration; time.Sleep(100 * time.Millisecond) {
		bar.Set(int64(time.Since(t0)/time.Millisecond), localOps(ss), 0)
	}
	err = stopSides(ss, time.Now().UnixNano())
	cpu := m.stop()
	bar.Done()
	if err != nil {
		return res, err
	}
	parts, err := collectSides[echoPart](ss)
	if err != nil {
		return res, err
	}
	var n, bad int64
	var lats []latSet
	var cs []connStats
	for _, pt := range parts {
		n += pt.Count
		bad += pt.Bad
		lats = append(lats, pt.Lat)
		cs = append(cs, pt.Conn)
	}
	st := sumStats(cs)
	lat := mergeLat(lats...)
	res.Errors = st.Errors + bad + st.Closed
	res.finishSet(n, lat, cpu, spreadCores(len(ss)))
	res.Extra = map[string]any{"size_bytes": o.Size, "connect": info.Connect.summary().String()}
	if st.LastError != "" {
		res.Extra["last_error"] = st.LastError
	}
	var none error
	if n == 0 {
		none = fmt.Errorf("no message echoed%s", lastErr(st.LastError))
	}
	return res, invalidate(res, aliveCheck(o.PID), none,
		tooMany("connections (closed during the run)", st.Closed, int64(res.Conns), st.LastError),
		tooMany("messages (bad or unsent echoes)", bad, n+bad, st.LastError))
}

// echoWorker holds one process's echo connections.
type echoWorker struct {
	d              driver
	op             *opened
	size           int
	running        atomic.Bool
	count, badEcho atomic.Int64
	lat            latencies
	final          int64 // count when stopped
}

// send stamps buf and sends it. Send copies (or writes) p before it
// returns, so each connection reuses one buffer for its echoes: no
// allocation per message on the harness side either.
func (w *echoWorker) send(c conn, buf []byte) {
	binary.LittleEndian.PutUint64(buf, uint64(time.Now().UnixNano()))
	if c.Send(buf) != nil {
		w.badEcho.Add(1)
	}
}

func newEchoWorker(spec childSpec, bar ProgressBar) (*echoWorker, openInfo) {
	w := &echoWorker{d: newDriver(), size: spec.Size}
	w.op = openConns(w.d, spec.URL, spec.Conns, spec.Open, func(int) handler {
		buf := make([]byte, w.size) // touched only by this connection's reader
		return handler{onMessage: func(c conn, data []byte) {
			if len(data) != w.size {
				w.badEcho.Add(1)
				return
			}
			if !w.running.Load() {
				return
			}
			w.lat.add(time.Duration(time.Now().UnixNano() - int64(binary.LittleEndian.Uint64(data))))
			w.count.Add(1)
			w.send(c, buf)
		}}
	}, bar)
	return w, infoOf(spec.Conns, w.op)
}

func (w *echoWorker) start(int64) {
	w.running.Store(true)
	for _, c := range w.op.live() {
		w.send(c, make([]byte, w.size))
	}
}

func (w *echoWorker) stop(int64) {
	w.final = w.count.Load()
	w.running.Store(false)
}

func (w *echoWorker) result() any {
	return echoPart{Count: w.final, Bad: w.badEcho.Load(), Lat: rawSet(w.lat.sorted()), Conn: statsOf(w.op)}
}

func (w *echoWorker) close() {
	w.op.closeAll()
	w.d.Stop()
}

func (w *echoWorker) progress() int64 { return w.count.Load() }
