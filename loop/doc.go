// Package loop is Tornago's IOLoop: one reactor goroutine (a single gnet event
// loop) that runs every handler, callback and timer of the program, so that
// application code shares state without locks, in the manner of Tornado.
//
// # Map of the package
//
// Each part, with the files that hold it:
//
//   - Reactor: [Loop] and [Options] (loop.go: New, Start, Stop), [Loop.Listen]
//     (listen.go), [Loop.AddCallback] (callback.go, the door from other
//     goroutines), timers [Loop.CallLater], [Loop.CallAt] (timers.go) and
//     [PeriodicCallback] (periodic.go), per-connection deadlines on a timing
//     wheel (wheel.go), [RunInExecutor] for blocking work (executor.go), the
//     blocked-loop watchdog (watchdog.go), work that yields to the next turn
//     (turn.go), gnet's events and MaxConns (engine.go), connections and
//     closing after the output drained (conn.go, conn_close.go), unsent
//     output (watch.go), many loops on one port: [Group] (group.go), serving
//     inside an existing net/http server: [Loop.Mount] (mount.go).
//   - HTTP: [Application] with its routes and [AppOptions] (app.go), [Request]
//     (request.go, http_serve.go), [Methods] and [HandlerFunc] (app.go),
//     [StaticFiles] (static.go), [Request.Flush] for streamed responses
//     (stream.go), forwarded headers (forwarded.go), access logs
//     (accesslog.go).
//   - WebSocket server: [Application.HandleWebSocket], [WSOptions],
//     [WebSocketHandler] and [WebSocket] (websocket.go), the upgrade
//     (websocket_accept.go), reading (websocket_read.go), writing and
//     [PrepareMessage] (websocket_write.go), closing (websocket_close.go),
//     pings and MessageTimeout (websocket_deadline.go), permessage-deflate
//     (websocket_deflate.go).
//   - Server-sent events: [Request.EventStream] and [EventStream]
//     (eventstream.go).
//   - Hub, pub/sub on the loop: [Hub] (hub.go), history, positions, Watch
//     and long polls (hub_history.go), SSE subscribers (hub_sse.go). The
//     data types and brokers (Position, Message, Broker, MemoryBroker,
//     LocalHistory) are in loop/pubsub, which does not import loop; a NATS
//     broker is in loop/natsbroker.
//   - Clients: [Loop.DialWebSocket] and [Client] run a WebSocket client on
//     the loop (client.go); the blocking client for scripts and tests is
//     loop/wsclient.
//   - Metrics: [Loop.Metrics] (stats.go); loop/metrics exports them to
//     Prometheus.
//
// # Threading rule: what may be called from where
//
// Everything is loop-only unless its name ends in Async or its doc says
// goroutine-safe; the first line of every exported function's and method's
// doc says which (a test keeps it so). A loop-only method called from
// another goroutine never silently does something else: those that send,
// close or subscribe return [ErrNotOnLoop] and do nothing.
//
//	Where                        What
//	---------------------------  ------------------------------------------------
//	loop-only (the default):     handlers, WebSocketHandler hooks, callbacks and
//	call from code the loop      timers run there; every method of Request,
//	runs                         WebSocket, EventStream, Hub, Client not listed
//	                             below (writes, Close, Subscribe, Publish,
//	                             History, Watch, ...)
//	loop-only, or before Start   Application.Handle, HandleFunc, HandleWebSocket,
//	                             Loop.AddOnStop, Hub.KeepHistory, Hub.SetFrame
//	goroutine-safe before Start  Loop.Listen, Group.Listen, Group.Mount
//	goroutine-safe (any          New, NewApplication, NewGroup, NewHub,
//	goroutine)                   Loop.AddCallback, CallLater, CallAt,
//	                             RemoveTimeout, NewPeriodicCallback, Stop, Start
//	                             (once, not on the loop), Ready, Done, InLoop,
//	                             Addr/Addrs (once Ready), Metrics, DialWebSocket,
//	                             Mount (and its http.Handler);
//	                             RunInExecutor; PeriodicCallback.Start, Stop,
//	                             IsRunning; PrepareMessage, PrepareJSON,
//	                             PrepareEvent; Request.Loop;
//	                             WebSocket.Loop; Client.Close, Loop, URL;
//	                             Hub.Dropped; Group.Start, Stop, Ready, Addr,
//	                             Loops; pubsub.MemoryBroker and LocalHistory
//	the Async doors (any         WebSocket.WriteAsync, WritePreparedAsync,
//	goroutine; done runs on the  CloseAsync; EventStream.SendAsync,
//	loop with the real result)   WritePreparedAsync, CloseAsync;
//	                             Hub.PublishAsync
//
// An Async door copies what it needs, returns at once an error only when the
// work could not be queued ([ErrLoopBacklog] over Options.MaxAsyncBytes,
// [ErrStopped]) and otherwise runs the loop-only method on the loop and calls
// done (which may be nil) there. Anything else reaches the loop through
// Loop.AddCallback.
//
// # How long borrowed bytes live
//
//	Bytes                                        Valid
//	-------------------------------------------  ------------------------------
//	OnMessage, OnPing, OnPong data (server and   during the call only: copy
//	client)                                      what you keep
//	Request fields (Path, Body, PathArgs, ...)   until the request is finished
//	                                             (also for an Async handler)
//	the upgrade Request (WebSocket.Request)      during Open (newHandler) only
//	Hub.Watch's m.Data                           read-only; keep it only if
//	                                             you never modify it
//	Hub.History's messages' Data                 read-only, as long as kept
//	data given to a write, Send, Publish or an   the caller's again when the
//	Async door, PrepareMessage                   call returns (it is copied or
//	                                             written)
package loop
