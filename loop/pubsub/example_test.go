package pubsub_test

import (
	"fmt"

	"github.com/tornago/tornago/loop/pubsub"
)

// A MemoryBroker carries topics between the hubs of several loops in one
// process (give the same one to each loop.NewHub). Here it is used on its
// own: a plain topic, then a topic that keeps history, read back from a
// position as a client that comes back would.
func ExampleMemoryBroker() {
	var b pubsub.MemoryBroker // the zero value is ready to use

	got := make(chan string, 1)
	cancel, _ := b.Subscribe("news", func(data []byte) { got <- string(data) })
	b.Publish("news", []byte("hello"))
	fmt.Println(<-got)
	cancel()

	if err := b.KeepHistory("chat", pubsub.HistoryOptions{MaxMessages: 2}); err != nil {
		panic(err)
	}
	for _, m := range []string{"one", "two", "three"} {
		b.Publish("chat", []byte(m))
	}
	head, cancel, _ := b.SubscribeHistory("chat", func(pubsub.Message) {})
	cancel()
	fmt.Println("head offset:", head.Offset)

	// A client that saw offset 2 gets what came after it.
	msgs, _ := b.History("chat", pubsub.Position{Epoch: head.Epoch, Offset: 2}, -1, nil)
	for _, m := range msgs {
		fmt.Printf("%d %s\n", m.Pos.Offset, m.Data)
	}
	// One that saw only offset 0 is told the history no longer reaches back.
	_, err := b.History("chat", pubsub.Position{Epoch: head.Epoch, Offset: 0}, -1, nil)
	fmt.Println(err != nil)
	// Output:
	// hello
	// head offset: 3
	// 3 three
	// true
}
