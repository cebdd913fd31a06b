package bench

import (
	"strings"
	"testing"
	"time"
)

// TestRealtimeScenarios runs rt-idle, rt-push, rt-connect, storm, presence and rt-storm at
// small sizes against the tornago binary with -token-hmac-secret (each
// client signs its own HS256 token; rt-storm with -procs 2, whose
// children it kills), checking that each measures what it reports.
func TestRealtimeScenarios(t *testing.T) {
	const secret = "bench-test-secret-0123456789abcdef"
	t.Setenv("TORNAGO_TOKEN_HMAC_SECRET", secret) // the servers' (started below)
	s := startTornago(t, 18830)
	o := RealtimeOptions{URL: s.URL(""), Conns: 40, PID: s.PID, Messages: 5, Rate: 20, TokenSecret: secret}

	bad := o
	bad.TokenSecret = "another-secret-0123456789abcdefgh"
	if _, err := RealtimeConnect(bad); err == nil || !strings.Contains(err.Error(), "3500") {
		t.Errorf("rt-connect with tokens of another secret: %v, want the canary refused with 3500", err)
	}
	r, err := RealtimeConnect(o)
	if err != nil || r.Conns != 40 || r.Extra["tokens"] != "HS256" {
		t.Fatalf("rt-connect: %v (%+v)", err, r)
	}

	r, err = RealtimeIdle(o)
	if err != nil {
		t.Fatalf("rt-idle: %v (%+v)", err, r)
	}
	if r.Conns != 120 || r.Errors != 0 {
		t.Errorf("rt-idle: conns %d errors %d, want 120, 0; %v", r.Conns, r.Errors, r.Extra)
	}
	for _, k := range []string{"raw_rss_per_conn_bytes", "rt_1sub_rss_per_conn_bytes", "rt_10sub_rss_per_conn_bytes"} {
		if _, ok := r.Extra[k]; !ok {
			t.Errorf("rt-idle: no %s in %v", k, r.Extra)
		}
	}

	r, err = RealtimePush(o)
	if err != nil {
		t.Fatalf("rt-push: %v (%+v)", err, r)
	}
	raw, rt := r.Extra["raw"].(rtPhase), r.Extra["rt"].(rtPhase)
	// CPU is read in 10 ms ticks: a run this small may read 0.
	if raw.Deliveries != 40*5 || rt.Deliveries != 40*5 || !r.CPU.ServerMeasure {
		t.Errorf("rt-push: raw %+v rt %+v", raw, rt)
	}

	// storm and presence: tornago's chat namespace has presence and
	// join_leave.
	r, err = RealtimeJoinLeaveStorm(o)
	if err != nil {
		t.Fatalf("storm: %v (%+v)", err, r)
	}
	if r.Conns != 40 || r.Extra["join_leave_pushes"].(int64) == 0 || r.Extra["frames"].(int64) > 3*40 || r.Extra["canary_ok"] != true {
		t.Errorf("storm: conns %d %v", r.Conns, r.Extra)
	}
	t.Logf("storm: %v", r.Extra)
	r, err = RealtimePresence(o)
	if err != nil {
		t.Fatalf("presence: %v (%+v)", err, r)
	}
	if r.Extra["presence_stats_clients"] != 40 || r.Extra["presence_stats_users"] != 40 || r.Extra["presence_listed"] != 40 {
		t.Errorf("presence: %v", r.Extra)
	}
	t.Logf("presence: %v", r.Extra)

	p := startTornago(t, 18832, "-procs", "2")
	time.Sleep(500 * time.Millisecond) // both children listening
	o = RealtimeOptions{URL: p.URL(""), Conns: 40, PID: p.PID, Messages: 10, Rate: 10, TokenSecret: secret}
	r, err = RealtimeStorm(o)
	if err != nil {
		t.Fatalf("rt-storm: %v (%+v)", err, r)
	}
	if r.Extra["back"].(int64) != 40 || r.Extra["missed"].(int64) != 0 || r.Extra["repeated"].(int64) != 0 {
		t.Errorf("rt-storm: %v", r.Extra)
	}
	t.Logf("rt-storm: %v", r.Extra)
}
