package bench

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// attacks is the suite of issue 10 (j, k, l, m of issue 19, n-r of issue
// 21, s and t of issue 22), in run order.
// The descriptor storm comes last: a server it kills cannot spoil the others
// when the harness does not restart servers.
var attacks = []attack{
	{letter: "a", name: "slow-readers", needs: []string{"ws:/ws", "http:GET:/receive"},
		expect: "peak RSS <= 2x gorilla's (judged when both ran); canary within budget",
		run:    slowReaders}, // judged by ApplyCrossTargets
	{letter: "b", name: "big-broadcast", needs: []string{"ws:/ws", "http:GET:/receive"},
		expect: "peak RSS <= 256 MiB; canary within budget",
		run:    bigBroadcast, check: func(e *attackEnv, r *AttackResult) *bool {
			if r.PeakRSS == nil {
				return nil
			}
			return both(boolp(*r.PeakRSS <= 256<<20), r.CanaryOK)
		}},
	{letter: "c", name: "deflate-bomb", needs: []string{"ws:/echo-deflate"},
		expect: "canary within budget",
		run:    deflateBomb, check: checkCanary},
	{letter: "d", name: "long-poll", needs: []string{"http:POST:/new-message", "http:GET:/poll-message?cursor=999999999999"},
		expect: "canary within budget (413s count as the server defending itself)",
		run:    longPoll, check: checkCanary},
	{letter: "e", name: "partial-frames", needs: []string{"ws:/echo"},
		expect: "every attacker closed within the deadline; RSS returns to within 64 MiB of before",
		run:    partialFrames, check: func(e *attackEnv, r *AttackResult) *bool {
			all, _ := r.Extra["all_closed_in_deadline"].(bool)
			if r.RSSAfter == nil || r.RSSBefore == nil {
				return boolp(all)
			}
			return boolp(all && *r.RSSAfter <= *r.RSSBefore+e.o.RSSReturn)
		}},
	{letter: "f", name: "pipelining", needs: []string{"http:POST:/new-message", "http:GET:/poll-message?cursor=999999999999"},
		expect: "RSS grows by <= 16 MiB (PipeBudget) while the pipelining client does not read",
		run:    pipelining, check: func(e *attackEnv, r *AttackResult) *bool {
			if r.PeakRSS == nil {
				return nil
			}
			return boolp(*r.PeakRSS-*r.RSSBefore <= e.o.PipeBudget)
		}},
	{letter: "g", name: "headers", needs: nil,
		expect: "the client reads a 431 (or a 2xx from a server accepting heads this large), not a reset",
		run:    bigHeader, check: func(e *attackEnv, r *AttackResult) *bool {
			st, _ := r.Extra["status"].(int)
			return boolp(st == 431 || st >= 200 && st < 300)
		}},
	{letter: "h", name: "oversized", needs: []string{"ws:/ws"},
		expect: "the client reads a close frame with 1009, not a reset",
		run:    oversized, check: func(e *attackEnv, r *AttackResult) *bool {
			return boolp(r.Closes["1009"] == 1)
		}},
	{letter: "j", name: "sse-pipelining", needs: []string{"sse:/sse"},
		expect: "RSS grows by <= 16 MiB (PipeBudget) while every stream holds 256 KiB pipelined behind it; canary within budget",
		run:    ssePipelining, check: func(e *attackEnv, r *AttackResult) *bool {
			if r.PeakRSS == nil || r.RSSBefore == nil {
				return nil
			}
			return both(boolp(*r.PeakRSS-*r.RSSBefore <= e.o.PipeBudget), r.CanaryOK)
		}},
	// j and k run before i: the descriptor storm stays last (it may kill the server).
	{letter: "k", name: "nats-open", needs: []string{"nats:"},
		expect: "the server's own NATS (tornago -procs) refuses a local client without its secret",
		run:    natsOpen, check: func(e *attackEnv, r *AttackResult) *bool {
			accepted, ok := r.Extra["accepted"].(bool)
			if !ok {
				return nil
			}
			return boolp(!accepted)
		}},
	{letter: "l", name: "far-ahead-positions", needs: []string{"ws:/ws?since=", "sse:/sse", "http:POST:/poll-message?since=0-0", "http:GET:/receive"},
		expect: "no client silent (each gets a live message or a clear refusal); canary within budget",
		run:    farAhead, check: func(e *attackEnv, r *AttackResult) *bool {
			silent, _ := r.Extra["silent"].(int64)
			return both(boolp(silent == 0), r.CanaryOK)
		}},
	{letter: "m", name: "history-replay", needs: []string{"positioned:/ws?since=", "http:POST:/new-message"},
		expect: "every resuming client gets the whole history once, in order, on one connection; canary within budget",
		run:    historyReplay, check: func(e *attackEnv, r *AttackResult) *bool {
			all, _ := r.Extra["all_complete"].(bool)
			return both(boolp(all), r.CanaryOK)
		}},
	// n-r: the client protocol (issue 21); n/a without its WebSocket.
	{letter: "n", name: "rt-unauthenticated", needs: []string{"ws:/connection/websocket"},
		expect: "a command before connect gets 101 and close 3500, a bad token 3500 (when tokens are checked), a forged session 404; canary within budget",
		run:    rtUnauth, check: func(e *attackEnv, r *AttackResult) *bool {
			want, _ := r.Extra["before_connect"].(int64)
			if e.o.TokenSecret != "" {
				want, _ = r.Extra["attackers"].(int64)
			}
			posts, _ := r.Extra["forged_session_posts"].(string)
			return both(boolp(r.Closes["3500"] == want && posts == fmt.Sprintf("404:%d", e.o.RTUnauthConns/10)), r.CanaryOK)
		}},
	{letter: "o", name: "rt-subscription-flood", needs: []string{"ws:/connection/websocket"},
		expect: "past the subscription limit 106, over the rate 111 (20x the rate refused within a second: close 3004); RSS grows by <= 64 MiB; canary within budget",
		run:    rtSubFlood, check: func(e *attackEnv, r *AttackResult) *bool {
			errs, _ := r.Extra["errors"].(string)
			return both(boolp(hasCode(errs, 106) && hasCode(errs, 111) && rssGrowth(r) <= e.o.RSSReturn), r.CanaryOK)
		}},
	{letter: "p", name: "rt-malformed", needs: []string{"ws:/connection/websocket"},
		expect: "JSON garbage, binary frames and deep nesting close 3501, a malformed field 107 (the connection lives), 10 MB frames close 3505, POSTs 400/413; canary within budget",
		run:    rtMalformed, check: func(e *attackEnv, r *AttackResult) *bool {
			n := e.o.RTMalformedConns
			is := func(k, v string) bool { s, _ := r.Extra[k].(string); return s == fmt.Sprintf("%s:%d", v, n) }
			errs, _ := r.Extra["errors"].(string)
			ok := is("garbage-before-connect", "3501") && is("garbage-after-connect", "3501") && is("bad-field-after-connect", "alive") &&
				is("binary", "3501") && is("deep-nesting", "3501") && is("oversized", "3505") && hasCode(errs, 107) &&
				r.Extra["sse_command_posts"] == "400:2 413:1"
			return both(boolp(ok), r.CanaryOK)
		}},
	{letter: "q", name: "rt-rpc-flood", needs: []string{"ws:/connection/websocket"},
		expect: "past 16 pending RPCs 106, over the rate 111, sustained 5 s close 3004; canary within budget",
		run:    rtRPCFlood, check: func(e *attackEnv, r *AttackResult) *bool {
			errs, _ := r.Extra["errors"].(string)
			ok := hasCode(errs, 106) && hasCode(errs, 111)
			if e.o.RTRPCFor > 5*time.Second+time.Second {
				ok = ok && r.Closes["3004"] == int64(e.o.RTRPCConns)
			}
			return both(boolp(ok), r.CanaryOK)
		}},
	{letter: "r", name: "rt-slow-sse", needs: []string{"ws:/connection/websocket"},
		expect: "SSE sessions and WebSockets that never read while chat:x floods are cut (eof), long-poll sessions that never poll end with 3001; peak RSS <= 256 MiB; canary within budget",
		run:    rtSlowSSE, check: func(e *attackEnv, r *AttackResult) *bool {
			if r.PeakRSS == nil {
				return nil
			}
			return both(boolp(*r.PeakRSS <= 256<<20 && r.Closes["sse-open"] == 0 && r.Closes["ws-open"] == 0 &&
				r.Closes["poll-3001"] == int64(max(1, e.o.RTSSEConns/10))), r.CanaryOK)
		}},
	// s, t: presence (issue 22) on the demo's chat namespace.
	{letter: "s", name: "rt-presence-churn", needs: []string{"ws:/connection/websocket"},
		expect: "an observer's join/leave pushes list <= 100 names, no Info over 256 B; RSS returns to within 64 MiB of before; canary within budget",
		run:    rtPresenceChurn, check: func(e *attackEnv, r *AttackResult) *bool {
			pushes, _ := r.Extra["observer_pushes"].(int64)
			names, _ := r.Extra["observer_max_names"].(int64)
			info, _ := r.Extra["observer_max_info"].(int64)
			ok := pushes > 0 && names <= 100 && info <= 256
			if r.RSSAfter != nil && r.RSSBefore != nil {
				ok = ok && *r.RSSAfter <= *r.RSSBefore+e.o.RSSReturn
			}
			return both(boolp(ok), r.CanaryOK)
		}},
	{letter: "t", name: "rt-presence-query-flood", needs: []string{"ws:/connection/websocket"},
		expect: "presence answered (<= 1,000 members each) or refused with a documented code; canary within budget",
		run:    rtPresenceFlood, check: func(e *attackEnv, r *AttackResult) *bool {
			answered, _ := r.Extra["answered"].(int64)
			members, _ := r.Extra["max_members"].(int64)
			return both(boolp(answered > 0 && members <= 1000), r.CanaryOK)
		}},
	{letter: "i", name: "fd-storm", needs: []string{"ws:/echo"},
		expect: "survives; the canary and new connections are served afterwards",
		run:    fdStorm, check: func(e *attackEnv, r *AttackResult) *bool {
			ok, _ := r.Extra["new_conns_ok"].(bool)
			return boolp(r.Survived != nil && *r.Survived && ok)
		}},
}

