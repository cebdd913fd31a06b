package main

import (
	"net/http"
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
	readAcross(t, &http.Client{Timeout: 40 * time.Second}, bases, 50)
}
