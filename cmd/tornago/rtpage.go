package main

import (
	_ "embed"

	"github.com/tornago/tornago/loop"
)

// realtimePage is the demo of the client protocol, built on /tornago.js:
// clock, chat rooms, a name from a demo token. The seeds' page stays at /.
//
//go:embed page/realtime.html
var realtimePage []byte

// serveRealtimePage is GET /realtime. Loop-only.
func serveRealtimePage(r *loop.Request) {
	r.SetHeader("Content-Type", "text/html; charset=UTF-8")
	r.SetHeader("Cache-Control", "no-cache")
	r.Write(realtimePage)
}
