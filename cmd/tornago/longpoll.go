package main

// The long-poll chat of Tornado's demos/chat: POST /new-message adds a
// message, POST /update-message waits for messages after a cursor, and
// /poll-message (GET or POST) answers at once.
//
// Every loop (and every process sharing a NATS server with JetStream) is
// a node of one chat: a message posted on any node reaches the polls of
// all, in one order (chatlog.go). Each loop answers from its own replica
// of the log, which follows the log a moment behind.
//
// The cursor protocol:
//   - Message ids grow by 1 in the log's order, the same on every node.
//     The answers' "epoch" names the log: it changes when the log starts
//     over (a new process without NATS; a new JetStream stream after the
//     NATS server lost it), so a client can tell that ids started over.
//   - The client sends cursor = the id of the last message it has, and
//     epoch = the epoch of the answer it came in. Absent or empty (what an
//     empty form field and Tornado's get_argument give) or 0 means none.
//     Anything but a non-negative integer gets 400.
//   - An answer is {"epoch":E,"messages":[{"id":..,"body":..},...],
//     "more":bool,"missed":N}: the messages with ids above the cursor,
//     oldest first, at most PageMessages of them and at most PageBytes of
//     encoded messages (one message always fits). "more" says that more
//     follow: poll again at once with the last id received as the cursor.
//   - The server keeps at most MaxMessages messages and MaxBytes bytes of
//     them and drops the oldest first. When messages after the cursor are
//     gone, "missed" says how many, and the page starts at the oldest kept.
//   - With the current epoch, the cursor holds even above this node's last
//     id: the client saw those messages on a node further along, and this
//     one has not received them yet. The poll waits until messages above
//     the cursor arrive (a short poll answers an empty page), so the client
//     neither misses nor repeats one when it switches nodes.
//   - With another epoch the cursor counts as 0: the answer (in the new
//     epoch) starts at the oldest kept message. Without an epoch (clients
//     of Tornado's demo), a cursor above the last id counts as 0, as from
//     an earlier process, and a lower one is taken as is.
//   - /new-message answers {"id":N} once the log has ordered the message
//     (503 with a reason when it cannot, e.g. NATS is down).
//   - /update-message waits when nothing follows the cursor, then answers
//     with the new messages, or with an empty list after Timeout or when
//     the server stops; the client then polls again (after a backoff when
//     the server is gone). When the log starts a new epoch, waiting polls
//     are answered at once in the new one.
//   - /poll-message answers also carry "waiting", the number of long polls
//     parked on this loop (as /receive reports "delivered").

import (
	"flag"
	"strconv"
	"time"

	"github.com/tornago/tornago/loop"
)

