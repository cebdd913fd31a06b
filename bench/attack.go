package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// AttackOptions configures the attack scenario against one server: the
// hostile inputs of issue 10, each bounded in count and time, run one after
// another while an /echo canary measures round trips and /proc/PID the
// server's memory. Zero fields take the defaults in parentheses (sized so
// that a whole run against two servers takes a few minutes on 2 cores).
type AttackOptions struct {
	// Base is the server, http://host:port; every attack's route hangs off
	// it, and the canary is ws://host:port/echo unless Canary is set.
	Base, Canary string
	// PID is the server process, for RSS (sampled every RSSEvery, 50ms) and
	// "alive"; 0: neither is measured.
	PID int
	// CanaryEvery (100ms) spaces the canary's round trips; CanaryBudget
	// (250ms) is the bound on its worst one during any attack.
	CanaryEvery, CanaryBudget time.Duration
	RSSEvery                  time.Duration
	// CanaryCommand, when set, runs the canary in its own process (the
	// command it returns prints one line per round trip, see CanaryChild),
	// so that the harness's own load and garbage collector, with
	// thousands of attacking connections in this process, do not show up
	// as the server's latency. nil: a goroutine of this process.
	CanaryCommand func(url string, every time.Duration) *exec.Cmd
	// Drain (3s) is how long attackers that never read are finally given
	// to read what was queued for them, to learn how the server closed
	// them (a close code, "eof", "reset") or that it did not ("open").
	Drain time.Duration
	// Settle (10s) bounds the wait after an attack for the server's RSS to
	// return to within RSSReturn (64 MiB) of its value before the attack.
	Settle    time.Duration
	RSSReturn int64

	// a. slow readers: SlowConns (1000) /ws clients that never read while
	// SlowPosters (4) connections send /receive with a SlowSize (60,000)
	// byte message in a loop for SlowFor (10s).
	SlowConns, SlowPosters, SlowSize int
	SlowFor                          time.Duration
	// b. big broadcast: one BcastSize (9,000,000) byte /receive to
	// BcastConns (200) non-readers, watched for BcastHold (3s) after.
	BcastConns, BcastSize int
	BcastHold             time.Duration
	// c. deflate bomb: BombConns (4) connections loop frames that inflate
	// to BombInflated (64 MiB) zeros on /echo-deflate for BombFor (10s),
	// reading the echoes whole (inflated when compressed).
	BombConns, BombInflated int
	// BombWindow (0: no limit) bounds the bombs each connection has sent
	// and not yet read the echo of: with 1, every bomb waits for the
	// previous echo, so a server that closes connections sending faster
	// than it reads still does the whole work (inflate, echo) per bomb.
	BombWindow int
	BombFor    time.Duration
	// d. long poll: LPPosts (60) POST /new-message of LPSize (9 MiB)
	// bytes, then GET /poll-message?cursor=0.
	LPPosts, LPSize int
	// e. partial frames: PartialConns (20) /echo connections each send
	// PartialSent (60 MiB) of a frame declaring PartialDeclared (64 MiB),
	// then one byte every PartialTrickle (2s); the server should close
	// them within PartialDeadline (30s) of the frame's first byte.
	PartialConns                  int
	PartialSent, PartialDeclared  int64
	PartialDeadline, PartialTrick time.Duration
	// f. pipelining: PipeBytes (30,000) of pipelined GETs for a
	// PipeResp (65,536) byte response on a connection that never reads,
	// watched for PipeHold (3s); the server's RSS should grow by at most
	// PipeBudget (16 MiB).
	PipeBytes, PipeResp int
	PipeHold            time.Duration
	PipeBudget          int64
	// g. headers: one request with a HeaderSize (200,000) byte header.
	HeaderSize int
	// h. oversized: one Oversize (11 MiB) message to /ws.
	Oversize int64
	// i. fd storm: StormConns (3000) TCP connections held for StormHold
	// (2s), then closed; StormNew (20) new /echo connections must then
	// round-trip within 10 s.
	StormConns, StormNew int
	StormHold            time.Duration
	// j. SSE pipelining (run before the fd storm): SSEConns (1000)
	// connections each open /sse and pipeline SSEPipe (256 KiB) of further
	// requests behind it, watched for SSEHold (3s); the server's RSS should
	// grow by at most PipeBudget.
	SSEConns, SSEPipe int
	SSEHold           time.Duration
	// j. far-ahead positions: FarClients (60) clients, a third each on
	// /ws?since=, /sse (Last-Event-ID) and /update-message, resume from
	// positions the history does not hold while /receive publishes every
	// FarEvery (50ms) for FarFor (3s); each must get a live message or a
	// clear refusal.
	FarClients int
	FarFor     time.Duration
	FarEvery   time.Duration
	// m. history replay: ReplayMsgs (130) messages of ReplaySize (60,000)
	// bytes posted to /new-message (7.8 MB of history), then ReplayConns
	// (100) clients resume from before the first at once on /ws?since=
	// and read at full speed; each should have them all, in order, on its
	// one connection, within ReplayFor (60s).
	ReplayConns, ReplayMsgs, ReplaySize int
	ReplayFor                           time.Duration

	// n-r. the client protocol (issue 21) on /connection/websocket and
	// the SSE emulation. TokenSecret signs the attackers' HS256 connect
	// tokens (a server with -token-hmac-secret); empty: none (the demo's
	// anonymous users; garbage tokens are then accepted).
	TokenSecret string
	// n. Rounds of RTUnauthConns (300) connections, for RTUnauthFor (3s),
	// send a command before connect or connect with a garbage or forged
	// token.
	RTUnauthConns int
	RTUnauthFor   time.Duration
	// o. RTSubConns (20) connections subscribe to RTSubTopics (3000)
	// topics each, paced past the subscription limit then all at once.
	RTSubConns, RTSubTopics int
	// p. RTMalformedConns (10) connections per malformed case; the
	// oversized case sends RTOversize (10 MiB) bytes in one frame (and
	// one POST).
	RTMalformedConns int
	RTOversize       int64
	// q. RTRPCConns (20) connections each start 24 "delay" RPCs held
	// RTRPCHold (2s), then send RTRPCRate (400) "time" RPCs a second for
	// RTRPCFor (7s: past the 5 s after which a client over the rate is
	// disconnected with 3004).
	RTRPCConns, RTRPCRate int
	RTRPCHold, RTRPCFor   time.Duration
	// r. RTSSEConns (200) SSE sessions subscribed to chat:x never read
	// while RTSSEPublishers (8) connections publish RTSSESize (3,000)
	// bytes to it at 45 a second each for RTSSEFor (10s).
	RTSSEConns, RTSSEPublishers, RTSSESize int
	RTSSEFor                               time.Duration
	// s. RTChurnConns (200) clients subscribe to and unsubscribe from
	// chat:churn at RTChurnRate (40) commands a second each for
	// RTChurnFor (10s); half carry names of RTChurnName (2,000) bytes in
	// their tokens' info, half of 200.
	RTChurnConns, RTChurnRate, RTChurnName int
	RTChurnFor                             time.Duration
	// t. RTPresMembers (1,200) idle subscribers of chat:crowd (names of
	// RTPresName bytes, 32: the demo's longest), then RTPresQueriers (200)
	// clients send presence at RTPresRate (45) a second each for
	// RTPresFor (10s), while RTPresChurn (20) clients subscribe to and
	// unsubscribe from the topic 40 times a second each (every change
	// makes its encoded answer stale).
	RTPresMembers, RTPresQueriers, RTPresRate, RTPresName, RTPresChurn int
	RTPresFor                                                          time.Duration

	Progress Progress
}

