package loop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Options configures a Loop. The zero value is ready to use; every field
// documents its default.
type Options struct {
	// Logger receives the loop's logs, including recovered panics with their
	// stacks. Default: slog.Default().
	Logger *slog.Logger

	// TimeoutResolution is the tick of the timing wheel that holds every
	// per-connection deadline (slow headers, idle keep-alive, WebSocket pings,
	// close handshakes). A deadline fires up to one tick late. The wheel wakes
	// the loop once per tick while it holds entries, however many connections
	// there are. Default: 500ms.
	TimeoutResolution time.Duration

	// ExecutorWorkers bounds the goroutines RunInExecutor uses for blocking
	// work. Default: 16.
	ExecutorWorkers int

	// ExecutorQueue bounds the work waiting for an executor worker; beyond it
	// RunInExecutor reports ErrExecutorFull. Default: 4096.
	ExecutorQueue int

	// MaxConns bounds the connections of the loop (served and dialed). A
	// connection accepted beyond it gets a 503 and is closed at once, so the
	// process never runs out of file descriptors: gnet stops its engine
	// (and with it every connection) when accept fails with EMFILE.
	// Counted in Metrics().AcceptsRefused. Default: the process's open-file
	// limit (RLIMIT_NOFILE) minus a reserve of 64 + 1% (at most half the
	// limit) for the files, broker and dial sockets the program opens
	// itself.
	MaxConns int

	// MaxUnsentTotal bounds, loop-wide, the output all connections of the
	// loop together have written but their sockets did not take yet
	// (gnet's outbound buffers), beside each connection's own
	// MaxUnsentPerConn. A WebSocket or EventStream write that would pass it
	// is refused under the route's SlowConsumer policy (except into an
	// empty buffer when it is small; see WSOptions.MaxUnsentPerConn). HTTP
	// responses are always written but count towards it. Default: 64 MiB.
	MaxUnsentTotal int

	// MaxPartialTotal bounds, loop-wide, the inbound bytes all WebSockets
	// of the loop together hold for messages that have not arrived whole (a
	// large frame in flight, fragments being assembled). A message that
	// would pass it is refused with close 1013 Try Again Later. Each route
	// also bounds one message's size (WSOptions.MaxMessageSize) and the
	// time it may take (WSOptions.MessageTimeout). Default: 256 MiB.
	MaxPartialTotal int64

	// MaxHeldInputTotal bounds, loop-wide, the input all HTTP connections
	// of the loop together hold behind a request in flight (a long poll,
	// a streamed response, an event stream): pipelined bytes that wait in
	// gnet's inbound buffers until that request finishes. Each connection
	// also holds at most AppOptions.MaxHeldInputPerConn. A connection
	// whose input would pass it is answered and closed as one over its
	// own bound (see there) and counted in Metrics().HeldInputCloses.
	// Default: 16 MiB.
	MaxHeldInputTotal int64

	// CloseFlushTimeout bounds how long a closing connection may take to
	// send what was written before the close (a response, a close frame).
	// Default: 5s.
	CloseFlushTimeout time.Duration

	// LingerTimeout bounds a lingering close: after an error response or
	// a protocol violation the loop half-closes and discards the peer's
	// input until the peer closes too, so that a client still sending reads
	// the 4xx or the close frame instead of a reset. Default: 2s.
	LingerTimeout time.Duration

	// SocketSendBuffer is each accepted socket's kernel send buffer
	// (SO_SNDBUF), in bytes. It bounds the kernel memory a client that does
	// not read can hold beside MaxUnsentPerConn in the loop: with the
	// kernel's autotuning (up to net.ipv4.tcp_wmem's maximum, 4 MiB on
	// Debian) a thousand stuck clients took this machine into TCP memory
	// pressure, and the kernel then delayed every socket's segments by
	// retransmission timeouts of hundreds of milliseconds. Default: 256 KiB;
	// negative: the kernel's autotuning.
	SocketSendBuffer int

	// ReusePort lets other loops and processes listen on the same port
	// (SO_REUSEPORT; the kernel spreads connections among them). Without
	// it Start fails when the port is in use. Default: false.
	ReusePort bool

	// MaxAsyncBytes bounds, loop-wide and in bytes of payload, the data
	// other goroutines have handed to the loop through the ...Async doors
	// (WebSocket.WriteAsync, EventStream.SendAsync, Hub.PublishAsync, ...)
	// and a Hub's broker deliveries, that the loop has not taken yet.
	// Beyond it those calls return ErrLoopBacklog and queue nothing (a Hub
	// drops the delivery and counts it in Hub.Dropped), so a loop that
	// falls behind does not buffer without limit. Default: 64 MiB.
	MaxAsyncBytes int

	// ReturnMemoryToOS lets the loop force a garbage collection and give
	// free memory back to the OS (runtime.GC then debug.FreeOSMemory, on
	// another goroutine, at most every 10 s) once 64 MiB of abandoned
	// messages in flight (large frames whose senders were closed) have
	// gathered: their buffers would otherwise stay in the process's RSS
	// for minutes. It acts on the whole process, so it is off unless the
	// program owns its memory policy (cmd/tornago turns it on with
	// -return-memory). Default: false.
	ReturnMemoryToOS bool

	// BlockThreshold turns on the blocked-loop watchdog (Tornado's
	// set_blocking_log_threshold): when one handler, callback, timer or
	// traffic callback runs longer than this, the loop goroutine's stack
	// is logged (a Warn record) while it is still blocked, once per stall,
	// and counted in Metrics().BlockedStalls. A stall is seen between 1
	// and 1.5 times the threshold after it began. Cost: one goroutine
	// waking every threshold/2, and two atomic stores per handler frame.
	// Default: 0, off.
	BlockThreshold time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.TimeoutResolution <= 0 {
		o.TimeoutResolution = 500 * time.Millisecond
	}
	if o.ExecutorWorkers <= 0 {
		o.ExecutorWorkers = 16
	}
	if o.ExecutorQueue <= 0 {
		o.ExecutorQueue = 4096
	}
	if o.SocketSendBuffer == 0 {
		o.SocketSendBuffer = 256 << 10
	}
	if o.MaxConns <= 0 {
		o.MaxConns = defaultMaxConns()
	}
	if o.MaxUnsentTotal <= 0 {
		o.MaxUnsentTotal = 64 << 20
	}
	if o.MaxPartialTotal <= 0 {
		o.MaxPartialTotal = 256 << 20
	}
	if o.MaxHeldInputTotal <= 0 {
		o.MaxHeldInputTotal = 16 << 20
	}
	if o.CloseFlushTimeout <= 0 {
		o.CloseFlushTimeout = defaultCloseFlushTimeout
	}
	if o.LingerTimeout <= 0 {
		o.LingerTimeout = defaultLingerTimeout
	}
	if o.MaxAsyncBytes <= 0 {
		o.MaxAsyncBytes = 64 << 20
	}
	return o
}

