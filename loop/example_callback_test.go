package loop_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
)

// ExampleLoop_AddCallback hands work from other goroutines to the loop:
// AddCallback is the one door into it, so state the loop owns (here a
// plain map) needs no lock. Callbacks run on the loop in the order they
// were added.
func ExampleLoop_AddCallback() {
	l := loop.New(loop.Options{})
	counts := map[string]int{} // loop-only: touched by callbacks alone
	go l.Start()
	<-l.Ready()

	var wg sync.WaitGroup
	for _, w := range []string{"a", "b", "a", "c", "a"} {
		wg.Go(func() { // any goroutine: a worker, a broker client, ...
			l.AddCallback(func() { counts[w]++ })
		})
	}
	wg.Wait()
	done := make(chan string)
	l.AddCallback(func() { // runs after the five above, on the loop
		done <- fmt.Sprint(counts)
	})
	fmt.Println(<-done)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output: map[a:3 b:1 c:1]
}

// ExampleHub_Watch is a long poll on a history topic: GET /poll?since=POS
// answers at once with what came after POS (Hub.History), or parks the
// request (Request.Async) and answers with the next message (Hub.Watch).
// History then Watch in one handler, on the loop, misses nothing: no
// message can arrive between the two calls.
func ExampleHub_Watch() {
	l := loop.New(loop.Options{})
	hub := loop.NewHub(l, loop.Text, nil)
	hub.KeepHistory("news", pubsub.HistoryOptions{MaxMessages: 100}, nil) // before Start: ready when it returns
	parked := make(chan struct{}, 1)

	app := loop.NewApplication(loop.AppOptions{})
	app.HandleFunc("/poll", func(r *loop.Request) {
		since, err := pubsub.ParsePosition(r.GetArgument("since", ""))
		if err != nil {
			r.SendError(400)
			return
		}
		msgs, _, err := hub.History("news", since, nil) // and the head, to tell a new client where it is
		if err != nil {                                 // ErrHistoryGone: the client should start over
			r.SendError(410)
			return
		}
		if len(msgs) > 0 {
			r.Write(pollAnswer(msgs))
			return
		}
		// Nothing new: wait for the next message (a real server also bounds
		// the wait with CallLater).
		r.Async()
		var cancel func()
		cancel, err = hub.Watch("news", func(m pubsub.Message) {
			cancel() // loop-only, like Watch: fn runs on the loop
			r.Write(pollAnswer([]pubsub.Message{m}))
			r.Finish()
		})
		if err != nil {
			r.SendError(503)
			return
		}
		r.OnConnectionClose(func() { cancel() }) // the client left first
		parked <- struct{}{}
	})
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
	base := "http://" + l.Addr().String() + "/poll?since="
	get := func(since string) string {
		resp, err := http.Get(base + since)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	answer := make(chan string)
	go func() { answer <- get("") }() // from now: parks
	<-parked
	hub.PublishAsync("news", []byte("first"), nil)
	first := <-answer
	fmt.Print("waited: ", offsets(first))

	pos, _, _ := strings.Cut(first, " ")
	hub.PublishAsync("news", []byte("second"), nil)
	hub.PublishAsync("news", []byte("third"), nil)
	sent := make(chan struct{})
	l.AddCallback(func() { close(sent) }) // after the two publishes ran
	<-sent
	fmt.Print("caught up:\n", offsets(get(pos)))
	// Output:
	// waited: 1 first
	// caught up:
	// 2 second
	// 3 third
}

// offsets drops the epochs (random per history) from "EPOCH-OFFSET data"
// lines, for a stable output.
func offsets(lines string) string {
	var b strings.Builder
	for line := range strings.Lines(lines) {
		_, rest, _ := strings.Cut(line, "-")
		b.WriteString(rest)
	}
	return b.String()
}

// pollAnswer is one line per message: its position, a space, its data.
func pollAnswer(msgs []pubsub.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "%s %s\n", m.Pos, m.Data)
	}
	return b.String()
}