func (o *AttackOptions) defaults() {
	d := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	i := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	i64 := func(p *int64, v int64) {
		if *p <= 0 {
			*p = v
		}
	}
	o.Base = strings.TrimSuffix(o.Base, "/")
	if o.Canary == "" {
		o.Canary = "ws" + strings.TrimPrefix(o.Base, "http") + "/echo"
	}
	d(&o.CanaryEvery, 100*time.Millisecond)
	d(&o.CanaryBudget, 250*time.Millisecond)
	d(&o.RSSEvery, 50*time.Millisecond)
	d(&o.Drain, 3*time.Second)
	d(&o.Settle, 10*time.Second)
	i64(&o.RSSReturn, 64<<20)
	i(&o.SlowConns, 1000)
	i(&o.SlowPosters, 4)
	i(&o.SlowSize, 60000)
	d(&o.SlowFor, 10*time.Second)
	i(&o.BcastConns, 200)
	i(&o.BcastSize, 9000000)
	d(&o.BcastHold, 3*time.Second)
	i(&o.BombConns, 4)
	i(&o.BombInflated, 64<<20)
	d(&o.BombFor, 10*time.Second)
	i(&o.LPPosts, 60)
	i(&o.LPSize, 9<<20)
	i(&o.PartialConns, 20)
	i64(&o.PartialSent, 60<<20)
	i64(&o.PartialDeclared, 64<<20)
	d(&o.PartialDeadline, 30*time.Second)
	d(&o.PartialTrick, 2*time.Second)
	i(&o.PipeBytes, 30000)
	i(&o.PipeResp, 65536)
	d(&o.PipeHold, 3*time.Second)
	i64(&o.PipeBudget, 16<<20)
	i(&o.SSEConns, 1000)
	i(&o.SSEPipe, 256<<10)
	d(&o.SSEHold, 3*time.Second)
	i(&o.HeaderSize, 200000)
	i64(&o.Oversize, 11<<20)
	i(&o.StormConns, 3000)
	i(&o.StormNew, 20)
	d(&o.StormHold, 2*time.Second)
	i(&o.FarClients, 60)
	d(&o.FarFor, 3*time.Second)
	d(&o.FarEvery, 50*time.Millisecond)
	i(&o.ReplayConns, 100)
	i(&o.ReplayMsgs, 130)
	i(&o.ReplaySize, 60000)
	d(&o.ReplayFor, 60*time.Second)
	i(&o.RTUnauthConns, 300)
	d(&o.RTUnauthFor, 3*time.Second)
	i(&o.RTSubConns, 20)
	i(&o.RTSubTopics, 3000)
	i(&o.RTMalformedConns, 10)
	i64(&o.RTOversize, 10<<20)
	i(&o.RTRPCConns, 20)
	i(&o.RTRPCRate, 400)
	d(&o.RTRPCHold, 2*time.Second)
	d(&o.RTRPCFor, 7*time.Second)
	i(&o.RTSSEConns, 200)
	i(&o.RTSSEPublishers, 8)
	i(&o.RTSSESize, 3000)
	d(&o.RTSSEFor, 10*time.Second)
	i(&o.RTChurnConns, 200)
	i(&o.RTChurnRate, 40)
	i(&o.RTChurnName, 2000)
	d(&o.RTChurnFor, 10*time.Second)
	i(&o.RTPresMembers, 1200)
	i(&o.RTPresQueriers, 200)
	i(&o.RTPresRate, 45)
	i(&o.RTPresName, 32)
	i(&o.RTPresChurn, 20)
	d(&o.RTPresFor, 10*time.Second)
}

