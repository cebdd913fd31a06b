package natsbroker_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tornago/tornago/loop/natsbroker"
	"github.com/tornago/tornago/loop/pubsub"
)

// startJetStream runs an embedded nats-server with JetStream (its store
// in storeDir) on 127.0.0.1:port (-1: a free one) until the test ends or
// it is shut down.
func startJetStream(t *testing.T, port int, storeDir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// lockedBuffer collects a broker's log; a failed test prints it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// histNode is one process: a broker on its own connection, retrying
// reconnects quickly for ever.
type histNode struct {
	nc  *nats.Conn
	b   *natsbroker.Broker
	log *lockedBuffer
}

func newHistNode(t *testing.T, url string) *histNode {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	b := natsbroker.NewWithOptions(nc, "hist.", natsbroker.Options{
		Logger: slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	t.Cleanup(func() {
		b.Close()
		nc.Close()
		if t.Failed() {
			t.Logf("broker log:\n%s", out)
		}
	})
	return &histNode{nc: nc, b: b, log: out}
}

func (n *histNode) keep(t *testing.T, topic string, o pubsub.HistoryOptions) {
	t.Helper()
	if err := n.b.KeepHistory(topic, o); err != nil {
		t.Fatal(err)
	}
}

// publish publishes data, retrying for 20 s while the broker says
// ErrUnavailable or ErrBacklog.
func (n *histNode) publish(t *testing.T, topic, data string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		err := n.b.Publish(topic, []byte(data))
		if err == nil {
			return
		}
		if !errors.Is(err, natsbroker.ErrUnavailable) && !errors.Is(err, natsbroker.ErrBacklog) || time.Now().After(deadline) {
			t.Fatalf("publish %q: %v", data, err)
		}
	}
}

// epoch is the history's current epoch on n.
func (n *histNode) epoch(t *testing.T, topic string) int64 {
	t.Helper()
	head, cancel, err := n.b.SubscribeHistory(topic, func(pubsub.Message) {})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	return head.Epoch
}

// waitHistory waits until n's history of topic holds want messages after
// offset 0 of its epoch, and returns them.
func (n *histNode) waitHistory(t *testing.T, topic string, want int) []pubsub.Message {
	t.Helper()
	var got []pubsub.Message
	waitFor(t, fmt.Sprintf("%d messages in the history", want), func() bool {
		var err error
		got, err = n.b.History(topic, pubsub.Position{Epoch: n.epoch(t, topic)}, -1, got[:0])
		if err != nil {
			t.Fatal(err)
		}
		return len(got) >= want
	})
	return got
}

// checkRun fails unless msgs are offsets first, first+1, ... of epoch with
// data "m<offset>".
func checkRun(t *testing.T, what string, msgs []pubsub.Message, epoch, first int64) {
	t.Helper()
	for i, m := range msgs {
		want := first + int64(i)
		if m.Pos != (pubsub.Position{Epoch: epoch, Offset: want}) || string(m.Data) != "m"+strconv.FormatInt(want, 10) {
			t.Fatalf("%s: message %d is %v %q, want %d-%d %q", what, i, m.Pos, m.Data, epoch, want, "m"+strconv.FormatInt(want, 10))
		}
		if m.Time.IsZero() {
			t.Fatalf("%s: message %v without a time", what, m.Pos)
		}
	}
}

// TestHistoryTwoProcesses: two brokers on two connections (two processes)
// give every message the same position, the stream's sequence in the epoch
// of its creation time; a position taken on one resumes exactly on the
// other.
func TestHistoryTwoProcesses(t *testing.T) {
	ns := startJetStream(t, -1, t.TempDir())
	a, b := newHistNode(t, ns.ClientURL()), newHistNode(t, ns.ClientURL())
	o := pubsub.HistoryOptions{MaxMessages: 100}
	a.keep(t, "room.go", o)
	b.keep(t, "room.go", o)
	a.keep(t, "room.go", o) // again: a no-op
	if err := a.b.KeepHistory("room.go", pubsub.HistoryOptions{MaxMessages: 5}); !errors.Is(err, pubsub.ErrHistoryOptionsDiffer) ||
		!strings.Contains(err.Error(), "MaxMessages:5") || !strings.Contains(err.Error(), "MaxMessages:100") {
		t.Fatalf("KeepHistory with other options: %v, want ErrHistoryOptionsDiffer naming both", err)
	}

	const n = 20
	for i := 1; i <= n; i++ { // alternately from each process: one order
		src := a
		if i%2 == 0 {
			src = b
		}
		src.publish(t, "room.go", "m"+strconv.Itoa(i))
		// Wait for each: the two connections' publications are not
		// ordered between themselves otherwise.
		a.waitHistory(t, "room.go", i)
	}
	onA, onB := a.waitHistory(t, "room.go", n), b.waitHistory(t, "room.go", n)

	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	name := natsbroker.StreamName("hist.", "room.go")
	if name != "TORNAGO_H_hist_-5Fh_room_go" {
		t.Errorf("stream name %q", name)
	}
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	epoch := info.Created.UnixMicro()
	if info.Config.Storage != jetstream.MemoryStorage || info.Config.Subjects[0] != "hist._h.room.go" || info.State.Msgs != n {
		t.Fatalf("stream %+v, state %+v", info.Config, info.State)
	}
	checkRun(t, "on A", onA, epoch, 1)
	checkRun(t, "on B", onB, epoch, 1)
	for i := range onA {
		if !onA[i].Time.Equal(onB[i].Time) {
			t.Fatalf("message %v: time %v on A, %v on B", onA[i].Pos, onA[i].Time, onB[i].Time)
		}
	}

	// A client saw up to message 7 on A, and comes back on B.
	rest, err := b.b.History("room.go", onA[6].Pos, -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != n-7 {
		t.Fatalf("resumed after %v: %d messages, want %d", onA[6].Pos, len(rest), n-7)
	}
	checkRun(t, "resumed on B", rest, epoch, 8)
	part, err := b.b.History("room.go", onA[6].Pos, 10, nil)
	if err != nil || len(part) != 3 {
		t.Fatalf("after 7 up to 10: %d messages, %v", len(part), err)
	}
	checkRun(t, "7 to 10", part, epoch, 8)
	if got, err := b.b.History("room.go", pubsub.Position{Epoch: epoch, Offset: n + 5}, -1, nil); err != nil || len(got) != 0 {
		t.Fatalf("after a position past the head: %d messages, %v", len(got), err)
	}
	if _, err := b.b.History("room.go", pubsub.Position{Epoch: epoch + 1, Offset: 3}, -1, nil); !errors.Is(err, pubsub.ErrHistoryGone) {
		t.Fatalf("History of another epoch: %v, want ErrHistoryGone", err)
	}
	if f := a.b.Failed() + b.b.Failed(); f != 0 {
		t.Fatalf("%d publications failed", f)
	}

	// A plain topic beside it is core NATS, unchanged; the history
	// subjects' token is refused for plain topics.
	got := make(chan string, 1)
	if _, err := b.b.Subscribe("plain", func(d []byte) { got <- string(d) }); err != nil {
		t.Fatal(err)
	}
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	a.publish(t, "plain", "p")
	if m := <-got; m != "p" {
		t.Fatalf("plain topic got %q", m)
	}
	if err := a.b.Publish("_h.room.go", []byte("x")); err == nil {
		t.Fatal(`Publish on "_h.room.go": no error`)
	}
	if _, err := a.b.Subscribe("_h.room.go", func([]byte) {}); err == nil {
		t.Fatal(`Subscribe on "_h.room.go": no error`)
	}
}

// recorder collects one subscription's deliveries.
type recorder struct {
	mu   sync.Mutex
	head pubsub.Position
	msgs []pubsub.Message
	data []string
}

func (r *recorder) deliver(m pubsub.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *recorder) plain(d []byte) {
	r.mu.Lock()
	r.data = append(r.data, string(d))
	r.mu.Unlock()
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs) + len(r.data)
}

// TestHistorySubscribeNoGap: subscriptions made on B while A publishes get
// a head and then deliveries that, with the history up to the head, are
// every message exactly once, in order.
func TestHistorySubscribeNoGap(t *testing.T) {
	ns := startJetStream(t, -1, t.TempDir())
	a, b := newHistNode(t, ns.ClientURL()), newHistNode(t, ns.ClientURL())
	o := pubsub.HistoryOptions{MaxMessages: 10000}
	a.keep(t, "t", o)
	b.keep(t, "t", o)
	epoch := b.epoch(t, "t")

	const n, subs = 2000, 8
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= n; i++ {
			a.publish(t, "t", "m"+strconv.Itoa(i))
		}
	})
	recs := make([]*recorder, subs)
	plain := &recorder{}
	for i := range recs {
		// Spread the subscriptions over the publication (bounded: the
		// wait ends once everything arrived).
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if h, _, _ := b.b.SubscribeHistory("t", func(pubsub.Message) {}); h.Offset >= int64(i*n/subs) {
				break
			}
		}
		r := &recorder{}
		head, cancel, err := b.b.SubscribeHistory("t", r.deliver)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cancel)
		r.head = head
		recs[i] = r
		if i == subs/2 {
			if _, err := b.b.Subscribe("t", plain.plain); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	heads := []int64{}
	for i, r := range recs {
		waitFor(t, "every message delivered", func() bool { return int64(r.count()) >= n-r.head.Offset })
		before, err := b.b.History("t", pubsub.Position{Epoch: epoch}, r.head.Offset, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		all := append(before, r.msgs...)
		r.mu.Unlock()
		if len(all) != n {
			t.Fatalf("subscription %d (head %v): %d in history + %d delivered, want %d", i, r.head, len(before), len(all)-len(before), n)
		}
		checkRun(t, "subscription "+strconv.Itoa(i), all, epoch, 1)
		heads = append(heads, r.head.Offset)
	}
	t.Logf("heads of the subscriptions: %v", heads)
	if heads[0] == heads[len(heads)-1] {
		t.Fatalf("every subscription had head %d: none raced the publications", heads[0])
	}
	// The plain subscription's data: a run of the messages, in order.
	waitFor(t, "the plain subscription's messages", func() bool {
		plain.mu.Lock()
		defer plain.mu.Unlock()
		return len(plain.data) > 0 && plain.data[len(plain.data)-1] == "m"+strconv.Itoa(n)
	})
	plain.mu.Lock()
	first, _ := strconv.Atoi(plain.data[0][1:])
	for i, d := range plain.data {
		if d != "m"+strconv.Itoa(first+i) {
			t.Fatalf("plain subscription: message %d is %q, want m%d", i, d, first+i)
		}
	}
	plain.mu.Unlock()
}

// TestHistoryBound: with MaxMessages, the stream and the replicas keep the
// newest; an older position gets ErrHistoryGone; a process that starts
// later has the kept ones as soon as KeepHistory returns.
func TestHistoryBound(t *testing.T) {
	ns := startJetStream(t, -1, t.TempDir())
	a := newHistNode(t, ns.ClientURL())
	o := pubsub.HistoryOptions{MaxMessages: 5}
	a.keep(t, "t", o)
	epoch := a.epoch(t, "t")
	for i := 1; i <= 20; i++ {
		a.publish(t, "t", "m"+strconv.Itoa(i))
	}
	waitFor(t, "message 20 on A", func() bool {
		h, _, _ := a.b.SubscribeHistory("t", func(pubsub.Message) {})
		return h.Offset == 20
	})
	late := newHistNode(t, ns.ClientURL())
	late.keep(t, "t", o)
	for _, n := range []*histNode{a, late} {
		if _, err := n.b.History("t", pubsub.Position{Epoch: epoch, Offset: 3}, -1, nil); !errors.Is(err, pubsub.ErrHistoryGone) {
			t.Fatalf("History after 3 of 20 keeping 5: %v, want ErrHistoryGone", err)
		}
		if _, err := n.b.History("t", pubsub.Position{Epoch: epoch, Offset: 14}, -1, nil); !errors.Is(err, pubsub.ErrHistoryGone) {
			t.Fatalf("History after 14 of 20 keeping 5: %v, want ErrHistoryGone", err)
		}
		got, err := n.b.History("t", pubsub.Position{Epoch: epoch, Offset: 15}, -1, nil)
		if err != nil || len(got) != 5 {
			t.Fatalf("History after 15: %d messages, %v", len(got), err)
		}
		checkRun(t, "kept", got, epoch, 16)
	}
}

// TestHistoryNATSRestart: the NATS server restarts and loses its memory
// streams. Meanwhile Publish says ErrUnavailable; after it, the stream is
// made again with a new epoch on both processes, a subscription made
// before gets the new messages in the new epoch from offset 1, and an old
// position gets ErrHistoryGone.
func TestHistoryNATSRestart(t *testing.T) {
	port, store := freePort(t), t.TempDir()
	ns := startJetStream(t, port, store)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	a, b := newHistNode(t, url), newHistNode(t, url)
	o := pubsub.HistoryOptions{MaxMessages: 100}
	a.keep(t, "t", o)
	b.keep(t, "t", o)
	old := b.epoch(t, "t")
	r := &recorder{}
	if _, cancel, err := b.b.SubscribeHistory("t", r.deliver); err != nil {
		t.Fatal(err)
	} else {
		t.Cleanup(cancel)
	}
	for i := 1; i <= 3; i++ {
		a.publish(t, "t", "m"+strconv.Itoa(i))
	}
	b.waitHistory(t, "t", 3)

	ns.Shutdown()
	ns.WaitForShutdown()
	// A publication accepted before the broker noticed would be stored
	// after the reconnect (nats.go's reconnect buffer): wait for it.
	waitFor(t, "the outage noticed", func() bool { return !a.b.Connected() })
	if err := a.b.Publish("t", []byte("lost")); !errors.Is(err, natsbroker.ErrUnavailable) {
		t.Fatalf("Publish during the outage: %v, want ErrUnavailable", err)
	}
	startJetStream(t, port, store)
	restarted := time.Now()
	a.publish(t, "t", "m1") // retries until the stream is back
	t.Logf("publishing again %v after the restart", time.Since(restarted).Round(time.Millisecond))
	for _, n := range []*histNode{a, b} {
		waitFor(t, "the new epoch", func() bool { return n.epoch(t, "t") != old })
		got := n.waitHistory(t, "t", 1)
		epoch := n.epoch(t, "t")
		if len(got) != 1 {
			t.Fatalf("new history: %d messages", len(got))
		}
		checkRun(t, "new epoch", got, epoch, 1)
		if _, err := n.b.History("t", pubsub.Position{Epoch: old, Offset: 3}, -1, nil); !errors.Is(err, pubsub.ErrHistoryGone) {
			t.Fatalf("History with the old epoch: %v, want ErrHistoryGone", err)
		}
	}
	waitFor(t, "the subscription's delivery in the new epoch", func() bool { return r.count() == 4 })
	r.mu.Lock()
	checkRun(t, "before the restart", r.msgs[:3], old, 1)
	checkRun(t, "after the restart", r.msgs[3:], b.epoch(t, "t"), 1)
	r.mu.Unlock()
	if a.epoch(t, "t") != b.epoch(t, "t") {
		t.Fatal("the processes disagree on the new epoch")
	}
	if f := a.b.Failed(); f != 0 {
		t.Errorf("%d accepted publications failed", f)
	}
}

// TestHistoryWithoutJetStream: KeepHistory on a server without JetStream
// fails with an error wrapping pubsub.ErrNoHistory; a topic that keeps no
// history answers ErrNoHistory.
func TestHistoryWithoutJetStream(t *testing.T) {
	ns := startNATS(t)
	n := newHistNode(t, ns.ClientURL())
	err := n.b.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 10})
	if !errors.Is(err, pubsub.ErrNoHistory) {
		t.Fatalf("KeepHistory without JetStream: %v, want ErrNoHistory", err)
	}
	t.Logf("KeepHistory: %v", err)
	if _, _, err := n.b.SubscribeHistory("t", func(pubsub.Message) {}); !errors.Is(err, pubsub.ErrNoHistory) {
		t.Fatalf("SubscribeHistory: %v", err)
	}
	if _, err := n.b.History("t", pubsub.Position{}, -1, nil); !errors.Is(err, pubsub.ErrNoHistory) {
		t.Fatalf("History: %v", err)
	}
	// The topic still works as a plain one.
	got := make(chan string, 1)
	if _, err := n.b.Subscribe("t", func(d []byte) { got <- string(d) }); err != nil {
		t.Fatal(err)
	}
	if err := n.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	n.publish(t, "t", "x")
	select {
	case m := <-got:
		if m != "x" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("plain topic: nothing delivered")
	}
}