func boolp(b bool) *bool { return &b }

// hasCode says whether counts ("106:3 111:40", sortedCounts) has code.
func hasCode(counts string, code int) bool {
	for _, kv := range strings.Fields(counts) {
		if k, _, _ := strings.Cut(kv, ":"); k == strconv.Itoa(code) {
			return true
		}
	}
	return false
}

// rssGrowth is the peak RSS over the RSS before (0 when not measured).
func rssGrowth(r *AttackResult) int64 {
	if r.PeakRSS == nil || r.RSSBefore == nil {
		return 0
	}
	return *r.PeakRSS - *r.RSSBefore
}

// both is a && b, nil when either is unknown.
func both(a, b *bool) *bool {
	if a == nil || b == nil {
		return nil
	}
	return boolp(*a && *b)
}

func checkCanary(_ *attackEnv, r *AttackResult) *bool { return r.CanaryOK }

// formBody is "msg=" and n bytes of ch: an urlencoded body (ch needs no
// escaping), which cmd/tornago's GetArgument and the gorilla reference
// both read whatever the method, and which fits no request line.
func formBody(n int, ch byte) []byte {
	b := make([]byte, 4+n)
	copy(b, "msg=")
	for i := 4; i < len(b); i++ {
		b[i] = ch
	}
	return b
}

