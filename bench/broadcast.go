package bench

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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
	Progress Progress
}

// Broadcast connects N clients, then triggers fan-outs itself through
// GET Trigger?msg=b<id>_<unixnano> and measures delivered messages/s, the
// delivery latency and the deliveries missing.
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
	d := newDriver()
	defer d.Stop()
	const maxB = 1 << 20
	counts := make([]atomic.Int32, maxB)
	var lat latencies
	var delivered, bad atomic.Int64
	var welcomed atomic.Int64
	var n32 atomic.Int32
	sem := make(chan struct{}, o.Window)
	released := make([]atomic.Bool, maxB)
	op := openConns(d, o.URL, o.Conns, o.Open, func(int) handler {
		return handler{onMessage: func(c conn, data []byte) {
			now := time.Now().UnixNano()
			i := bytes.Index(data, []byte("b"))
			j := bytes.IndexByte(data, '_')
			if i < 0 || j < i {
				welcomed.Add(1) // "Welcome" or other greeting
				return
			}
			id, e1 := strconv.Atoi(string(data[i+1 : j]))
			ts, e2 := strconv.ParseInt(string(data[j+1:]), 10, 64)
			if e1 != nil || e2 != nil || id < 0 || id >= maxB {
				bad.Add(1)
				return
			}
			lat.add(time.Duration(now - ts))
			delivered.Add(1)
			if counts[id].Add(1) == n32.Load() && released[id].CompareAndSwap(false, true) {
				<-sem
			}
		}}
	}, p.Phase("connect", int64(o.Conns)))
	live := op.live()
	n32.Store(int32(len(live)))
	res := &Result{Scenario: "broadcast", URL: o.URL, Client: d.Name(), Conns: len(live)}
	if err := invalidate(res, openCheck(o.Conns, op)); err != nil {
		op.closeAll()
		res.Errors = op.errs.Load()
		return res, err
	}
	time.Sleep(200 * time.Millisecond)
	hc := &http.Client{Timeout: 10 * time.Second}
	var triggerErrs, stalls int64
	var lastTrigger string
	sent := 0
	delivered.Store(0)
	m := startCPU(o.PID)
	bar := p.Timed("broadcast", o.Duration)
	t0 := time.Now()
	for ; time.Since(t0) < o.Duration && sent < maxB; sent++ {
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
			bar.Set(int64(time.Since(t0)/time.Millisecond), delivered.Load(), triggerErrs+stalls)
		}
	}
	cpu := m.stop()
	bar.Done()
	ops := delivered.Load()
	time.Sleep(500 * time.Millisecond)
	var missed int64
	for i := 0; i < sent; i++ {
		missed += int64(len(live)) - int64(counts[i].Load())
	}
	op.closeAll()
	res.Errors = op.errs.Load() + op.closed.Load() + bad.Load() + triggerErrs
	res.finish(ops, lat.sorted(), cpu, harnessCores())
	res.Extra = map[string]any{"broadcasts": sent, "missed": missed, "stalled_windows": stalls,
		"window": o.Window, "connect": summarize(op.lat.sorted()).String()}
	last, _ := op.lastErr.Load().(string)
	var none error
	if ops == 0 {
		none = fmt.Errorf("no broadcast delivered%s", lastErr(lastTrigger+last))
	}
	return res, invalidate(res, aliveCheck(o.PID), none,
		tooMany("triggers ("+o.Trigger+")", triggerErrs, int64(sent), lastTrigger),
		tooMany("connections (closed during the run)", op.closed.Load(), int64(res.Conns), last),
		tooMany("deliveries (missed)", missed, int64(sent)*int64(len(live)), last))
}