// Loop states.
const (
	stateNew int32 = iota
	stateRunning
	stateStopping
	stateStopped
)

// ErrStopped is returned by operations on a loop that has stopped.
var ErrStopped = errors.New("loop: stopped")

// Loop is an IOLoop. Create it with New, add listeners with Listen, run it
// with Start, end it with Stop.
type Loop struct {
	opts  Options
	log   *slog.Logger
	epoch time.Time
	state atomic.Int32

	// Callback queue (goroutine-safe side).
	mu          sync.Mutex
	queue       []queued
	spare       []queued
	wakePending bool
	el          gnet.EventLoop
	drainFn     gnet.RunnableFunc

	loopG       atomic.Uintptr // runtime g of the loop goroutine; loopGone once it ran its last event
	engStopping atomic.Bool    // the engine is shutting down (engine.OnShutdown)

	timers timers
	wheel  wheel
	exec   executor

	listeners []listener
	eng       gnet.Engine
	ready     chan struct{}
	done      chan struct{}
	readyOnce sync.Once
	// ctrlPeer is the far end of the control connection (kick writes to
	// it); set on the loop by the control connection's OnOpen. Loop-only.
	ctrlPeer net.Conn
	// ctrlErr is why the control connection could not be opened (the
	// engine was stopped for it); under mu. ctrlFault, set by tests
	// before Start, injects a failure there.
	ctrlErr   error
	ctrlFault func() error

	dials     dialQueue // client attempts waiting for a dialer goroutine
	openConns atomic.Int64
	// openingWS is the WebSocket whose Open is running and openingReq its
	// upgrade request (WebSocket.Request). Loop-only.
	openingWS  *WebSocket
	openingReq *Request
	// busy counts the loop's handler frames on the stack, and
	// deferredCloses holds the closes gnet reported inside them. Loop-only.
	busy           int
	deferredCloses []func()
	closeHooks     []func()     // AddOnStop; under mu
	hooksRan       bool         // Stop took closeHooks; under mu
	slowCloses     atomic.Int64 // WebSockets closed as slow consumers
	streamSlow     atomic.Int64 // streamed responses (event streams too) closed as slow consumers
	heldCloses     atomic.Int64 // HTTP connections closed for input held over its bound
	heldPub        atomic.Int64 // held, published for Metrics().HeldInputBytes
	slowSkips      atomic.Int64
	refused        atomic.Int64
	unsentPub      atomic.Int64 // unsent, published for Metrics().UnsentBytes
	scratch        []byte       // frames and responses being written; gnet copies them
	iov            [2][]byte

	// Unsent output (watch.go). Loop-only.
	watched      []*conn
	watchSpare   []*conn
	watchArmed   bool
	watchFn      func()
	pulls        []pull // writers waiting for a connection's output to drain (pullWhen)
	pullSpare    []pull
	unsent       int                   // bytes in gnet's outbound buffers, as of unsentAt plus writes since
	unsentAt     int64                 // loop clock of the last exact count
	partial      int64                 // bytes reserved by messages in flight (MaxPartialTotal)
	held         int64                 // input held behind HTTP requests in flight (MaxHeldInputTotal)
	inflates     map[*conn]*inflateJob // compressed messages inflating over several turns
	inflating    []*conn               // the connections in inflates, in order
	inflateArmed bool                  // stepInflates is queued

	// Work yielded to the next turn (turn.go). Loop-only.
	turnFns        []func()
	turnConns      []*conn
	turnSpareFns   []func()
	turnSpareConns []*conn
	kicked         bool
	freedBytes     int64 // abandoned in-flight bytes since the last return to the OS (watch.go)
	freedAt        int64
	// Owned by observers.go and callback.go.
	wsCloseObservers []*observer[*WebSocket]   // run when a WebSocket closes; loop-only
	esCloseObservers []*observer[*EventStream] // run when an event stream ends; loop-only
	queuedBytes      atomic.Int64              // data bytes in queue (addDataCallback); reserved under mu
	// Owned by stats.go and watchdog.go.
	st loopStats
	wd *watchdog // nil unless Options.BlockThreshold
}