// send makes one request with a form body (nil: none) and reads the answer
// to its end, returning the status and body bytes read.
func send(hc *http.Client, method, url string, body []byte) (int, int64, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, 0, fmt.Errorf("%s %s: %w", method, url, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return resp.StatusCode, n, fmt.Errorf("%s %s: body: %w", method, url, err)
	}
	return resp.StatusCode, n, nil
}

// statusCounter counts HTTP answers by status ("err" for no answer).
type statusCounter struct {
	mu sync.Mutex
	m  map[string]int64
}

func (s *statusCounter) add(status int, err error) {
	k := strconv.Itoa(status)
	if err != nil && status == 0 {
		k = "err"
	}
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]int64{}
	}
	s.m[k]++
	s.mu.Unlock()
}

func (s *statusCounter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedCounts(s.m)
}

// openNonReaders opens n WebSockets on path that read nothing after the
// upgrade, 64 at a time.
func openNonReaders(e *attackEnv, n int, path string) []*rawWS {
	out := make([]*rawWS, n)
	var errs atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w, err := dialWS(e.host, path, "", 10*time.Second)
			if err != nil {
				errs.Add(1)
				return
			}
			out[i] = w
		}()
	}
	wg.Wait()
	var live []*rawWS
	for _, w := range out {
		if w != nil {
			live = append(live, w)
		}
	}
	e.set("non_readers", len(live))
	if k := errs.Load(); k > 0 {
		e.set("dial_errors", k)
	}
	return live
}

