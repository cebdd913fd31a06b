package realtime

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
)

// This file's helpers are exported so that the external tests
// (package realtime_test) can use them too: one way to run a Server in a
// test, for the tests that cannot use realtime_test.go's start (another
// loop option, a relay, routes of their own, or package realtime).

// StartForTest runs a Server for o on a new loop with lo, serving on
// 127.0.0.1:0 until t ends, its hub relaying through relay (may be nil).
// setup (may be nil) runs before the loop starts, with the Application
// that is to serve s's routes, for routes of the test's own or fields of s.
// It returns s and its address.
func StartForTest(t testing.TB, lo loop.Options, relay pubsub.Broker, o Options, setup func(*Server, *loop.Application)) (*Server, string) {
	t.Helper()
	l := loop.New(lo)
	s, err := New(l, loop.NewHub(l, loop.Text, relay), o)
	if err != nil {
		t.Fatal(err)
	}
	app := loop.NewApplication(loop.AppOptions{})
	if setup != nil {
		setup(s, app)
	}
	s.Routes(app)
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		t.Fatal(err)
	}
	go l.Start()
	<-l.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
	})
	return s, l.Addr().String()
}

// DoForTest sends req with c and returns the status and the body.
func DoForTest(t testing.TB, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
