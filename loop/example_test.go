package loop_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tornago/tornago/loop"
)

// Example embeds a loop in another program: build an application, listen,
// run the loop on its own goroutine, use it, stop it.
func Example() {
	// Pick a free port (a real program would use a fixed one).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	l := loop.New(loop.Options{})
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleFunc(`/hello/([a-z]+)`, func(r *loop.Request) {
		r.Write("Hello, " + r.PathArgs[0] + "!")
	})
	if err := l.Listen(addr, app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()

	resp, err := http.Get("http://" + addr + "/hello/world")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.Stop(ctx); err != nil {
		panic(err)
	}
	// Output: 200 Hello, world!
}

// ExampleLoop_DialWebSocket connects a loop-driven client (no goroutine per
// connection) to an echo route served by the same loop.
func ExampleLoop_DialWebSocket() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	l := loop.New(loop.Options{})
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/echo", func(*loop.Request) loop.WebSocketHandler { return exampleEcho{} }, loop.WSOptions{})
	if err := l.Listen(addr, app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()

	done := make(chan struct{})
	_, err = l.DialWebSocket("ws://"+addr+"/echo?room=1", loop.ClientHandler{
		OnOpen: func(w *loop.WebSocket) { w.WriteString("hello") },
		OnMessage: func(w *loop.WebSocket, typ loop.MessageType, data []byte) {
			fmt.Println("got:", string(data)) // data is valid during the call only
			w.Close(loop.CloseNormal, "done")
		},
		OnError: func(c *loop.Client, err error) { fmt.Println("error:", err); close(done) },
		OnClose: func(w *loop.WebSocket) { fmt.Println("closed:", w.CloseCode()); close(done) },
	}, loop.ClientOptions{})
	if err != nil {
		panic(err)
	}
	<-done

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output:
	// got: hello
	// closed: 1000
}

type exampleEcho struct{ loop.WebSocketBase }

func (exampleEcho) OnMessage(w *loop.WebSocket, typ loop.MessageType, data []byte) {
	w.WriteMessage(data)
}
