package loop_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/wsclient"
)

// room subscribes each connection to the room named in its path.
type room struct {
	loop.WebSocketBase
	hub *loop.Hub
}

// Open runs on the loop before the client can read the handshake's answer,
// so a client whose Dial returned is already subscribed.
func (r room) Open(w *loop.WebSocket) { r.hub.Subscribe(w.Request().PathArgs[0], w) }

// ExampleHub pushes a message from another goroutine to every client in a
// room; the frame is encoded once for all of them, and a client that closes
// leaves its rooms by itself.
func ExampleHub() {
	l := loop.New(loop.Options{})
	hub := loop.NewHub(l, loop.Text, nil) // nil: no broker, this loop only
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket(`/rooms/(\w+)`, func(*loop.Request) loop.WebSocketHandler { return room{hub: hub} }, loop.WSOptions{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()
	url := "ws://" + l.Addr().String() + "/rooms/go"

	var clients []*wsclient.Conn
	for range 2 {
		c, err := wsclient.Dial(url, wsclient.DialOptions{})
		if err != nil {
			panic(err)
		}
		clients = append(clients, c)
	}
	if err := hub.PublishAsync("go", []byte("release tonight"), nil); err != nil { // from another goroutine
		panic(err)
	}
	for _, c := range clients {
		_, msg, err := c.Recv()
		if err != nil {
			panic(err)
		}
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
