// Command timedpush is the smallest Tornago program worth copying: it embeds
// the loop and pushes the time (RFC 3339, whole seconds, e.g.
// 2026-11-23T16:12:25Z) to every WebSocket client once a second.
//
//	go run ./cmd/timedpush -addr :8889   # then connect to ws://localhost:8889/time
//
// SIGINT or SIGTERM stops it gracefully: clients get a 1001 close frame and
// the process exits 0.
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tornago/tornago/loop"
)

// clients is touched only on the loop, so it needs no lock.
type clients map[*loop.WebSocket]struct{}

func (c clients) Open(ws *loop.WebSocket)                             { c[ws] = struct{}{} }
func (c clients) OnClose(ws *loop.WebSocket)                          { delete(c, ws) }
func (c clients) OnMessage(*loop.WebSocket, loop.MessageType, []byte) {}
func (c clients) OnPing(*loop.WebSocket, []byte)                      {}
func (c clients) OnPong(*loop.WebSocket, []byte)                      {}

func main() {
	addr := flag.String("addr", ":8889", "listen address")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	l := loop.New(loop.Options{})
	app := loop.NewApplication(loop.AppOptions{})
	cs := clients{}
	app.HandleWebSocket("/time", func(*loop.Request) loop.WebSocketHandler { return cs },
		loop.WSOptions{CheckOrigin: loop.AnyOrigin})
	push := l.NewPeriodicCallback(func() {
		msg, err := loop.PrepareMessage(loop.Text, []byte(time.Now().UTC().Format(time.RFC3339)))
		if err != nil {
			log.Error("timedpush: prepare", "err", err)
			return
		}
		for ws := range cs {
			ws.WritePrepared(msg) // encoded once for all clients
		}
	}, time.Second, 0)
	push.Start() // goroutine-safe: the first tick is a second after the loop is up
	if err := l.Listen(*addr, app); err != nil {
		log.Error("timedpush", "err", err)
		os.Exit(1)
	}
	go func() {
		<-l.Ready()
		if a := l.Addr(); a != nil { // nil: Start failed, and says so below
			log.Info("timedpush listening", "addr", a.String(), "url", wsURL(a, "/time"))
		}
	}()
	// SIGINT/SIGTERM stop the loop gracefully: clients get a 1001 close
	// frame, then Start returns and the process exits 0.
	sig, unnotify := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer unnotify()
	go func() {
		<-sig.Done()
		log.Info("timedpush stopping")
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		l.Stop(ctx)
	}()
	if err := l.Start(); err != nil {
		log.Error("timedpush", "err", err)
		os.Exit(1)
	}
	log.Info("timedpush stopped")
}

// stopTimeout bounds the graceful stop: clients that do not answer the
// close frame by then are dropped.
const stopTimeout = 5 * time.Second

// wsURL is a URL a client on this machine can dial: a listener on every
// interface (":8889", "0.0.0.0", "::") has no host to put in a URL, so
// it names localhost.
func wsURL(a net.Addr, path string) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "ws://" + a.String() + path
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "ws://" + net.JoinHostPort(host, port) + path
}
