package natsbroker_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop/natsbroker"
	"github.com/tornago/tornago/loop/pubsub"
)

// TestAcceptRefusesForeignMessages: a program publishing straight into
// NATS (past the application's checks) gets neither invalid UTF-8 nor an
// oversized message to a subscriber, live or from the history, on a plain
// topic or a history topic; the canary messages beside them arrive, in
// order, and the history's positions stay the stream's.
func TestAcceptRefusesForeignMessages(t *testing.T) {
	ns := startJetStream(t, -1, t.TempDir())
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	out := &lockedBuffer{}
	b := natsbroker.NewWithOptions(nc, "acc.", natsbroker.Options{
		Logger: slog.New(slog.NewTextHandler(out, nil)),
		Accept: func(topic string, data []byte) error {
			if !utf8.Valid(data) {
				return errors.New("not UTF-8")
			}
			if len(data) > 100 {
				return errors.New("too large")
			}
			return nil
		},
	})
	t.Cleanup(b.Close)
	if err := b.KeepHistory("room", pubsub.HistoryOptions{MaxMessages: 100}); err != nil {
		t.Fatal(err)
	}
	var live, plain recorder
	head, cancel, err := b.SubscribeHistory("room", live.deliver)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	cancelPlain, err := b.Subscribe("plain", plain.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer cancelPlain()
	nc.Flush()

	// The intruder: its own connection, straight to the subjects.
	in, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	bad := [][]byte{[]byte("\xff\xfe bad"), []byte(strings.Repeat("x", 101))}
	for _, subj := range []string{"acc._h.room", "acc.plain"} {
		in.Publish(subj, []byte("ok1"))
		for _, d := range bad {
			in.Publish(subj, d)
		}
		in.Publish(subj, []byte("ok2"))
	}
	in.Flush()
	waitFor(t, "the canaries", func() bool { return live.count() == 2 && plain.count() == 2 })
	time.Sleep(100 * time.Millisecond) // anything late would show below
	live.mu.Lock()
	plain.mu.Lock()
	defer live.mu.Unlock()
	defer plain.mu.Unlock()
	if len(live.msgs) != 2 || string(live.msgs[0].Data) != "ok1" || string(live.msgs[1].Data) != "ok2" {
		t.Fatalf("history subscriber got %v", live.msgs)
	}
	if live.msgs[0].Pos.Offset != head.Offset+1 || live.msgs[1].Pos.Offset != head.Offset+4 {
		t.Fatalf("positions %v %v, want the stream's %d and %d", live.msgs[0].Pos, live.msgs[1].Pos, head.Offset+1, head.Offset+4)
	}
	if len(plain.data) != 2 || plain.data[0] != "ok1" || plain.data[1] != "ok2" {
		t.Fatalf("plain subscriber got %q", plain.data)
	}
	hist, err := b.History("room", head, -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || string(hist[0].Data) != "ok1" || string(hist[1].Data) != "ok2" {
		t.Fatalf("history %v", hist)
	}
	if n := b.Refused(); n != 4 {
		t.Fatalf("Refused() = %d, want 4", n)
	}
	if !strings.Contains(out.String(), "refused a message from NATS") {
		t.Fatalf("no refusal logged:\n%s", out)
	}
}
