package pubsub

import (
	"errors"
	"strings"
	"testing"
)

// TestKeepHistoryOptionsRule: every HistoryBroker here obeys one rule for
// a second KeepHistory on a topic: the same options are a no-op, other
// options an error wrapping ErrHistoryOptionsDiffer that names both (the
// MemoryBroker used to keep the first options silently).
func TestKeepHistoryOptionsRule(t *testing.T) {
	first, other := HistoryOptions{MaxMessages: 10}, HistoryOptions{MaxMessages: 20}
	for name, b := range map[string]HistoryBroker{
		"memory": &MemoryBroker{},
		"local":  LocalHistory(hidden{&MemoryBroker{}}),
	} {
		if err := b.KeepHistory("t", first); err != nil {
			t.Fatalf("%s: first: %v", name, err)
		}
		if err := b.KeepHistory("t", first); err != nil {
			t.Fatalf("%s: the same options again: %v, want a no-op", name, err)
		}
		err := b.KeepHistory("t", other)
		if !errors.Is(err, ErrHistoryOptionsDiffer) {
			t.Fatalf("%s: other options: %v, want ErrHistoryOptionsDiffer", name, err)
		}
		if s := err.Error(); !strings.Contains(s, "MaxMessages:10") || !strings.Contains(s, "MaxMessages:20") {
			t.Fatalf("%s: %q does not name both options", name, s)
		}
		// The first options still hold: 10 messages kept, not 20.
		for i := 0; i < 30; i++ {
			b.Publish("t", []byte("m"))
		}
		head := mustHead(t, b)
		msgs, err := b.History("t", Position{Epoch: head.Epoch, Offset: -1}, -1, nil)
		if err != nil || len(msgs) != 10 {
			t.Fatalf("%s: kept %d messages (%v), want 10", name, len(msgs), err)
		}
	}
}
