package loop

import (
	"fmt"
	"net"
	"strconv"

	"golang.org/x/sys/unix"
)

// defaultMaxConns is Options.MaxConns's default: the open-file limit less a
// reserve for the program's own files and sockets.
func defaultMaxConns() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY || rl.Cur > 1<<30 {
		return 1 << 20
	}
	n := int(rl.Cur)
	// The reserve is at most half of a small limit (ulimit -n 64 would
	// otherwise leave one connection, and a health probe beside a client
	// would read 503).
	return max(n-min(64+n/100, n/2), 1)
}

type listener struct {
	addr  string
	bound string // addr with the port resolved (Start)
	port  int    // of addr, to find the listener of a new connection without allocating
	app   *Application
}

// Goroutine-safe before Start. Listen adds a TCP listener on addr
// ("host:port", ":8888") serving app; several goroutines may add
// listeners at once. It fails once Start was called. More than one listener is allowed, but an
// Application serves one Loop: Listen fails when app already serves
// another (its free lists and route counters are loop-only).
func (l *Loop) Listen(addr string, app *Application) error {
	if app == nil {
		return fmt.Errorf("loop: listen %s: nil Application", addr)
	}
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("loop: listen %s: %w", addr, err)
	}
	port, _ := strconv.Atoi(ps) // a named port gives 0: matched when it is the only listener
	if err := app.claim(l); err != nil {
		return fmt.Errorf("loop: listen %s: %w", addr, err)
	}
	// Under mu, as Start's switch out of stateNew: the listener is either
	// added before Start reads the list, or refused.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state.Load() != stateNew {
		return fmt.Errorf("loop: listen %s: loop already started", addr)
	}
	l.listeners = append(l.listeners, listener{addr: addr, port: port, app: app})
	return nil
}

// appFor returns the Application of the listener that accepted a
// connection on local address a, or nil. Loop-only.
func (l *Loop) appFor(a net.Addr) *Application {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return nil
	}
	for _, ln := range l.listeners {
		if ln.port == ta.Port {
			return ln.app
		}
	}
	if len(l.listeners) == 1 {
		return l.listeners[0].app
	}
	return nil
}

// resolve fixes each listener's address before gnet binds it: with a
// probe (see probePort) unless other processes share the port on purpose
// (Options.ReusePort with a fixed port).
func (l *Loop) resolve() error {
	for i := range l.listeners {
		ln := &l.listeners[i]
		if l.opts.ReusePort && ln.port != 0 {
			ln.bound = ln.addr
			continue
		}
		bound, port, err := probePort(ln.addr)
		if err != nil {
			return fmt.Errorf("loop: listen %s: %w", ln.addr, err)
		}
		ln.bound, ln.port = bound, port
	}
	return nil
}

// probePort binds addr once without SO_REUSEPORT, to fail early when the
// port is taken (gnet's listeners use SO_REUSEPORT, which would otherwise
// share the port silently with whatever holds it) and to learn the port
// the kernel picks for ":0". The probe is closed at once; gnet binds the
// same port right after, and a program taking it in between makes Start
// fail rather than share it.
func probePort(addr string) (bound string, port int, err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	probe, err := net.Listen("tcp", addr)
	if err != nil {
		return "", 0, err
	}
	port = probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	return net.JoinHostPort(host, strconv.Itoa(port)), port, nil
}

// Goroutine-safe. Addr returns the address of the loop's first listener, with the port the
// kernel chose for ":0", or nil before Ready is closed or without
// listeners. Goroutine-safe.
func (l *Loop) Addr() net.Addr {
	addrs := l.Addrs()
	if len(addrs) == 0 {
		return nil
	}
	return addrs[0]
}

// Goroutine-safe. Addrs returns the addresses of all listeners, in the
// order of Listen, or nil before Ready is closed.
func (l *Loop) Addrs() []net.Addr {
	select {
	case <-l.ready:
	default:
		return nil
	}
	var out []net.Addr
	for _, ln := range l.listeners {
		if ln.bound == "" {
			continue
		}
		a, err := net.ResolveTCPAddr("tcp", ln.bound)
		if err == nil {
			out = append(out, a)
		}
	}
	return out
}
