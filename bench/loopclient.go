package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tornago/tornago/loop"
)

// loopDriver is the loop-driven client: every connection is registered on
// one Tornago loop, no goroutine each, so one process drives tens of
// thousands of connections. Callbacks run on the loop goroutine.
type loopDriver struct {
	l    *loop.Loop
	done chan struct{}
}

func newLoopDriver() *loopDriver {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	d := &loopDriver{l: loop.New(loop.Options{Logger: log}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		if err := d.l.Start(); err != nil {
			log.Error("bench client loop", "err", err)
		}
	}()
	<-d.l.Ready()
	return d
}

func (*loopDriver) Name() string { return "tornago-loop" }

func (d *loopDriver) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.l.Stop(ctx)
	<-d.done
}

type loopConn struct{ w *loop.WebSocket }

// Send writes p at once from the loop (a handler echoing), else through
// the loop's queue (the harness starts its echoes from its own goroutine);
// either way p is copied or written before Send returns.
func (c loopConn) Send(p []byte) error {
	if c.w.Loop().InLoop() {
		return c.w.WriteBinary(p)
	}
	return c.w.WriteAsync(loop.Binary, p, nil)
}

// Close starts the closing handshake, from the loop or from the harness.
func (c loopConn) Close() {
	if c.w.Loop().InLoop() {
		c.w.Close(1000, "")
		return
	}
	c.w.CloseAsync(1000, "", nil)
}

func (d *loopDriver) Dial(rawURL, localAddr string, h handler) {
	var lc loopConn // set on the loop in OnOpen, before any other callback
	var opened bool
	ch := loop.ClientHandler{
		OnOpen: func(w *loop.WebSocket) {
			opened = true
			lc = loopConn{w}
			if h.onOpen != nil {
				h.onOpen(lc)
			}
		},
		OnMessage: func(w *loop.WebSocket, _ loop.MessageType, data []byte) {
			if h.onMessage != nil {
				h.onMessage(lc, data)
			}
		},
		OnError: func(_ *loop.Client, err error) {
			if h.onClose != nil && !opened {
				h.onClose(nil, fmt.Errorf("dial %s: %w", rawURL, err))
			}
		},
		OnClose: func(w *loop.WebSocket) {
			if h.onClose == nil {
				return
			}
			var err error
			if code := w.CloseCode(); code != 1000 && code != 1001 && code != 1005 {
				err = fmt.Errorf("closed with %d %s", code, w.CloseReason())
			}
			h.onClose(lc, err)
		},
	}
	// No client pings (PingInterval -1): the load clients must not add
	// traffic of their own to what is measured; the server pings them.
	_, err := d.l.DialWebSocket(rawURL, ch, loop.ClientOptions{LocalAddr: localAddr, HandshakeTimeout: 20 * time.Second, PingInterval: -1})
	if err != nil {
		if h.onClose != nil {
			h.onClose(nil, fmt.Errorf("dial %s: %w", rawURL, err))
		}
	}
}
