package loop_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing/fstest"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/wsclient"
)

// Example embeds a loop in another program: build an application, listen on
// a port the kernel picks, run the loop on its own goroutine, use it, stop it.
func Example() {
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleFunc(`/hello/([a-z]+)`, func(r *loop.Request) {
		r.Write("Hello, " + r.PathArgs[0] + "!")
	})
	l := loop.New(loop.Options{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	started := make(chan error, 1)
	go func() { started <- l.Start() }() // Start blocks until Stop has finished
	<-l.Ready()
	if l.Addr() == nil { // Ready is also closed when Start failed
		panic(<-started)
	}
	addr := l.Addr().String() // the bound address, port included

	resp, err := http.Get("http://" + addr + "/hello/world")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.Stop(ctx); err != nil {
		panic(err)
	}
	fmt.Println("Start returned:", <-started)
	// Output:
	// 200 Hello, world!
	// Start returned: <nil>
}

// ExampleLoop_Stop shuts a loop down gracefully: Stop sends 1001 Going Away
// to every WebSocket and waits (until ctx is done) for the peers' replies,
// runs the close hooks, and returns once Start has; new connections are then
// refused.
func ExampleLoop_Stop() {
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleWebSocket("/ws", func(*loop.Request) loop.WebSocketHandler { return loop.WebSocketBase{} }, loop.WSOptions{})
	l := loop.New(loop.Options{})
	l.AddOnStop(func() { fmt.Println("close hook: on the loop, after the connections drained") })
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()
	addr := l.Addr().String()

	c, err := wsclient.Dial("ws://"+addr+"/ws", wsclient.DialOptions{})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- l.Stop(ctx) }() // Stop must not be called on the loop goroutine

	// Recv answers the server's close frame and returns io.EOF.
	_, _, rerr := c.Recv()
	c.Close(loop.CloseNormal, "")
	serr := <-stopped // printed after Stop, which ran the hook, has returned
	fmt.Println("client:", rerr == io.EOF, c.CloseCode())
	fmt.Println("Stop:", serr)

	_, err = http.Get("http://" + addr + "/")
	fmt.Println("refused after Stop:", err != nil)
	// Output:
	// close hook: on the loop, after the connections drained
	// client: true 1001
	// Stop: <nil>
	// refused after Stop: true
}

// ExampleRequest_Async is a long poll (Tornado's chat demo): the handler
// parks the request with Async and returns; a callback on the loop finishes
// it when there is news. Waiters live in plain loop-only state, no locks.
func ExampleRequest_Async() {
	var waiters []*loop.Request // loop-only
	parked := make(chan struct{}, 1)

	app := loop.NewApplication(loop.AppOptions{})
	app.HandleFunc("/poll", func(r *loop.Request) {
		r.Async() // returning does not finish the request
		waiters = append(waiters, r)
		r.OnConnectionClose(func() { // the client left first: drop its waiter
			for i, w := range waiters {
				if w == r {
					waiters = append(waiters[:i], waiters[i+1:]...)
					break
				}
			}
		})
		parked <- struct{}{}
	})
	// publish may be called from any goroutine: it enters the loop through
	// AddCallback, the loop's goroutine-safe door.
	publish := func(l *loop.Loop, msg string) {
		l.AddCallback(func() {
			for _, r := range waiters {
				r.Write(map[string]string{"msg": msg})
				r.Finish()
			}
			waiters = nil
		})
	}

	l := loop.New(loop.Options{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()
	addr := l.Addr().String()

	answer := make(chan string)
	go func() {
		resp, err := http.Get("http://" + addr + "/poll")
		if err != nil {
			answer <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answer <- resp.Header.Get("Content-Type") + " " + string(body)
	}()
	<-parked // the poll is waiting on the loop
	publish(l, "hello")
	fmt.Println(<-answer)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output: application/json; charset=UTF-8 {"msg":"hello"}
}

// ExampleLoop_NewPeriodicCallback runs a function on the loop every period
// (Tornado's PeriodicCallback). Start and Stop are goroutine-safe: Start is
// called from main here, Stop from the callback itself.
func ExampleLoop_NewPeriodicCallback() {
	l := loop.New(loop.Options{})
	go l.Start() // a loop without listeners, as a client or a timer host
	<-l.Ready()

	done := make(chan struct{})
	ticks := 0
	var pc *loop.PeriodicCallback
	pc = l.NewPeriodicCallback(func() {
		ticks++ // loop-only state: no lock
		fmt.Println("tick", ticks)
		if ticks == 3 {
			pc.Stop() // no call happens after Stop
			close(done)
		}
	}, 10*time.Millisecond, 0)
	pc.Start()
	<-done

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output:
	// tick 1
	// tick 2
	// tick 3
}

// ExampleRunInExecutor moves blocking work (a disk read, a password hash, a
// call to a blocking library) off the loop: work runs on the loop's worker
// pool, done runs back on the loop and finishes the request.
func ExampleRunInExecutor() {
	app := loop.NewApplication(loop.AppOptions{})
	app.HandleFunc(`/upper/(\w+)`, func(r *loop.Request) {
		word := r.PathArgs[0] // copied now: work must not touch r
		r.Async()
		loop.RunInExecutor(r.Loop(), func() (string, error) {
			// On a worker goroutine: may block, must not touch loop state.
			if word == "fail" {
				return "", errors.New("refused")
			}
			return strings.ToUpper(word), nil
		}, func(s string, err error) {
			// On the loop again.
			if err != nil {
				r.SendError(500)
				return
			}
			r.Write(s)
			r.Finish()
		})
	})
	l := loop.New(loop.Options{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()
	addr := l.Addr().String()

	for _, w := range []string{"tornado", "fail"} {
		resp, err := http.Get("http://" + addr + "/upper/" + w)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			body = nil
		}
		fmt.Println(resp.StatusCode, string(body))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output:
	// 200 TORNADO
	// 500
}

// ExampleStaticFiles serves files from an fs.FS (here an in-memory one;
// os.DirFS or an embed.FS in a program), with a validator for caching.
func ExampleStaticFiles() {
	files := fstest.MapFS{
		"index.html": {Data: []byte("<h1>hi</h1>"), ModTime: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
	}
	app := loop.NewApplication(loop.AppOptions{})
	app.Handle(`/static/(.*)`, loop.StaticFiles(files)) // the capture is the path in files
	l := loop.New(loop.Options{})
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		panic(err)
	}
	go l.Start()
	<-l.Ready()
	base := "http://" + l.Addr().String() + "/static/"

	resp, err := http.Get(base + "index.html")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Last-Modified"), string(body))

	// A client that has the file sends its ETag back and gets 304.
	req, _ := http.NewRequest("GET", base+"index.html", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)

	resp, err = http.Get(base + "missing.css")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.Stop(ctx)
	// Output:
	// 200 text/html; charset=utf-8 Thu, 02 Jan 2025 03:04:05 GMT <h1>hi</h1>
	// 304
	// 404
}