// AttackResult is one attack against one server. Figures that were not
// measured are nil: the table prints n/a and the JSON line leaves them out.
type AttackResult struct {
	Scenario string `json:"scenario"` // "attack"
	Attack   string `json:"attack"`   // "a-slow-readers", ...
	Server   string `json:"server,omitempty"`
	URL      string `json:"url"`
	// NA says why the attack does not apply (a route the server lacks).
	NA string `json:"not_applicable,omitempty"`
	// Err is a failure of the harness or of the attack's setup.
	Err string `json:"error,omitempty"`
	// Canary: round trips completed, the worst one (a round trip that
	// failed counts with the time it had waited), failures (timeouts,
	// a dropped connection) and the worst against CanaryBudget.
	CanaryRTTs   *int   `json:"canary_round_trips,omitempty"`
	CanaryWorst  *int64 `json:"canary_worst_ns,omitempty"`
	CanaryP50    *int64 `json:"canary_p50_ns,omitempty"`
	CanaryFailed *int64 `json:"canary_failed,omitempty"`
	CanaryOK     *bool  `json:"canary_within_budget,omitempty"`
	// RSS of the server (from -pid): before the attack, its peak during,
	// and after (for partial frames, once it returned or Settle passed).
	RSSBefore *int64 `json:"rss_before_bytes,omitempty"`
	PeakRSS   *int64 `json:"peak_rss_bytes,omitempty"`
	RSSAfter  *int64 `json:"rss_after_bytes,omitempty"`
	// Closes seen by the attackers: a close code, "eof" (FIN without a
	// close frame), "reset", "open" (not closed when the attacker looked)
	// or "error".
	Closes map[string]int64 `json:"closes,omitempty"`
	// Survived: the process is alive (when PID is known) and a new canary
	// connection round-trips after the attack.
	Alive       *bool          `json:"alive,omitempty"`
	CanaryAfter *bool          `json:"canary_after,omitempty"`
	Survived    *bool          `json:"survived,omitempty"`
	Expect      string         `json:"expect"`
	ExpectHeld  *bool          `json:"expect_held,omitempty"`
	Wall        float64        `json:"wall_s"`
	Extra       map[string]any `json:"extra,omitempty"`
}

