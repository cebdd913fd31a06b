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

// resolve binds each listener's address once without SO_REUSEPORT, to fail
// early when the port is taken (gnet's listeners use SO_REUSEPORT, which
// would otherwise share the port with whatever holds it) and to learn the
// port of ":0". The probe is closed before gnet binds the same port.
func (l *Loop) resolve() error {
	for i := range l.listeners {
		ln := &l.listeners[i]
		host, _, err := net.SplitHostPort(ln.addr)
		if err != nil {
			return fmt.Errorf("loop: listen %s: %w", ln.addr, err)
		}
		if l.opts.ReusePort && ln.port != 0 {
			ln.bound = ln.addr
			continue
		}
		probe, err := net.Listen("tcp", ln.addr)
		if err != nil {
			return fmt.Errorf("loop: listen %s: %w", ln.addr, err)
		}
		ln.port = probe.Addr().(*net.TCPAddr).Port
		ln.bound = net.JoinHostPort(host, strconv.Itoa(ln.port))
		probe.Close()
	}
	return nil
}

// Addr returns the address of the loop's first listener, with the port the
// kernel chose for ":0", or nil before Start or without listeners. Valid
// once Ready is closed. Goroutine-safe from then on.
func (l *Loop) Addr() net.Addr {
	addrs := l.Addrs()
	if len(addrs) == 0 {
		return nil
	}
	return addrs[0]
}

// Addrs returns the addresses of all listeners, in the order of Listen.
// Valid once Ready is closed.
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
