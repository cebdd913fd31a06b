package realtime_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
)

// ExampleAPI serves the server API beside the protocol: a backend
// publishes with one POST (curl -H "X-API-Key: ..." -d '{...}'
// host/api/publish), then reads the topic's history. With several loops,
// register the same API on each loop's Application with that loop's
// server.
func ExampleAPI() {
	l := loop.New(loop.Options{})
	rt, err := realtime.New(l, loop.NewHub(l, loop.Text, nil), realtime.Options{
		Namespaces: []realtime.Namespace{{Name: "news", History: pubsub.HistoryOptions{MaxMessages: 10}}},
	})
	if err != nil {
		panic(err)
	}
	api, err := realtime.NewAPI(realtime.APIOptions{Key: "secret-key"})
	if err != nil {
		panic(err)
	}
	defer api.Close()
	app := loop.NewApplication(loop.AppOptions{})
	rt.Routes(app)
	api.Routes(app, rt.APIBackend())
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

	call := func(method, body string) {
		req, _ := http.NewRequest("POST", "http://"+l.Addr().String()+"/api/"+method, strings.NewReader(body))
		req.Header.Set("X-API-Key", "secret-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		// Positions start with the history's epoch (a time): hide it.
		out := string(b)
		if i := strings.Index(out, `"pos":"`); i >= 0 {
			if j := strings.Index(out[i+7:], "-"); j >= 0 {
				out = strings.ReplaceAll(out, out[i+7:i+7+j], "E")
			}
		}
		fmt.Print(resp.StatusCode, " ", out)
	}
	call("publish", `{"topic":"news:today","data":{"title":"release"}}`)
	call("history", `{"topic":"news:today"}`)
	call("publish", `{"topic":"news:today"}`)
	// Output:
	// 200 {"result":{"pos":"E-1"}}
	// 200 {"result":{"publications":[{"pos":"E-1","data":{"title":"release"}}],"head":"E-1","gone":false}}
	// 400 {"error":{"code":107,"message":"data is required (any JSON value)"}}
}
