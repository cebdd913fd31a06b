package loop_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/wsclient"
)

// chat is a WebSocket handler: embed WebSocketBase for no-op defaults and
// override the hooks you need. Every hook runs on the loop.
type chat struct {
	loop.WebSocketBase
	name   string
	closed chan loop.StatusCode // for the example's output only
}

func (c *chat) Open(w *loop.WebSocket) {
	c.name = w.Request().GetArgument("name", "anonymous") // Request is valid in Open only
	w.WriteText([]byte("welcome, " + c.name))
}

func (c *chat) OnMessage(w *loop.WebSocket, typ loop.MessageType, data []byte) {
	// data is borrowed until OnMessage returns; writing it copies it.
	w.WriteText(append([]byte(c.name+" said: "), data...))
}

func (c *chat) OnClose(w *loop.WebSocket) { c.closed <- w.CloseCode() }

// ExampleApplication_HandleWebSocket serves a WebSocket route: newHandler
// makes one handler per connection (or returns nil to refuse the upgrade).
func ExampleApplication_HandleWebSocket() {
	closed := make(chan loop.StatusCode, 1)
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/chat", func(r *loop.Request) loop.WebSocketHandler {
		if r.GetArgument("name", "") == "" {
			r.SetStatus(401)
			return nil // refused: the client gets 401, no upgrade
		}
		return &chat{closed: closed}
	}, loop.WSOptions{})
	l := loop.New(loop.Options{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()
	url := "ws://" + l.Addr().String() + "/chat"

	if _, err := wsclient.Dial(url, wsclient.DialOptions{}); err != nil {
		fmt.Println("without a name: refused")
	}
	c, err := wsclient.Dial(url+"?name=ann", wsclient.DialOptions{})
	if err != nil {
		panic(err)
	}
	_, msg, _ := c.Recv()
	fmt.Println(string(msg))
	c.Send("hi")
	_, msg, _ = c.Recv()
	fmt.Println(string(msg))
	c.Close(loop.CloseNormal, "bye")
	fmt.Println("server saw close:", <-closed)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output:
	// without a name: refused
	// welcome, ann
	// ann said: hi
	// server saw close: 1000
}

// ExampleLoop_DialWebSocket connects a loop-driven client (no goroutine per
// connection; its callbacks run on the loop) to an echo route served by the
// same loop.
func ExampleLoop_DialWebSocket() {
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/echo", func(*loop.Request) loop.WebSocketHandler { return exampleEcho{} }, loop.WSOptions{})
	l := loop.New(loop.Options{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()

	done := make(chan struct{})
	_, err := l.DialWebSocket("ws://"+l.Addr().String()+"/echo?room=1", loop.ClientHandler{
		OnOpen: func(w *loop.WebSocket) { w.WriteText([]byte("hello")) },
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

// exampleEcho sends every message back with its type.
type exampleEcho struct{ loop.WebSocketBase }

func (exampleEcho) OnMessage(w *loop.WebSocket, typ loop.MessageType, data []byte) {
	if typ == loop.Binary {
		w.WriteBinary(data)
		return
	}
	w.WriteText(data)
}

// fromWorker hands each connection to a goroutine of its own (a job that
// finishes in the background): off the loop, WriteText and Close would
// return loop.ErrNotOnLoop, so it uses their goroutine-safe doors, whose
// done runs on the loop with the real result.
type fromWorker struct{ loop.WebSocketBase }

func (fromWorker) Open(w *loop.WebSocket) {
	go func() {
		err := w.WriteAsync(loop.Text, []byte("job done"), func(err error) {
			fmt.Println("sent:", err) // on the loop, once the write ran
		})
		if err != nil { // not queued: ErrLoopBacklog or ErrStopped
			fmt.Println("not queued:", err)
			return
		}
		w.CloseAsync(loop.CloseNormal, "bye", nil)
	}()
}

// ExampleWebSocket_WriteAsync writes to a WebSocket from another goroutine.
func ExampleWebSocket_WriteAsync() {
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/jobs", func(*loop.Request) loop.WebSocketHandler { return fromWorker{} }, loop.WSOptions{})
	l := loop.New(loop.Options{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()

	done := make(chan struct{})
	_, err := l.DialWebSocket("ws://"+l.Addr().String()+"/jobs", loop.ClientHandler{
		OnMessage: func(w *loop.WebSocket, typ loop.MessageType, data []byte) { fmt.Println("got:", string(data)) },
		OnError:   func(c *loop.Client, err error) { fmt.Println("error:", err); close(done) },
		OnClose:   func(w *loop.WebSocket) { fmt.Println("closed:", w.CloseCode(), w.CloseReason()); close(done) },
	}, loop.ClientOptions{})
	if err != nil {
		panic(err)
	}
	<-done

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output:
	// sent: <nil>
	// got: job done
	// closed: 1000 bye
}

// exampleRoom frames one message for all its members once they are all in.
type exampleRoom struct {
	loop.WebSocketBase
	members *[]*loop.WebSocket // loop-only state: no lock
}

func (r exampleRoom) Open(w *loop.WebSocket) {
	*r.members = append(*r.members, w)
	if len(*r.members) < 2 {
		return
	}
	p, err := loop.PrepareMessage(loop.Text, []byte("everyone is here"))
	if err != nil {
		panic(err) // only for a type other than Text or Binary
	}
	for _, m := range *r.members {
		m.WritePrepared(p) // the same bytes for every member
	}
}

// ExamplePrepareMessage encodes a broadcast once and writes it to every
// member of a room with WritePrepared (what a Hub does for its topics).
func ExamplePrepareMessage() {
	var members []*loop.WebSocket
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/room", func(*loop.Request) loop.WebSocketHandler { return exampleRoom{members: &members} }, loop.WSOptions{})
	l := loop.New(loop.Options{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()

	got := make(chan string, 2)
	for i := 0; i < 2; i++ {
		_, err := l.DialWebSocket("ws://"+l.Addr().String()+"/room", loop.ClientHandler{
			OnMessage: func(w *loop.WebSocket, typ loop.MessageType, data []byte) { got <- string(data) },
			OnError:   func(c *loop.Client, err error) { got <- err.Error() },
		}, loop.ClientOptions{})
		if err != nil {
			panic(err)
		}
	}
	fmt.Println(<-got)
	fmt.Println(<-got)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output:
	// everyone is here
	// everyone is here
}