// WriteJSON writes r as one line.
func (r *AttackResult) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("attack result json: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// attack is one entry of the suite.
type attack struct {
	letter, name string
	// needs are routes probed first: "ws:/path" must upgrade, "http:/path"
	// must not answer 404.
	needs  []string
	expect string
	run    func(e *attackEnv) error
	// check decides the expectation from the finished result; nil leaves
	// it unmeasured.
	check func(e *attackEnv, r *AttackResult) *bool
}

// Attacks lists the suite in run order: letter, name and expectation.
func Attacks() [][3]string {
	var out [][3]string
	for _, a := range attacks {
		out = append(out, [3]string{a.letter, a.name, a.expect})
	}
	return out
}

func findAttack(name string) *attack {
	for i := range attacks {
		a := &attacks[i]
		if name == a.letter || name == a.name || name == a.letter+"-"+a.name {
			return a
		}
	}
	return nil
}

// ParseAttacks turns "a,c,fd-storm" or "all" into suite names.
func ParseAttacks(list string) ([]string, error) {
	if list == "" || list == "all" {
		var out []string
		for _, a := range attacks {
			out = append(out, a.letter+"-"+a.name)
		}
		return out, nil
	}
	var out []string
	for _, n := range strings.Split(list, ",") {
		a := findAttack(strings.TrimSpace(n))
		if a == nil {
			return nil, fmt.Errorf("attack %q: unknown (want a-r or a name: %s)", n, attackNames())
		}
		out = append(out, a.letter+"-"+a.name)
	}
	return out, nil
}

func attackNames() string {
	var s []string
	for _, a := range attacks {
		s = append(s, a.letter+"-"+a.name)
	}
	return strings.Join(s, ", ")
}

// attackEnv is what an attack runs with: options, the result being filled
// and the measurements around it.
type attackEnv struct {
	o     AttackOptions
	host  string
	r     *AttackResult
	mu    sync.Mutex
	extra map[string]any

	methods map[string]string // path: the method its probe answered
	// natsAddrs are the server's own NATS listeners (the "nats:" need).
	natsAddrs []string
	canary    *canary
	sampler   *rssSampler
	measured  sync.Once
}

func (e *attackEnv) set(k string, v any) {
	e.mu.Lock()
	e.extra[k] = v
	e.mu.Unlock()
}

// closed counts one way an attacker's connection ended.
func (e *attackEnv) closed(kind string) {
	e.mu.Lock()
	if e.r.Closes == nil {
		e.r.Closes = map[string]int64{}
	}
	e.r.Closes[kind]++
	e.mu.Unlock()
}

// endMeasure stops the canary and the RSS sampler: the attack's active
// phase is over (draining and closing attackers come after).
func (e *attackEnv) endMeasure() {
	e.measured.Do(func() {
		e.canary.stop()
		if e.sampler != nil {
			e.sampler.stop()
		}
	})
}

// RunAttack runs one attack of the suite (a name from ParseAttacks)
// against o.Base.
func RunAttack(name string, o AttackOptions) *AttackResult {
	o.defaults()
	r := &AttackResult{Scenario: "attack", Attack: name, URL: o.Base}
	a := findAttack(name)
	if a == nil {
		r.Err = fmt.Sprintf("unknown attack %q", name)
		return r
	}
	r.Attack, r.Expect = a.letter+"-"+a.name, a.expect
	t0 := time.Now()
	defer func() { r.Wall = time.Since(t0).Seconds() }()
	host := strings.TrimPrefix(strings.TrimPrefix(o.Base, "http://"), "https://")
	if o.PID > 0 && !processAlive(o.PID) {
		r.Err = fmt.Sprintf("server process %d is not running", o.PID)
		return r
	}
	e := &attackEnv{o: o, host: host, r: r, extra: map[string]any{}, methods: map[string]string{}}
	for _, need := range a.needs {
		if why := e.probe(need); why != "" {
			r.NA = why
			return r
		}
	}
	if o.PID > 0 {
		before := treeRSS(o.PID)
		r.RSSBefore = &before
		e.sampler = startRSS(o.PID, o.RSSEvery)
	}
	e.canary = startCanary(o.Canary, o.CanaryEvery, o.CanaryCommand)
	bar := orNoProgress(o.Progress).Timed(r.Attack, estimate(a, o))
	done := make(chan struct{})
	go func() {
		for t := time.NewTicker(250 * time.Millisecond); ; {
			select {
			case <-done:
				t.Stop()
				return
			case <-t.C:
				bar.Set(int64(time.Since(t0)/time.Millisecond), int64(e.canary.n.Load()), e.canary.failed.Load())
			}
		}
	}()
	err := a.run(e)
	e.endMeasure()
	close(done)
	bar.Done()
	if err != nil {
		r.Err = err.Error()
	}
	lat := e.canary.lat.sorted()
	n, failed := len(lat), e.canary.failed.Load()
	r.CanaryRTTs, r.CanaryFailed = &n, &failed
	if worst := max(e.canary.worst.Load(), int64(summarize(lat).Max)); worst > 0 {
		r.CanaryWorst = &worst
		r.CanaryOK = boolp(time.Duration(worst) <= o.CanaryBudget && failed == 0)
	}
	if len(lat) > 0 {
		p50 := int64(summarize(lat).P50)
		r.CanaryP50 = &p50
	}
	if e.sampler != nil {
		peak := e.sampler.peak.Load()
		r.PeakRSS = &peak
	}
	// Survival: a new connection must round-trip (descriptors and queued
	// output may take a moment to free after the attackers left).
	after := roundTripWithin(o.Canary, o.PID, 10*time.Second)
	r.CanaryAfter, r.Survived = boolp(after), boolp(after)
	if o.PID > 0 {
		alive := processAlive(o.PID)
		r.Alive = &alive
		r.Survived = boolp(after && alive)
		after := treeRSS(o.PID)
		if (a.name == "partial-frames" || a.name == "sse-pipelining" || a.name == "rt-presence-churn") && alive {
			after = settleRSS(o.PID, *r.RSSBefore+o.RSSReturn, o.Settle)
		}
		if alive {
			r.RSSAfter = &after
		}
	}
	e.mu.Lock()
	if len(e.extra) > 0 {
		r.Extra = e.extra
	}
	e.mu.Unlock()
	if a.check != nil && r.Err == "" {
		r.ExpectHeld = a.check(e, r)
	}
	return r
}

// estimate is an attack's expected length, for its progress bar.
func estimate(a *attack, o AttackOptions) time.Duration {
	switch a.name {
	case "slow-readers":
		return o.SlowFor + o.Drain
	case "big-broadcast":
		return o.BcastHold + o.Drain
	case "deflate-bomb":
		return o.BombFor
	case "partial-frames":
		return o.PartialDeadline
	case "pipelining":
		return o.PipeHold
	case "sse-pipelining":
		return o.SSEHold + o.Drain
	case "fd-storm":
		return o.StormHold + 2*time.Second
	case "far-ahead-positions":
		return o.FarFor + time.Second
	case "history-replay":
		return 10 * time.Second
	case "rt-unauthenticated":
		return o.RTUnauthFor
	case "rt-subscription-flood":
		return 3*time.Second + o.Drain
	case "rt-rpc-flood":
		return o.RTRPCFor + o.RTRPCHold
	case "rt-slow-sse":
		return o.RTSSEFor + o.Drain
	case "rt-presence-churn":
		return o.RTChurnFor + 2*o.Drain
	case "rt-presence-query-flood":
		return o.RTPresFor + o.Drain + 5*time.Second
	}
	return 5 * time.Second
}

// probe returns why route need is not served ("" when it is). "ws:PATH"
// must upgrade; "positioned:PATH" must upgrade and send the demo's
// "subscribed" control message (SubscribeSince's protocol); "http:METHOD:PATH" must answer 2xx to a request carrying
// the form body msg=probe (a tiny message where the route takes one). A
// route answering 405 is tried with the other of GET and POST, and the
// method that worked is what the attack then uses (methodFor).
func (e *attackEnv) probe(need string) string {
	kind, path, _ := strings.Cut(need, ":")
	if kind == "nats" {
		return e.probeNATS()
	}
	if kind == "positioned" {
		if _, err := replayHead(e.host, path); err != nil {
			return "no positioned protocol on " + path + " (" + err.Error() + ")"
		}
		return ""
	}
	if kind == "ws" {
		w, err := dialWS(e.host, path, "", 5*time.Second)
		if err != nil {
			return "no WebSocket route " + path + " (" + err.Error() + ")"
		}
		w.Close()
		return ""
	}
	if kind == "sse" {
		return probeSSE(e.host, path)
	}
	method, path, _ := strings.Cut(path, ":")
	hc := &http.Client{Timeout: 5 * time.Second}
	status, _, err := send(hc, method, "http://"+e.host+path, []byte("msg=probe"))
	if status == 405 {
		other := map[string]string{"GET": "POST", "POST": "GET"}[method]
		if st, _, err2 := send(hc, other, "http://"+e.host+path, []byte("msg=probe")); st >= 200 && st <= 299 {
			method, status, err = other, st, err2
		}
	}
	if err != nil {
		return "no HTTP route " + method + " " + path + " (" + err.Error() + ")"
	}
	if status < 200 || status > 299 {
		return fmt.Sprintf("no HTTP route %s %s (status %d)", method, path, status)
	}
	p, _, _ := strings.Cut(path, "?")
	e.methods[p] = method
	return ""
}

// probeSSE returns why path is not an event stream ("" when it is): its
// answer must be a 200 text/event-stream (which does not end, so only the
// head is read).
func probeSSE(host, path string) string {
	c, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		return "no event stream " + path + " (" + err.Error() + ")"
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		return "no event stream " + path + " (" + err.Error() + ")"
	}
	status, hdr, err := readHead(bufio.NewReader(c))
	if err != nil {
		return "no event stream " + path + " (" + err.Error() + ")"
	}
	if ct := hdr["content-type"]; status != 200 || !strings.HasPrefix(ct, "text/event-stream") {
		return fmt.Sprintf("no event stream %s (status %d, Content-Type %q)", path, status, ct)
	}
	return ""
}

