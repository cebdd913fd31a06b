package main

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embeddedNATS runs the NATS server that the -procs children share when
// no -nats URL is given: on a loopback port the kernel picks, with
// JetStream in memory for the long-poll chat's log. It lives as long as the
// parent; a restart of the parent starts a new one (new log epoch).
type embeddedNATS struct {
	srv *server.Server
	dir string
}

// jetStreamMemory bounds the embedded JetStream's memory storage.
const jetStreamMemory = 256 << 20

func startNATS() (*embeddedNATS, error) {
	// JetStream wants a store directory even when every stream is in
	// memory.
	dir, err := os.MkdirTemp("", "tornago-nats-")
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: dir, JetStreamMaxMemory: jetStreamMemory, JetStreamMaxStore: 64 << 20,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded nats: not ready after 10s")
	}
	return &embeddedNATS{srv: srv, dir: dir}, nil
}

// URL is the client URL the children connect to.
func (e *embeddedNATS) URL() string { return e.srv.ClientURL() }

// Close stops the server and removes its store directory.
func (e *embeddedNATS) Close() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	os.RemoveAll(e.dir)
}
