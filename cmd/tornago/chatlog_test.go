package main

import (
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
)

// startLongPollNode serves the long-poll routes on l (nil: a new loop)
// from a replica of clog until the test ends, and returns the address.
func startLongPollNode(t *testing.T, l *loop.Loop, clog chatLog) string {
	t.Helper()
	if l == nil {
		l = loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond})
	}
	app := loop.NewApplication(demoAppOptions(longPollOptions{}))
	b := addLongPoll(l, app, longPollOptions{}, clog)
	addr := serveLoop(t, l, app)
	// Registered after serveLoop's: runs before it, so parked polls do not
	// hold Stop up.
	t.Cleanup(func() {
		done := make(chan struct{})
		l.AddCallback(func() { b.stop(); close(done) })
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	return addr
}

// chatReader is a long-poll client that keeps its cursor and epoch, as the
// page does, and checks that what it reads follows on from what it had.
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
		if m.ID != cr.cursor+1 {
			t.Errorf("%s%s after cursor %d: id %d (lost or repeated)", base, path, cr.cursor, m.ID)
			return r, false
		}
		cr.cursor = m.ID
		cr.got = append(cr.got, m)
	}
	return r, true
}

// readAll polls bases in turn, one poll on each, until it has n messages,
// and checks they are the n posted, in order ("m1", "m2"...).
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
	for i, m := range cr.got {
		if want := "m" + strconv.Itoa(i+1); m.Body != want {
			t.Fatalf("message %d is %q, want %q", m.ID, m.Body, want)
		}
	}
}

// postAll posts n messages "m1".."mn" in turn on bases, each after the
// previous one's answer, and checks the answers' ids follow one another.
func postAll(t *testing.T, c *http.Client, bases []string, n int) {
	var last int64
	for i := 1; i <= n; i++ {
		var id struct{ ID int64 }
		if !post(t, c, bases[i%len(bases)]+"/new-message", url.Values{"msg": {"m" + strconv.Itoa(i)}}, &id) {
			return
		}
		if last != 0 && id.ID != last+1 {
			t.Errorf("post %d got id %d after %d", i, id.ID, last)
			return
		}
		last = id.ID
	}
}

// TestLongPollTwoLoopsOneLog: two loops of one process share the memory
// log. Messages are posted alternately on both while a client long-polls
// alternately on both with its cursor and epoch: it reads every message
// once, in order, with one epoch.
func TestLongPollTwoLoopsOneLog(t *testing.T) {
	clog := newMemoryChatLog(longPollOptions{})
	bases := []string{"http://" + startLongPollNode(t, nil, clog), "http://" + startLongPollNode(t, nil, clog)}
	readAcross(t, &http.Client{Timeout: 10 * time.Second}, bases, 60)
}

// readAcross posts n messages alternately on the nodes of bases while a
// client long-polls them alternately with its cursor and epoch: it must
// read every message once, in order, with one epoch. Then a fresh client
// on each node, carrying that epoch, must read the same history (a node
// may still be receiving the last message: the long poll waits for it).
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
	}
}

// heldLog is a chat log whose notifications to one loop can be held back:
// that loop's replica then lags, as a replica does behind JetStream.
type heldLog struct {
	chatLog
	l *loop.Loop

	mu      sync.Mutex
	held    bool
	missed  bool
	release func()
}

func (h *heldLog) subscribe(l *loop.Loop, notify func()) {
	if l != h.l {
		h.chatLog.subscribe(l, notify)
		return
	}
	h.release = func() {
		h.mu.Lock()
		h.held = false
		missed := h.missed
		h.mu.Unlock()
		if missed {
			l.AddCallback(notify)
		}
	}
	h.chatLog.subscribe(l, func() {
		h.mu.Lock()
		held := h.held
		h.missed = h.missed || held
		h.mu.Unlock()
		if !held {
			notify()
		}
	})
}

// TestLongPollLaggingReplicaWaits: a client whose cursor (with the current
// epoch) is above what a lagging loop has is not answered from the start
// again: a short poll gets an empty page, a long poll waits until the loop
// catches up and then gets only the messages after the cursor.
func TestLongPollLaggingReplicaWaits(t *testing.T) {
	lagging := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond})
	h := &heldLog{chatLog: newMemoryChatLog(longPollOptions{}), l: lagging}
	a := "http://" + startLongPollNode(t, nil, h)
	b := "http://" + startLongPollNode(t, lagging, h)
	c := &http.Client{Timeout: 10 * time.Second}

	h.mu.Lock()
	h.held = true
	h.mu.Unlock()
	var id struct{ ID int64 }
	if !post(t, c, a+"/new-message", url.Values{"msg": {"m1"}}, &id) {
		t.FailNow()
	}
	cr := &chatReader{c: c}
	if r, _ := cr.poll(t, a, "/poll-message"); len(r.Messages) != 1 {
		t.Fatalf("node a: %+v", r)
	}
	if r, _ := cr.poll(t, b, "/poll-message"); len(r.Messages) != 0 || r.Missed != 0 {
		t.Fatalf("short poll on the lagging node after id 1: %+v, want an empty page", r)
	}

	done := make(chan pageReply, 1)
	go func() {
		r, _ := cr.poll(t, b, "/update-message")
		done <- r
	}()
	waitParked(t, c, b, 1)
	if !post(t, c, a+"/new-message", url.Values{"msg": {"m2"}}, &id) {
		t.FailNow()
	}
	h.release()
	select {
	case r := <-done:
		if len(r.Messages) != 1 || r.Messages[0] != (chatMessage{2, "m2"}) {
			t.Fatalf("long poll on the lagging node after id 1: %+v, want only m2", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll was not answered once the node caught up")
	}
	// The lagging node now has both.
	other := &chatReader{c: c}
	if r, _ := other.poll(t, b, "/poll-message"); len(r.Messages) != 2 {
		t.Fatalf("node b after catching up: %+v", r)
	}
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
