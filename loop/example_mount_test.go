package loop_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	gws "github.com/gorilla/websocket"

	"github.com/tornago/tornago/loop"
)

// echo is a WebSocket handler that sends every message back.
type echo struct{ loop.WebSocketBase }

func (echo) OnMessage(w *loop.WebSocket, _ loop.MessageType, data []byte) { w.WriteText(data) }

// ExampleLoop_Mount serves a Tornago WebSocket route inside an existing
// net/http server, on its port, beside its own routes and behind its
// middleware. The handler hands each connection it gets to the loop, which
// serves it from then on without a goroutine or a net/http buffer.
func ExampleLoop_Mount() {
	l := loop.New(loop.Options{})
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/echo", func(*loop.Request) loop.WebSocketHandler { return echo{} }, loop.WSOptions{})
	tornago, err := l.Mount(app) // no Listen: the loop gets its connections from net/http
	if err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()

	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	// The loop sees "/echo": StripPrefix changes the path it is given.
	mux.Handle("/rt/", http.StripPrefix("/rt", tornago))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	c, _, err := gws.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/rt/echo", nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	c.WriteMessage(gws.TextMessage, []byte("through net/http"))
	_, msg, _ := c.ReadMessage()
	fmt.Println(string(msg))
	// Output: through net/http
}
