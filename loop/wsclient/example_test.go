package wsclient_test

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/wsclient"
	"github.com/tornago/tornago/proto/ws13"
)

// shout answers each message with an exclamation mark added.
type shout struct{ loop.WebSocketBase }

func (shout) OnMessage(w *loop.WebSocket, _ loop.MessageType, data []byte) {
	w.WriteText([]byte(string(data) + "!")) // data is borrowed: build a new slice
}

// ExampleDial talks to a tornago server from a script: Dial, Send, Recv,
// then Close, which waits for the server's close frame.
func ExampleDial() {
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/shout", func(*loop.Request) loop.WebSocketHandler { return shout{} },
		loop.WSOptions{Subprotocols: []string{"shout.v1"}})
	l := loop.New(loop.Options{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		l.Stop(ctx)
	}()

	c, err := wsclient.Dial("ws://"+l.Addr().String()+"/shout", wsclient.DialOptions{
		Subprotocols:     []string{"shout.v1"},
		HandshakeTimeout: 2 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("subprotocol:", c.Subprotocol())
	if err := c.Send("hello"); err != nil {
		panic(err)
	}
	typ, msg, err := c.Recv()
	if err != nil {
		panic(err)
	}
	fmt.Println(typ == wsclient.Text, string(msg))
	if err := c.Close(ws13.CloseNormal, "bye"); err != nil {
		panic(err)
	}
	_, _, err = c.Recv()
	fmt.Println("after Close:", err == io.EOF, c.CloseCode())
	// Output:
	// subprotocol: shout.v1
	// true hello!
	// after Close: true 1000
}

// ExampleConn_Recv reads until the server closes: Recv answers the
// server's close frame and returns io.EOF, and CloseCode and CloseReason
// tell why.
func ExampleConn_Recv() {
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/once", func(*loop.Request) loop.WebSocketHandler { return replyOnce{} }, loop.WSOptions{})
	l := loop.New(loop.Options{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()

	c, err := wsclient.Dial("ws://"+l.Addr().String()+"/once", wsclient.DialOptions{HandshakeTimeout: time.Second})
	if err != nil {
		panic(err)
	}
	if err := c.Send("ping?"); err != nil {
		panic(err)
	}
	for {
		typ, msg, err := c.Recv()
		if err == io.EOF { // the server closed; Recv has answered its close frame
			fmt.Println("closed by server:", c.CloseCode(), c.CloseReason())
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Println(typ == wsclient.Text, string(msg))
	}
	c.Close(loop.CloseNormal, "") // releases the socket; sends nothing more here

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output:
	// true pong: ping?
	// closed by server: 1000 done
}

// replyOnce replies to the first message and closes.
type replyOnce struct{ loop.WebSocketBase }

func (replyOnce) OnMessage(w *loop.WebSocket, _ loop.MessageType, data []byte) {
	w.WriteText([]byte("pong: " + string(data)))
	w.Close(loop.CloseNormal, "done")
}
