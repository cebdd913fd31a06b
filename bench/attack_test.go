package bench

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
)

// tinyAttacks scales every attack down to a second or two: these tests
// check the machinery (routes, measurements, reporting), not the targets,
// which only a benchmark run on a quiet machine can judge.
func tinyAttacks() AttackOptions {
	return AttackOptions{
		Drain: 300 * time.Millisecond, Settle: time.Second,
		SlowConns: 20, SlowPosters: 2, SlowSize: 20000, SlowFor: 700 * time.Millisecond,
		BcastConns: 10, BcastSize: 200000, BcastHold: 200 * time.Millisecond,
		BombConns: 1, BombInflated: 1 << 20, BombFor: 700 * time.Millisecond,
		LPPosts: 3, LPSize: 100000,
		PartialConns: 2, PartialSent: 1 << 20, PartialDeclared: 2 << 20,
		PartialDeadline: 1500 * time.Millisecond, PartialTrick: 300 * time.Millisecond,
		PipeBytes: 3000, PipeResp: 20000, PipeHold: 300 * time.Millisecond,
		HeaderSize: 200000,
		Oversize:   11 << 20,
		StormConns: 150, StormNew: 3, StormHold: 300 * time.Millisecond,
		SSEConns: 20, SSEPipe: 256 << 10, SSEHold: 300 * time.Millisecond,
		FarClients: 18, FarFor: time.Second,
		ReplayConns: 5, ReplayMsgs: 20, ReplaySize: 60000,
		RTUnauthConns: 30, RTUnauthFor: 300 * time.Millisecond, RTSubConns: 3, RTSubTopics: 400, RTMalformedConns: 2, RTOversize: 10 << 20,
		RTRPCConns: 3, RTRPCRate: 200, RTRPCHold: 300 * time.Millisecond, RTRPCFor: time.Second,
		RTSSEConns: 10, RTSSEPublishers: 2, RTSSESize: 3000, RTSSEFor: 1500 * time.Millisecond,
		RTChurnConns: 10, RTChurnRate: 40, RTChurnName: 2000, RTChurnFor: time.Second,
		RTPresMembers: 150, RTPresQueriers: 5, RTPresRate: 45, RTPresName: 32, RTPresChurn: 2, RTPresFor: time.Second,
	}
}