// methodFor is the method the probe found for path (GET when not probed).
func (e *attackEnv) methodFor(path string) string {
	if m := e.methods[path]; m != "" {
		return m
	}
	return "GET"
}

// rssSampler tracks the peak RSS of a process.
type rssSampler struct {
	peak atomic.Int64
	quit chan struct{}
	done chan struct{}
}

func startRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{quit: make(chan struct{}), done: make(chan struct{})}
	s.peak.Store(treeRSS(pid))
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-t.C:
				if v := treeRSS(pid); v > s.peak.Load() {
					s.peak.Store(v)
				}
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() {
	close(s.quit)
	<-s.done
}

// settleRSS waits up to d for the RSS of pid to fall to target and
// returns the last reading.
func settleRSS(pid int, target int64, d time.Duration) int64 {
	v := treeRSS(pid)
	for t0 := time.Now(); v > target && time.Since(t0) < d; v = treeRSS(pid) {
		time.Sleep(200 * time.Millisecond)
	}
	return v
}

// canaryTimeout is how long one canary round trip may wait before it
// counts as failed (longer than any stall worth measuring).
const canaryTimeout = 10 * time.Second

// canary is an /echo client doing a round trip every interval on its own
// gorilla/websocket connection (reconnecting if it is dropped).
type canary struct {
	report func(ok bool, d time.Duration) // CanaryChild: each round trip, as it ends
	lat    latencies
	n      atomic.Int64
	worst  atomic.Int64 // longest wait of a failed round trip
	failed atomic.Int64
	quit   chan struct{}
	done   chan struct{}
}

