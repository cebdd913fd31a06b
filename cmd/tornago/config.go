package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/tornago/tornago/loop"
)

// envPrefix names the environment variable of each flag: -port is
// TORNAGO_PORT, -log-level TORNAGO_LOG_LEVEL.
const envPrefix = "TORNAGO_"

// envName is the environment variable of flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyEnv sets every flag of fs that the command line did not set (call
// it after fs.Parse) and whose environment variable is set: flags win, and
// the variable of a flag given on the command line is not even read. An
// invalid value is an error naming the variable.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		v := getenv(envName(f.Name))
		if v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
		}
	})
	return err
}

// newLogger builds the server's logger from -log-level and -log-format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// accessLogger logs each answered request at info level, as "access".
func accessLogger(log *slog.Logger) func(loop.AccessEntry) {
	return func(e loop.AccessEntry) {
		log.Info("access", "method", e.Method, "path", e.Path, "status", e.Status,
			"bytes", e.Bytes, "duration", e.Duration, "remote_ip", e.Remote)
	}
}

// checkProxyHeader refuses a -proxy-header that loop.NewApplication would
// panic on, before anything starts.
func checkProxyHeader(s string) error {
	for _, ok := range []string{"X-Forwarded-For", "Forwarded", "X-Real-IP"} {
		if strings.EqualFold(s, ok) {
			return nil
		}
	}
	return fmt.Errorf("-proxy-header %q: want X-Forwarded-For, Forwarded or X-Real-IP", s)
}

// checkTrustedProxies refuses a -trusted-proxies that loop.NewApplication
// would panic on (each entry an IP or a CIDR prefix, as
// AppOptions.TrustedProxies reads it), before anything starts.
func checkTrustedProxies(s string) error {
	if s == "" {
		return nil
	}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		var err error
		if strings.Contains(e, "/") {
			_, err = netip.ParsePrefix(e)
		} else {
			_, err = netip.ParseAddr(e)
		}
		if err != nil {
			return fmt.Errorf("-trusted-proxies: %q is not an IP or a CIDR prefix", e)
		}
	}
	return nil
}

// addHealthz answers GET /healthz from the loop itself, so that it fails
// (times out) when the loop is stuck, which a check from another goroutine
// would not notice.
func addHealthz(app *loop.Application) {
	app.Handle("/healthz", loop.Methods{Get: func(r *loop.Request) {
		s := r.Loop().Metrics()
		r.SetHeader("Cache-Control", "no-store")
		r.Write(map[string]any{"status": "ok", "open_conns": s.OpenConns})
	}})
}
