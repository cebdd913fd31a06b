package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// Group runs several loops with the same setup on the same ports: more
// cores without threads inside a loop. Each loop stays one reactor with its
// own handlers, timers and state, and the kernel spreads new connections
// over the loops' listening sockets (SO_REUSEPORT), so a connection lives
// on one loop for its whole life and its handler code needs no locks.
//
// State that all connections see is either shared through a Hub on each
// loop with one broker (a MemoryBroker in one process, natsbroker across
// processes), or owned by one loop and reached from the others with
// AddCallback.
type Group struct {
	loops []*Loop
	ready chan struct{}
	share bool // opts.ReusePort was set: other processes share the ports
}

// Goroutine-safe.
// NewGroup returns n loops built with opts, not yet running; n <= 0 means
// one per CPU (runtime.GOMAXPROCS). opts.ReusePort is turned on: the loops
// share their ports. Set it yourself when other processes share them too
// (cmd/tornago -procs): Listen then skips its check that the port is free.
// Options that bound memory (MaxConns, MaxUnsentTotal,
// MaxAsyncBytes...) apply to each loop, so the process may use n times
// as much.
func NewGroup(n int, opts Options) *Group {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	g := &Group{ready: make(chan struct{}), share: opts.ReusePort}
	opts.ReusePort = true
	for range n {
		g.loops = append(g.loops, New(opts))
	}
	return g
}

// Goroutine-safe. Loops returns the group's loops, in a fixed order.
func (g *Group) Loops() []*Loop { return g.loops }

// Goroutine-safe before Start. Listen adds a listener on addr to every
// loop, each serving the Application that setup builds for it: setup is
// called once per loop, here, with the loop and its index, and is where
// per-loop state (a Hub, a PeriodicCallback) is made; it must return a new
// Application each time (an Application serves one Loop). A port of 0 is
// resolved once, so every loop listens on the same port. Unless the group
// was made with Options.ReusePort, it fails when the port is in use.
func (g *Group) Listen(addr string, setup func(l *Loop, i int) *Application) error {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("loop: group listen %s: %w", addr, err)
	}
	bound := addr
	if port, _ := strconv.Atoi(ps); !g.share || port == 0 {
		// Fail now if the port is in use, and resolve ":0" once so that
		// every loop binds the same port.
		if bound, _, err = probePort(addr); err != nil {
			return fmt.Errorf("loop: group listen %s: %w", addr, err)
		}
	}
	for i, l := range g.loops {
		if err := l.Listen(bound, setup(l, i)); err != nil {
			return fmt.Errorf("loop: group listen %s: loop %d: %w", addr, i, err)
		}
	}
	return nil
}

// failStopGrace bounds the graceful stop of the other loops after one
// failed.
const failStopGrace = 10 * time.Second

// Goroutine-safe (not from a loop). Start runs every loop, each on its own
// goroutine (see Loop.Start), and blocks until all have returned. When one
// loop fails, the others are stopped (gracefully, for up to 10 s) and the
// first error is returned. Call it once.
func (g *Group) Start() error {
	errs := make(chan error, len(g.loops))
	var wg sync.WaitGroup
	for _, l := range g.loops {
		wg.Go(func() { errs <- l.Start() })
	}
	go func() {
		for _, l := range g.loops {
			<-l.Ready() // closed by Start, or by a sibling's Stop before it
		}
		close(g.ready)
	}()
	var first error
	for range g.loops {
		if err := <-errs; err != nil && first == nil {
			first = err
			// Bounded: a response that never finishes (a long poll) must
			// not keep the failed group from returning to its supervisor.
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), failStopGrace)
				defer cancel()
				g.Stop(ctx)
			}()
		}
	}
	wg.Wait()
	<-g.ready // every loop is done: Ready is closed before Start returns
	return first
}

// Goroutine-safe. Ready is closed once every loop runs (or has failed).
func (g *Group) Ready() <-chan struct{} { return g.ready }

// Goroutine-safe. Addr returns the address of the first listener (the same
// on every loop), or nil before Ready.
func (g *Group) Addr() net.Addr { return g.loops[0].Addr() }

// Goroutine-safe (not from a loop). Stop stops every loop at once (see
// Loop.Stop: WebSockets get 1001 and responses finish, until ctx is done)
// and returns when all have stopped, with their errors joined.
func (g *Group) Stop(ctx context.Context) error {
	errs := make([]error, len(g.loops))
	var wg sync.WaitGroup
	for i, l := range g.loops {
		wg.Go(func() {
			if err := l.Stop(ctx); err != nil {
				errs[i] = fmt.Errorf("loop %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