func startCanary(url string, every time.Duration, command func(string, time.Duration) *exec.Cmd) *canary {
	c := &canary{quit: make(chan struct{}), done: make(chan struct{})}
	if command != nil {
		if err := c.runChild(command(url, every)); err == nil {
			return c
		}
	}
	go c.run(url, every)
	return c
}

// runChild runs the canary in a child process and reads its round trips.
func (c *canary) runChild(cmd *exec.Cmd) error {
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		<-c.quit
		in.Close() // the child stops after its round trip in flight
	}()
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var kind string
			var ns int64
			if _, err := fmt.Sscan(sc.Text(), &kind, &ns); err != nil {
				continue
			}
			if kind == "ok" {
				c.lat.add(time.Duration(ns))
				c.n.Add(1)
			} else {
				c.fail(time.Duration(ns))
			}
		}
		cmd.Wait()
	}()
	return nil
}

// CanaryChild is the canary's child process (tornago-bench canary-child):
// a round trip on url every interval, one line per round trip on out ("ok
// NS" or "fail NS", the wait in nanoseconds), until in reaches EOF.
func CanaryChild(url string, every time.Duration, in io.Reader, out io.Writer) {
	c := &canary{quit: make(chan struct{}), done: make(chan struct{})}
	c.report = func(ok bool, d time.Duration) {
		if ok {
			fmt.Fprintln(out, "ok", int64(d))
		} else {
			fmt.Fprintln(out, "fail", int64(d))
		}
	}
	go func() {
		io.Copy(io.Discard, in)
		close(c.quit)
	}()
	c.run(url, every)
}

