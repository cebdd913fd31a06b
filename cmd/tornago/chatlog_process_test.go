package main

import (
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestLongPollAcrossProcesses is the test: the long-poll log across
// two processes with a client switching processes between polls. Two
// tornago processes use one embedded nats-server with JetStream (-nats);
// messages are posted alternately on both while a client long-polls
// alternately on both with its cursor and epoch: it gets every message
// exactly once, in order, and both processes answer with the same epoch.
func TestLongPollAcrossProcesses(t *testing.T) {
	ns := startTestNATS(t, -1, t.TempDir())
	bin := buildTornago(t)
	var bases []string
	for range 2 {
		addr, _, _, _ := startBuilt(t, bin, "-nats", ns.ClientURL(), "-ping", "0")
		bases = append(bases, "http://"+addr)
	}
	c := &http.Client{Timeout: 40 * time.Second}
	const n = 50
	var wg sync.WaitGroup
	wg.Go(func() { postAll(t, c, bases, n) })
	cr := &chatReader{c: c}
	cr.readAll(t, bases, n)
	wg.Wait()

	// A fresh client on each process, carrying the epoch: the same epoch
	// and the same history (a process may still be receiving the last
	// message: the long poll waits for it).
	for _, base := range bases {
		fresh := &chatReader{c: c, epoch: cr.epoch}
		fresh.readAll(t, []string{base}, n)
	}
}
