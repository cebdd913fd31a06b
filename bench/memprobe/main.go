// Command memprobe is a bench-only Tornago echo server that explains its
// own memory: on SIGUSR1 it writes a heap profile and a runtime.MemStats
// summary, so an idle run's RSS per connection can be split into Go heap,
// stacks and what the runtime holds outside the heap.
//
//	go run ./bench/memprobe -port 18899 -out /tmp/memprobe &
//	tornago-bench idle -url ws://127.0.0.1:18899/echo -n 19000 -pid PID -hold 5s
//	kill -USR1 PID   # while the connections are held; then go tool pprof -sample_index=inuse_space -top /tmp/memprobe.heap
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/tornago/tornago/loop"
)

type echo struct{ loop.WebSocketBase }

func (echo) OnMessage(ws *loop.WebSocket, typ loop.MessageType, data []byte) {
	if typ == loop.Binary {
		ws.WriteBinary(data)
		return
	}
	ws.WriteText(data)
}

func main() {
	port := flag.Int("port", 18899, "TCP port")
	out := flag.String("out", "/tmp/memprobe", "prefix of the .heap and .txt files written on SIGUSR1")
	rate := flag.Int("rate", 1, "runtime.MemProfileRate: 1 records every allocation, so the profile counts bytes per connection exactly")
	flag.Parse()
	runtime.MemProfileRate = *rate
	debug.SetGCPercent(10) // as cmd/tornago
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	l := loop.New(loop.Options{Logger: log})
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/echo", func(*loop.Request) loop.WebSocketHandler { return echo{} },
		loop.WSOptions{MaxMessageSize: 64 << 20, CheckOrigin: loop.AnyOrigin})
	if err := l.Listen(fmt.Sprintf("127.0.0.1:%d", *port), app); err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGUSR1)
		for range sig {
			if err := dump(*out); err != nil {
				log.Error("dump", "err", err)
			}
		}
	}()
	if err := l.Start(); err != nil {
		log.Error("loop", "err", err)
		os.Exit(1)
	}
}

func dump(prefix string) error {
	runtime.GC()
	f, err := os.Create(prefix + ".heap")
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	txt := fmt.Sprintf("goroutines %d\nHeapInuse %d\nHeapAlloc %d\nHeapIdle %d\nHeapReleased %d\nStackInuse %d\nMSpanInuse %d\nMCacheInuse %d\nBuckHashSys %d\nGCSys %d\nOtherSys %d\nSys %d\n",
		runtime.NumGoroutine(), m.HeapInuse, m.HeapAlloc, m.HeapIdle, m.HeapReleased, m.StackInuse, m.MSpanInuse, m.MCacheInuse, m.BuckHashSys, m.GCSys, m.OtherSys, m.Sys)
	return os.WriteFile(prefix+".txt", []byte(txt), 0o644)
}