func (c *canary) fail(waited time.Duration) {
	if c.report != nil {
		c.report(false, waited)
	}
	c.failed.Add(1)
	if int64(waited) > c.worst.Load() {
		c.worst.Store(int64(waited))
	}
}

func (c *canary) run(url string, every time.Duration) {
	defer close(c.done)
	var ws *websocket.Conn
	defer func() {
		if ws != nil {
			ws.Close()
		}
	}()
	msg := make([]byte, 16)
	for seq := 0; ; seq++ {
		t0 := time.Now()
		select {
		case <-c.quit:
			return
		default:
		}
		if ws == nil {
			d := websocket.Dialer{HandshakeTimeout: canaryTimeout}
			var err error
			ws, _, err = d.Dial(url, nil)
			if err != nil {
				ws = nil
				c.fail(time.Since(t0))
				c.sleep(t0.Add(every))
				continue
			}
			t0 = time.Now()
		}
		copy(msg, fmt.Sprintf("canary %08d", seq))
		ws.SetWriteDeadline(t0.Add(canaryTimeout))
		ws.SetReadDeadline(t0.Add(canaryTimeout))
		err := ws.WriteMessage(websocket.BinaryMessage, msg)
		var got []byte
		if err == nil {
			_, got, err = ws.ReadMessage()
		}
		rtt := time.Since(t0)
		if err != nil || !bytes.Equal(got, msg) {
			c.fail(rtt)
			ws.Close()
			ws = nil
		} else {
			c.lat.add(rtt)
			c.n.Add(1)
			if c.report != nil {
				c.report(true, rtt)
			}
		}
		c.sleep(t0.Add(every))
	}
}

func (c *canary) sleep(until time.Time) {
	if d := time.Until(until); d > 0 {
		select {
		case <-c.quit:
		case <-time.After(d):
		}
	}
}

// stop ends the canary after its round trip in flight, if any.
func (c *canary) stop() {
	close(c.quit)
	<-c.done
}

// roundTripWithin: a new /echo connection echoes one message, retrying
// until d has passed or the process pid (when > 0) is gone.
func roundTripWithin(url string, pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if roundTrip(url, time.Until(deadline)) {
			return true
		}
		if time.Now().After(deadline) || pid > 0 && !processAlive(pid) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func roundTrip(url string, timeout time.Duration) bool {
	timeout = max(timeout, 500*time.Millisecond)
	d := websocket.Dialer{HandshakeTimeout: timeout}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		return false
	}
	defer ws.Close()
	ws.SetWriteDeadline(time.Now().Add(timeout))
	ws.SetReadDeadline(time.Now().Add(timeout))
	msg := []byte("after the attack")
	if ws.WriteMessage(websocket.BinaryMessage, msg) != nil {
		return false
	}
	_, got, err := ws.ReadMessage()
	return err == nil && bytes.Equal(got, msg)
}

// sortedCounts renders a counter map as "k: n, ..." in key order.
func sortedCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "n/a"
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	for i, k := range ks {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%d", k, m[k])
	}
	return b.String()
}
