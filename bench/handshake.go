package bench

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/proto/ws13"
)

// HandshakeOptions configures the handshake scenario.
type HandshakeOptions struct {
	URL      string
	Workers  int           // C, default 8
	Duration time.Duration // default 10s
	Src      int           // source addresses 127.0.0.1..Src, default 8 (per process when spread)
	PID      int
	// Spread's MaxPerProc counts workers: more workers, or Procs > 1, run
	// them in child processes.
	Spread   SpreadOptions
	Progress Progress
}

// handshakePart is one process's share of a handshake run.
type handshakePart struct {
	OK        int64  `json:"ok"` // upgrades while measuring
	Errors    int64  `json:"errors"`
	LastError string `json:"last_error,omitempty"`
	Lat       latSet `json:"lat"`
}

// Handshake runs C workers that each connect, upgrade, send a close frame
// and close, as fast as they can for D seconds: upgrades/s, latency of
// connect+upgrade, and server CPU per upgrade.
func Handshake(o HandshakeOptions) (*Result, error) {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Src <= 0 {
		o.Src = 8
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if err := CheckPID(o.PID, o.URL); err != nil {
		return nil, &InvalidError{"handshake", err.Error()}
	}
	// One upgrade first: against nothing the run fails now, not after D.
	if err := upgradeOnce(u.Host, "", upgradeRequest(u), closeFrame(), make([]byte, 1024)); err != nil {
		return nil, &InvalidError{"handshake", "no upgrade succeeded: " + err.Error()}
	}
	p := orNoProgress(o.Progress)
	spec := childSpec{Scenario: "handshake", URL: o.URL, Conns: o.Workers, Src: o.Src, Client: ClientKind}
	ss, err := openSides(spec, o.Spread, func(event) {}, nil)
	if err != nil {
		return nil, err
	}
	defer closeSides(ss)
	m := startCPU(o.PID, childPIDs(ss)...)
	if err := startSides(ss, time.Now().UnixNano()); err != nil {
		return nil, err
	}
	bar := p.Timed("handshake", o.Duration)
	for t0 := time.Now(); time.Since(t0) < o.Duration; time.Sleep(100 * time.Millisecond) {
		bar.Set(int64(time.Since(t0)/time.Millisecond), localOps(ss), 0)
	}
	err = stopSides(ss, time.Now().UnixNano())
	cpu := m.stop()
	bar.Done()
	if err != nil {
		return nil, err
	}
	parts, err := collectSides[handshakePart](ss)
	if err != nil {
		return nil, err
	}
	var n, errs int64
	var last string
	var lats []latSet
	for _, pt := range parts {
		n += pt.OK
		errs += pt.Errors
		if pt.LastError != "" {
			last = pt.LastError
		}
		lats = append(lats, pt.Lat)
	}
	client := "net.Conn workers"
	if len(ss) > 1 {
		client = fmt.Sprintf("%s x %d processes", client, len(ss))
	}
	res := &Result{Scenario: "handshake", URL: o.URL, Client: client, Conns: o.Workers, Errors: errs}
	res.finishSet(n, mergeLat(lats...), cpu, spreadCores(len(ss)))
	res.Extra = map[string]any{}
	if last != "" {
		res.Extra["last_error"] = last
	}
	var none error
	if n == 0 {
		none = fmt.Errorf("no upgrade succeeded (%d failed)%s", res.Errors, lastErr(last))
	}
	return res, invalidate(res, aliveCheck(o.PID), none, tooMany("upgrades", res.Errors, n+res.Errors, last))
}

func upgradeRequest(u *url.URL) []byte {
	return []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
}

func closeFrame() []byte {
	return ws13.AppendMaskedFrame(nil, true, ws.OpClose, ws13.NewMask(), []byte{0x03, 0xe8})
}

// handshakeWorker runs one process's upgrade loops.
type handshakeWorker struct {
	host           string
	req, close1000 []byte
	workers        int
	src, base      int
	ok, errs       atomic.Int64
	lat            latencies
	lastE          atomic.Value
	halt           atomic.Bool
	wg             sync.WaitGroup
	final          int64
}

func newHandshakeWorker(spec childSpec) (*handshakeWorker, openInfo) {
	w := &handshakeWorker{workers: spec.Conns, src: spec.Src, base: spec.Open.SrcBase, close1000: closeFrame()}
	if u, err := url.Parse(spec.URL); err == nil {
		w.host, w.req = u.Host, upgradeRequest(u)
	}
	return w, openInfo{Asked: spec.Conns, Opened: spec.Conns}
}

func (w *handshakeWorker) start(int64) {
	for k := 0; k < w.workers; k++ {
		w.wg.Add(1)
		go func(k int) {
			defer w.wg.Done()
			buf := make([]byte, 1024)
			for i := 0; !w.halt.Load(); i++ {
				start := time.Now()
				err := upgradeOnce(w.host, srcAddr(k+i*w.workers, w.src, w.base), w.req, w.close1000, buf)
				if err != nil {
					w.errs.Add(1)
					w.lastE.Store(err.Error())
					continue
				}
				w.lat.add(time.Since(start))
				w.ok.Add(1)
			}
		}(k)
	}
}

func (w *handshakeWorker) stop(int64) {
	w.halt.Store(true)
	w.final = w.ok.Load()
}

func (w *handshakeWorker) progress() int64 { return w.ok.Load() }

func (w *handshakeWorker) result() any {
	w.wg.Wait()
	last, _ := w.lastE.Load().(string)
	return handshakePart{OK: w.final, Errors: w.errs.Load(), LastError: last, Lat: rawSet(w.lat.sorted())}
}

func (w *handshakeWorker) close() {}

func upgradeOnce(host, local string, req, closeFrame, buf []byte) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", host)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("upgrade request: %w", err)
	}
	got := 0
	for !bytes.Contains(buf[:got], []byte("\r\n\r\n")) {
		if got == len(buf) {
			return fmt.Errorf("upgrade response too long")
		}
		k, err := c.Read(buf[got:])
		if err != nil {
			return fmt.Errorf("upgrade response: %w", err)
		}
		got += k
	}
	if !bytes.HasPrefix(buf[:got], []byte("HTTP/1.1 101")) {
		return fmt.Errorf("no 101: %q", buf[:min(got, 40)])
	}
	if _, err := c.Write(closeFrame); err != nil {
		return fmt.Errorf("close frame: %w", err)
	}
	return nil
}
