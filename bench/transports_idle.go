package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// IdleTransports are the values of IdleOptions.Transport: "ws" (or "")
// holds WebSocket connections on URL; "sse" holds GET /sse streams and
// "long-poll" parked POST /update-message requests on URL's host.
var IdleTransports = []string{"ws", "sse", "long-poll"}

// ChatWSURL is the WebSocket URL of the chat topic with positions
// (/ws?since=, from now) on the host of rawURL (http://, ws://).
func ChatWSURL(rawURL string) (string, error) {
	u, err := neturl.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("chat url: no host in %q", rawURL)
	}
	scheme := "ws"
	if u.Scheme == "https" || u.Scheme == "wss" {
		scheme = "wss"
	}
	return scheme + "://" + u.Host + "/ws?since=", nil
}

// idleHTTP is Idle for SSE streams and parked long polls: raw TCP
// connections each holding one request, so that the server's memory per
// client is measured the same way as for WebSockets.
func idleHTTP(o IdleOptions) (*Result, error) {
	u, err := neturl.Parse(o.URL)
	if err != nil || u.Host == "" {
		return nil, &InvalidError{"idle", fmt.Sprintf("-url %q: no host", o.URL)}
	}
	host := u.Host
	base := "http://" + host
	if o.Conns > o.MaxPerProc {
		return nil, fmt.Errorf("idle -transport %s: %d connections, at most %d (-per-proc) in one process", o.Transport, o.Conns, o.MaxPerProc)
	}
	if err := CheckPID(o.PID, base); err != nil {
		return nil, &InvalidError{"idle", err.Error()}
	}
	sample := o.RSS
	if sample == nil {
		sample = treeRSS
	}
	measured := o.PID > 0
	p := orNoProgress(o.Progress)
	res := &Result{Scenario: "idle", URL: base + map[string]string{"sse": "/sse", "long-poll": "/update-message"}[o.Transport],
		Client: "raw TCP, one goroutine per request"}
	// A long poll waits after the chat's head; a first message gives a
	// fresh server one.
	pub := newPublisher(base)
	defer pub.hc.CloseIdleConnections()
	head := ""
	if o.Transport == "long-poll" {
		if err := pub.publish("idle: long polls park after this"); err != nil {
			return nil, &InvalidError{"idle", err.Error()}
		}
		if head, err = pub.head(); err != nil {
			return nil, &InvalidError{"idle", err.Error()}
		}
	}
	request := func(since string) []byte {
		if o.Transport == "sse" {
			return []byte("GET /sse HTTP/1.1\r\nHost: " + host + "\r\nAccept: text/event-stream\r\n\r\n")
		}
		body := "since=" + neturl.QueryEscape(since)
		return []byte(fmt.Sprintf("POST /update-message HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", host, len(body), body))
	}
	var rss0 int64
	thr0 := treeThreads(o.PID)
	if measured {
		rss0 = settledRSS(func() int64 { return sample(o.PID) })
		res.Steps = []IdleStep{{Conns: 0, RSS: rss0, Threads: thr0}}
	}
	lowest := rss0
	record := func(n int) {
		if !measured {
			return
		}
		time.Sleep(time.Second)
		r := sample(o.PID)
		lowest = min(lowest, r)
		st := IdleStep{Conns: n, RSS: r, Threads: treeThreads(o.PID)}
		if n > 0 {
			per := float64(r-rss0) / float64(n)
			st.BytesPerConn = &per
		}
		res.Steps = append(res.Steps, st)
	}
	steps := []int{}
	for _, s := range o.Steps {
		if s > 0 && s < o.Conns {
			steps = append(steps, s)
		}
	}
	sort.Ints(steps)
	steps = append(steps, o.Conns)
	open := o.Open
	open.defaults(o.Conns)

	var closing atomic.Bool
	var errs, closed, repolls atomic.Int64
	var lastE atomic.Value
	var lat latencies
	var mu sync.Mutex
	var held []net.Conn
	var wg sync.WaitGroup
	defer func() {
		closing.Store(true)
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	// hold opens connection i, sends the request and reads what comes:
	// the SSE stream (discarded) or the long poll's answers (each one,
	// after the server's timeout, polled again at once).
	hold := func(i int, ready func(bool)) {
		t0 := time.Now()
		since := head
		d := net.Dialer{Timeout: 10 * time.Second}
		if a := srcAddr(i, open.Src, open.SrcBase); a != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(a)}
		}
		c, err := d.Dial("tcp", host)
		if err == nil {
			_, err = c.Write(request(since))
		}
		var br *bufio.Reader
		if err == nil && o.Transport == "sse" {
			br = bufio.NewReaderSize(c, 1024)
			var resp *http.Response
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err = http.ReadResponse(br, nil)
			c.SetReadDeadline(time.Time{})
			if err == nil && (resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")) {
				err = fmt.Errorf("GET /sse: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
			}
		}
		if err != nil {
			errs.Add(1)
			lastE.Store(err.Error())
			if c != nil {
				c.Close()
			}
			ready(false)
			return
		}
		lat.add(time.Since(t0))
		mu.Lock()
		held = append(held, c)
		mu.Unlock()
		ready(true)
		if br == nil {
			br = bufio.NewReaderSize(c, 1024)
		}
		for {
			if o.Transport == "sse" {
				_, err = io.Copy(io.Discard, br)
			} else {
				var resp *http.Response
				resp, err = http.ReadResponse(br, nil)
				if err == nil {
					var pr pollReply
					err = json.NewDecoder(resp.Body).Decode(&pr)
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode == 200 {
						repolls.Add(1)
						if pr.Head != "" {
							since = pr.Head
						}
						if _, err = c.Write(request(since)); err == nil {
							continue
						}
					} else if err == nil {
						err = fmt.Errorf("POST /update-message: %s", resp.Status)
					}
				}
			}
			break
		}
		if !closing.Load() {
			closed.Add(1)
			if err == nil {
				err = io.EOF
			}
			lastE.Store(fmt.Sprintf("held %s closed: %v", o.Transport, err))
		}
	}
	opened := 0
	prev := 0
	for _, s := range steps {
		bar := p.Phase(fmt.Sprintf("%s %d", o.Transport, s), int64(s-prev))
		ready := make(chan bool, s-prev)
		start := time.Now()
		inflight := make(chan struct{}, 1000)
		for i := prev; i < s; i++ {
			if w := time.Until(start.Add(time.Duration(i-prev) * time.Second / time.Duration(open.Rate))); w > 0 {
				time.Sleep(w)
			}
			inflight <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				hold(i, func(ok bool) { <-inflight; ready <- ok })
			}()
		}
		for i := prev; i < s; i++ {
			select {
			case ok := <-ready:
				if ok {
					opened++
				}
				bar.Set(int64(i-prev+1), 0, errs.Load())
			case <-time.After(open.Timeout):
				errs.Add(int64(s - i))
				i = s
			}
		}
		bar.Done()
		prev = s
		if opened == 0 {
			res.Errors = errs.Load()
			last, _ := lastE.Load().(string)
			return res, invalidate(res, fmt.Errorf("no connection opened (%d asked)%s", s, lastErr(last)))
		}
		record(opened)
	}
	cpu, rss1 := holdIdle(p, o.Hold, o.PID, measured, sample, &lowest)
	waiting := -1
	if o.Transport == "long-poll" {
		if resp, err := pub.hc.Get(base + "/poll-message?since=" + neturl.QueryEscape(head)); err == nil {
			var pr pollReply
			if json.NewDecoder(resp.Body).Decode(&pr) == nil && pr.Waiting != nil {
				waiting = *pr.Waiting
			}
			resp.Body.Close()
		}
	}
	res.Conns = opened
	res.Errors = errs.Load() + closed.Load()
	res.finish(0, lat.sorted(), cpu, harnessCores())
	res.Pace = ""
	res.Extra = map[string]any{"transport": o.Transport, "closed_while_held": closed.Load(), "hold_s": o.Hold.Seconds()}
	if o.Transport == "long-poll" {
		res.Extra["repolls"] = repolls.Load()
		if waiting >= 0 {
			res.Extra["server_waiting"] = waiting // on the loop that answered
		}
	}
	var shrank error
	if measured {
		shrank = idleMemory(res, o.PID, rss0, rss1, lowest, thr0, cpu, opened)
	}
	last, _ := lastE.Load().(string)
	if last != "" {
		res.Extra["last_error"] = last
	}
	return res, invalidate(res, aliveCheck(o.PID), shrank,
		tooMany("connections", errs.Load(), int64(o.Conns), last),
		tooMany("connections (closed while held)", closed.Load(), int64(opened)+closed.Load(), last))
}