// drainAll lets every non-reader read for Drain to see how the server
// closed it, then closes them all.
func drainAll(e *attackEnv, ws []*rawWS) {
	deadline := time.Now().Add(e.o.Drain)
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.closed(w.readUntilClose(deadline, false, nil))
			w.Close()
		}()
	}
	wg.Wait()
}

func slowReaders(e *attackEnv) error {
	ws := openNonReaders(e, e.o.SlowConns, "/ws")
	body := formBody(e.o.SlowSize, 'x')
	var st statusCounter
	var lat latencies
	end := time.Now().Add(e.o.SlowFor)
	var wg sync.WaitGroup
	for range e.o.SlowPosters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 10 * time.Second}
			for time.Now().Before(end) {
				t0 := time.Now()
				status, _, err := send(hc, e.methodFor("/receive"), e.o.Base+"/receive", body)
				st.add(status, err)
				lat.add(time.Since(t0))
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	e.endMeasure()
	e.set("receive_statuses", st.String())
	e.set("receive_latency", summarize(lat.sorted()).String())
	drainAll(e, ws)
	return nil
}

func bigBroadcast(e *attackEnv) error {
	ws := openNonReaders(e, e.o.BcastConns, "/ws")
	hc := &http.Client{Timeout: 60 * time.Second}
	t0 := time.Now()
	status, _, err := send(hc, e.methodFor("/receive"), e.o.Base+"/receive", formBody(e.o.BcastSize, 'x'))
	e.set("receive_status", status)
	e.set("receive_ms", time.Since(t0).Milliseconds())
	if err != nil {
		e.set("receive_error", err.Error())
	}
	time.Sleep(e.o.BcastHold)
	e.endMeasure()
	drainAll(e, ws)
	return nil
}

// bombs caches compressed payloads by inflated size (compressing 64 MiB
// takes a moment).
var bombs sync.Map

// deflateBombPayload is raw DEFLATE of n zero bytes at the best compression,
// without the 00 00 ff ff that RFC 7692 7.2.1 removes (the receiver appends
// it back).
func deflateBombPayload(n int) []byte {
	if b, ok := bombs.Load(n); ok {
		return b.([]byte)
	}
	var buf bytes.Buffer
	zw, _ := flate.NewWriter(&buf, flate.BestCompression)
	zero := make([]byte, 1<<20)
	for left := n; left > 0; left -= len(zero) {
		zw.Write(zero[:min(left, len(zero))])
	}
	zw.Flush()
	b := bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	bombs.Store(n, b)
	return b
}