// Goroutine-safe.
// New returns a loop that is not yet running.
func New(opts Options) *Loop {
	opts = opts.withDefaults()
	l := &Loop{
		opts:  opts,
		log:   opts.Logger,
		epoch: time.Now(),
		ready: make(chan struct{}),
		done:  make(chan struct{}),
	}
	l.drainFn = l.drain
	l.watchFn = l.pollWatched
	l.inflates = make(map[*conn]*inflateJob)
	l.timers.init(l)
	l.wheel.init(l, opts.TimeoutResolution)
	l.exec.init(l, opts.ExecutorWorkers, opts.ExecutorQueue)
	if opts.BlockThreshold > 0 {
		l.wd = newWatchdog(l, opts.BlockThreshold)
	}
	return l
}

// Goroutine-safe (not from the loop). Start runs the loop on a gnet engine
// with exactly one event loop and blocks until Stop has finished. Call it
// once.
func (l *Loop) Start() error {
	// Under mu, so that a concurrent Listen either lands before the
	// listeners are read or sees the loop started.
	l.mu.Lock()
	started := l.state.CompareAndSwap(stateNew, stateRunning)
	l.mu.Unlock()
	if !started {
		return errors.New("loop: Start called twice")
	}
	defer close(l.done)
	if err := l.resolve(); err != nil {
		l.state.Store(stateStopped)
		l.readyOnce.Do(func() { close(l.ready) })
		return err
	}
	addrs := make([]string, 0, len(l.listeners)+1)
	for _, ln := range l.listeners {
		addrs = append(addrs, "tcp://"+ln.bound)
	}
	if len(addrs) == 0 {
		// A client-only loop (the bench harness) still needs an engine; gnet
		// requires a listener, so bind an unused loopback port.
		addrs = append(addrs, "tcp://127.0.0.1:0")
	}
	opts := []gnet.Option{
		gnet.WithMulticore(false),
		gnet.WithNumEventLoop(1),
		// Least-connections reads atomic counters: Register from other
		// goroutines does not race, and unlike SourceAddrHash it does not
		// format every peer's address into a string.
		gnet.WithLoadBalancing(gnet.LeastConnections),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReuseAddr(true),
		// With SO_REUSEPORT gnet accepts on the event loop itself and
		// runs OnOpen before the next accept, so MaxConns holds exactly:
		// with its separate acceptor a storm could reach EMFILE before the
		// loop closed anything, and gnet stops the engine on EMFILE.
		gnet.WithReusePort(true),
		gnet.WithLogger(gnetLogger{l.log}),
		gnet.WithTicker(true), // OnTick opens the control connection (see engine.OnTick)
	}
	if l.opts.SocketSendBuffer > 0 {
		opts = append(opts, gnet.WithSocketSendBuffer(l.opts.SocketSendBuffer))
	}
	if l.wd != nil {
		go l.wd.run()
	}
	err := gnet.Rotate(&engine{l: l}, addrs, opts...)
	if l.wd != nil {
		close(l.wd.stop)
	}
	unexpected := l.state.Swap(stateStopped) == stateRunning
	l.dropCallbacks()
	l.exec.abandon() // a no-op after Stop; frees the workers if the engine failed
	l.readyOnce.Do(func() { close(l.ready) })
	if l.ctrlPeer != nil { // the loop goroutine that set it has exited
		l.ctrlPeer.Close()
	}
	if cerr := l.controlErr(); cerr != nil {
		return fmt.Errorf("loop: start: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("loop: engine: %w", err)
	}
	if unexpected {
		// gnet returns nil when its engine stops on its own (an accept
		// error, say): a supervisor must see a failure.
		return errors.New("loop: engine stopped without Stop (see the log for gnet's reason)")
	}
	return nil
}

// Goroutine-safe. Ready is closed once the loop runs and its listeners
// accept connections (or Start failed).
func (l *Loop) Ready() <-chan struct{} { return l.ready }

// Goroutine-safe. Done is closed when Start has returned.
func (l *Loop) Done() <-chan struct{} { return l.done }

// Goroutine-safe. InLoop reports whether the caller runs on the loop
// goroutine. It is false everywhere once the loop goroutine has run its
// last event, since the runtime may then give its identity to a new
// goroutine.
func (l *Loop) InLoop() bool {
	g := l.loopG.Load()
	return g != 0 && g == getg() && l.state.Load() != stateStopped
}

// Goroutine-safe. AddOnStop registers fn to run on the loop during Stop,
// after connections have drained and before the engine shuts down
// (Tornado's close hooks, net/http's RegisterOnShutdown). Hooks run in the
// order added. It returns ErrStopped, and fn never runs, once Stop has
// begun running the hooks or the loop has stopped.
func (l *Loop) AddOnStop(fn func()) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hooksRan || l.state.Load() == stateStopped {
		return ErrStopped
	}
	l.closeHooks = append(l.closeHooks, fn)
	return nil
}

