package realtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
)

// Example serves the protocol on one loop: a client connects, subscribes
// to a chat room with history, publishes, and gets its publication back
// as a push with its position; an RPC runs on the loop.
func Example() {
	l := loop.New(loop.Options{})
	rt, err := realtime.New(l, loop.NewHub(l, loop.Text, nil), realtime.Options{
		Namespaces: []realtime.Namespace{{Name: "chat", Publish: true, History: pubsub.HistoryOptions{MaxMessages: 100}}},
	})
	if err != nil {
		panic(err)
	}
	rt.HandleRPC("double", func(c *realtime.Client, data json.RawMessage, reply func(json.RawMessage, error)) {
		var n int
		if err := json.Unmarshal(data, &n); err != nil {
			reply(nil, err)
			return
		}
		reply(json.RawMessage(fmt.Sprint(2*n)), nil)
	})
	app := loop.NewApplication(loop.AppOptions{})
	rt.Routes(app)
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

	c, _, err := websocket.DefaultDialer.Dial("ws://"+l.Addr().String()+"/connection/websocket", nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	for _, cmd := range []string{
		`{"id":1,"connect":{"name":"example"}}`,
		`{"id":2,"subscribe":{"topic":"chat:lobby"}}`,
		`{"id":3,"publish":{"topic":"chat:lobby","data":{"text":"hi"}}}`,
		`{"id":4,"rpc":{"method":"double","data":21}}`,
	} {
		c.WriteMessage(websocket.TextMessage, []byte(cmd))
	}
	for range 5 {
		_, b, err := c.ReadMessage()
		if err != nil {
			panic(err)
		}
		var f struct {
			ID     int `json:"id"`
			Result json.RawMessage
			Push   *struct {
				Topic string
				Pub   struct{ Data json.RawMessage }
			}
		}
		json.Unmarshal(b, &f)
		switch {
		case f.Push != nil:
			fmt.Printf("push on %s: %s\n", f.Push.Topic, f.Push.Pub.Data)
		case f.ID == 4:
			fmt.Printf("reply %d: %s\n", f.ID, f.Result)
		default:
			fmt.Printf("reply %d\n", f.ID)
		}
	}
	// Output:
	// reply 1
	// reply 2
	// push on chat:lobby: {"text":"hi"}
	// reply 3
	// reply 4: {"data":42}
}
