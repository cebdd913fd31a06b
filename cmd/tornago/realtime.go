package main

// The client protocol's server (loop/realtime) beside the demos, on every
// loop: /connection/websocket, /connection/sse, /connection/poll,
// /connection/command and /tornago.js. The seeds' routes are untouched.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
)

// realtimeNamespaces are the demo's: chat rooms with history that clients
// publish to (chat:lobby), with presence and join/leave pushes (the page's
// member list and "X joined" lines), the clock's ticks (clock:utc, published by the
// server; latest-value: a client that reads too slowly gets the newest tick
// rather than being disconnected), and personal topics (user:#42, user 42's alone).
func realtimeNamespaces() []realtime.Namespace {
	return []realtime.Namespace{
		{Name: "chat", Publish: true, History: pubsub.HistoryOptions{MaxMessages: 100}, MaxDataBytes: 4 << 10, Presence: true, JoinLeave: true},
		{Name: "clock", Latest: true},
		{Name: "user"},
	}
}

// realtimeClockTopic gets each loop's clock tick, on that loop only.
const realtimeClockTopic = "clock:utc"

// demoAuthenticate accepts every connection as an anonymous user: the
// demo has no token secret configured (demo tokens replace it when one is).
func demoAuthenticate(_ context.Context, c realtime.Credentials) (realtime.Identity, error) {
	return realtime.Identity{}, nil
}

// maxRPCDelay bounds the "delay" RPC's wait.
const maxRPCDelay = 5 * time.Second

// realtimeMaxData bounds what the protocol's topics accept from the
// broker: a client's command is at most 64 KiB, the server API's
// publications get this much.
const realtimeMaxData = 1 << 20

// acceptRealtime is the broker filter of the protocol's topics: one JSON
// value (a push carries it as is: anything else would break every
// subscriber's frame), within realtimeMaxData.
func acceptRealtime(data []byte) error {
	switch {
	case len(data) > realtimeMaxData:
		return fmt.Errorf("%d bytes, over the limit of %d", len(data), realtimeMaxData)
	case !json.Valid(data):
		return errors.New("a realtime publication that is not one JSON value")
	}
	return nil
}

// addRealtime adds loop l's protocol server to app, its topics carried to
// the other loops and processes by env.broker; clockHub's ticks go to
// clock:utc.
func addRealtime(l *loop.Loop, app *loop.Application, env *demoEnv, clockHub *loop.Hub) (*realtime.Server, error) {
	o := realtime.Options{
		Namespaces:   realtimeNamespaces(),
		Authenticate: demoAuthenticate,
		WebSocket:    loop.WSOptions{PingInterval: env.ping},
		// -procs: a poll or command POST reaching another process than
		// its session's goes there over the broker.
		Relay:   env.broker,
		Version: "tornago",
		Logger:  env.log,
	}
	if env.namespaces != nil { // the -config file's
		o.Namespaces = env.namespaces
	}
	if env.auth != nil { // -token-hmac-secret, -token-public-key (token.go)
		o.Authenticate = env.auth.Authenticate
		o.VerifySubscribeToken = env.auth.VerifySubscribeToken
		if env.auth.secret != nil { // demo tokens are HS256: the server signs them
			app.Handle("/demo/token", loop.Methods{Post: env.auth.serveDemoToken})
		}
	}
	rt, err := realtime.New(l, loop.NewHub(l, loop.Text, env.broker), o)
	if err != nil {
		return nil, fmt.Errorf("realtime: %w", err)
	}
	rt.HandleRPC("time", func(c *realtime.Client, _ json.RawMessage, reply func(json.RawMessage, error)) {
		b, _ := json.Marshal(map[string]string{"time": time.Now().UTC().Format(time.RFC3339Nano), "client": c.ID()})
		reply(b, nil)
	})
	// "delay" answers after data.ms (at most maxRPCDelay): an RPC that
	// stays pending, as a slow backend's would (the pending RPC limit's
	// demonstration and attack q's).
	rt.HandleRPC("delay", func(_ *realtime.Client, data json.RawMessage, reply func(json.RawMessage, error)) {
		var req struct {
			MS int64 `json:"ms"`
		}
		if len(data) > 0 {
			if err := json.Unmarshal(data, &req); err != nil {
				reply(nil, fmt.Errorf("delay: data must be {\"ms\": n}: %w", err))
				return
			}
		}
		d := min(max(time.Duration(req.MS)*time.Millisecond, 0), maxRPCDelay)
		l.CallLater(d, func() { reply([]byte(`{}`), nil) })
	})
	rt.Routes(app)
	app.Handle("/realtime", loop.Methods{Get: serveRealtimePage})
	// Every loop ticks on the same second: each sends its own tick to its
	// own subscribers, not through the broker.
	l.AddCallback(func() {
		if _, err := clockHub.Watch(clockTopic, func(m pubsub.Message) { _ = rt.PublishLocal(realtimeClockTopic, m.Data) }); err != nil {
			env.log.Warn("realtime: no clock ticks", "err", err)
		}
	})
	return rt, nil
}
