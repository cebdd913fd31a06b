package pubsub

import (
	"errors"
	"testing"
	"time"
)

// recv waits for one value on ch, at most 5 s.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// hidden is a Broker that keeps no history (only Publish and Subscribe of
// the MemoryBroker it wraps show), like core NATS.
type hidden struct{ b *MemoryBroker }

func (h hidden) Publish(topic string, data []byte) error { return h.b.Publish(topic, data) }
func (h hidden) Subscribe(topic string, deliver func([]byte)) (func(), error) {
	return h.b.Subscribe(topic, deliver)
}

// TestLocalHistory: two processes' LocalHistory over one broker without
// history number the same messages each in its own epoch; a position from
// one is gone on the other, not taken for a wrong message.
func TestLocalHistory(t *testing.T) {
	plain := hidden{&MemoryBroker{}}
	a, b := LocalHistory(plain), LocalHistory(plain)
	for _, h := range []HistoryBroker{a, b} {
		if err := h.KeepHistory("t", HistoryOptions{MaxMessages: 10}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // epochs are creation times in µs: two processes differ
	}
	got := make(chan Message, 4)
	_, cancel, err := b.SubscribeHistory("t", func(m Message) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	a.Publish("t", []byte("one"))
	b.Publish("t", []byte("two"))
	for _, want := range []string{"one", "two"} {
		if m := recv(t, got, want); string(m.Data) != want {
			t.Fatalf("b delivered %q, want %q", m.Data, want)
		}
	}
	ma, err := a.History("t", Position{Epoch: mustHead(t, a).Epoch}, -1, nil)
	if err != nil || len(ma) != 2 || string(ma[1].Data) != "two" {
		t.Fatalf("a's history: %v %v", ma, err)
	}
	if mustHead(t, a).Epoch == mustHead(t, b).Epoch {
		t.Fatal("both processes' histories have one epoch")
	}
	if _, err := b.History("t", ma[0].Pos, -1, nil); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("a's position on b: %v, want ErrHistoryGone", err)
	}
	// A plain topic still goes straight through the broker.
	plainGot := make(chan []byte, 1)
	cancelPlain, _ := a.Subscribe("p", func(d []byte) { plainGot <- d })
	defer cancelPlain()
	b.Publish("p", []byte("plain"))
	if d := recv(t, plainGot, "the plain topic"); string(d) != "plain" {
		t.Fatalf("plain topic: %q", d)
	}
}

func mustHead(t *testing.T, h HistoryBroker) Position {
	t.Helper()
	head, cancel, err := h.SubscribeHistory("t", func(Message) {})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	return head
}
