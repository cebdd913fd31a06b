package loop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
)

// ExampleHub_SetFrame gives a history topic's positioned messages the
// application's own JSON envelope, with the position inside, instead of
// the default "E-N\n" + data: the client keeps well-formed JSON frames and
// still resumes with ?since=<pos>. The envelope is built once per loop per
// message, whatever the number of subscribers.
func ExampleHub_SetFrame() {
	l := loop.New(loop.Options{})
	hub := loop.NewHub(l, loop.Text, nil)
	hub.KeepHistory("news", pubsub.HistoryOptions{MaxMessages: 100}, nil)
	hub.SetFrame(func(dst []byte, topic string, pos pubsub.Position, data []byte) []byte {
		// data is the application's own JSON; pos needs no escaping.
		dst = append(dst, `{"pos":"`...)
		dst = pos.Append(dst)
		dst = append(dst, `","msg":`...)
		return append(append(dst, data...), '}')
	})
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/news", func(*loop.Request) loop.WebSocketHandler { return feed{hub: hub} }, loop.WSOptions{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		l.Stop(ctx)
	}()

	c, _, err := gws.DefaultDialer.Dial("ws://"+l.Addr().String()+"/news", nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	// Subscribed once Open ran: a callback queued now runs after it.
	subscribed := make(chan struct{})
	l.AddCallback(func() { close(subscribed) })
	<-subscribed
	hub.PublishAsync("news", []byte(`{"text":"hello"}`), nil) // from another goroutine
	var m struct {
		Pos string
		Msg struct{ Text string }
	}
	_, frame, _ := c.ReadMessage()
	if err := json.Unmarshal(frame, &m); err != nil {
		panic(err)
	}
	_, offset, _ := strings.Cut(m.Pos, "-")
	fmt.Println("offset", offset, "text", m.Msg.Text)
	// Output:
	// offset 1 text hello
}
