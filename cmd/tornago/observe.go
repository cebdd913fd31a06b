package main

// The operator's listeners: /metrics (-metrics) and net/http/pprof
// (-pprof). Each is a plain net/http server on its own address, off the
// loop: a scrape or a profile costs the loop nothing and still answers
// while the loop is blocked.

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/metrics"
)

// serveMetrics serves the loops' metrics (and the Go runtime's and the
// process's) at /metrics on addr, until the process exits.
func serveMetrics(addr string, loops []*loop.Loop, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(loops...))
	return serveSide(addr, "metrics", mux, log)
}

// servePprof serves net/http/pprof's handlers at /debug/pprof/ on addr.
// It turns allocation sampling back on (main turns it off to spare the
// profiler's memory when nobody profiles).
func servePprof(addr string, log *slog.Logger) error {
	runtime.MemProfileRate = 512 << 10 // the runtime's default
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", redactedCmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return serveSide(addr, "pprof", mux, log)
}

// redactedCmdline is pprof.Cmdline with the password or token of any URL
// in the arguments replaced (a -nats given on the command line): pprof
// has no authentication.
func redactedCmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	args := make([]string, len(os.Args))
	for i, a := range os.Args {
		args[i] = a
		if strings.Contains(a, "@") {
			name, v, isFlag := strings.Cut(a, "=")
			if isFlag && strings.HasPrefix(name, "-") {
				args[i] = name + "=" + redactURL(v)
			} else {
				args[i] = redactURL(a)
			}
		}
	}
	fmt.Fprint(w, strings.Join(args, "\x00"))
}

// serveSide listens on addr at once (so a bad address fails at start-up)
// and serves h in the background. A listener on every interface is
// logged as a warning: neither listener has authentication, and pprof
// shows the command line, stacks, heap and execution traces.
func serveSide(addr, what string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listener: %w", what, err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() {
		log.Warn(what+" listens on every interface, with no authentication: give it a loopback or private address (or -host)", "addr", ln.Addr().String())
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Info(what+" listening", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.Error(what+" server", "err", err)
		}
	}()
	return nil
}
