package main

// The long-poll chat of Tornado's demos/chat: POST /new-message adds a
// message, POST /update-message waits for messages after a cursor, and
// /poll-message (GET or POST) answers at once.
//
// The cursor protocol:
//   - Message ids start at 1 in each server process and grow by 1. The
//     answers' "epoch" changes with the process, so a client can tell that
//     ids started over.
//   - The client sends cursor = the id of the last message it has. Absent or
//     empty (what an empty form field and Tornado's get_argument give) or 0
//     means none. Anything but a non-negative integer gets 400.
//   - An answer is {"epoch":E,"messages":[{"id":..,"body":..},...],
//     "more":bool,"missed":N}: the messages with ids above the cursor,
//     oldest first, at most PageMessages of them and at most PageBytes of
//     encoded messages (one message always fits). "more" says that more
//     follow: poll again at once with the last id received as the cursor.
//   - The server keeps at most MaxMessages messages and MaxBytes bytes of
//     them and drops the oldest first. When messages after the cursor are
//     gone, "missed" says how many, and the page starts at the oldest kept.
//   - A cursor above the last id comes from an earlier process: it counts
//     as 0 (the client sees the new epoch).
//   - /update-message waits when nothing follows the cursor, then answers
//     with the new messages, or with an empty list after Timeout or when
//     the server stops; the client then polls again (after a backoff when
//     the server is gone).
//   - /poll-message answers also carry "waiting", the number of long polls
//     parked on this server (as /receive reports "delivered").

import (
	"encoding/json"
	"flag"
	"strconv"
	"time"

	"github.com/tornago/tornago/loop"
)

// longPollOptions bounds the long-poll store and its answers. Zero fields
// take the defaults.
type longPollOptions struct {
	// MaxMessages is how many messages are kept (Tornado's chat demo keeps
	// 200). Default: 200.
	MaxMessages int
	// MaxBytes bounds the kept messages' encoded JSON (the body plus about
	// 25 bytes, more when the body needs escapes). Default: 8 MiB.
	MaxBytes int
	// MaxMessageBytes bounds one message's body; /new-message answers 413
	// beyond. At most MaxBytes. Default: 64 KiB.
	MaxMessageBytes int
	// PageMessages and PageBytes bound one answer; the client follows
	// "more". Encoding a page copies at most PageBytes (or one message), so
	// an answer never holds the loop for long. Defaults: 100, 256 KiB.
	PageMessages int
	PageBytes    int
	// Timeout is how long /update-message waits. Default: 30s.
	Timeout time.Duration
}

func (o longPollOptions) withDefaults() longPollOptions {
	if o.MaxMessages <= 0 {
		o.MaxMessages = 200
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 8 << 20
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = maxChatMessage
	}
	o.MaxMessageBytes = min(o.MaxMessageBytes, o.MaxBytes)
	if o.PageMessages <= 0 {
		o.PageMessages = 100
	}
	if o.PageBytes <= 0 {
		o.PageBytes = 256 << 10
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return o
}

func defaultLongPoll() longPollOptions { return longPollOptions{}.withDefaults() }

// longPollFlags registers the store's flags on fs.
func longPollFlags(fs *flag.FlagSet) *longPollOptions {
	o := defaultLongPoll()
	fs.IntVar(&o.MaxMessages, "longpoll-messages", o.MaxMessages, "long-poll chat: messages kept (oldest dropped first)")
	fs.IntVar(&o.MaxBytes, "longpoll-bytes", o.MaxBytes, "long-poll chat: bytes of messages kept (oldest dropped first)")
	fs.IntVar(&o.MaxMessageBytes, "longpoll-message-bytes", o.MaxMessageBytes, "long-poll chat: largest message in bytes (413 beyond)")
	fs.IntVar(&o.PageBytes, "longpoll-page-bytes", o.PageBytes, "long-poll chat: bytes of messages in one answer (clients follow \"more\")")
	return &o
}

// chatMessage has an id so a client's cursor names exactly what it has seen:
// nothing is lost or repeated between polls (the tutorial dumped its cache).
type chatMessage struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
}

// storedMessage keeps a message encoded once, when posted: answering a poll
// only copies bytes.
type storedMessage struct {
	id int64
	js []byte // chatMessage as JSON
}

type waiter struct {
	cursor int64
	t      *loop.Timeout
}

// messageBuffer is the long-poll chat state, loop-only like everything else.
type messageBuffer struct {
	l        *loop.Loop
	o        longPollOptions
	epoch    int64           // changes per process start so clients can tell a restart
	msgs     []storedMessage // msgs[head:] are kept, oldest first
	head     int
	bytes    int   // len of the kept messages' js
	next     int64 // id of the next message
	waiters  map[*loop.Request]waiter
	stopping bool
	scratch  []byte // the answer being built; Request.Write copies it
}

func newMessageBuffer(l *loop.Loop, o longPollOptions) *messageBuffer {
	return &messageBuffer{l: l, o: o.withDefaults(), epoch: time.Now().UnixNano(), next: 1,
		waiters: map[*loop.Request]waiter{}}
}

// first is the id of the oldest kept message (next when none is).
func (b *messageBuffer) first() int64 {
	if b.head < len(b.msgs) {
		return b.msgs[b.head].id
	}
	return b.next
}

