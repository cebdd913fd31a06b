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
	Src      int           // source addresses 127.0.0.1..Src, default 8
	PID      int
	Progress Progress
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
	req := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if err := CheckPID(o.PID, o.URL); err != nil {
		return nil, &InvalidError{"handshake", err.Error()}
	}
	closeFrame := ws13.AppendMaskedFrame(nil, true, ws.OpClose, ws13.NewMask(), []byte{0x03, 0xe8})
	// One upgrade first: against nothing the run fails now, not after D.
	if err := upgradeOnce(u.Host, "", req, closeFrame, make([]byte, 1024)); err != nil {
		return nil, &InvalidError{"handshake", "no upgrade succeeded: " + err.Error()}
	}
	p := orNoProgress(o.Progress)
	var ok, errs atomic.Int64
	var lat latencies
	var lastE atomic.Value
	var stop atomic.Bool
	var wg sync.WaitGroup
	m := startCPU(o.PID)
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, 1024)
			for i := 0; !stop.Load(); i++ {
				start := time.Now()
				err := upgradeOnce(u.Host, srcAddr(w+i*o.Workers, o.Src, 0), req, closeFrame, buf)
				if err != nil {
					errs.Add(1)
					lastE.Store(err.Error())
					continue
				}
				lat.add(time.Since(start))
				ok.Add(1)
			}
		}(w)
	}
	bar := p.Timed("handshake", o.Duration)
	for t0 := time.Now(); time.Since(t0) < o.Duration; time.Sleep(100 * time.Millisecond) {
		bar.Set(int64(time.Since(t0)/time.Millisecond), ok.Load(), errs.Load())
	}
	stop.Store(true)
	cpu := m.stop()
	n := ok.Load()
	wg.Wait()
	bar.Done()
	res := &Result{Scenario: "handshake", URL: o.URL, Client: "net.Conn workers", Conns: o.Workers, Errors: errs.Load()}
	res.finish(n, lat.sorted(), cpu, harnessCores())
	res.Extra = map[string]any{}
	last, _ := lastE.Load().(string)
	if last != "" {
		res.Extra["last_error"] = last
	}
	var none error
	if n == 0 {
		none = fmt.Errorf("no upgrade succeeded (%d failed)%s", res.Errors, lastErr(last))
	}
	return res, invalidate(res, aliveCheck(o.PID), none, tooMany("upgrades", res.Errors, n+res.Errors, last))
}

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
