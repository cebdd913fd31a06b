package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tornago/tornago/loop"
)

// mountedServer is -mount: the demo served the way a program that already
// has a net/http server serves it, through loop.Mount in its ServeMux. The
// loops take every connection routed to them (no goroutine stays behind);
// /nethttp/ is net/http's own, to show the two side by side.
func mountedServer(g *loop.Group, addr string, setup func(*loop.Loop, int) *loop.Application) (*http.Server, net.Listener, error) {
	h, err := g.Mount(setup)
	if err != nil {
		return nil, nil, fmt.Errorf("mount: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/nethttp/", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "served by net/http\n")
	})
	mux.Handle("/", h)
	// A plain listener: net/http accepts, without SO_REUSEPORT, so a port
	// in use is an error here as with the loops' own listeners.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("mount: listen %s: %w", addr, err)
	}
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln, nil
}