func deflateBomb(e *attackEnv) error {
	payload := deflateBombPayload(e.o.BombInflated)
	e.set("frame_bytes", len(payload))
	end := time.Now().Add(e.o.BombFor)
	var sent, echoes, echoBytes, echoWire, reconnects atomic.Int64
	var notNegotiated atomic.Bool
	var wg sync.WaitGroup
	for range e.o.BombConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := true; time.Now().Before(end); first = false {
				if !first {
					reconnects.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
				w, err := dialWS(e.host, "/echo-deflate", "permessage-deflate; client_no_context_takeover", 5*time.Second)
				if err != nil {
					e.closed("dial-error")
					continue
				}
				if !strings.Contains(w.ext, "permessage-deflate") {
					notNegotiated.Store(true)
					w.Close()
					return
				}
				frame := w.frame(2, true, payload)
				stop := make(chan struct{})
				var window chan struct{} // a token per bomb in flight
				if e.o.BombWindow > 0 {
					window = make(chan struct{}, e.o.BombWindow)
				}
				go func() {
					defer close(stop)
					// Read the echoes whole (inflated when the server
					// compresses them) so that the server does real work
					// rather than waiting on backpressure, and servers
					// that echo compressed or plain cost the client alike.
					kind := w.readEchoes(end, true, func(n, wire int64) {
						echoes.Add(1)
						echoBytes.Add(n)
						echoWire.Add(wire)
						if window != nil {
							select {
							case <-window:
							default:
							}
						}
					})
					if kind != "open" {
						e.closed(kind)
					}
				}()
			send:
				for time.Now().Before(end) {
					if window != nil {
						select {
						case window <- struct{}{}:
						case <-stop:
							break send
						case <-time.After(time.Until(end)):
							break send
						}
					}
					if w.write(frame, end) != nil {
						break
					}
					sent.Add(1)
					select {
					case <-stop: // closed by the server
						break send
					default:
					}
				}
				<-stop
				w.Close()
			}
		}()
	}
	wg.Wait()
	if notNegotiated.Load() {
		e.set("deflate", "not negotiated: the frames were not a bomb")
	}
	e.set("frames_sent", sent.Load())
	e.set("echoes_read", echoes.Load())
	e.set("echo_mib_read", echoBytes.Load()>>20)
	e.set("echo_wire_mib", echoWire.Load()>>20)
	e.set("reconnects", reconnects.Load())
	return nil
}

func longPoll(e *attackEnv) error {
	hc := &http.Client{Timeout: 60 * time.Second}
	body := formBody(e.o.LPSize, 'x')
	var st statusCounter
	t0 := time.Now()
	for range e.o.LPPosts {
		status, _, err := send(hc, e.methodFor("/new-message"), e.o.Base+"/new-message", body)
		st.add(status, err)
	}
	e.set("post_statuses", st.String())
	e.set("posts_ms", time.Since(t0).Milliseconds())
	t1 := time.Now()
	status, n, err := send(hc, "GET", e.o.Base+"/poll-message?cursor=0", nil)
	e.set("poll_status", status)
	e.set("poll_bytes", n)
	e.set("poll_ms", time.Since(t1).Milliseconds())
	if err != nil {
		e.set("poll_error", err.Error())
	}
	return nil
}

func partialFrames(e *attackEnv) error {
	o := e.o
	var wg sync.WaitGroup
	var mu sync.Mutex
	var times []time.Duration
	var within, sentAll atomic.Int64
	var dialErrs atomic.Int64
	for range o.PartialConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := dialWS(e.host, "/echo", "", 10*time.Second)
			if err != nil {
				dialErrs.Add(1)
				return
			}
			defer w.Close()
			t0 := time.Now()
			// The reader waits a little past the deadline so that a close
			// right at it is still seen.
			readEnd := t0.Add(o.PartialDeadline + time.Second)
			done := make(chan struct{})
			go func() {
				defer close(done)
				kind := w.readUntilClose(readEnd, false, nil)
				e.closed(kind)
				if kind != "open" {
					d := time.Since(t0)
					mu.Lock()
					times = append(times, d)
					mu.Unlock()
					if d <= o.PartialDeadline {
						within.Add(1)
					}
				}
			}()
			if w.write(w.frameHeader(2, true, false, o.PartialDeclared), readEnd) != nil {
				<-done
				return
			}
			n, err := w.writePayload(min(o.PartialSent, o.PartialDeclared-1), 0, readEnd)
			if err == nil {
				sentAll.Add(1)
			}
			// One byte every PartialTrick while the frame is open: a
			// sender too slow to matter, but never silent.
			tick := time.NewTicker(o.PartialTrick)
			defer tick.Stop()
			for off := n; off < o.PartialDeclared-1 && err == nil; off++ {
				select {
				case <-done:
					return
				case <-tick.C:
					err = w.write(w.mask([]byte{'x'}, off), readEnd)
				}
			}
			<-done
		}()
	}
	wg.Wait()
	e.endMeasure()
	if k := dialErrs.Load(); k > 0 {
		e.set("dial_errors", k)
	}
	e.set("sent_all", sentAll.Load())
	e.set("closed_in_deadline", within.Load())
	e.set("all_closed_in_deadline", within.Load() == int64(o.PartialConns))
	if len(times) > 0 {
		s := summarize(sortDur(times))
		e.set("time_to_close_p50_ms", s.P50.Milliseconds())
		e.set("time_to_close_max_ms", s.Max.Milliseconds())
	}
	return nil
}

