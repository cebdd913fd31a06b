package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"
	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"
)

// ctrlMarker is the gnet context of the control connection; peer is the
// other end, through which kick writes (turn.go). It reaches the loop
// with the registration, so the loop reads peer after a happens-before
// edge (gnet's task queue) instead of racing with openControl.
type ctrlMarker struct{ peer net.Conn }

// engine adapts gnet's EventHandler to the loop. Every method runs on the
// loop goroutine.
type engine struct {
	gnet.BuiltinEventEngine
	l      *Loop
	booted bool // OnTick started openControl (ticker goroutine only)
}

func (e *engine) OnBoot(eng gnet.Engine) gnet.Action {
	e.l.eng = eng
	return gnet.None
}

// OnShutdown runs when the engine begins to stop, on gnet's goroutine
// (not the loop's). The loop goroutine then closes what is still open
// (OnClose) and exits; see retireLoopG.
func (e *engine) OnShutdown(gnet.Engine) {
	e.l.engStopping.Store(true)
	if e.l.eng.CountConnections() <= 0 {
		// No OnClose will come (the control connection never opened).
		e.l.loopG.Store(loopGone)
	}
}

// loopGone is loopG once the loop goroutine ran its last event: no g
// lives at address 1.
const loopGone = 1

// retireLoopG runs after each OnClose: once the engine is stopping and its
// last connection closed, gnet's loop goroutine has nothing left to run
// and exits. InLoop compares goroutine struct addresses, and the runtime
// hands the loop goroutine's to a new goroutine once it has exited (before
// Start marks the loop stopped), so loopG takes a value no g has (enter
// keeps a set value) and no goroutine passes for the loop from then on.
// Loop-only.
func (l *Loop) retireLoopG() {
	if l.engStopping.Load() && l.eng.CountConnections() <= 0 {
		l.loopG.Store(loopGone)
	}
}

// OnTick runs once, on gnet's ticker goroutine, which gnet starts only after
// it has registered its event loops: registering the control connection from
// OnBoot raced with that registration (go test -race). It then sleeps for
// good.
func (e *engine) OnTick() (time.Duration, gnet.Action) {
	if !e.booted {
		e.booted = true
		go e.l.openControl()
	}
	return 24 * time.Hour, gnet.None
}

// openControl registers one private loopback connection with the engine so
// that the loop owns a gnet.EventLoop handle (for Execute) even before any
// client connects. gnet offers no other way to get one. Without it no
// callback or timer would ever run (and Stop could not stop the loop), so
// when it cannot be opened the engine is stopped and Start returns why.
func (l *Loop) openControl() {
	err := l.registerControl()
	if err == nil {
		return
	}
	l.mu.Lock()
	l.ctrlErr = err
	l.mu.Unlock()
	l.log.Error("loop: no control connection, stopping", "err", err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.eng.Stop(ctx); err != nil && !errors.Is(err, gerrors.ErrEngineInShutdown) {
		l.log.Error("loop: stop engine after the control connection failed", "err", err)
	}
}

// registerControl opens the control connection and registers it. It
// returns nil once the loop has it, or when the engine is shutting down
// anyway (Start then reports why).
func (l *Loop) registerControl() error {
	if l.ctrlFault != nil {
		if err := l.ctrlFault(); err != nil {
			return err
		}
	}
	var err error
	for range 500 { // the engine's loops start just after OnBoot
		var retry bool
		if retry, err = l.tryControl(); err == nil || !retry {
			return err
		}
		if errors.Is(err, gerrors.ErrEngineInShutdown) {
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("loop: control connection not registered after 500 attempts: %w", err)
}

// tryControl makes one attempt: a loopback pair, one end registered with
// gnet. retry says whether another attempt may succeed.
func (l *Loop) tryControl() (retry bool, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false, fmt.Errorf("loop: control listener: %w", err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		ln.Close() // ends the Accept
		<-accepted
		return false, fmt.Errorf("loop: control dial: %w", err)
	}
	peer := <-accepted
	if peer == nil {
		c.Close()
		return false, errors.New("loop: control accept failed")
	}
	// gnet dups c's descriptor and closes c itself (eventloop enroll).
	ctx := gnet.NewContext(gnet.NewNetConnContext(context.Background(), c), ctrlMarker{peer: peer})
	ch, err := l.eng.Register(ctx)
	if err == nil {
		if err = (<-ch).Err; err == nil {
			return false, nil // OnOpen took peer
		}
	}
	c.Close()
	peer.Close()
	return true, fmt.Errorf("loop: register the control connection: %w", err)
}

func (e *engine) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	l := e.l
	l.enter()
	if cm, ok := gc.Context().(ctrlMarker); ok {
		l.ctrlPeer = cm.peer
		l.setEventLoop(gc.EventLoop())
		l.readyOnce.Do(func() { close(l.ready) })
		return nil, gnet.None
	}
	if cc, ok := gc.Context().(*conn); ok { // a client connection from Dial
		cc.gc = gc
		l.track(cc)
		l.safeCall(cc.onOpen)
		return nil, gnet.None
	}
	if l.state.Load() != stateRunning {
		l.refused.Add(1)
		bump(&l.st.refusedStopping, 1)
		return refusal503, gnet.Close
	}
	if l.openConns.Load() >= int64(l.opts.MaxConns) {
		// Closed at once, on the loop that accepted it: the process's
		// descriptors never run out, which would stop gnet's engine.
		l.refused.Add(1)
		bump(&l.st.refusedMax, 1)
		if n := l.refused.Load(); n&(n-1) == 0 { // log 1, 2, 4, 8, ... refusals
			l.log.Warn("loop: connection limit reached, refusing connections", "max_conns", l.opts.MaxConns, "refused", n)
		}
		return refusal503, gnet.Close
	}
	mc, mounted := gc.Context().(*mountConn)
	var app *Application
	if mounted {
		app = mc.app
		// gnet keeps the registration's context as the safe context
		// too: drop it, or every mounted connection would hold its
		// request head for life.
		gc.SetSafeContext(nil)
	} else {
		app = l.appFor(gc.LocalAddr())
	}
	if app == nil {
		return nil, gnet.Close
	}
	c := &conn{l: l, gc: gc}
	gc.SetContext(c)
	l.track(c)
	app.serveConn(c)
	if mounted && len(mc.pre) > 0 {
		// The request net/http parsed, written back (mount.go): read it
		// before the socket, from the next OnTraffic.
		c.gc = &prefixed{Conn: gc, c: c, buf: mc.pre}
		mc.pre = nil
		gc.Wake(nil)
	}
	return nil, gnet.None
}

// refusal503 is what a connection the loop cannot serve reads before the
// close: a stopping loop or one at MaxConns. gnet writes it before closing.
var refusal503 = []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n")

func (l *Loop) track(c *conn) {
	l.wheel.track(c)
	l.openConns.Add(1)
}

func (e *engine) OnTraffic(gc gnet.Conn) gnet.Action {
	e.l.enter()
	if c, ok := gc.Context().(*conn); ok {
		e.l.begin()
		c.traffic()
		e.l.leave()
	} else {
		gc.Discard(-1)
		if _, ok := gc.Context().(ctrlMarker); ok {
			e.l.runTurn() // a kick: the loop's next turn (turn.go)
		}
	}
	return gnet.None
}

func (e *engine) OnClose(gc gnet.Conn, err error) gnet.Action {
	e.l.enter()
	if c, ok := gc.Context().(*conn); ok {
		c.closed(err)
	}
	e.l.retireLoopG()
	return gnet.None
}
