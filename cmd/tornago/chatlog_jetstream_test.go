package main

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startTestNATS runs an embedded nats-server on 127.0.0.1 (port -1: a free
// one), with JetStream when storeDir is not empty, until the test ends or
// the returned server is shut down.
func startTestNATS(t *testing.T, port int, storeDir string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
		JetStream: storeDir != "", StoreDir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// connectNATS connects to url, retrying for ever, quickly (a restart test
// waits for the reconnect), until the test ends.
func connectNATS(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// newTestChatLog is newChatLog on nc, closed when the test ends, logging
// into the returned buffer.
func newTestChatLog(t *testing.T, nc *nats.Conn) (chatLog, *lockedBuffer) {
	t.Helper()
	out := &lockedBuffer{}
	clog, err := newChatLog(nc, longPollOptions{}, slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(clog.close) // registered after the loops': runs before their Stop
	return clog, out
}

// TestChatLogWithoutJetStream: on a NATS server without JetStream the log
// falls back to memory with a warning, and the chat works.
func TestChatLogWithoutJetStream(t *testing.T) {
	ns := startTestNATS(t, -1, "")
	clog, out := newTestChatLog(t, connectNATS(t, ns.ClientURL()))
	if _, ok := clog.(*memoryChatLog); !ok {
		t.Fatalf("log is a %T, want the memory fallback", clog)
	}
	if !strings.Contains(out.String(), "level=WARN") || !strings.Contains(out.String(), "no JetStream") {
		t.Fatalf("no warning logged: %q", out)
	}
	base := "http://" + startLongPollNode(t, nil, clog)
	c := &http.Client{Timeout: 10 * time.Second}
	postAll(t, c, []string{base}, 2)
	cr := &chatReader{c: c}
	cr.readAll(t, []string{base}, 2)
}

// TestChatLogJetStreamTwoLoops: two loops on one JetStream log (as one
// process with -loops 2 and -nats): every message once, in order, on
// whichever loop the client polls, and the epoch is the stream's.
func TestChatLogJetStreamTwoLoops(t *testing.T) {
	ns := startTestNATS(t, -1, t.TempDir())
	nc := connectNATS(t, ns.ClientURL())
	bases := []string{}
	clog, _ := newTestChatLog(t, nc)
	if _, ok := clog.(*jetStreamChatLog); !ok {
		t.Fatalf("log is a %T, want JetStream", clog)
	}
	for range 2 {
		bases = append(bases, "http://"+startLongPollNode(t, nil, clog))
	}
	c := &http.Client{Timeout: 10 * time.Second}
	const n = 40
	var wg sync.WaitGroup
	wg.Go(func() { postAll(t, c, bases, n) })
	cr := &chatReader{c: c}
	cr.readAll(t, bases, n)
	wg.Wait()
	js := clog.(*jetStreamChatLog)
	info, err := js.streamInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if cr.epoch != streamEpoch(info) || info.State.Msgs != n {
		t.Fatalf("epoch %d, stream's %d; stream holds %d messages, want %d", cr.epoch, streamEpoch(info), info.State.Msgs, n)
	}
}

// TestChatLogJetStreamRestart: the NATS server restarts and loses the
// memory stream. Meanwhile posts get 503 with a reason; then the stream is
// made again with a new epoch, a poll parked across the restart is answered
// in the new epoch, ids start at 1, and a client still carrying the old
// epoch and cursor gets the new log from its start.
func TestChatLogJetStreamRestart(t *testing.T) {
	store := t.TempDir()
	ns := startTestNATS(t, -1, store)
	natsPort := ns.Addr().(*net.TCPAddr).Port
	nc := connectNATS(t, ns.ClientURL())
	clog, logged := newTestChatLog(t, nc)
	bases := []string{"http://" + startLongPollNode(t, nil, clog), "http://" + startLongPollNode(t, nil, clog)}
	c := &http.Client{Timeout: 10 * time.Second}
	postAll(t, c, bases, 3)
	old := &chatReader{c: c}
	old.readAll(t, bases, 3)

	oldEpoch := strconv.FormatInt(old.epoch, 10)
	parked := make(chan pageReply, 1)
	go func() {
		var r pageReply
		post(t, c, bases[1]+"/update-message", url.Values{"cursor": {"3"}, "epoch": {oldEpoch}}, &r)
		parked <- r
	}()
	waitParked(t, c, bases[1], 1)

	ns.Shutdown()
	ns.WaitForShutdown()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := postRaw(t, c, bases[0]+"/new-message", url.Values{"msg": {"lost"}})
		if code == 503 {
			if !strings.Contains(strings.ToLower(string(body)), "nats") {
				t.Fatalf("503 without a reason: %q", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("posts with NATS down: %d %q, want 503", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}

	startTestNATS(t, natsPort, store)
	restarted := time.Now()
	var r pageReply
	select {
	case r = <-parked:
	case <-time.After(20 * time.Second):
		t.Fatalf("the parked poll was not answered after the restart\n%s", logged)
	}
	t.Logf("parked poll answered %v after the restart", time.Since(restarted).Round(time.Millisecond))
	if r.Epoch == old.epoch {
		t.Fatalf("parked poll answered in the old epoch: %+v\n%s", r, logged)
	}
	// Posting works again once the stream is back; the first id is 1.
	deadline = time.Now().Add(20 * time.Second)
	for {
		code, body := postRaw(t, c, bases[0]+"/new-message", url.Values{"msg": {"m1"}})
		if code == 200 {
			t.Logf("posting again %v after the restart", time.Since(restarted).Round(time.Millisecond))
			if !bytes.Contains(body, []byte(`"id":1}`)) {
				t.Fatalf("first post after the restart: %q, want id 1", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("posts after the restart: %d %q\n%s", code, body, logged)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The old client: another epoch, so its cursor 3 counts as 0 on both
	// nodes (each gets m1 from the stream a moment later).
	for _, base := range bases {
		var p pageReply
		deadline := time.Now().Add(10 * time.Second)
		for len(p.Messages) == 0 && time.Now().Before(deadline) {
			post(t, c, base+"/poll-message", url.Values{"cursor": {"3"}, "epoch": {oldEpoch}}, &p)
			time.Sleep(10 * time.Millisecond)
		}
		if p.Epoch != r.Epoch || len(p.Messages) != 1 || p.Messages[0] != (chatMessage{1, "m1"}) {
			t.Fatalf("%s with the old epoch and cursor 3: %+v, want m1 as id 1 in epoch %d", base, p, r.Epoch)
		}
	}
}
