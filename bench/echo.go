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
	Progress Progress
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
	d := newDriver()
	defer d.Stop()
	var running atomic.Bool
	var count, badEcho atomic.Int64
	var lat latencies
	// send stamps buf and sends it. Send copies (or writes) p before it
	// returns, so each connection reuses one buffer for its echoes: no
	// allocation per message on the harness side either.
	send := func(c conn, buf []byte) {
		binary.LittleEndian.PutUint64(buf, uint64(time.Now().UnixNano()))
		if c.Send(buf) != nil {
			badEcho.Add(1)
		}
	}
	op := openConns(d, o.URL, o.Conns, o.Open, func(int) handler {
		buf := make([]byte, o.Size) // touched only by this connection's reader
		return handler{onMessage: func(c conn, data []byte) {
			if len(data) != o.Size {
				badEcho.Add(1)
				return
			}
			if !running.Load() {
				return
			}
			lat.add(time.Duration(time.Now().UnixNano() - int64(binary.LittleEndian.Uint64(data))))
			count.Add(1)
			send(c, buf)
		}}
	}, p.Phase("connect", int64(o.Conns)))
	res := &Result{Scenario: "echo", URL: o.URL, Client: d.Name(), Conns: len(op.live())}
	if err := invalidate(res, openCheck(o.Conns, op)); err != nil {
		op.closeAll()
		res.Errors = op.errs.Load()
		return res, err
	}
	running.Store(true)
	m := startCPU(o.PID)
	for _, c := range op.live() {
		send(c, make([]byte, o.Size))
	}
	bar := p.Timed("echo", o.Duration)
	for t0 := time.Now(); time.Since(t0) < o.Duration; time.Sleep(100 * time.Millisecond) {
		bar.Set(int64(time.Since(t0)/time.Millisecond), count.Load(), op.errs.Load()+badEcho.Load())
	}
	cpu := m.stop()
	n := count.Load()
	running.Store(false)
	bar.Done()
	s := lat.sorted()
	op.closeAll()
	res.Errors = op.errs.Load() + badEcho.Load() + op.closed.Load()
	res.finish(n, s, cpu, harnessCores())
	res.Extra = map[string]any{"size_bytes": o.Size, "connect": summarize(op.lat.sorted()).String()}
	last, _ := op.lastErr.Load().(string)
	if last != "" {
		res.Extra["last_error"] = last
	}
	var none error
	if n == 0 {
		none = fmt.Errorf("no message echoed%s", lastErr(last))
	}
	return res, invalidate(res, aliveCheck(o.PID), none,
		tooMany("connections (closed during the run)", op.closed.Load(), int64(res.Conns), last),
		tooMany("messages (bad or unsent echoes)", badEcho.Load(), n+badEcho.Load(), last))
}
