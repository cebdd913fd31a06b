package natsbroker_test

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop/natsbroker"
	"github.com/tornago/tornago/loop/pubsub"
)

// A topic that keeps history: every process calls KeepHistory at start,
// then messages get positions that are the same on every process, and a
// client that comes back with the last position it saw gets the rest from
// History.
func ExampleBroker_KeepHistory() {
	dir, err := os.MkdirTemp("", "natsbroker-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true, StoreDir: dir})
	if err != nil {
		panic(err)
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		panic("nats-server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	b := natsbroker.New(nc, "tornago.")
	defer b.Close()

	if err := b.KeepHistory("room.go", pubsub.HistoryOptions{MaxMessages: 1000, MaxAge: time.Hour}); err != nil {
		panic(err) // errors.Is(err, pubsub.ErrNoHistory): the server has no JetStream
	}
	got := make(chan pubsub.Message, 2)
	head, cancel, err := b.SubscribeHistory("room.go", func(m pubsub.Message) { got <- m })
	if err != nil {
		panic(err)
	}
	defer cancel()
	fmt.Println("head offset:", head.Offset)
	for _, s := range []string{"hello", "world"} {
		if err := b.Publish("room.go", []byte(s)); err != nil {
			panic(err)
		}
	}
	first := <-got
	<-got
	// A client that saw the first message comes back (on any process).
	rest, err := b.History("room.go", first.Pos, -1, nil)
	if err != nil {
		panic(err) // errors.Is(err, pubsub.ErrHistoryGone): reload instead
	}
	for _, m := range rest {
		fmt.Println(m.Pos.Offset, string(m.Data))
	}
	// Output:
	// head offset: 0
	// 2 world
}