// Goroutine-safe (not from the loop). Stop stops the loop gracefully: it
// refuses new connections, closes idle HTTP connections, lets in-flight
// responses finish, sends WebSocket close frames (1001 Going Away) and waits
// for the peers' replies, all until ctx is done; then it runs the close
// hooks, closes what is left and returns after Start has returned. A Stop
// called while another runs waits for it only until its own ctx is done;
// one called before the loop is ready returns when ctx is done and the
// loop then stops at once when it comes up. Not from the loop goroutine (it
// waits for the loop; that returns an error): use `go l.Stop(ctx)` there.
func (l *Loop) Stop(ctx context.Context) error {
	if l.InLoop() {
		// Checked first: Stop waits for the loop, which would deadlock,
		// and it must not leave the loop half stopped either.
		return errors.New("loop: Stop called on the loop goroutine (use go l.Stop(ctx))")
	}
	switch {
	case l.state.CompareAndSwap(stateNew, stateStopped):
		l.dropCallbacks()
		l.exec.abandon() // workers started by RunInExecutor before Start
		// Nobody waits on Ready forever.
		l.readyOnce.Do(func() { close(l.ready) })
		close(l.done)
		return nil
	case !l.state.CompareAndSwap(stateRunning, stateStopping):
		// Another Stop is under way (or Start has returned): wait for it,
		// but only as long as this caller's ctx allows.
		select {
		case <-l.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("loop: stop: waiting for the other Stop: %w", ctx.Err())
		}
	}
	select {
	case <-l.ready:
	case <-ctx.Done():
		// The loop is not up yet: Stop needs its callbacks. Finish the
		// stop once it is up (ctx is done, so with no grace: everything
		// closes at once), so that it does not run on after this Stop.
		go l.stopReady(ctx)
		return fmt.Errorf("loop: stop: the loop was not ready: %w", ctx.Err())
	}
	return l.stopReady(ctx)
}