// appendPage appends the answer for cursor to dst (see the protocol above).
func (b *messageBuffer) appendPage(dst []byte, cursor int64, waiting bool) []byte {
	first := b.first()
	var missed int64
	if cursor < first-1 {
		missed = first - 1 - cursor
		cursor = first - 1
	}
	dst = append(dst, `{"epoch":`...)
	dst = strconv.AppendInt(dst, b.epoch, 10)
	dst = append(dst, `,"messages":[`...)
	i := b.head + int(cursor+1-first)
	n, size := 0, 0
	for ; i < len(b.msgs); i++ {
		m := b.msgs[i].js
		if n > 0 && (n == b.o.PageMessages || size+len(m) > b.o.PageBytes) {
			break
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, m...)
		n++
		size += len(m)
	}
	dst = append(dst, `],"more":`...)
	dst = strconv.AppendBool(dst, i < len(b.msgs))
	dst = append(dst, `,"missed":`...)
	dst = strconv.AppendInt(dst, missed, 10)
	if waiting {
		dst = append(dst, `,"waiting":`...)
		dst = strconv.AppendInt(dst, int64(len(b.waiters)), 10)
	}
	return append(dst, '}')
}

func (b *messageBuffer) reply(r *loop.Request, cursor int64, waiting bool) {
	b.scratch = b.appendPage(b.scratch[:0], cursor, waiting)
	r.SetHeader("Content-Type", "application/json; charset=UTF-8")
	r.Write(b.scratch)
	r.Finish()
	if cap(b.scratch) > 2*b.o.PageBytes {
		b.scratch = nil // one large message passed through: do not keep its size
	}
}

// add stores body as the next message, dropping the oldest over the caps.
func (b *messageBuffer) add(body string) int64 {
	id := b.next
	b.next++
	js, _ := json.Marshal(chatMessage{ID: id, Body: body}) // a string always encodes
	b.msgs = append(b.msgs, storedMessage{id, js})
	b.bytes += len(js)
	// The newest stays even when its escapes make it larger than MaxBytes
	// alone: it was accepted, so pollers get it.
	for n := len(b.msgs) - b.head; n > 1 && (n > b.o.MaxMessages || b.bytes > b.o.MaxBytes); n-- {
		b.bytes -= len(b.msgs[b.head].js)
		b.msgs[b.head] = storedMessage{} // let the bytes go now
		b.head++
	}
	// Compact once half the slice is dropped: amortized O(1) per message.
	if b.head > 0 && b.head >= len(b.msgs)/2 {
		n := copy(b.msgs, b.msgs[b.head:])
		clear(b.msgs[n:])
		b.msgs = b.msgs[:n]
		b.head = 0
	}
	return id
}

func (b *messageBuffer) newMessage(r *loop.Request) {
	body, ok := textArgument(r, "msg", b.o.MaxMessageBytes)
	if !ok {
		return
	}
	id := b.add(body)
	for w, wt := range b.waiters {
		b.l.RemoveTimeout(wt.t)
		delete(b.waiters, w)
		b.reply(w, wt.cursor, false)
	}
	r.Write(map[string]any{"id": id})
}

// parseCursor reads the cursor argument; "" means none (0).
func parseCursor(s string) (int64, bool) {
	if s == "" {
		return 0, true
	}
	c, err := strconv.ParseInt(s, 10, 64)
	return c, err == nil && c >= 0
}

func (b *messageBuffer) update(r *loop.Request, wait bool) {
	cursor, ok := parseCursor(r.GetArgument("cursor", ""))
	if !ok {
		httpError(r, 400, "cursor must be empty or the id of the last message you have (a non-negative integer)")
		return
	}
	if cursor >= b.next {
		cursor = 0 // from an earlier process
	}
	if !wait || b.stopping || cursor < b.next-1 {
		b.reply(r, cursor, !wait)
		return
	}
	r.Async()
	b.waiters[r] = waiter{cursor, b.l.CallLater(b.o.Timeout, func() {
		delete(b.waiters, r)
		b.reply(r, cursor, false)
	})}
	r.OnConnectionClose(func() {
		if w, ok := b.waiters[r]; ok {
			b.l.RemoveTimeout(w.t)
			delete(b.waiters, r)
		}
	})
}

// stop answers every parked poll now (an empty page: the client polls
// again) and makes later polls answer at once. Loop-only. Run it before
// Loop.Stop, which waits for in-flight requests to finish.
func (b *messageBuffer) stop() {
	b.stopping = true
	for r, w := range b.waiters {
		b.l.RemoveTimeout(w.t)
		delete(b.waiters, r)
		b.reply(r, w.cursor, false)
	}
}

// addLongPoll adds the long-poll routes and returns their store, whose stop
// the caller runs on the loop before stopping it.
func addLongPoll(l *loop.Loop, app *loop.Application, o longPollOptions) *messageBuffer {
	b := newMessageBuffer(l, o)
	app.Handle("/new-message", loop.Methods{Post: b.newMessage})
	app.Handle("/update-message", loop.Methods{Post: func(r *loop.Request) { b.update(r, true) }})
	app.Handle("/poll-message", loop.Methods{Post: func(r *loop.Request) { b.update(r, false) }, Get: func(r *loop.Request) { b.update(r, false) }})
	return b
}
