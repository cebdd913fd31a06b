package main

import (
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop/pubsub"
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

// startDemoNode runs the demos on their own loop with broker, as one node
// of a chat.
func startDemoNode(t *testing.T, broker pubsub.Broker) string {
	t.Helper()
	return startDemosWith(t, broker)
}

// chatReader is a long-poll client that keeps its position, as the page
// does, and checks that what it reads follows on from what it had.
type chatReader struct {
	c      *http.Client
	cursor int64
	epoch  int64
	got    []chatMessage
}

// poll asks base's path (/update-message or /poll-message) for the
// messages after the cursor and returns the page; it fails the test on a
// lost or repeated message (ids must follow the cursor one by one).
func (cr *chatReader) poll(t *testing.T, base, path string) (pageReply, bool) {
	t.Helper()
	var r pageReply
	form := url.Values{"cursor": {strconv.FormatInt(cr.cursor, 10)}}
	if cr.epoch != 0 {
		form.Set("epoch", strconv.FormatInt(cr.epoch, 10))
	}
	if !post(t, cr.c, base+path, form, &r) {
		return r, false
	}
	if cr.epoch != 0 && r.Epoch != cr.epoch {
		t.Errorf("%s%s: epoch %d, want %d (one log)", base, path, r.Epoch, cr.epoch)
		return r, false
	}
	cr.epoch = r.Epoch
	for _, m := range r.Messages {
		if cr.cursor != 0 && m.ID != cr.cursor+1 {
			t.Errorf("%s%s after cursor %d: id %d (lost or repeated)", base, path, cr.cursor, m.ID)
			return r, false
		}
		cr.cursor = m.ID
		cr.got = append(cr.got, m)
	}
	return r, true
}

// readAll polls bases in turn, one poll on each, until it has n messages,
// and checks they are the n posted ("m1".."mn"), each once.
func (cr *chatReader) readAll(t *testing.T, bases []string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for k := 0; len(cr.got) < n; k++ {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d messages in 20 s", len(cr.got), n)
		}
		if _, ok := cr.poll(t, bases[k%len(bases)], "/update-message"); !ok {
			t.FailNow()
		}
	}
	if len(cr.got) != n {
		t.Fatalf("read %d messages, %d posted", len(cr.got), n)
	}
	seen := map[string]bool{}
	for _, m := range cr.got {
		if seen[m.Body] {
			t.Fatalf("message %q read twice", m.Body)
		}
		seen[m.Body] = true
	}
	for i := 1; i <= n; i++ {
		if !seen["m"+strconv.Itoa(i)] {
			t.Fatalf("m%d never read", i)
		}
	}
}

// postAll posts n messages "m1".."mn" in turn on bases.
func postAll(t *testing.T, c *http.Client, bases []string, n int) {
	for i := 1; i <= n; i++ {
		var ok struct{ Published bool }
		if !post(t, c, bases[i%len(bases)]+"/new-message", url.Values{"msg": {"m" + strconv.Itoa(i)}}, &ok) || !ok.Published {
			t.Errorf("post %d not published", i)
			return
		}
	}
}

// readAcross posts n messages alternately on the nodes of bases while a
// client long-polls them alternately with its cursor and epoch: it must
// read every message once, with one epoch. Then a fresh client on each
// node, carrying that epoch, must read the same history in the same order
// (a node may still be receiving the last message: the long poll waits).
func readAcross(t *testing.T, c *http.Client, bases []string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() { postAll(t, c, bases, n) })
	cr := &chatReader{c: c}
	cr.readAll(t, bases, n)
	wg.Wait()
	for _, base := range bases {
		fresh := &chatReader{c: c, epoch: cr.epoch}
		fresh.readAll(t, []string{base}, n)
		for i := range fresh.got {
			if fresh.got[i] != cr.got[i] {
				t.Fatalf("%s: message %d is %+v, the first reader had %+v (one order everywhere)", base, i, fresh.got[i], cr.got[i])
			}
		}
	}
}

// TestLongPollTwoLoopsOneLog: two loops of one process share the chat's
// history through a MemoryBroker; a client switching loops between polls
// reads every message once, in one order, with one epoch.
func TestLongPollTwoLoopsOneLog(t *testing.T) {
	broker := &pubsub.MemoryBroker{}
	bases := []string{"http://" + startDemoNode(t, broker), "http://" + startDemoNode(t, broker)}
	readAcross(t, &http.Client{Timeout: 10 * time.Second}, bases, 60)
}

// TestLongPollAcrossProcesses is issue 11's test: the long-poll log across
// two processes with a client switching processes between polls. Two
// tornago processes use one embedded nats-server with JetStream (-nats);
// messages are posted alternately on both while a client long-polls
// alternately on both with its cursor and epoch: it gets every message
// exactly once, and both processes answer with the same epoch and order.
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

// waitParked waits until base reports n long polls parked.
func waitParked(t *testing.T, c *http.Client, base string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var s struct{ Waiting int }
		if post(t, c, base+"/poll-message", url.Values{}, &s) && s.Waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d long polls parked after 10 s, want %d", base, s.Waiting, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