// TestAttackSuite runs every attack at tiny scale against a real Tornago
// demo server and the gorilla reference (each started as a process, a
// fresh one per attack, the fd storm under a 64-descriptor limit) and
// checks that each was measured and reported, whatever the outcome.
func TestAttackSuite(t *testing.T) {
	names, err := ParseAttacks("all")
	if err != nil || len(names) != 20 {
		t.Fatalf("ParseAttacks: %v %v", names, err)
	}
	o := tinyAttacks()
	o.TokenSecret = "attack-suite-secret-0123456789abcdef" // tornago's, through its environment
	rs, err := AttackServers(AttackRunOptions{Root: moduleRoot(t), Servers: []string{"tornago", "gorilla"},
		Port: 18800, Fresh: true, StormNoFile: 64, Log: &syncWriter{}, Attacks: names, Options: o})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 40 {
		t.Fatalf("%d results, want 40", len(rs))
	}
	for _, r := range rs {
		t.Logf("%s %s: canary %d rtts worst %s fails %d peak %s closes %v survived %v expect %s extra %v",
			r.Server, r.Attack, r.CanaryRTTs, dur(r.CanaryWorst), r.CanaryFailed, mib(r.PeakRSS), r.Closes, held(r.Survived), held(r.ExpectHeld), r.Extra)
		if r.Server == "gorilla" && r.Attack == "j-sse-pipelining" && r.NA != "" && r.Err == "" {
			continue // the reference has no event stream
		}
		if r.Attack == "k-nats-open" {
			// Neither runs a NATS of its own (TestNATSOpenAttack: -procs).
			if r.NA == "" || r.Err != "" {
				t.Errorf("%s %s: want n/a, got %+v", r.Server, r.Attack, r)
			}
			continue
		}
		if r.Attack == "l-far-ahead-positions" && r.Server != "tornago" && r.NA != "" {
			continue // the reference keeps no positions (no /sse)
		}
		if r.Server == "gorilla" && r.Attack == "m-history-replay" {
			if r.NA == "" {
				t.Errorf("gorilla history replay: applicable? %+v", r)
			}
			continue // the reference has no positioned protocol
		}
		if r.Server == "gorilla" && strings.Contains(r.Attack, "-rt-") {
			if r.NA == "" {
				t.Errorf("gorilla %s: applicable? %+v", r.Attack, r)
			}
			continue // the reference has no client protocol
		}
		if r.Err != "" || r.NA != "" {
			t.Errorf("%s %s: error %q, n/a %q", r.Server, r.Attack, r.Err, r.NA)
			continue
		}
		// A server the attack killed (today's Tornago in the fd storm)
		// fails the canary instead of answering it.
		if r.CanaryRTTs == nil || *r.CanaryRTTs+int(*r.CanaryFailed) == 0 || r.CanaryWorst == nil || r.PeakRSS == nil || r.RSSBefore == nil || r.Alive == nil {
			t.Errorf("%s %s: canary or RSS not measured: %+v", r.Server, r.Attack, r)
		}
		if *r.PeakRSS < *r.RSSBefore {
			t.Errorf("%s %s: peak RSS %d below the RSS before %d", r.Server, r.Attack, *r.PeakRSS, *r.RSSBefore)
		}
		switch r.Attack {
		case "a-slow-readers", "b-big-broadcast":
			if n := r.Extra["non_readers"]; n != map[string]int{"a-slow-readers": 20, "b-big-broadcast": 10}[r.Attack] {
				t.Errorf("%s %s: %v non-readers", r.Server, r.Attack, n)
			}
			if total(r.Closes) != int64(r.Extra["non_readers"].(int)) {
				t.Errorf("%s %s: closes %v do not account for every non-reader", r.Server, r.Attack, r.Closes)
			}
		case "c-deflate-bomb":
			if r.Extra["frames_sent"].(int64) == 0 || r.Extra["deflate"] != nil {
				t.Errorf("%s: no bomb sent: %v", r.Server, r.Extra)
			}
		case "d-long-poll":
			// The demo refuses messages over 64 KiB with 413: then the
			// poll has nothing large to return.
			// Tornago's store pages its answers (256 KiB): less than all.
			accepted := r.Extra["post_statuses"] == "200:3"
			want := int64(300000)
			if r.Server == "tornago" {
				want = 1
			}
			if !accepted && r.Extra["post_statuses"] != "413:3" || r.Extra["poll_status"] != 200 || accepted && r.Extra["poll_bytes"].(int64) < want {
				t.Errorf("%s long poll: %v", r.Server, r.Extra)
			}
		case "e-partial-frames":
			if total(r.Closes) != 2 || r.Extra["sent_all"] != int64(2) {
				t.Errorf("%s partial frames: closes %v extra %v", r.Server, r.Closes, r.Extra)
			}
		case "f-pipelining":
			if n := r.Extra["response_bytes"].(int64); n < 20000 || n > 21000 || r.Extra["requests"].(int) < 10 {
				t.Errorf("%s pipelining: %v", r.Server, r.Extra)
			}
		case "g-headers":
			if r.Extra["outcome"] == nil {
				t.Errorf("%s headers: no outcome", r.Server)
			}
		case "h-oversized":
			if total(r.Closes) != 1 {
				t.Errorf("%s oversized: closes %v", r.Server, r.Closes)
			}
		case "j-sse-pipelining":
			// Each stream is told why, ended and closed (a FIN).
			if r.Closes["eof"] != 20 || r.Extra["streams_told_why"] != int64(20) {
				t.Errorf("%s sse pipelining: closes %v extra %v", r.Server, r.Closes, r.Extra)
			}
		case "l-far-ahead-positions":
			if r.Extra["silent"] != int64(0) {
				t.Errorf("%s far-ahead positions: %v", r.Server, r.Extra)
			}
		case "m-history-replay":
			if r.Extra["all_complete"] != true || r.Extra["complete"] != int64(5) {
				t.Errorf("%s history replay: %v", r.Server, r.Extra)
			}
		case "n-rt-unauthenticated":
			// Tokens checked: every attacker is refused.
			if r.Closes["3500"] != r.Extra["attackers"] || r.Closes["3500"] < 30 || r.Extra["forged_session_posts"] != "404:3" {
				t.Errorf("%s unauthenticated: closes %v extra %v", r.Server, r.Closes, r.Extra)
			}
		case "o-rt-subscription-flood", "q-rt-rpc-flood":
			if errs, _ := r.Extra["errors"].(string); !hasCode(errs, 106) || !hasCode(errs, 111) {
				t.Errorf("%s %s: errors %q, want 106 and 111", r.Server, r.Attack, errs)
			}
		case "p-rt-malformed":
			if r.Closes["3501"] != 8 || r.Closes["3505"] != 2 || r.Extra["bad-field-after-connect"] != "alive:2" {
				t.Errorf("%s malformed: closes %v extra %v", r.Server, r.Closes, r.Extra)
			}
		case "r-rt-slow-sse":
			if r.Closes["sse-open"]+r.Closes["sse-eof"] != 10 || r.Extra["published"].(int64) == 0 {
				t.Errorf("%s slow SSE: closes %v extra %v", r.Server, r.Closes, r.Extra)
			}
		case "s-rt-presence-churn":
			if r.Extra["observer_pushes"].(int64) == 0 || r.Extra["observer_max_names"].(int64) > 100 || r.Extra["observer_max_info"].(int64) > 256 {
				t.Errorf("%s presence churn: %v", r.Server, r.Extra)
			}
		case "t-rt-presence-query-flood":
			if r.Extra["answered"].(int64) == 0 || r.Extra["max_members"].(int64) == 0 || r.Extra["max_members"].(int64) > 1000 {
				t.Errorf("%s presence query flood: %v", r.Server, r.Extra)
			}
		case "i-fd-storm":
			if r.Extra["server_fd_limit"] != 64 || r.Extra["past_limit"] != true {
				t.Errorf("%s fd storm: %v", r.Server, r.Extra)
			}
		}
		if r.Server == "gorilla" && (r.Survived == nil || !*r.Survived) {
			t.Errorf("gorilla did not survive %s", r.Attack)
		}
		var line bytes.Buffer
		r.WriteJSON(&line)
		var back map[string]any
		if err := json.Unmarshal(line.Bytes(), &back); err != nil {
			t.Fatalf("json: %v\n%s", err, line.String())
		}
	}
	var out strings.Builder
	WriteAttackTable(&out, rs)
	if !strings.Contains(out.String(), "i-fd-storm") || !strings.Contains(out.String(), "expectations") {
		t.Fatalf("table:\n%s", out.String())
	}
	t.Log("\n" + out.String())
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// TestAttackFarAhead: clients resuming from positions a history does not
// hold (far ahead, newer epoch, malformed) on /ws, /sse and long polls all
// get a live message or a clear refusal while a publisher runs; none is
// left silent (before issue 19 item 7 the far-ahead and newer-epoch ones
// were: 8 of 18, and E-+1 was read as E-1). The gorilla reference has no positions: n/a.
func TestAttackFarAhead(t *testing.T) {
	s := startServer(t, "tornago", 18840)
	o := tinyAttacks()
	o.Base, o.PID = "http://"+s.Host, s.PID
	r := RunAttack("far-ahead-positions", o)
	t.Logf("%+v extra %v", r, r.Extra)
	if r.Err != "" || r.NA != "" || r.Extra["silent"] != int64(0) {
		t.Fatalf("far-ahead positions: err %q n/a %q extra %v", r.Err, r.NA, r.Extra)
	}
	for _, tr := range []string{"ws", "sse", "longpoll"} {
		if got, _ := r.Extra[tr].(string); !strings.Contains(got, "live:") {
			t.Errorf("%s: %q, want live messages", tr, got)
		}
	}
	if !strings.Contains(r.Extra["ws"].(string), "close-1008:") || !strings.Contains(r.Extra["sse"].(string), "status-400:") || !strings.Contains(r.Extra["longpoll"].(string), "status-400:") {
		t.Errorf("the malformed position is not refused everywhere: %v", r.Extra)
	}
	g := startServer(t, "gorilla", 18841)
	o.Base, o.PID = "http://"+g.Host, g.PID
	if r := RunAttack("l", o); r.NA == "" {
		t.Errorf("gorilla: %+v, want n/a", r)
	}
}

// TestAttackNotApplicable: an attack whose route the server lacks is
// reported n/a, with no figures in its JSON line (not zeros).
func TestAttackNotApplicable(t *testing.T) {
	s := startServer(t, "gnetws", 18830)
	o := tinyAttacks()
	o.Base, o.PID = "http://"+s.Host, s.PID
	r := RunAttack("b", o)
	if r.NA == "" || r.Attack != "b-big-broadcast" {
		t.Fatalf("big broadcast on gnetws: %+v", r)
	}
	var line bytes.Buffer
	r.WriteJSON(&line)
	for _, k := range []string{"peak_rss_bytes", "canary_worst_ns", "canary_round_trips", "canary_failed", "closes", "survived", "canary_after", "expect_held"} {
		if strings.Contains(line.String(), k) {
			t.Errorf("n/a result carries %s: %s", k, line.String())
		}
	}
	var out strings.Builder
	WriteAttackTable(&out, []*AttackResult{r})
	if !strings.Contains(out.String(), "n/a") {
		t.Fatalf("table:\n%s", out.String())
	}
}

// TestNATSOpenAttack: attack j finds the embedded NATS of tornago -procs
// 2 among the parent's sockets and is refused without the run's secret.
func TestNATSOpenAttack(t *testing.T) {
	s := startServer(t, "tornago-procs2", 18840)
	o := tinyAttacks()
	o.Base, o.PID = "http://"+s.Host, s.PID
	r := RunAttack("k", o)
	t.Logf("%+v extra %v", r, r.Extra)
	if r.Err != "" || r.NA != "" || r.ExpectHeld == nil || !*r.ExpectHeld {
		t.Fatalf("nats-open on tornago -procs 2: error %q n/a %q held %v extra %v", r.Err, r.NA, held(r.ExpectHeld), r.Extra)
	}
	if l, _ := r.Extra["nats_listeners"].(string); !strings.Contains(l, "Authorization Violation") {
		t.Fatalf("listeners %q: want the server's refusal", l)
	}
}

// TestDeflateBombPayload: the crafted payload is small and, with RFC
// 7692's tail appended back, inflates to exactly the asked size.
func TestDeflateBombPayload(t *testing.T) {
	const n = 4 << 20
	p := deflateBombPayload(n)
	if len(p) > n/500 || bytes.HasSuffix(p, []byte{0, 0, 0xff, 0xff}) {
		t.Fatalf("payload %d bytes (tail kept: %v)", len(p), bytes.HasSuffix(p, []byte{0, 0, 0xff, 0xff}))
	}
	zr := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
	got, err := io.Copy(io.Discard, zr)
	if got != n || err != nil && err != io.ErrUnexpectedEOF {
		t.Fatalf("inflated %d bytes (%v), want %d", got, err, n)
	}
}

// TestReadEchoesWhole: the deflate bomb's client reads echoes as whole
// messages, inflating compressed ones, against a real gorilla server that
// sends a compressed 1 MiB message (fragmented in 4 KiB frames), a plain
// one and a ping in between; before, it counted frames and read only the
// compressed bytes.
func TestReadEchoesWhole(t *testing.T) {
	const size = 1 << 20
	up := gws.Upgrader{EnableCompression: true, WriteBufferSize: 4096}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.EnableWriteCompression(true)
		c.WriteMessage(gws.BinaryMessage, make([]byte, size))
		c.WriteControl(gws.PingMessage, []byte("p"), time.Now().Add(time.Second))
		c.EnableWriteCompression(false)
		c.WriteMessage(gws.TextMessage, bytes.Repeat([]byte("x"), size))
		c.WriteControl(gws.CloseMessage, gws.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
		c.ReadMessage() // until the client goes
	}))
	defer srv.Close()
	w, err := dialWS(strings.TrimPrefix(srv.URL, "http://"), "/", "permessage-deflate; client_no_context_takeover", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if !strings.Contains(w.ext, "permessage-deflate") {
		t.Fatalf("deflate not negotiated: %q", w.ext)
	}
	var got, wire []int64
	kind := w.readEchoes(time.Now().Add(5*time.Second), true, func(n, wr int64) {
		got = append(got, n)
		wire = append(wire, wr)
	})
	if kind != "1000" || len(got) != 2 || got[0] != size || got[1] != size {
		t.Fatalf("ended %q, messages %v (wire %v), want 1000 after two of %d bytes", kind, got, wire, size)
	}
	if wire[0] >= size/10 || wire[1] != size {
		t.Fatalf("wire bytes %v: want the first compressed, the second plain", wire)
	}
}

