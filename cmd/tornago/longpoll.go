package main

// The long-poll chat of Tornado's demos/chat: POST /new-message adds a
// message, POST /update-message waits for messages after a cursor, and
// /poll-message (GET or POST) answers at once.
//
// The chat is the hub topic "chat" with history (hub_history in loop):
// the same messages /receive publishes to /ws, with the same positions
// that /ws?since= and /sse use. Every loop (and every process sharing a
// NATS server with JetStream) is a node of one chat: a message posted on
// any node reaches the polls of all, in one order, with the same ids.
//
// The cursor protocol:
//   - Message ids (the topic's offsets) grow by 1 in the topic's order,
//     the same on every node. The answers' "epoch" names the history: it
//     changes when the history starts over (a new process without NATS; a
//     new JetStream stream after the NATS server lost it), so a client can
//     tell that ids started over. Each message's "pos" is "EPOCH-ID".
//   - The client sends since = the pos of the last message it has (or the
//     answer's "head" when it had none), or the older pair cursor = its id
//     and epoch = the epoch of the answer it came in. Absent or empty
//     (what an empty form field and Tornado's get_argument give) or 0
//     means none: every kept message, as in Tornado's demo. since=0-0 is
//     the zero position, "from now" as on /ws and /sse: nothing old (a
//     long poll waits for the next message). Anything else malformed
//     (not canonical EPOCH-OFFSET: see pubsub.ParsePosition) gets 400.
//   - An answer is {"epoch":E,"messages":[{"id":..,"pos":..,"body":..},...],
//     "head":"E-N","more":bool,"missed":N}: the messages after the cursor,
//     oldest first, at most PageMessages of them and at most PageBytes of
//     encoded messages (one message always fits); head is the pos of the
//     last one (or the topic's newest, with none; or the cursor, when this
//     node lags it: see below). "more" says that more follow: poll again
//     at once from head.
//   - The server keeps at most MaxMessages messages and MaxBytes bytes of
//     them and drops the oldest first. When messages after the cursor are
//     gone, "missed" says how many (-1: unknown, the cursor was of another
//     epoch), and the page starts at the oldest kept.
//   - With the current epoch, the cursor holds even above this node's last
//     id, by up to pubsub.MaxLead (1000): the client saw those messages on
//     a node further along, and this one has not received them yet. The
//     poll waits until messages above the cursor arrive (a short poll
//     answers an empty page), so the client neither misses nor repeats one
//     when it switches nodes.
//   - A cursor of an older epoch (an earlier process) gets the oldest kept
//     messages of the current one, with missed -1, at once. So does one
//     beyond the history (pubsub.Position.Beyond): of a newer epoch than
//     this node knows, or more than MaxLead above its last id; /ws and
//     /sse answer those "gone" too, with this node's head.
//   - Without an epoch (clients of Tornado's demo), a cursor above the last
//     id counts as 0, as from an earlier process, and a lower one is taken
//     as is.
//   - /new-message answers {"published":true} once the topic took the
//     message (503 with a reason when it cannot, e.g. NATS is down).
//   - /update-message waits when nothing follows the cursor, then answers
//     with the new messages, or with an empty list after Timeout or when
//     the server stops; the client then polls again (after a backoff when
//     the server is gone).
//   - /poll-message answers also carry "waiting", the number of long polls
//     parked on this loop for the topic (as /receive reports "delivered").
//   - ?topic=clock polls the clock's ticks instead (bodies are the tick
//     JSON, as a string).

import (
	"encoding/json"
	"errors"
	"flag"
	"strconv"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
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
// Answers also carry "pos", the message's position ("E-N"), the same string
// as its SSE event id and a /ws client's resume point.
type chatMessage struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
}

type waiter struct {
	after pubsub.Position
	t     *loop.Timeout
}

// topicPoll answers the long and short polls for one history topic of one
// loop, from the loop's hub (Hub.History, then Hub.Watch for what follows).
// Loop-only like everything else.
type topicPoll struct {
	l        *loop.Loop
	hub      *loop.Hub
	topic    string
	o        longPollOptions
	waiters  map[*loop.Request]waiter
	stopping bool
	msgs     []pubsub.Message // scratch
	scratch  []byte           // the answer being built; Request.Write copies it
	// A message usually answers many polls waiting at the same position:
	// the page is built once for all of them (cleared after each message).
	memoAfter pubsub.Position
	memo      []byte
}

func newTopicPoll(l *loop.Loop, hub *loop.Hub, topic string, o longPollOptions) (*topicPoll, error) {
	p := &topicPoll{l: l, hub: hub, topic: topic, o: o.withDefaults(), waiters: map[*loop.Request]waiter{}}
	if _, err := hub.Watch(topic, p.arrived); err != nil {
		return nil, err
	}
	return p, nil
}