// longPollOptions bounds the long-poll store and its answers. Zero fields
// take the defaults.
type longPollOptions struct {
	// MaxMessages is how many messages are kept (Tornado's chat demo keeps
	// 200), by the log and by each loop's replica. Default: 200.
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

// storedMessage keeps a message encoded once per process, when the log
// takes it; every replica shares the bytes, and answering a poll only
// copies them.
type storedMessage struct {
	id int64
	js []byte // chatMessage as JSON
}

type waiter struct {
	cursor int64
	t      *loop.Timeout
}

// messageBuffer is one loop's replica of the chat log and its pollers.
// Loop-only like everything else; the log reaches it through sync, run on
// the loop.
type messageBuffer struct {
	l        *loop.Loop
	o        longPollOptions
	log      chatLog
	epoch    int64 // the log's, as of the last sync
	ring     chatRing
	batch    []storedMessage // sync's scratch
	waiters  map[*loop.Request]waiter
	stopping bool
	scratch  []byte // the answer being built; Request.Write copies it
}

func newMessageBuffer(l *loop.Loop, o longPollOptions, clog chatLog) *messageBuffer {
	return &messageBuffer{l: l, o: o.withDefaults(), log: clog, ring: newChatRing(),
		waiters: map[*loop.Request]waiter{}}
}

// appendPage appends the answer for cursor to dst (see the protocol above).
func (b *messageBuffer) appendPage(dst []byte, cursor int64, waiting bool) []byte {
	first := b.ring.first()
	var missed int64
	if cursor < first-1 {
		missed = first - 1 - cursor
		cursor = first - 1
	}
	dst = append(dst, `{"epoch":`...)
	dst = strconv.AppendInt(dst, b.epoch, 10)
	dst = append(dst, `,"messages":[`...)
	kept := b.ring.kept()
	i := len(kept) // a cursor at or above the last id: nothing yet
	if cursor < b.ring.next-1 {
		i = int(cursor + 1 - first)
	}
	n, size := 0, 0
	for ; i < len(kept); i++ {
		m := kept[i].js
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
	dst = strconv.AppendBool(dst, i < len(kept))
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

// sync copies what the log has beyond the replica and answers the polls
// that now have messages; a new epoch replaces the replica's messages and
// answers every poll. Loop-only (the log's notify).
func (b *messageBuffer) sync() {
	epoch, batch, reset := b.log.since(b.epoch, b.ring.next, b.batch[:0])
	if reset {
		b.epoch = epoch
		b.ring.clear()
		b.ring.next = 1
	}
	for _, m := range batch {
		b.ring.add(m, b.o)
	}
	clear(batch)
	b.batch = batch[:0]
	for w, wt := range b.waiters {
		if reset {
			wt.cursor = 0 // from the old epoch
		} else if wt.cursor >= b.ring.next-1 {
			continue
		}
		b.l.RemoveTimeout(wt.t)
		delete(b.waiters, w)
		b.reply(w, wt.cursor, false)
	}
}

func (b *messageBuffer) newMessage(r *loop.Request) {
	body, ok := textArgument(r, "msg", b.o.MaxMessageBytes)
	if !ok {
		return
	}
	err := b.log.append(b.l, body, func(id int64, err error) {
		if err != nil {
			httpError(r, 503, "the chat log is unavailable: "+err.Error())
			return
		}
		r.Write(map[string]any{"id": id})
		r.Finish()
	})
	if err != nil {
		httpError(r, 503, "the chat log is unavailable: "+err.Error())
		return
	}
	r.Async() // done runs later, never during this handler
}

// parseCursor reads a cursor or epoch argument; "" means none (0).
func parseCursor(s string) (int64, bool) {
	if s == "" {
		return 0, true
	}
	c, err := strconv.ParseInt(s, 10, 64)
	return c, err == nil && c >= 0
}

// effectiveCursor applies the protocol's epoch rules to a client's cursor.
func (b *messageBuffer) effectiveCursor(cursor, epoch int64) int64 {
	switch {
	case epoch == b.epoch:
		return cursor // above the last id: this replica lags
	case epoch != 0:
		return 0 // ids of another log
	case cursor >= b.ring.next:
		return 0 // from an earlier process
	}
	return cursor
}

func (b *messageBuffer) update(r *loop.Request, wait bool) {
	cursor, ok := parseCursor(r.GetArgument("cursor", ""))
	if !ok {
		httpError(r, 400, "cursor must be empty or the id of the last message you have (a non-negative integer)")
		return
	}
	epoch, ok := parseCursor(r.GetArgument("epoch", ""))
	if !ok {
		httpError(r, 400, "epoch must be empty or the epoch of the answer your cursor came in (a non-negative integer)")
		return
	}
	cursor = b.effectiveCursor(cursor, epoch)
	if !wait || b.stopping || cursor < b.ring.next-1 {
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

// addLongPoll adds the long-poll routes on l, answering from a replica of
// clog (nil: a memory log of this loop alone), and returns the replica,
// whose stop the caller runs on the loop before stopping it. Call it while
// setting up l, before it serves the routes.
func addLongPoll(l *loop.Loop, app *loop.Application, o longPollOptions, clog chatLog) *messageBuffer {
	if clog == nil {
		clog = newMemoryChatLog(o)
	}
	b := newMessageBuffer(l, o, clog)
	// The replica is not shared yet: fill it here so that the first polls
	// see the log's epoch and history; the log's notifications follow.
	b.sync()
	clog.subscribe(l, b.sync)
	app.Handle("/new-message", loop.Methods{Post: b.newMessage})
	app.Handle("/update-message", loop.Methods{Post: func(r *loop.Request) { b.update(r, true) }})
	app.Handle("/poll-message", loop.Methods{Post: func(r *loop.Request) { b.update(r, false) }, Get: func(r *loop.Request) { b.update(r, false) }})
	return b
}