// stopReady is Stop once the loop is ready (or Start failed). Off the loop.
func (l *Loop) stopReady(ctx context.Context) error {
	<-l.ready
	if l.controlErr() != nil {
		// Start failed and stops its engine itself; it reports why.
		<-l.done
		return nil
	}
	l.AddCallback(func() {
		l.wheel.each(func(c *conn) { c.shutdown() })
	})
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
wait:
	for l.openConns.Load() > 0 {
		select {
		case <-ctx.Done():
			break wait
		case <-tick.C:
		}
	}
	hooksDone := make(chan struct{})
	l.AddCallback(func() {
		defer close(hooksDone)
		l.mu.Lock()
		hooks := l.closeHooks
		l.closeHooks, l.hooksRan = nil, true
		l.mu.Unlock()
		for _, fn := range hooks {
			l.safeCall(fn)
		}
	})
	select {
	case <-hooksDone:
	case <-ctx.Done():
	}
	// Queued executor work gets ErrStopped, running work has until ctx;
	// their dones run before the engine goes.
	l.exec.stop(ctx)
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.runQueued(stopCtx)
	err := l.eng.Stop(stopCtx)
	<-l.done
	if err != nil {
		return fmt.Errorf("loop: stop engine: %w", err)
	}
	return ctx.Err()
}

// controlErr is why the control connection failed, or nil. Goroutine-safe.
func (l *Loop) controlErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ctrlErr
}

// now is the loop clock: monotonic nanoseconds since New.
func (l *Loop) now() int64 { return int64(time.Since(l.epoch)) }

// trimScratch drops the scratch buffer after one large message or
// response, so the loop does not keep its peak size for ever. Loop-only.
func (l *Loop) trimScratch() {
	if cap(l.scratch) > 64<<10 {
		l.scratch = nil
	}
}

// safeCall runs fn and recovers a panic, logging it with its stack, so that
// one faulty callback never stops the loop.
func (l *Loop) safeCall(fn func()) {
	l.begin()
	defer func() {
		if r := recover(); r != nil {
			l.log.Error("loop: panic in callback", "panic", r, "stack", string(debug.Stack()))
		}
		l.leave()
	}()
	fn()
}

// leave ends a busy section; the outermost one runs the closes that gnet
// reported while it was running (see conn.closed).
func (l *Loop) leave() {
	l.busy--
	if l.busy > 0 {
		return
	}
	if l.wd != nil {
		l.wd.mark.Store(0)
	}
	for len(l.deferredCloses) > 0 {
		fn := l.deferredCloses[0]
		l.deferredCloses[0] = nil
		l.deferredCloses = l.deferredCloses[1:]
		l.safeCall(fn)
	}
}

// enter records the loop goroutine; every entry point from gnet calls it.
func (l *Loop) enter() {
	if l.loopG.Load() == 0 {
		l.loopG.Store(getg())
		if l.wd != nil {
			l.wd.gid.Store(currentGoroutineID())
		}
	}
}
