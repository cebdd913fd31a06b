package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// AttackRunOptions runs the suite against servers the harness builds and
// starts itself (see StartServer), attack by attack, each attack against
// every server in turn.
type AttackRunOptions struct {
	Root    string   // module root to build from
	Servers []string // e.g. tornago, gorilla
	Port    int      // first port; server i listens on Port+i
	PinCPU  string   // taskset -c for the servers, when not empty
	// Fresh starts a new server process for every attack, so that each
	// peak RSS starts from a clean process and a server an attack killed
	// does not fail the next ones. Without it a server is restarted only
	// when it died (or for the fd storm's descriptor limit).
	Fresh bool
	// StormNoFile (> 0) is the RLIMIT_NOFILE of the server the fd storm
	// runs against, so that StormConns goes past it.
	StormNoFile int
	Log         io.Writer
	Attacks     []string      // names from ParseAttacks
	Options     AttackOptions // Base, PID and Canary are set per server
	// Each, when not nil, hears every result as it is made.
	Each func(*AttackResult)
}

// AttackServers runs the suite and returns one result per attack and
// server. An error means a server could not be (re)started.
func AttackServers(ro AttackRunOptions) ([]*AttackResult, error) {
	running := map[string]*Server{}
	nofile := map[string]int{}
	defer func() {
		for _, s := range running {
			StopServers([]*Server{s})
		}
	}()
	var rs []*AttackResult
	for _, name := range ro.Attacks {
		for i, srv := range ro.Servers {
			lim := 0
			if strings.HasSuffix(name, "fd-storm") {
				lim = ro.StormNoFile
			}
			s := running[srv]
			if s != nil && (ro.Fresh || !processAlive(s.PID) || nofile[srv] != lim) {
				StopServers([]*Server{s})
				delete(running, srv)
				s = nil
			}
			if s == nil {
				var err error
				var args, env []string
				if base, _, _ := ServerTree(srv); base == "tornago" {
					// Tokens checked (attacks n-r sign theirs with it).
					if ro.Options.TokenSecret != "" {
						env = []string{"TORNAGO_TOKEN_HMAC_SECRET=" + ro.Options.TokenSecret}
					}
					// The demo's doors (64 KiB messages) would answer the
					// big attacks with 413; opened, the loop's own bounds
					// (MaxUnsentTotal, the store's caps) are what is measured.
					args = []string{"-receive-bytes", "16777216", "-longpoll-message-bytes", "10485760"}
				}
				s, err = StartServer(ro.Root, srv, ro.Port+i, ServerOptions{PinCPU: ro.PinCPU, NoFile: lim, Args: args, Env: env}, ro.Log)
				if err != nil {
					ApplyCrossTargets(rs)
					return rs, fmt.Errorf("attack %s: %w", name, err)
				}
				running[srv], nofile[srv] = s, lim
			}
			o := ro.Options
			o.Base, o.PID, o.Canary = "http://"+s.Host, s.PID, ""
			r := RunAttack(name, o)
			_, _, r.Server = ServerTree(srv)
			rs = append(rs, r)
			if ro.Each != nil {
				ro.Each(r)
			}
		}
	}
	ApplyCrossTargets(rs)
	return rs, nil
}

// ApplyCrossTargets judges the targets stated against the gorilla
// reference: the slow-reader attack's peak RSS must be at most twice
// gorilla's in the same run (and the canary within budget). Gorilla's own
// result is judged on its canary only.
func ApplyCrossTargets(rs []*AttackResult) {
	ref := map[string]*AttackResult{}
	for _, r := range rs {
		if r.Server == "gorilla" {
			ref[r.Attack] = r
		}
	}
	for _, r := range rs {
		if r.Attack != "a-slow-readers" || r.NA != "" || r.Err != "" {
			continue
		}
		if r.Server == "gorilla" {
			r.ExpectHeld = r.CanaryOK
			continue
		}
		g := ref[r.Attack]
		if g == nil || g.PeakRSS == nil || r.PeakRSS == nil || *g.PeakRSS == 0 {
			continue
		}
		ratio := float64(*r.PeakRSS) / float64(*g.PeakRSS)
		if r.Extra == nil {
			r.Extra = map[string]any{}
		}
		r.Extra["peak_rss_vs_gorilla"] = fmt.Sprintf("%.2fx", ratio)
		r.ExpectHeld = both(boolp(ratio <= 2), r.CanaryOK)
	}
}

// Summary is the result's one-line digest: the canary's worst round trip,
// the peak RSS, survival, the expectation and why the attack did not run.
func (r *AttackResult) Summary() string {
	return fmt.Sprintf("%s %s canary worst %s peak RSS %s survived %s expect %s %s", r.Attack, r.Server,
		dur(r.CanaryWorst), mib(r.PeakRSS), held(r.Survived), held(r.ExpectHeld), r.NA+r.Err)
}

func mib(p *int64) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(*p)/(1<<20))
}

func dur(p *int64) string {
	if p == nil {
		return "n/a"
	}
	return round(time.Duration(*p)).String()
}

func held(p *bool) string {
	switch {
	case p == nil:
		return "n/a"
	case *p:
		return "held"
	}
	return "FAILED"
}

// WriteAttackTable prints one row per result, its attack-specific figures
// below it, then each attack's expectation.
func WriteAttackTable(w io.Writer, rs []*AttackResult) {
	fmt.Fprintf(w, "%-16s %-8s %10s %6s %11s %11s %11s %-8s %-7s %s\n",
		"attack", "server", "canary max", "fails", "RSS before", "peak RSS", "RSS after", "survived", "expect", "closes")
	for _, r := range rs {
		if r.NA != "" || r.CanaryRTTs == nil {
			why := r.NA
			if why == "" {
				why = "error: " + r.Err
			}
			fmt.Fprintf(w, "%-16s %-8s %10s %6s %11s %11s %11s %-8s %-7s %s\n", r.Attack, r.Server,
				"n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a")
			fmt.Fprintf(w, "    %s\n", why)
			continue
		}
		surv := "no"
		if *r.Survived {
			surv = "yes"
		}
		fmt.Fprintf(w, "%-16s %-8s %10s %6d %11s %11s %11s %-8s %-7s %s\n", r.Attack, r.Server,
			dur(r.CanaryWorst), *r.CanaryFailed, mib(r.RSSBefore), mib(r.PeakRSS), mib(r.RSSAfter), surv,
			held(r.ExpectHeld), sortedCounts(r.Closes))
		if r.Err != "" {
			fmt.Fprintf(w, "    error: %s\n", r.Err)
		}
		for _, k := range sortedKeys(r.Extra) {
			fmt.Fprintf(w, "    %s: %s\n", k, FormatFigure(r.Extra[k]))
		}
	}
	fmt.Fprintln(w, "\nexpectations (canary budget: worst round trip, every 100 ms, with no failed round trip):")
	seen := map[string]bool{}
	for _, r := range rs {
		if !seen[r.Attack] {
			seen[r.Attack] = true
			fmt.Fprintf(w, "  %-16s %s\n", r.Attack, r.Expect)
		}
	}
}
