package rtclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
	"github.com/tornago/tornago/loop/realtime/rtclient"
)

// ExampleDial connects a Go client to a realtime server, subscribes to a
// chat room, publishes into it and calls an RPC. The client's callbacks
// run on its loop; the example hands their results to main through a
// channel.
func ExampleDial() {
	// The server: a loop with the protocol's routes and one namespace.
	srv := loop.New(loop.Options{Logger: slog.New(slog.DiscardHandler)})
	rt, _ := realtime.New(srv, loop.NewHub(srv, loop.Text, nil), realtime.Options{
		Namespaces: []realtime.Namespace{{Name: "chat", Publish: true, History: pubsub.HistoryOptions{MaxMessages: 100}}},
	})
	rt.HandleRPC("hello", func(_ *realtime.Client, data json.RawMessage, reply func(json.RawMessage, error)) {
		reply(json.RawMessage(`"hello, `+string(data[1:len(data)-1])+`"`), nil)
	})
	app := loop.NewApplication(loop.AppOptions{})
	rt.Routes(app)
	srv.Listen("127.0.0.1:0", app)
	go srv.Start()
	<-srv.Ready()

	// The client, on a loop of its own (thousands can share one).
	l := loop.New(loop.Options{Logger: slog.New(slog.DiscardHandler)})
	go l.Start()
	<-l.Ready()
	out := make(chan string, 10)
	c, err := rtclient.Dial(l, "ws://"+srv.Addr().String()+"/connection/websocket", rtclient.Options{
		Token:     "", // anonymous: the server has no Authenticate hook
		Reconnect: true,
	})
	if err != nil {
		panic(err)
	}
	c.Subscribe("chat:lobby", pubsub.Position{}, func(p rtclient.Publication) {
		out <- fmt.Sprintf("%s at offset %d: %s", p.Topic, p.Pos.Offset, p.Data)
	}, func(r rtclient.SubscribeResult, err error) {
		out <- fmt.Sprintf("subscribed: %v", err)
	})
	fmt.Println(<-out)
	acked := make(chan string, 1) // the ack and the publication race
	c.Publish("chat:lobby", json.RawMessage(`{"text":"hi"}`), func(pos pubsub.Position, err error) {
		acked <- fmt.Sprintf("published at offset %d: %v", pos.Offset, err)
	})
	fmt.Println(<-acked)
	fmt.Println(<-out)
	c.RPC("hello", json.RawMessage(`"ann"`), func(data json.RawMessage, err error) {
		out <- fmt.Sprintf("rpc: %s %v", data, err)
	})
	fmt.Println(<-out)

	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l.Stop(ctx)
	srv.Stop(ctx)
	// Output:
	// subscribed: <nil>
	// published at offset 1: <nil>
	// chat:lobby at offset 1: {"text":"hi"}
	// rpc: "hello, ann" <nil>
}
