package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/natsbroker"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
)

// serverConfig is what one server process runs, from the flags.
type serverConfig struct {
	host      string
	port      int
	loops     int // 0: one per CPU
	ping      time.Duration
	sseHB     time.Duration // /sse heartbeat interval (0: the default)
	natsURL   string
	lp        longPollOptions
	accessLog bool
	trusted   string
	// proxyHeader is -proxy-header, AppOptions.ProxyHeader.
	proxyHeader string

	metricsAddr, pprofAddr string
	blockThreshold         time.Duration
	returnMemory           bool // -return-memory: loop.Options.ReturnMemoryToOS

	// apiKey enables the server API (api.go); tokenSecret the HS256
	// connect tokens (token.go). Secrets: never logged.
	apiKey, tokenSecret string
	// tokenPublicKey is a PEM file of public keys verifying connect
	// tokens (token.go).
	tokenPublicKey string
	// namespaces are the config file's (nil: the built-in ones).
	namespaces []namespaceConfig

	mount  bool // -mount: serve through a net/http server (mount.go)
	child  int  // index among the -procs children, -1 when not one
	shared bool // other processes listen on the port too (no free-port check)
}

// stopTimeout bounds a graceful stop: WebSockets get 1001 and responses
// finish until then.
const stopTimeout = 10 * time.Second

