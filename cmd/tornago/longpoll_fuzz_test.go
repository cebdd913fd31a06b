package main

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tornago/tornago/loop/pubsub"
)

// FuzzLongPollPage builds answers from arbitrary bodies and page caps and
// checks each is valid JSON that decodes to what went in: ids and pos
// from the positions, bodies intact, within PageMessages and PageBytes
// (one message always fits), "more" when messages were left out, and
// "head" the last message sent (or the head when none).
func FuzzLongPollPage(f *testing.F) {
	f.Add([]byte("hello\x00world\"\\<>&\u2028"), uint8(3), uint16(90), int64(7), int64(1))
	f.Add([]byte(strings.Repeat("x", 300)), uint8(1), uint16(64), int64(1), int64(0))
	f.Add([]byte("a\xffb\xffc\xffd\xffe"), uint8(9), uint16(900), int64(1796191578400335), int64(-1))
	f.Fuzz(func(t *testing.T, data []byte, pageMsgs uint8, pageBytes uint16, epoch, missed int64) {
		if epoch < 0 {
			epoch = -(epoch + 1)
		}
		o := longPollOptions{PageMessages: int(pageMsgs), PageBytes: int(pageBytes)}.withDefaults()
		var msgs []pubsub.Message
		for i, part := range strings.Split(string(data), "\xff") {
			if !utf8.ValidString(part) {
				continue // textArgument refuses it
			}
			msgs = append(msgs, pubsub.Message{Pos: pubsub.Position{Epoch: epoch, Offset: int64(i + 1)}, Data: []byte(part)})
		}
		head := pubsub.Position{Epoch: epoch, Offset: int64(len(msgs))}
		out := appendPage(nil, msgs, head, missed, o, 3)
		var p struct {
			Epoch    int64
			Messages []struct {
				ID   int64
				Pos  string
				Body string
			}
			Head    string
			More    *bool
			Missed  int64
			Waiting *int
		}
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatalf("invalid JSON %q: %v", out, err)
		}
		if p.Epoch != epoch || p.Missed != missed || p.More == nil || p.Waiting == nil || *p.Waiting != 3 {
			t.Fatalf("fields of %s", out)
		}
		if len(msgs) > 0 && len(p.Messages) == 0 {
			t.Fatalf("no message fits: %s", out)
		}
		if len(p.Messages) > o.PageMessages || *p.More != (len(p.Messages) < len(msgs)) {
			t.Fatalf("%d of %d messages, more %v, page of %d", len(p.Messages), len(msgs), *p.More, o.PageMessages)
		}
		for i, m := range p.Messages {
			want := msgs[i]
			if m.ID != want.Pos.Offset || m.Pos != want.Pos.String() || m.Body != string(want.Data) {
				t.Fatalf("message %d: %+v, want %v %q", i, m, want.Pos, want.Data)
			}
		}
		// The encoded messages (with their commas) fit in PageBytes,
		// unless one message alone is larger.
		_, list, _ := strings.Cut(string(out), `"messages":[`)
		list, _, _ = strings.Cut(list, `],"head":`)
		if len(p.Messages) > 1 && len(list) > o.PageBytes {
			t.Fatalf("%d messages in %d bytes, over a page of %d", len(p.Messages), len(list), o.PageBytes)
		}
		wantHead := head
		if n := len(p.Messages); n > 0 {
			wantHead = msgs[n-1].Pos
		}
		if p.Head != wantHead.String() {
			t.Fatalf("head %q, want %q", p.Head, wantHead)
		}
	})
}
