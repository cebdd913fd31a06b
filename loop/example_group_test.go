package loop_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/wsclient"
)

// chatter is one chat connection. It runs on the loop that accepted it,
// for its whole life: its fields need no locks.
type chatter struct {
	loop.WebSocketBase
	hub   *loop.Hub // its loop's hub
	owner *loop.Loop
	sent  *int // owned by owner: touched only in callbacks on it
}

func (c chatter) Open(w *loop.WebSocket) { c.hub.Subscribe("lobby", w) }

func (c chatter) OnMessage(w *loop.WebSocket, _ loop.MessageType, data []byte) {
	// Loop-wide state of another loop is reached with AddCallback: the
	// count runs on loop 0, whichever loop this connection is on. Queued
	// before the Publish, it runs before anyone can see the message.
	c.owner.AddCallback(func() { *c.sent++ })
	// Through the broker to the hubs of both loops; each frames the
	// message once and writes it to its own subscribers.
	c.hub.Publish("lobby", data)
}

// ExampleGroup runs a chat on two loops sharing one port. Each loop has
// its own hub (state per loop), and one MemoryBroker carries every message
// to both hubs, so a client gets each message once whichever loop it and
// the sender are on. A counter owned by loop 0 shows the other way to
// share: one loop owns the state, the others reach it with AddCallback.
func ExampleGroup() {
	g := loop.NewGroup(2, loop.Options{})
	broker := &pubsub.MemoryBroker{}
	owner := g.Loops()[0]
	sent := 0
	// setup runs once per loop, here, before the loops start.
	err := g.Listen("127.0.0.1:0", func(l *loop.Loop, i int) *loop.Application {
		hub := loop.NewHub(l, loop.Text, broker)
		app := loop.NewApplication(loop.AppOptions{})
		app.HandleWebSocket("/chat", func(*loop.Request) loop.WebSocketHandler {
			return chatter{hub: hub, owner: owner, sent: &sent}
		}, loop.WSOptions{})
		return app
	})
	if err != nil {
		panic(err)
	}
	go g.Start()
	<-g.Ready()
	url := "ws://" + g.Addr().String() + "/chat"

	// The kernel picks each connection's loop; the output is the same
	// whichever it picks.
	alice, err := wsclient.Dial(url, wsclient.DialOptions{})
	if err != nil {
		panic(err)
	}
	bob, err := wsclient.Dial(url, wsclient.DialOptions{})
	if err != nil {
		panic(err)
	}
	for _, line := range []struct {
		from *wsclient.Conn
		text string
	}{{alice, "hi, I'm Alice"}, {bob, "hello Alice"}} {
		line.from.Send(line.text)
		for _, to := range []struct {
			name string
			c    *wsclient.Conn
		}{{"alice", alice}, {"bob", bob}} {
			_, msg, err := to.c.Recv()
			if err != nil {
				panic(err)
			}
			fmt.Printf("%s got %q\n", to.name, msg)
		}
	}

	// Read the counter on its loop.
	count := make(chan int)
	owner.AddCallback(func() { count <- sent })
	fmt.Println("messages counted on loop 0:", <-count)

	alice.Close(loop.CloseNormal, "")
	bob.Close(loop.CloseNormal, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.Stop(ctx)
	// Output:
	// alice got "hi, I'm Alice"
	// bob got "hi, I'm Alice"
	// alice got "hello Alice"
	// bob got "hello Alice"
	// messages counted on loop 0: 2
}
