package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLongPollPage fills a small replica, with gaps in the ids as a replica
// has after the log dropped messages it had not copied, and checks every
// page it builds from the cursor, taken in the replica's epoch (so it may
// lie above the last id): valid JSON, ids contiguous from the oldest kept
// one after the cursor, "missed" consistent with them, within the page
// caps, and the replica within its own caps. It also checks the epoch
// rules for the cursor.
func FuzzLongPollPage(f *testing.F) {
	f.Add([]byte("hello\x00world\"\\<>&\u2028"), uint8(3), uint16(200), uint16(90), int64(0), uint8(0))
	f.Add([]byte(strings.Repeat("x", 300)), uint8(1), uint16(64), uint16(64), int64(7), uint8(0))
	f.Add([]byte("a\xffb\xffc\xffd\xffe"), uint8(9), uint16(900), uint16(90), int64(math.MaxInt64), uint8(2))
	f.Add([]byte("a\xffb\xffc\xffd\xffe"), uint8(9), uint16(900), uint16(90), int64(3), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, maxMsgs uint8, maxBytes, pageBytes uint16, cursor int64, gapEvery uint8) {
		const epoch = 7
		b := newMessageBuffer(nil, longPollOptions{MaxMessages: int(maxMsgs), MaxBytes: int(maxBytes),
			PageMessages: 4, PageBytes: int(pageBytes)}, nil)
		b.epoch = epoch
		// Split data into messages at 0xff (never in UTF-8); keep valid ones
		// as the handler would.
		id := int64(1)
		for k, part := range strings.Split(string(data), "\xff") {
			if part == "" || !utf8.ValidString(part) || len(part) > b.o.MaxMessageBytes {
				continue
			}
			if gapEvery > 0 && k%int(gapEvery) == 0 {
				id += int64(k)
			}
			js := encodeMessage(id, encodeBody(part))
			if want, _ := json.Marshal(chatMessage{id, part}); string(js) != string(want) {
				t.Fatalf("encoded %q, json.Marshal gives %q", js, want)
			}
			if !b.ring.add(storedMessage{id, js}, b.o) {
				t.Fatalf("id %d refused at next %d", id, b.ring.next)
			}
			id++
			if n := len(b.ring.kept()); n > b.o.MaxMessages || (n > 1 && b.ring.bytes > b.o.MaxBytes) {
				t.Fatalf("replica holds %d messages, %d bytes: over %d, %d", n, b.ring.bytes, b.o.MaxMessages, b.o.MaxBytes)
			}
		}
		for i, m := range b.ring.kept() {
			if m.id != b.ring.first()+int64(i) {
				t.Fatalf("kept ids not contiguous: %d at %d from %d", m.id, i, b.ring.first())
			}
		}
		if b.ring.add(storedMessage{b.ring.next - 1, nil}, b.o) {
			t.Fatal("an id already passed was taken")
		}
		if cursor < 0 {
			cursor = -(cursor + 1) // parseCursor refuses negatives
		}
		next := b.ring.next
		if c := b.effectiveCursor(cursor, epoch); c != cursor {
			t.Fatalf("cursor %d in the current epoch became %d", cursor, c)
		}
		if c := b.effectiveCursor(cursor, epoch+1); c != 0 {
			t.Fatalf("cursor %d of another epoch became %d, want 0", cursor, c)
		}
		if c := b.effectiveCursor(cursor, 0); (cursor >= next && c != 0) || (cursor < next && c != cursor) {
			t.Fatalf("cursor %d without epoch, next id %d: became %d", cursor, next, c)
		}
		for {
			page := b.appendPage(nil, cursor, true)
			var r struct {
				Epoch    int64
				Messages []chatMessage
				More     bool
				Missed   int64
				Waiting  *int
			}
			if err := json.Unmarshal(page, &r); err != nil {
				t.Fatalf("page %q: %v", page, err)
			}
			if r.Messages == nil || r.Waiting == nil || r.Epoch != epoch {
				t.Fatalf("page %q lacks fields", page)
			}
			if cursor >= next-1 {
				// Nothing above the cursor yet (this replica may lag).
				if len(r.Messages) != 0 || r.More || r.Missed != 0 {
					t.Fatalf("cursor %d at or above the last id %d: %q", cursor, next-1, page)
				}
				break
			}
			want := max(cursor+1, b.ring.first())
			if r.Missed != want-cursor-1 {
				t.Fatalf("cursor %d, first %d: missed %d", cursor, b.ring.first(), r.Missed)
			}
			size := 0
			for i, m := range r.Messages {
				if m.ID != want+int64(i) {
					t.Fatalf("cursor %d: message %d has id %d, want %d", cursor, i, m.ID, want+int64(i))
				}
				size += len(b.ring.kept()[m.ID-b.ring.first()].js)
			}
			if len(r.Messages) > b.o.PageMessages || (len(r.Messages) > 1 && size > b.o.PageBytes) {
				t.Fatalf("page of %d messages, %d bytes: over %d, %d", len(r.Messages), size, b.o.PageMessages, b.o.PageBytes)
			}
			if r.More != (want+int64(len(r.Messages)) < next) || (r.More && len(r.Messages) == 0) {
				t.Fatalf("more %v with %d messages from %d, next id %d", r.More, len(r.Messages), want, next)
			}
			if !r.More {
				break
			}
			cursor = r.Messages[len(r.Messages)-1].ID
		}
	})
}