// TestAttackProtocol runs attacks n-r (the client protocol) at small
// sizes against tornago with -token-hmac-secret (its environment
// variable), and checks each documented code the attackers must get:
// 101/3500 before connect or with a bad token, 404 for a forged session,
// 106 past the subscription and pending RPC limits, 111 over the rate,
// 3501/107/3505 and 400/413 for malformed and oversized commands, 3004
// for a rate sustained 5 s, slow SSE sessions ended; and attacks s and t
// (presence, issue 22): join/leave pushes bounded under churn, presence
// floods answered or refused with 111.
func TestAttackProtocol(t *testing.T) {
	const secret = "attack-test-secret-0123456789abcdef"
	t.Setenv("TORNAGO_TOKEN_HMAC_SECRET", secret)
	s := startServer(t, "tornago", 18850)
	o := tinyAttacks()
	o.Base, o.PID, o.TokenSecret = "http://"+s.Host, s.PID, secret
	o.RTRPCFor = 6500 * time.Millisecond // past the 5 s of 3004
	o.RTRPCHold = time.Second
	o.RTSSEPublishers, o.RTSSEFor = 8, 6*time.Second // past the streams' socket buffers and unsent bound
	for _, a := range []string{"n", "o", "p", "q", "r", "s", "t"} {
		if a == "r" {
			// A stream cut as a slow consumer still holds the socket
			// buffers' megabytes before its end: 300 ms to read ten of
			// them was too short on a loaded machine (8 of 10 "open").
			o.Drain = 3 * time.Second
		}
		r := RunAttack(a, o)
		t.Logf("%s: canary worst %s fails %d, RSS before %s peak %s, closes %v, extra %v", r.Attack, dur(r.CanaryWorst),
			*r.CanaryFailed, mib(r.RSSBefore), mib(r.PeakRSS), r.Closes, r.Extra)
		if r.Err != "" || r.NA != "" {
			t.Errorf("%s: error %q n/a %q", r.Attack, r.Err, r.NA)
			continue
		}
		// The canary is judged by a benchmark run on a quiet machine; the
		// codes here.
		r.CanaryOK = boolp(true)
		if h := findAttack(a).check(&attackEnv{o: func() AttackOptions { o.defaults(); return o }()}, r); h == nil || !*h {
			t.Errorf("%s: expectation not held: closes %v extra %v", r.Attack, r.Closes, r.Extra)
		}
	}
}
