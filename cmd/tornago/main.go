// Command tornago runs the Tornago demo server: the seed tutorials' handlers
// on one port (default 8888).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/tornago/tornago/loop"
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
	retMem := flag.Duration("return-memory", 10*time.Second, "how often to check for free heap to give back to the OS after a burst (connection storm, large broadcast; also sets loop.Options.ReturnMemoryToOS for abandoned large messages); 0 disables")
	sseHB := flag.Duration("sse-heartbeat", 15*time.Second, "how long an /sse stream may stay silent before a comment line keeps proxies from closing it; negative disables")
	ping := flag.Duration("ping", 25*time.Second, "keep-alive ping interval of every WebSocket route (Tornado's websocket_ping_interval); 0 or negative disables")
	natsURL := flag.String("nats", "", "NATS server URL (nats://host:4222): /receive then reaches the /ws clients of every node using it, and the long-poll chat is one JetStream log for all; with -procs and no -nats the parent runs an embedded one, which requires a secret made per run; give a URL with a password as TORNAGO_NATS, not on the command line, which every local user can read")
	loops := flag.Int("loops", 1, "event loops in each process, sharing the port (SO_REUSEPORT); 0: one per CPU")
	procs := flag.Int("procs", 1, "server processes on the port, supervised by this one (Tornado's fork_processes); 0: one per CPU")
	lp := longPollFlags(flag.CommandLine)
	flag.IntVar(&receiveMax, "receive-bytes", receiveMax, "largest /receive message in bytes (413 beyond)")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := flag.String("log-format", "text", "log format: text or json")
	accessLog := flag.Bool("access-log", false, "log every answered request (method, path, status, bytes, duration, remote IP)")
	trusted := flag.String("trusted-proxies", "", "comma-separated IPs or CIDRs of proxies whose -proxy-header headers are believed (Tornado's xheaders); default none")
	proxyHeader := flag.String("proxy-header", "X-Forwarded-For", "the header family the trusted proxies write, the only one read: X-Forwarded-For (with X-Forwarded-Proto and -Host), Forwarded (RFC 7239) or X-Real-IP")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: tornago [flags]\nEvery flag can also be set from the environment: -port as %s, -log-level as %s, or in the -config file (port = 8888); flags win, then the environment, then the file.\n", envName("port"), envName("log-level"))
		flag.PrintDefaults()
	}
	// Observability (observe.go).
	metricsAddr := flag.String("metrics", "", "serve Prometheus metrics at /metrics on this address (127.0.0.1:9100), off the loop; a bare :P binds -host; with -procs child i uses port P+i; no authentication; default off")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof at /debug/pprof/ on this address (127.0.0.1:6060); a bare :P binds -host; with -procs child i uses port P+i; no authentication: never let it face the internet; default off")
	mount := flag.Bool("mount", false, "serve through a net/http server on -port, the demo mounted in its ServeMux with loop.Mount (what a program with a net/http server of its own does); not with -procs")
	blockThreshold := flag.Duration("block-threshold", 0, "log the loop goroutine's stack when one handler, callback or timer runs longer than this (100ms); 0 disables")
	// The protocol server's API, tokens and config file (api.go, token.go, configfile.go).
	apiKey := flag.String("api-key", "", "enables the server API, POST /api/<method> with this key in the X-API-Key header (publish, broadcast, history, disconnect, subscribe); default off (404); give it as TORNAGO_API_KEY or in the -config file, not on the command line, which every local user can read")
	tokenSecret := flag.String("token-hmac-secret", "", "enables HS256 JWT connect tokens signed with this secret (sub: the user id; exp enforced) and POST /demo/token, which gives the demo page one; give it as TORNAGO_TOKEN_HMAC_SECRET or in the -config file, not on the command line")
	tokenPublicKey := flag.String("token-public-key", "", "enables JWT connect tokens signed by the private half of the public keys in this PEM file (ES256: ECDSA P-256; RS256: RSA 2048+; EdDSA: Ed25519; sub: the user id; exp enforced), beside or instead of -token-hmac-secret (only that one enables POST /demo/token); default off")
	configPath := flag.String("config", "", "a TOML file with any flag's value by its name (port = 8888) and the protocol's [[namespace]] tables; flags and TORNAGO_* variables win over it")
	flag.Parse()
	// What the command line set, for the -procs children (before applyEnv,
	// which marks the flags it sets as set too).
	var cmdline []string
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "nats", "procs", "port", "api-key", "token-hmac-secret":
			return // supervise passes these on its own way (secrets: in the environment)
		}
		cmdline = append(cmdline, "-"+f.Name+"="+f.Value.String())
	})
	if err := applyEnv(flag.CommandLine, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "tornago:", err)
		os.Exit(2)
	}
	var fc fileConfig
	if *configPath != "" {
		var err error
		if fc, err = loadConfigFile(flag.CommandLine, *configPath); err != nil {
			fmt.Fprintln(os.Stderr, "tornago:", err)
			os.Exit(2)
		}
	}
	if err := checkProxyHeader(*proxyHeader); err != nil {
		fmt.Fprintln(os.Stderr, "tornago:", err)
		os.Exit(2)
	}
	if err := checkTrustedProxies(*trusted); err != nil {
		fmt.Fprintln(os.Stderr, "tornago:", err)
		os.Exit(2)
	}
	log, err := newLogger(os.Stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tornago:", err)
		os.Exit(2)
	}
	flag.Visit(func(f *flag.Flag) {
		if secretFlags[f.Name] && f.Name != "nats" && argsName(os.Args[1:], f.Name) {
			log.Warn("a secret on the command line is readable by every local user: give it as "+envName(f.Name)+" or in the -config file", "flag", "-"+f.Name)
		}
	})
	if n := len(*tokenSecret); n > 0 && n < 32 {
		// The length only, never the value.
		log.Warn("-token-hmac-secret is short: anyone who guesses it signs tokens for any user; use 32 random bytes or more", "bytes", n)
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

	if *retMem > 0 {
		go returnMemory(*retMem, log)
	}
	cfg := serverConfig{
		host: *host, port: *port, loops: *loops, ping: *ping, sseHB: *sseHB, natsURL: *natsURL,
		lp: *lp, accessLog: *accessLog, trusted: *trusted, proxyHeader: *proxyHeader,
		metricsAddr: *metricsAddr, pprofAddr: *pprofAddr, blockThreshold: *blockThreshold,
		returnMemory: *retMem > 0, mount: *mount,
		apiKey: *apiKey, tokenSecret: *tokenSecret, tokenPublicKey: *tokenPublicKey, namespaces: fc.Namespaces,
	}
	natsDir, parent := "", 0
	if child := os.Getenv(childSlotEnv); child != "" {
		// A child of -procs: the parent resolved the port and runs NATS.
		cfg.child, _ = strconv.Atoi(child)
		cfg.shared = true
		log = log.With("proc", cfg.child)
		natsDir, parent = os.Getenv(natsDirEnv), os.Getppid()
	} else {
		cfg.child = -1
		if *procs != 1 {
			if *mount {
				fmt.Fprintln(os.Stderr, "tornago: -mount serves one net/http server: not with -procs")
				os.Exit(2)
			}
			os.Exit(supervise(log, cfg, *procs, cmdline))
		}
	}
	err = serve(log, cfg)
	if parentDied.Load() {
		// The parent was killed without removing the embedded NATS's
		// store (natsd.go).
		afterParent(log, parent, natsDir)
	}
	if err != nil {
		log.Error("tornago", "err", err)
		os.Exit(1)
	}
}

// argsName reports whether args name flag (-name, --name, -name=v).
func argsName(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}
