package main

import (
	"strconv"
	"time"

	"github.com/tornago/tornago/loop"
)

// chatMessage has an id so a client's cursor names exactly what it has seen:
// nothing is lost or repeated between polls (the tutorial dumped its cache).
type chatMessage struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
}

// messageBuffer is the long-poll chat state, loop-only like everything else.
type messageBuffer struct {
	l       *loop.Loop
	epoch   int64 // changes per process start so clients can tell a restart
	msgs    []chatMessage
	first   int64 // id of msgs[0]
	waiters map[*loop.Request]*loop.Timeout
	timeout time.Duration
	max     int
}

func newMessageBuffer(l *loop.Loop) *messageBuffer {
	return &messageBuffer{l: l, epoch: time.Now().UnixNano(), first: 1,
		waiters: map[*loop.Request]*loop.Timeout{}, timeout: 30 * time.Second, max: 1000}
}

// after returns the messages with id > cursor.
func (b *messageBuffer) after(cursor int64) []chatMessage {
	i := cursor + 1 - b.first
	if i < 0 {
		i = 0
	}
	if i >= int64(len(b.msgs)) {
		return []chatMessage{}
	}
	return b.msgs[i:]
}

func (b *messageBuffer) reply(r *loop.Request, cursor int64) {
	r.Write(map[string]any{"epoch": b.epoch, "messages": b.after(cursor)})
	r.Finish()
}

func (b *messageBuffer) newMessage(r *loop.Request) {
	body := r.GetArgument("msg", "")
	if body == "" {
		r.SendError(400)
		return
	}
	id := b.first + int64(len(b.msgs))
	b.msgs = append(b.msgs, chatMessage{ID: id, Body: body})
	if len(b.msgs) > b.max {
		drop := len(b.msgs) - b.max
		b.msgs = append(b.msgs[:0:0], b.msgs[drop:]...)
		b.first += int64(drop)
	}
	for w, t := range b.waiters {
		b.l.RemoveTimeout(t)
		delete(b.waiters, w)
		cursor, _ := strconv.ParseInt(w.GetArgument("cursor", "0"), 10, 64)
		b.reply(w, cursor)
	}
	r.Write(map[string]any{"id": id})
}

func (b *messageBuffer) update(r *loop.Request, wait bool) {
	cursor, err := strconv.ParseInt(r.GetArgument("cursor", "0"), 10, 64)
	if err != nil {
		r.SendError(400)
		return
	}
	if !wait || len(b.after(cursor)) > 0 {
		b.reply(r, cursor)
		return
	}
	r.Async()
	b.waiters[r] = b.l.CallLater(b.timeout, func() {
		delete(b.waiters, r)
		b.reply(r, cursor)
	})
	r.OnConnectionClose(func() {
		b.l.RemoveTimeout(b.waiters[r])
		delete(b.waiters, r)
	})
}

func addLongPoll(l *loop.Loop, app *loop.Application) {
	b := newMessageBuffer(l)
	app.Handle("/new-message", loop.Methods{Post: b.newMessage})
	app.Handle("/update-message", loop.Methods{Post: func(r *loop.Request) { b.update(r, true) }})
	app.Handle("/poll-message", loop.Methods{Post: func(r *loop.Request) { b.update(r, false) }, Get: func(r *loop.Request) { b.update(r, false) }})
}
