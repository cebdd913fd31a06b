package pubsub

import (
	"errors"
	"runtime"
	"testing"
	"time"
)

func TestHistoryBufferBounds(t *testing.T) {
	now := time.Now()
	b := NewHistoryBuffer(HistoryOptions{MaxMessages: 3, MaxBytes: 10}, 7)
	for i := int64(1); i <= 5; i++ {
		if !b.Add(Message{Pos: Position{7, i}, Data: []byte("ab"), Time: now}) {
			t.Fatalf("add %d refused", i)
		}
	}
	if b.Len() != 3 || b.Bytes() != 6 || b.Head() != (Position{7, 5}) {
		t.Fatalf("len %d bytes %d head %v", b.Len(), b.Bytes(), b.Head())
	}
	if b.Add(Message{Pos: Position{7, 5}, Data: []byte("x")}) {
		t.Fatal("a repeated offset was added")
	}
	got, err := b.After(Position{7, 2}, -1, now, nil)
	if err != nil || len(got) != 3 || got[0].Pos.Offset != 3 {
		t.Fatalf("after 2: %v %v", got, err)
	}
	if got, err := b.After(Position{7, 3}, 4, now, nil); err != nil || len(got) != 1 || got[0].Pos.Offset != 4 {
		t.Fatalf("after 3 up to 4: %v %v", got, err)
	}
	if _, err := b.After(Position{7, 1}, -1, now, nil); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("after a dropped offset: %v", err)
	}
	if _, err := b.After(Position{6, 4}, -1, now, nil); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("after another epoch: %v", err)
	}
	if got, err := b.After(Position{7, 9}, -1, now, nil); err != nil || len(got) != 0 {
		t.Fatalf("after the head: %v %v", got, err)
	}
	// Bytes: one large message drops the rest but stays itself.
	b.Add(Message{Pos: Position{7, 6}, Data: []byte("0123456789abc"), Time: now})
	if b.Len() != 1 || b.Bytes() != 13 {
		t.Fatalf("over MaxBytes: len %d bytes %d", b.Len(), b.Bytes())
	}
	// A gap drops what came before it; a new epoch starts over.
	b.Add(Message{Pos: Position{7, 9}, Data: []byte("g"), Time: now})
	if _, err := b.After(Position{7, 7}, -1, now, nil); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("after a gap: %v", err)
	}
	b.Add(Message{Pos: Position{8, 1}, Data: []byte("n"), Time: now})
	if b.Head() != (Position{8, 1}) || b.Len() != 1 {
		t.Fatalf("new epoch: head %v len %d", b.Head(), b.Len())
	}
	// Age: old messages are dropped when read.
	a := NewHistoryBuffer(HistoryOptions{MaxAge: time.Minute}, 1)
	a.Add(Message{Pos: Position{1, 1}, Data: []byte("old"), Time: now.Add(-2 * time.Minute)})
	a.Add(Message{Pos: Position{1, 2}, Data: []byte("new"), Time: now})
	if _, err := a.After(Position{1, 0}, -1, now, nil); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("an expired message was kept: %v", err)
	}
	if got, err := a.After(Position{1, 1}, -1, now, nil); err != nil || len(got) != 1 {
		t.Fatalf("after the expired one: %v %v", got, err)
	}
}

func TestParsePosition(t *testing.T) {
	for _, s := range []string{"", "0-1", "1733112000123456-42", "5-0", "9223372036854775807-9223372036854775807"} {
		p, err := ParsePosition(s)
		if err != nil || p.String() != s {
			t.Errorf("%q: %v %v", s, p, err)
		}
	}
	// "0-0" is the zero Position, "from now", like "" (whose text it is not).
	if p, err := ParsePosition("0-0"); err != nil || p != (Position{}) {
		t.Errorf(`"0-0": %v %v`, p, err)
	}
	for _, s := range []string{"1", "-1", "a-1", "1-", "1--2", "1-2-3", "x",
		"1-+1", "+1-1", "1--0", "-0-1", "01-1", "1-01", "00-0", "0-00", " 1-1", "1-1 ", "1 -1", "1-1\n",
		"1-9223372036854775808", "9223372036854775808-1", "1-0x1", "1-1_0", "١-١"} {
		if _, err := ParsePosition(s); !errors.Is(err, ErrBadPosition) {
			t.Errorf("%q parsed: %v", s, err)
		}
	}
}

func TestPositionBeyond(t *testing.T) {
	head := Position{Epoch: 100, Offset: 50}
	for _, tc := range []struct {
		p      Position
		beyond bool
	}{
		{Position{}, false},
		{Position{100, 0}, false},
		{Position{100, 50}, false},
		{Position{100, 50 + MaxLead}, false}, // the node lags, within the bound
		{Position{100, 51 + MaxLead}, true},
		{Position{100, 1<<63 - 1}, true},
		{Position{99, 1<<63 - 1}, false}, // older: the history decides (gone)
		{Position{101, 0}, true},
		{Position{101, 1}, true},
		{Position{1<<63 - 1, 1<<63 - 1}, true},
	} {
		if got := tc.p.Beyond(head); got != tc.beyond {
			t.Errorf("%v beyond %v: %v, want %v", tc.p, head, got, tc.beyond)
		}
	}
}

func FuzzParsePosition(f *testing.F) {
	f.Add("1-2")
	f.Add("")
	f.Add("99999999999999999999-1")
	f.Add("0-0")
	f.Add("1-+1")
	f.Add("01-1")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePosition(s)
		if err != nil {
			return
		}
		if q, err := ParsePosition(p.String()); err != nil || q != p {
			t.Fatalf("%q -> %v -> %q -> %v %v", s, p, p.String(), q, err)
		}
	})
}

// BenchmarkHistoryCost measures what a kept message costs a hub's (or
// MemoryBroker's) history beyond its data: go test -bench HistoryCost
// -run ^$ ./loop/pubsub reports bytes per kept message of 100 bytes, and the
// time to add one.
func BenchmarkHistoryCost(b *testing.B) {
	const kept, size = 100000, 100
	data := make([]byte, size)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := NewHistoryBuffer(HistoryOptions{MaxMessages: kept}, 1)
	now := time.Now()
	for i := int64(1); i <= kept; i++ {
		h.Add(Message{Pos: Position{1, i}, Data: append([]byte(nil), data...), Time: now})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	overhead := float64(after.HeapAlloc-before.HeapAlloc)/kept - size
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.Add(Message{Pos: Position{1, kept + 1 + int64(i)}, Data: data, Time: now})
	}
	b.ReportMetric(overhead, "B/msg-overhead") // after ResetTimer, which drops metrics
}
