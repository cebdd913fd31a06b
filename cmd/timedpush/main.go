// Command timedpush is the smallest Tornago program worth copying: it embeds
// the loop and pushes the time to every WebSocket client once a second.
//
//	go run ./cmd/timedpush -addr :8889   # then connect to ws://localhost:8889/time
package main

import (
	"flag"
	"log"
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
	l := loop.New(loop.Options{})
	app := loop.NewApplication(loop.AppOptions{})
	cs := clients{}
	app.HandleWebSocket("/time", func(*loop.Request) loop.WebSocketHandler { return cs },
		loop.WSOptions{CheckOrigin: loop.AnyOrigin})
	push := l.NewPeriodicCallback(func() {
		msg := loop.PrepareMessage(loop.Text, []byte(time.Now().Format(time.RFC3339Nano)))
		for ws := range cs {
			ws.WritePrepared(msg) // encoded once for all clients
		}
	}, time.Second, 0)
	l.AddCallback(push.Start)
	if err := l.Listen(*addr, app); err != nil {
		log.Fatal(err)
	}
	log.Fatal(l.Start())
}
