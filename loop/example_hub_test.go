package loop_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/tornago/tornago/loop"
)

// room subscribes each connection to the room named in its path.
type room struct {
	loop.WebSocketBase
	hub *loop.Hub
}

func (r room) Open(w *loop.WebSocket) { r.hub.Subscribe(w.Request().PathArgs[0], w) }

// ExampleHub pushes a message from another goroutine to every client in a
// room; the frame is encoded once for all of them.
func ExampleHub() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()

	l := loop.New(loop.Options{})
	hub := loop.NewHub(l, loop.Text, nil) // nil: no broker, this loop only
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket(`/rooms/(\w+)`, func(*loop.Request) loop.WebSocketHandler { return room{hub: hub} }, loop.WSOptions{})
	l.Listen(addr, app)
	go l.Start()
	<-l.Ready()

	alice, _ := loop.Dial("ws://"+addr+"/rooms/go", loop.DialOptions{})
	bob, _ := loop.Dial("ws://"+addr+"/rooms/go", loop.DialOptions{})
	hub.Publish("go", []byte("release tonight")) // goroutine-safe
	for _, c := range []*loop.Conn{alice, bob} {
		_, msg, _ := c.Recv()
		fmt.Println(string(msg))
		c.Close(loop.CloseNormal, "")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output:
	// release tonight
	// release tonight
}
