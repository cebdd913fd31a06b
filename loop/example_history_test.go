package loop_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/wsclient"
)

// feed resumes each connection after the position in its ?since=.
type feed struct {
	loop.WebSocketBase
	hub *loop.Hub
}

func (f feed) Open(w *loop.WebSocket) {
	since, err := pubsub.ParsePosition(w.Request().GetArgument("since", ""))
	if err != nil {
		w.Close(loop.ClosePolicy, "bad since")
		return
	}
	if _, err := f.hub.SubscribeSince("news", w, since); errors.Is(err, pubsub.ErrHistoryGone) {
		w.WriteText([]byte(`{"gone":true}`)) // the client should reload
	}
}

// ExampleHub_SubscribeSince keeps a topic's history and resumes a client
// that was away: it gets exactly what it missed, each message as
// "EPOCH-OFFSET\n" + data, then the live ones.
func ExampleHub_SubscribeSince() {
	l := loop.New(loop.Options{})
	hub := loop.NewHub(l, loop.Text, nil) // nil: the hub keeps the history itself
	// Before Start, done runs before KeepHistory returns; on the loop it
	// runs later, once the broker (if any) answered.
	hub.KeepHistory("news", pubsub.HistoryOptions{MaxMessages: 100, MaxAge: time.Hour}, func(err error) {
		if err != nil {
			panic(err)
		}
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
	base := "ws://" + l.Addr().String() + "/news"

	hub.PublishAsync("news", []byte("first"), nil) // queued for the loop (Publish itself is loop-only)
	sent := make(chan struct{})
	l.AddCallback(func() { close(sent) }) // callbacks run in order: "first" is out after this
	<-sent
	c, err := wsclient.Dial(base+"?since=", wsclient.DialOptions{}) // from now on
	if err != nil {
		panic(err)
	}
	hub.PublishAsync("news", []byte("second"), nil)
	_, msg, _ := c.Recv()
	pos, body, _ := strings.Cut(string(msg), "\n")
	fmt.Println("live:", body)
	c.Close(loop.CloseNormal, "")

	// Published while the client is away.
	hub.PublishAsync("news", []byte("third"), nil)
	hub.PublishAsync("news", []byte("fourth"), nil)
	c, err = wsclient.Dial(base+"?since="+pos, wsclient.DialOptions{})
	if err != nil {
		panic(err)
	}
	defer c.Close(loop.CloseNormal, "")
	for range 2 {
		_, msg, _ := c.Recv()
		_, body, _ := strings.Cut(string(msg), "\n")
		fmt.Println("recovered:", body)
	}
	// Output:
	// live: second
	// recovered: third
	// recovered: fourth
}