// page is one answer: the messages after after, the position the client
// has after them (head when none), and how many it missed.
func (p *topicPoll) page(after pubsub.Position) (msgs []pubsub.Message, head pubsub.Position, missed int64) {
	msgs, head, err := p.hub.History(p.topic, after, p.msgs[:0])
	if errors.Is(err, pubsub.ErrHistoryGone) {
		// Messages after the cursor were dropped, or the cursor is of
		// another history: start at the oldest kept, and say so.
		msgs, head, _ = p.hub.History(p.topic, pubsub.Position{Epoch: head.Epoch, Offset: -1}, p.msgs[:0])
		switch {
		case after.Epoch != head.Epoch, head.Less(after):
			missed = -1 // unknown: another epoch, or beyond the head (pubsub.Position.Beyond)
		case len(msgs) > 0:
			missed = msgs[0].Pos.Offset - after.Offset - 1
		default:
			missed = head.Offset - after.Offset
		}
	} else if err == nil && head.Less(after) {
		head = after // this node lags the client (within pubsub.MaxLead): the client stands at its own position
	}
	return msgs, head, missed
}

// appendPage appends an answer to dst (see the protocol above): at most
// PageMessages messages and PageBytes of encoded messages (one always
// fits). waiting < 0 leaves "waiting" out.
func appendPage(dst []byte, msgs []pubsub.Message, head pubsub.Position, missed int64, o longPollOptions, waiting int) []byte {
	dst = append(dst, `{"epoch":`...)
	dst = strconv.AppendInt(dst, head.Epoch, 10)
	dst = append(dst, `,"messages":[`...)
	n, size := 0, 0
	for ; n < len(msgs) && (n == 0 || n < o.PageMessages); n++ {
		m := msgs[n]
		start := len(dst)
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"id":`...)
		dst = strconv.AppendInt(dst, m.Pos.Offset, 10)
		dst = append(dst, `,"pos":"`...)
		dst = m.Pos.Append(dst)
		dst = append(dst, `","body":`...)
		dst = appendJSONString(dst, m.Data)
		dst = append(dst, '}')
		if n > 0 && size+len(dst)-start > o.PageBytes {
			dst = dst[:start] // does not fit: the next page starts with it
			break
		}
		size += len(dst) - start
	}
	last := head
	if n > 0 {
		last = msgs[n-1].Pos
	}
	dst = append(dst, `],"head":"`...)
	dst = last.Append(dst)
	dst = append(dst, `","more":`...)
	dst = strconv.AppendBool(dst, n < len(msgs))
	dst = append(dst, `,"missed":`...)
	dst = strconv.AppendInt(dst, missed, 10)
	if waiting >= 0 {
		dst = append(dst, `,"waiting":`...)
		dst = strconv.AppendInt(dst, int64(waiting), 10)
	}
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string, as encoding/json writes it
// (HTML-safe escapes included). s is valid UTF-8 (textArgument checks).
func appendJSONString(dst, s []byte) []byte {
	js, _ := json.Marshal(string(s)) // a string always encodes
	return append(dst, js...)
}

func (p *topicPoll) reply(r *loop.Request, after pubsub.Position, waiting bool) {
	msgs, head, missed := p.page(after)
	w := -1
	if waiting {
		w = len(p.waiters)
	}
	p.scratch = appendPage(p.scratch[:0], msgs, head, missed, p.o, w)
	clear(msgs)
	p.msgs = msgs[:0]
	p.send(r, p.scratch)
}

func (p *topicPoll) send(r *loop.Request, page []byte) {
	r.SetHeader("Content-Type", "application/json; charset=UTF-8")
	r.SetHeader("Cache-Control", "no-store")
	r.Write(page)
	r.Finish()
	if cap(p.scratch) > 2*p.o.PageBytes {
		p.scratch = nil // one large message passed through: do not keep its size
	}
}

// arrived answers the polls waiting for m (Hub.Watch). Loop-only.
func (p *topicPoll) arrived(m pubsub.Message) {
	p.memo = nil
	for r, w := range p.waiters {
		if !w.after.Less(m.Pos) && !w.after.Beyond(m.Pos) {
			// The client has it already (from a node further along,
			// within pubsub.MaxLead). A cursor beyond m (a newer epoch,
			// say the clock's first epoch before its first tick starts
			// epoch 1) is answered now: the oldest kept, missed -1, as
			// when it asks.
			continue
		}
		p.l.RemoveTimeout(w.t)
		delete(p.waiters, r)
		if p.memo == nil || p.memoAfter != w.after {
			msgs, head, missed := p.page(w.after)
			p.memo = appendPage(nil, msgs, head, missed, p.o, -1)
			clear(msgs)
			p.msgs = msgs[:0]
			p.memoAfter = w.after
		}
		p.send(r, p.memo)
	}
	p.memo = nil
}

// parseCursor reads a cursor or epoch argument; "" means none (0).
func parseCursor(s string) (int64, bool) {
	if s == "" {
		return 0, true
	}
	c, err := strconv.ParseInt(s, 10, 64)
	return c, err == nil && c >= 0
}

// after reads the client's position: since=E-N, or the pair cursor and
// epoch, with the protocol's rules for a missing epoch.
func (p *topicPoll) after(r *loop.Request) (pubsub.Position, bool) {
	head, _ := p.hub.Head(p.topic)
	if s := r.GetArgument("since", ""); s != "" {
		pos, err := pubsub.ParsePosition(s)
		if err != nil {
			httpError(r, 400, "since must be the pos of the last message you have (EPOCH-OFFSET)")
			return pubsub.Position{}, false
		}
		if pos == (pubsub.Position{}) {
			return head, true // "0-0": from now, as on /ws and /sse
		}
		return pos, true
	}
	cursor, ok := parseCursor(r.GetArgument("cursor", ""))
	if !ok {
		httpError(r, 400, "cursor must be empty or the id of the last message you have (a non-negative integer)")
		return pubsub.Position{}, false
	}
	epoch, ok := parseCursor(r.GetArgument("epoch", ""))
	if !ok {
		httpError(r, 400, "epoch must be empty or the epoch of the answer your cursor came in (a non-negative integer)")
		return pubsub.Position{}, false
	}
	switch {
	case epoch != 0:
		return pubsub.Position{Epoch: epoch, Offset: cursor}, true
	case cursor > head.Offset:
		// One of Tornado's demo clients, from an earlier process.
		return pubsub.Position{Epoch: head.Epoch}, true
	}
	return pubsub.Position{Epoch: head.Epoch, Offset: cursor}, true
}

func (p *topicPoll) update(r *loop.Request, wait bool) {
	after, ok := p.after(r)
	if !ok {
		return
	}
	head, _ := p.hub.Head(p.topic)
	if !wait || p.stopping || after.Less(head) || after.Beyond(head) {
		// Beyond: not of this history as this node knows it (a newer
		// epoch, or more than MaxLead ahead): gone at once, as /ws and
		// /sse answer it, rather than a wait for positions that may
		// never come.
		p.reply(r, after, !wait)
		return
	}
	r.Async()
	p.waiters[r] = waiter{after, p.l.CallLater(p.o.Timeout, func() {
		delete(p.waiters, r)
		p.reply(r, after, false)
	})}
	r.OnConnectionClose(func() {
		if w, ok := p.waiters[r]; ok {
			p.l.RemoveTimeout(w.t)
			delete(p.waiters, r)
		}
	})
}

// stop answers every parked poll now (an empty page: the client polls
// again) and makes later polls answer at once. Loop-only. Run it before
// Loop.Stop, which waits for in-flight requests to finish.
func (p *topicPoll) stop() {
	p.stopping = true
	for r, w := range p.waiters {
		p.l.RemoveTimeout(w.t)
		delete(p.waiters, r)
		p.reply(r, w.after, false)
	}
}

// addPolls adds the long- and short-poll routes on app for the loop's
// history topics (topics[0] is the default; ?topic= picks another) and
// POST /new-message, which publishes on chat.
func addPolls(app *loop.Application, chat *loop.Hub, polls map[string]*topicPoll, o longPollOptions) {
	o = o.withDefaults()
	pick := func(r *loop.Request) *topicPoll {
		name := r.GetArgument("topic", chatTopic)
		p := polls[name]
		if p == nil {
			httpError(r, 404, "no such topic: "+strconv.Quote(name)) // quoted: a name that is not UTF-8 comes out escaped
		}
		return p
	}
	app.Handle("/new-message", loop.Methods{Post: func(r *loop.Request) {
		body, ok := textArgument(r, "msg", o.MaxMessageBytes)
		if !ok {
			return
		}
		if err := chat.Publish(chatTopic, []byte(body)); err != nil {
			httpError(r, 503, "the chat is unavailable: "+err.Error())
			return
		}
		r.Write(map[string]any{"published": true})
	}})
	app.Handle("/update-message", loop.Methods{Post: func(r *loop.Request) {
		if p := pick(r); p != nil {
			p.update(r, true)
		}
	}})
	short := func(r *loop.Request) {
		if p := pick(r); p != nil {
			p.update(r, false)
		}
	}
	app.Handle("/poll-message", loop.Methods{Post: short, Get: short})
}
