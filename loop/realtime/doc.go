// Package realtime serves the Tornago client protocol (version 1, see
// proto/clientproto/PROTOCOL.md): one connection per client, many topics,
// on WebSocket (/connection/websocket), Server-Sent Events
// (/connection/sse) or long polling (/connection/poll), commands of the
// emulated transports POSTed to /connection/command.
//
// A Server lives on one loop, beside that loop's Application, with a Hub
// of its own (whose broker, if any, carries its topics to the other loops
// and processes):
//
//	hub := loop.NewHub(l, loop.Text, broker)
//	rt, err := realtime.New(l, hub, realtime.Options{
//		Namespaces: []realtime.Namespace{
//			{Name: "chat", Publish: true, History: pubsub.HistoryOptions{MaxMessages: 100}},
//			{Name: "user"}, // user:#42 is user 42's alone
//		},
//		Authenticate: func(ctx context.Context, c realtime.Credentials) (realtime.Identity, error) {
//			return realtime.Identity{User: "anonymous"}, nil
//		},
//	})
//	rt.HandleRPC("time", func(c *realtime.Client, data json.RawMessage, reply func(json.RawMessage, error)) {
//		reply(json.RawMessage(`"now"`), nil)
//	})
//	rt.Routes(app)
//
// Hooks (Authenticate, CanSubscribe, CanPublish, VerifySubscribeToken)
// run off the loop on its executor; the connection's later commands wait
// for them, so that its commands are handled in order. RPC handlers run on
// the loop. Each topic with subscribers on a loop is followed once on the
// Hub, and each publication is encoded once per loop for all of them.
package realtime
