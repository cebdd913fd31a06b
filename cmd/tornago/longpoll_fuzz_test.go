package main

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLongPollPage adds messages to a small store and checks every page it
// builds: valid JSON, ids contiguous from the oldest kept one after the
// cursor, "missed" consistent with them, within the page caps, and the
// store within its own caps.
func FuzzLongPollPage(f *testing.F) {
	f.Add([]byte("hello\x00world\"\\<>&\u2028"), uint8(3), uint16(200), uint16(90), int64(0))
	f.Add([]byte(strings.Repeat("x", 300)), uint8(1), uint16(64), uint16(64), int64(7))
	f.Fuzz(func(t *testing.T, data []byte, maxMsgs uint8, maxBytes, pageBytes uint16, cursor int64) {
		b := newMessageBuffer(nil, longPollOptions{MaxMessages: int(maxMsgs), MaxBytes: int(maxBytes),
			PageMessages: 4, PageBytes: int(pageBytes)})
		// Split data into messages at 0xff (never in UTF-8); keep valid ones
		// as the handler would.
		for _, part := range strings.Split(string(data), "\xff") {
			if part == "" || !utf8.ValidString(part) || len(part) > b.o.MaxMessageBytes {
				continue
			}
			b.add(part)
			if n := len(b.msgs) - b.head; n > b.o.MaxMessages || (n > 1 && b.bytes > b.o.MaxBytes) {
				t.Fatalf("store holds %d messages, %d bytes: over %d, %d", n, b.bytes, b.o.MaxMessages, b.o.MaxBytes)
			}
		}
		if cursor < 0 || cursor >= b.next {
			cursor = 0
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
			if r.Messages == nil || r.Waiting == nil || r.Epoch != b.epoch {
				t.Fatalf("page %q lacks fields", page)
			}
			want := max(cursor+1, b.first())
			if r.Missed != want-cursor-1 {
				t.Fatalf("cursor %d, first %d: missed %d", cursor, b.first(), r.Missed)
			}
			size := 0
			for i, m := range r.Messages {
				if m.ID != want+int64(i) {
					t.Fatalf("cursor %d: message %d has id %d, want %d", cursor, i, m.ID, want+int64(i))
				}
				size += len(b.msgs[b.head+int(m.ID-b.first())].js)
			}
			if len(r.Messages) > b.o.PageMessages || (len(r.Messages) > 1 && size > b.o.PageBytes) {
				t.Fatalf("page of %d messages, %d bytes: over %d, %d", len(r.Messages), size, b.o.PageMessages, b.o.PageBytes)
			}
			if r.More != (want+int64(len(r.Messages)) < b.next) || (r.More && len(r.Messages) == 0) {
				t.Fatalf("more %v with %d messages from %d, next id %d", r.More, len(r.Messages), want, b.next)
			}
			if !r.More {
				break
			}
			cursor = r.Messages[len(r.Messages)-1].ID
		}
	})
}
