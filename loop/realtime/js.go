package realtime

import "github.com/tornago/tornago/loop"

// Goroutine-safe.
// JSHandler serves the browser client at GET /tornago.js. This stub
// answers 404 until the client is embedded here.
func JSHandler() loop.Handler {
	return loop.HandlerFunc(func(r *loop.Request) { _ = r.SendError(404) })
}