func pipelining(e *attackEnv) error {
	o := e.o
	hc := &http.Client{Timeout: 30 * time.Second}
	// The demo has no fixed ~64 KiB route: post one message of that size
	// to the long-poll store, then ask for exactly it.
	req, err := http.NewRequest(e.methodFor("/new-message"), o.Base+"/new-message", bytes.NewReader(formBody(o.PipeResp, 'y')))
	if err != nil {
		return fmt.Errorf("pipelining: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("pipelining: seed message: %w", err)
	}
	var id struct {
		ID int64 `json:"id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&id)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("pipelining: seed message: status %d: %v", resp.StatusCode, err)
	}
	// Tornago answers {"published":true} (the message's position comes
	// with the polls); the reference servers give its id. A fresh server
	// holds this one message, so no cursor asks for exactly it.
	path := "/poll-message"
	if id.ID > 0 {
		path = fmt.Sprintf("/poll-message?cursor=%d", id.ID-1)
	}
	_, n, err := send(hc, "GET", o.Base+path, nil)
	if err != nil {
		return fmt.Errorf("pipelining: %w", err)
	}
	e.set("response_bytes", n)
	one := "GET " + path + " HTTP/1.1\r\nHost: " + e.host + "\r\n\r\n"
	k := max(1, o.PipeBytes/len(one))
	e.set("requests", k)
	c, err := net.DialTimeout("tcp", e.host, 5*time.Second)
	if err != nil {
		return fmt.Errorf("pipelining: %w", err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(o.PipeHold))
	wn, err := c.Write([]byte(strings.Repeat(one, k)))
	e.set("bytes_written", wn)
	if err != nil {
		e.set("write_error", err.Error())
	}
	time.Sleep(o.PipeHold)
	e.endMeasure()
	if e.r.RSSBefore != nil {
		e.set("rss_growth_bytes", e.sampler.peak.Load()-*e.r.RSSBefore)
	}
	return nil
}

// ssePipelining opens SSEConns event streams and pipelines SSEPipe bytes
// of further requests behind each (issue 19 item 6: a server that keeps
// reading them holds them for the stream's life), watches the server's RSS
// for SSEHold, then reads for Drain how each stream ended.
func ssePipelining(e *attackEnv) error {
	o := e.o
	one := "GET /sse HTTP/1.1\r\nHost: " + e.host + "\r\n\r\n"
	pipe := []byte(strings.Repeat(one, max(1, o.SSEPipe/len(one))))
	conns := make([]net.Conn, o.SSEConns)
	var dialErrs, writeErrs, wrote atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", e.host, 5*time.Second)
			if err != nil {
				dialErrs.Add(1)
				return
			}
			conns[i] = c
			c.SetWriteDeadline(time.Now().Add(o.SSEHold))
			n, err := io.WriteString(c, one)
			if err == nil {
				var m int
				m, err = c.Write(pipe)
				n += m
			}
			wrote.Add(int64(n))
			if err != nil {
				writeErrs.Add(1) // a server that closed with the input unread resets
			}
		}()
	}
	wg.Wait()
	e.set("pipelined_bytes_each", len(pipe))
	e.set("bytes_written", wrote.Load())
	if k := dialErrs.Load(); k > 0 {
		e.set("dial_errors", k)
	}
	if k := writeErrs.Load(); k > 0 {
		e.set("write_errors", k)
	}
	time.Sleep(o.SSEHold)
	e.endMeasure()
	if e.r.RSSBefore != nil {
		e.set("rss_growth_bytes", e.sampler.peak.Load()-*e.r.RSSBefore)
	}
	// How each stream ended: "eof" (a clean end or a FIN), "reset",
	// "open"; told counts the streams that said why before ending.
	deadline := time.Now().Add(o.Drain)
	var told atomic.Int64
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetReadDeadline(deadline)
			b, err := io.ReadAll(io.LimitReader(c, 1<<20))
			if bytes.Contains(b, []byte("\n: closing: ")) {
				told.Add(1)
			}
			if err == nil {
				err = io.EOF
			}
			e.closed(closeKind(err))
		}()
	}
	wg.Wait()
	e.set("streams_told_why", told.Load())
	return nil
}

func bigHeader(e *attackEnv) error {
	c, err := net.DialTimeout("tcp", e.host, 5*time.Second)
	if err != nil {
		return fmt.Errorf("headers: %w", err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	c.SetDeadline(deadline)
	req := "GET /index HTTP/1.1\r\nHost: " + e.host + "\r\nX-Attack: " + strings.Repeat("a", e.o.HeaderSize) + "\r\n\r\n"
	werr := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, req)
		werr <- err
	}()
	status, _, err := readHead(bufio.NewReader(c))
	if status > 0 {
		e.set("status", status)
		e.set("outcome", "status "+strconv.Itoa(status))
	} else {
		e.set("outcome", closeKind(err))
	}
	if err := <-werr; err != nil {
		e.set("write_error", closeKind(err))
	}
	return nil
}

func oversized(e *attackEnv) error {
	w, err := dialWS(e.host, "/ws", "", 10*time.Second)
	if err != nil {
		return fmt.Errorf("oversized: %w", err)
	}
	defer w.Close()
	deadline := time.Now().Add(15 * time.Second)
	got := make(chan string, 1)
	go func() { got <- w.readUntilClose(deadline, true, nil) }()
	var werr error
	if werr = w.write(w.frameHeader(1, true, false, e.o.Oversize), deadline); werr == nil {
		_, werr = w.writePayload(e.o.Oversize, 0, deadline)
	}
	if werr != nil {
		e.set("write_error", closeKind(werr))
	}
	e.closed(<-got)
	return nil
}

func fdStorm(e *attackEnv) error {
	o := e.o
	if e.o.PID > 0 {
		if lim := fdLimit(e.o.PID); lim > 0 {
			e.set("server_fd_limit", lim)
			e.set("past_limit", o.StormConns > lim)
		}
	}
	conns := make([]net.Conn, o.StormConns)
	var failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", e.host, 3*time.Second)
			if err != nil {
				failed.Add(1)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	e.set("opened", int64(o.StormConns)-failed.Load())
	e.set("dial_failed", failed.Load())
	time.Sleep(o.StormHold)
	// How many the server closed itself while held (a connection cap
	// closing the newest, or a dying process).
	var closedByServer int64
	for _, c := range conns {
		if c == nil {
			continue
		}
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil && closeKind(err) != "open" {
			closedByServer++
		}
		c.Close()
	}
	e.set("closed_by_server", closedByServer)
	e.endMeasure()
	// New connections must work again once the descriptors are free.
	var okN atomic.Int64
	deadline := time.Now().Add(10 * time.Second)
	for range o.StormNew {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if roundTripWithin(o.Canary, o.PID, time.Until(deadline)) {
				okN.Add(1)
			}
		}()
	}
	wg.Wait()
	ok := okN.Load() == int64(o.StormNew)
	e.set("new_conns_served", okN.Load())
	e.set("new_conns_ok", ok)
	return nil
}
