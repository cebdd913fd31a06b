// Command tornago runs the Tornago demo server: the seed tutorials' handlers
// on one port (default 8888).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/natsbroker"
	"github.com/tornago/tornago/proto/http1"
)

// demoAppOptions bounds request bodies to what the demo routes take: the
// largest long-poll message, urlencoded (up to 3 bytes a byte), and a
// little room for the other fields, instead of http1's 10 MiB default.
func demoAppOptions(lp longPollOptions) loop.AppOptions {
	lp = lp.withDefaults()
	return loop.AppOptions{Limits: http1.Limits{MaxBodyBytes: 3*int64(max(lp.MaxMessageBytes, receiveMax)) + 4<<10}}
}

func main() {
	port := flag.Int("port", 8888, "TCP port to listen on")
	host := flag.String("host", "", "address to bind (default all interfaces)")
	gcPercent := flag.Int("gc-percent", 10, "GOGC for the server when the GOGC environment variable is unset")
	ping := flag.Duration("ping", 25*time.Second, "keep-alive ping interval of every WebSocket route (Tornado's websocket_ping_interval); 0 or negative disables")
	natsURL := flag.String("nats", "", "NATS server URL (nats://host:4222): /receive then reaches the /ws clients of every node using it")
	lp := longPollFlags(flag.CommandLine)
	flag.IntVar(&receiveMax, "receive-bytes", receiveMax, "largest /receive message in bytes (413 beyond)")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := flag.String("log-format", "text", "log format: text or json")
	accessLog := flag.Bool("access-log", false, "log every answered request (method, path, status, bytes, duration, remote IP)")
	trusted := flag.String("trusted-proxies", "", "comma-separated IPs or CIDRs of proxies whose Forwarded / X-Forwarded-* headers are believed (Tornado's xheaders); default none")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: tornago [flags]\nEvery flag can also be set from the environment: -port as %s, -log-level as %s; flags win.\n", envName("port"), envName("log-level"))
		flag.PrintDefaults()
	}
	// Observability (observe.go).
	metricsAddr := flag.String("metrics", "", "serve Prometheus metrics at /metrics on this address (127.0.0.1:9100), off the loop; default off")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof at /debug/pprof/ on this address (127.0.0.1:6060); default off")
	blockThreshold := flag.Duration("block-threshold", 0, "log the loop goroutine's stack when one handler, callback or timer runs longer than this (100ms); 0 disables")
	flag.Parse()
	if err := applyEnv(flag.CommandLine, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "tornago:", err)
		os.Exit(2)
	}
	log, err := newLogger(os.Stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tornago:", err)
		os.Exit(2)
	}
	// The binary serves no profiles; sampling allocations would only add
	// the profiler's hash table and buckets to the server's RSS.
	runtime.MemProfileRate = 0
	if os.Getenv("GOGC") == "" {
		// A server of idle connections keeps a large, stable live heap and
		// its WebSocket paths allocate nothing, so collecting at 10% growth
		// instead of 100% costs little CPU and keeps RSS per connection
		// close to the live bytes (19,000 idle: 1,300 B at 100, 704 at 25,
		// 656-681 at 10). HTTP requests do allocate: an HTTP-heavy server
		// with a large heap may prefer a higher value.
		debug.SetGCPercent(*gcPercent)
	}

	l := loop.New(loop.Options{Logger: log, BlockThreshold: *blockThreshold})
	// Observability listeners (observe.go).
	if *metricsAddr != "" {
		if err := serveMetrics(*metricsAddr, l, log); err != nil {
			log.Error("metrics", "err", err)
			os.Exit(1)
		}
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr, log); err != nil {
			log.Error("pprof", "err", err)
			os.Exit(1)
		}
	}
	appOpts := demoAppOptions(*lp)
	if *accessLog {
		appOpts.AccessLog = accessLogger(log)
	}
	if *trusted != "" {
		appOpts.TrustedProxies = strings.Split(*trusted, ",")
	}
	app := loop.NewApplication(appOpts)
	addHealthz(app)
	var broker loop.Broker
	var nc *nats.Conn
	if *natsURL != "" {
		nc, err = nats.Connect(*natsURL, nats.Name("tornago"), nats.MaxReconnects(-1))
		if err != nil {
			log.Error("nats", "url", *natsURL, "err", err)
			os.Exit(1)
		}
		defer nc.Close()
		nb := natsbroker.New(nc, "tornago.")
		defer nb.Close() // runs first: sends what is queued, then nc closes
		broker = nb
	}
	pingInterval := *ping
	if pingInterval <= 0 {
		pingInterval = -1 // WSOptions: negative disables, zero is the default
	}
	addDemos(l, app, broker, pingInterval)
	// One log per process; with -nats, shared by every process (JetStream).
	clog, err := newChatLog(nc, *lp, log)
	if err != nil {
		log.Error("long-poll", "err", err)
		os.Exit(1)
	}
	defer clog.close() // after the loop stopped, before nc closes
	polls := addLongPoll(l, app, *lp, clog)

	addr := fmt.Sprintf("%s:%d", *host, *port)
	if err := l.Listen(addr, app); err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		s := <-sig
		log.Info("stopping", "signal", s.String())
		// Parked long polls first get an empty answer (the page polls
		// again, and finds the server gone or back): Stop waits for
		// in-flight requests, and a parked poll would hold it up to its
		// 30 s timeout. Callbacks run in order, so this one runs before
		// Stop's own.
		l.AddCallback(polls.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Stop(ctx); err != nil {
			log.Warn("stop", "err", err)
		}
	}()
	go func() {
		<-l.Ready()
		log.Info("tornago listening", "addr", l.Addr().String())
	}()
	if err := l.Start(); err != nil {
		log.Error("loop", "err", err)
		os.Exit(1)
	}
}