// serve runs the demo server's loops in this process until SIGINT or
// SIGTERM, then stops them gracefully.
func serve(log *slog.Logger, cfg serverConfig) error {
	n := cfg.loops
	if n <= 0 {
		n = runtime.NumCPU()
	}
	g := loop.NewGroup(n, loop.Options{Logger: log, BlockThreshold: cfg.blockThreshold, ReusePort: cfg.shared, ReturnMemoryToOS: cfg.returnMemory})
	if cfg.metricsAddr != "" {
		if err := serveMetrics(childAddr(sideAddr(cfg.metricsAddr, cfg.host), cfg.child), g.Loops(), log); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	if cfg.pprofAddr != "" {
		if err := servePprof(childAddr(sideAddr(cfg.pprofAddr, cfg.host), cfg.child), log); err != nil {
			return fmt.Errorf("pprof: %w", err)
		}
	}
	appOpts := demoAppOptions(cfg.lp)
	if cfg.accessLog {
		appOpts.AccessLog = accessLogger(log)
	}
	if cfg.trusted != "" {
		appOpts.TrustedProxies = strings.Split(cfg.trusted, ",")
	}
	appOpts.ProxyHeader = cfg.proxyHeader
	env := &demoEnv{ping: cfg.ping, proc: strconv.Itoa(os.Getpid()), log: log, sseHeartbeat: cfg.sseHB}
	if env.ping <= 0 {
		env.ping = -1 // WSOptions: negative disables, zero is the default
	}
	var nc *nats.Conn
	switch {
	case cfg.natsURL != "":
		var err error
		nc, err = nats.Connect(cfg.natsURL, nats.Name("tornago"), nats.MaxReconnects(-1),
			nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
				// nats.go calls it from Close too, with no error: the
				// server's own stop, not an outage.
				if err == nil && nc.IsClosed() {
					log.Debug("nats connection closed")
					return
				}
				log.Warn("nats disconnected", "err", err)
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }))
		if err != nil {
			return fmt.Errorf("nats %s: %w", redactURL(cfg.natsURL), err)
		}
		defer nc.Close()
		nb := natsbroker.NewWithOptions(nc, "tornago.", natsbroker.Options{Logger: log, Accept: acceptFromBroker(cfg.lp)})
		defer nb.Close() // runs first: sends what is queued, then nc closes
		env.broker = nb
	case n > 1:
		env.broker = &pubsub.MemoryBroker{}
	}
	env.lp = cfg.lp
	env.namespaces = namespaces(cfg.namespaces)
	auth, err := newTokenAuth(cfg.tokenSecret, cfg.tokenPublicKey)
	if err != nil {
		return err
	}
	if auth != nil {
		defer auth.Close()
		env.auth = auth
	}
	var natsb pubsub.Broker // the process's broker to the others, if any
	if nc != nil {
		natsb = env.broker
	}
	if natsb != nil {
		// Presence of every process: heartbeats on the broker.
		stop, err := realtime.DefaultPresence.Share(natsb, 0)
		if err != nil {
			return err
		}
		defer stop()
	}
	env.broker = chatBroker(env.broker, cfg.lp, log)
	api, err := newDemoAPI(cfg, natsb, log)
	if err != nil {
		return err
	}
	if api != nil {
		defer api.Close()
		// Room for the API's bodies (1 MiB) beside the demo routes' own.
		appOpts.Limits.MaxBodyBytes = max(appOpts.Limits.MaxBodyBytes, realtime.DefaultAPIBodyBytes)
	}
	nodes := make([]*demoNode, n)
	addr := net.JoinHostPort(cfg.host, strconv.Itoa(cfg.port))
	setup := func(l *loop.Loop, i int) *loop.Application {
		app := loop.NewApplication(appOpts)
		addHealthz(app)
		nodes[i] = addDemos(l, i, app, env)
		if api != nil && nodes[i].err == nil {
			api.Routes(app, newDemoBackend(l, nodes[i], env))
		}
		return app
	}
	var (
		srv *http.Server
		ln  net.Listener
	)
	if cfg.mount {
		srv, ln, err = mountedServer(g, addr, setup)
	} else {
		err = g.Listen(addr, setup)
	}
	if err == nil {
		for _, nd := range nodes {
			if nd.err != nil {
				err = nd.err
				break
			}
		}
	}
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		if cfg.child >= 0 {
			signal.Notify(sig, parentDeathSignal)
		}
		s := <-sig
		if s == parentDeathSignal {
			parentDied.Store(true)
			log.Warn("stopping: the -procs parent died")
		} else {
			log.Info("stopping", "signal", s.String())
		}
		// Parked long polls first get an empty answer (the page polls
		// again, and finds the server gone or back): Stop waits for
		// in-flight requests, and a parked poll would hold it up to its
		// 30 s timeout. Callbacks run in order, so this one runs before
		// Stop's own.
		for i, l := range g.Loops() {
			l.AddCallback(nodes[i].stop)
		}
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if srv != nil {
			// Stops accepting and ends net/http's own connections; those
			// it handed to the loops are theirs to stop.
			if err := srv.Shutdown(ctx); err != nil {
				log.Warn("stop net/http", "err", err)
			}
		}
		if err := g.Stop(ctx); err != nil {
			log.Warn("stop", "err", err)
		}
	}()
	go func() {
		<-g.Ready()
		if srv != nil {
			log.Info("tornago listening through net/http (-mount)", "addr", ln.Addr().String(), "loops", n)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("net/http server", "err", err)
			}
		} else if a := g.Addr(); a != nil {
			log.Info("tornago listening", "addr", a.String(), "loops", n)
		}
	}()
	if err := g.Start(); err != nil {
		return fmt.Errorf("loop: %w", err)
	}
	return nil
}

// sideAddr is addr, a side listener's address (-metrics, -pprof), with
// host (-host) when addr names none (":9100"): a -host 127.0.0.1 server
// must not open its profiles to every interface. With no -host either, it
// listens on every interface (serveSide warns).
func sideAddr(addr, host string) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil || h != "" || host == "" {
		return addr // serveSide reports an invalid one
	}
	return net.JoinHostPort(host, p)
}

// childAddr gives -procs child i its own port for a side listener
// (-metrics, -pprof): the configured port plus i.
func childAddr(addr string, child int) string {
	if child <= 0 {
		return addr
	}
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return addr // serveSide reports it
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p == 0 {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(p+child))
}