// TestHistoryClose: after Close no delivery runs and Publish says
// ErrClosed; KeepHistory too.
func TestHistoryClose(t *testing.T) {
	ns := startJetStream(t, -1, t.TempDir())
	a, b := newHistNode(t, ns.ClientURL()), newHistNode(t, ns.ClientURL())
	o := pubsub.HistoryOptions{MaxMessages: 10}
	a.keep(t, "t", o)
	b.keep(t, "t", o)
	r := &recorder{}
	if _, _, err := b.b.SubscribeHistory("t", r.deliver); err != nil {
		t.Fatal(err)
	}
	a.publish(t, "t", "m1")
	waitFor(t, "the first delivery", func() bool { return r.count() == 1 })
	b.b.Close()
	a.publish(t, "t", "m2")
	a.waitHistory(t, "t", 2)
	time.Sleep(50 * time.Millisecond) // B's consumer would have had it by now
	if c := r.count(); c != 1 {
		t.Fatalf("%d deliveries after Close", c-1)
	}
	if err := b.b.Publish("t", []byte("x")); !errors.Is(err, natsbroker.ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if err := b.b.KeepHistory("u", o); !errors.Is(err, natsbroker.ErrClosed) {
		t.Fatalf("KeepHistory after Close: %v", err)
	}
}

// TestHistoryMemoryCost measures what a kept message costs in Go heap: on
// the NATS server's memory store (embedded here, so in this heap) and in a
// replica. The figures are quoted in the package doc.
func TestHistoryMemoryCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	ns := startJetStream(t, -1, t.TempDir())
	const n, size = 20000, 100
	o := pubsub.HistoryOptions{MaxMessages: n}
	heap := func() int64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	a := newHistNode(t, ns.ClientURL())
	a.keep(t, "room.go", o)
	data := bytes.Repeat([]byte("x"), size)
	h0 := heap()
	for range n {
		for a.b.Publish("room.go", data) != nil {
			time.Sleep(time.Millisecond)
		}
	}
	a.waitHistory(t, "room.go", n)
	h1 := heap()
	b := newHistNode(t, ns.ClientURL())
	b.keep(t, "room.go", o) // returns once its replica holds the n
	h2 := heap()
	replica := float64(h2-h1)/n - size
	store := float64(h1-h0)/n - size - replica
	t.Logf("per kept message of %d bytes: replica %d + %.0f bytes, NATS memory store %d + %.0f bytes (subject %q)",
		size, size, replica, size, store, "hist._h.room.go")
	if replica > 300 || replica < 0 {
		t.Errorf("replica overhead %.0f bytes per message", replica)
	}
}
