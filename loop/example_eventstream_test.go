package loop_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tornago/tornago/loop"
)

// ExampleEventStream serves Server-Sent Events: each client gets the
// events after the one it names in Last-Event-ID (which a browser's
// EventSource sends when it reconnects), then the stream ends cleanly.
// Events of a broadcast would be encoded once with PrepareEvent and
// written to every stream with WritePrepared.
func ExampleEventStream() {
	l := loop.New(loop.Options{})
	app := loop.NewApplication(loop.AppOptions{})
	log := []string{"first", "second\nin two lines", "third"}
	app.HandleFunc(`/events`, func(r *loop.Request) {
		es, err := r.EventStream(loop.EventStreamOptions{Retry: 5 * time.Second})
		if err != nil {
			return
		}
		from := 0
		fmt.Sscan(es.LastEventID(), &from)
		for i := from; i < len(log); i++ {
			if err := es.Send(fmt.Sprint(i+1), "", []byte(log[i])); err != nil {
				return // the client left, or does not read (slow consumer)
			}
		}
		es.Close()
	})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()

	req, _ := http.NewRequest("GET", "http://"+l.Addr().String()+"/events", nil)
	req.Header.Set("Last-Event-ID", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.Header.Get("Content-Type"))
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "retry:") {
			fmt.Println(line)
		}
	}
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output:
	// text/event-stream
	// id: 2
	// data: second
	// data: in two lines
	// id: 3
	// data: third
}
