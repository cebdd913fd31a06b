package loop

// Replaying a history to a resuming subscriber at the pace its client
// reads. Written all at once, a large history (8 MB) went into the
// connection's output past MaxUnsentPerConn and the subscriber was closed
// as a slow consumer even when its client read at full speed: it caught
// up only after many reconnects. Instead the replay writes a slice (up to
// half the connection's bound), then waits for the client to read it
// (Loop.pullWhen) and writes the next, from a cursor: the position the
// subscriber has reached. Until it catches up the subscriber gets no live
// message: a message published meanwhile is in the history, where the
// replay reaches it, so nothing is lost, repeated or reordered. Once
// caught up the cursor is dropped and the subscriber is an ordinary
// positioned one.

import (
	"fmt"
	"time"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/loop/pubsub"
)

// replay is a positioned subscriber's replay in progress. Loop-only.
type replay struct {
	cursor pubsub.Position // the last message written (since, before the first)
	n      int             // messages written
	done   []func()        // AfterReplay's, run once caught up
}

// replayBatch bounds the messages taken from the history per look: a slice
// stops at the connection's bound anyway, so a larger batch would copy
// message headers for nothing.
const replayBatch = 64

// replaySome writes to a subscriber the kept messages after rp.cursor, up
// to what this loop has sent, with send, until send reports that the next
// one would take the subscriber's unsent output past its slice (false, nil)
// or fails (the subscriber closed). It reports whether the subscriber
// caught up; err wraps ErrHistoryGone when the history no longer holds the
// message after the cursor. Loop-only.
func (h *Hub) replaySome(t *hubTopic, rp *replay, send func(pubsub.Message) (bool, error)) (caught bool, err error) {
	th := t.hist
	for rp.cursor.Less(th.last) {
		upTo := int64(-1)
		if rp.cursor.Offset >= 0 && rp.cursor.Epoch == th.last.Epoch {
			upTo = min(th.last.Offset, rp.cursor.Offset+replayBatch)
		}
		msgs, err := h.historyUpTo(t, rp.cursor, upTo, th.scratch[:0])
		if err == nil && len(msgs) == 0 {
			err = fmt.Errorf("%w: nothing kept after %s", pubsub.ErrHistoryGone, rp.cursor)
		}
		stop := false
		for _, m := range msgs {
			wrote, werr := send(m)
			if !wrote || werr != nil {
				stop = true
				break
			}
			rp.cursor = m.Pos
			rp.n++
		}
		clear(msgs)
		th.scratch = msgs[:0]
		if err != nil || stop {
			return false, err
		}
	}
	return true, nil
}

// historyUpTo is history with an upper bound: the kept messages after
// since up to offset upTo (-1: what this loop has sent).
func (h *Hub) historyUpTo(t *hubTopic, since pubsub.Position, upTo int64, dst []pubsub.Message) ([]pubsub.Message, error) {
	th := t.hist
	if upTo < 0 || upTo > th.last.Offset {
		upTo = th.last.Offset
	}
	if th.local != nil {
		return th.local.After(since, upTo, time.Now(), dst)
	}
	if since.Epoch != th.last.Epoch {
		return dst, fmt.Errorf("%w: epoch %d is not the history's %d", pubsub.ErrHistoryGone, since.Epoch, th.last.Epoch)
	}
	return h.broker.(pubsub.HistoryBroker).History(t.name, since, upTo, dst)
}

// replaySlice is how much unsent output a replay leaves a connection with
// before it waits for the client: half its bound, so that the other half
// takes live messages of its other topics and the app's own writes.
func replaySlice(limit int) int { return max(limit/2, 1) }

// wsReplayWriter returns replaySome's send for w: the message framed as
// SubscribeSince's subscribers get it, written while w's unsent output
// stays within at bytes (into an empty buffer always, as the slow-consumer
// rule allows).
func (h *Hub) wsReplayWriter(topic string, w *WebSocket, at int) func(pubsub.Message) (bool, error) {
	c := w.conn()
	return func(m pubsub.Message) (bool, error) {
		if !w.writable() {
			return false, ErrWebSocketClosed
		}
		h.frame = h.appendFrame(h.frame[:0], topic, m)
		if c.l.overBound(c.gc.OutboundBuffered(), len(h.frame)+14, at) {
			return false, nil
		}
		return true, w.write(ws.OpCode(h.typ), h.frame) // copies: the buffer serves the next one
	}
}

// esReplayWriter is wsReplayWriter for an event stream.
func (h *Hub) esReplayWriter(topic string, es *EventStream, at int) func(pubsub.Message) (bool, error) {
	return func(m pubsub.Message) (bool, error) {
		data := m.Data
		if h.frameFn != nil {
			h.frame = h.frameFn(h.frame[:0], topic, m.Pos, m.Data)
			data = h.frame
		}
		return es.sendWithin(m.Pos.String(), data, at)
	}
}

// sendWithin sends one event (id, type "message", data) unless it would
// take the stream's unsent output past at bytes (false, nil). Loop-only.
func (es *EventStream) sendWithin(id string, data []byte, at int) (bool, error) {
	if err := es.writable(); err != nil {
		return false, err
	}
	c := es.r.c
	l := c.l
	var out []byte
	var n int
	l.scratch, out, n = appendEventFramed(l.scratch[:0], es.r.chunked, id, "", data)
	if l.overBound(c.gc.OutboundBuffered(), len(out), at) {
		l.trimScratch()
		return false, nil
	}
	err := es.write(out, n)
	l.trimScratch()
	return err == nil, err
}

// trimFrame lets go of the replay's frame buffer after a large message.
func (h *Hub) trimFrame() {
	if cap(h.frame) > 64<<10 {
		h.frame = nil // one large message passed through: do not keep its size
	}
}

// continueWS goes on with w's replay on t when w's output drained, and
// waits again, or makes w a live subscriber once caught up. A replay
// overtaken by the history's bounds (the client reads slower than the
// topic goes and the history drops what it has not read yet) closes w
// with 1013: its client resumes, and SubscribeSince tells it that the
// history is gone. Loop-only.
func (h *Hub) continueWS(t *hubTopic, w *WebSocket, rp *replay) {
	if h.closed.Load() || h.topics[t.name] != t || t.hist.wsReplays[w] != rp || !w.writable() {
		return // unsubscribed, closed, or the hub closed
	}
	at := replaySlice(w.route().opts.MaxUnsentPerConn)
	caught, err := h.replaySome(t, rp, h.wsReplayWriter(t.name, w, at))
	h.trimFrame()
	switch {
	case err != nil:
		h.l.log.Debug("hub: replay overtaken by the history's bounds", "topic", t.name, "at", rp.cursor, "err", err)
		w.Close(CloseTryAgainLater, "history replay fell behind: resume again")
	case caught:
		h.caughtUpWS(t, w, rp)
	case w.writable():
		h.l.pullWhen(w.conn(), at, func() { h.continueWS(t, w, rp) })
	}
}

// caughtUpWS makes w, whose replay on t caught up, a live positioned
// subscriber, and runs AfterReplay's functions.
func (h *Hub) caughtUpWS(t *hubTopic, w *WebSocket, rp *replay) {
	delete(t.hist.wsReplays, w)
	t.hist.pos[w] = pubsub.Position{}
	for _, fn := range rp.done {
		h.l.safeCall(fn)
	}
}

// continueStream is continueWS for an event stream; an overtaken replay
// ends the stream cleanly, and its client resumes with Last-Event-ID.
func (h *Hub) continueStream(t *hubTopic, es *EventStream, rp *replay) {
	if h.closed.Load() || h.topics[t.name] != t || t.hist.esReplays[es] != rp || es.Closed() {
		return
	}
	at := replaySlice(es.r.streamLimit())
	caught, err := h.replaySome(t, rp, h.esReplayWriter(t.name, es, at))
	h.trimFrame()
	switch {
	case err != nil:
		h.l.log.Debug("hub: replay overtaken by the history's bounds", "topic", t.name, "at", rp.cursor, "err", err)
		es.Close()
	case caught:
		h.caughtUpStream(t, es, rp)
	case !es.Closed():
		h.l.pullWhen(es.r.c, at, func() { h.continueStream(t, es, rp) })
	}
}

func (h *Hub) caughtUpStream(t *hubTopic, es *EventStream, rp *replay) {
	delete(t.hist.esReplays, es)
	t.hist.streams[es] = pubsub.Position{}
	for _, fn := range rp.done {
		h.l.safeCall(fn)
	}
}

// backlog is what a replay that did not catch up at once will have
// written in all: what it wrote, and the kept messages from its cursor to
// this loop's head.
func (h *Hub) backlog(t *hubTopic, rp *replay) int {
	th := t.hist
	if rp.cursor.Offset >= 0 && rp.cursor.Epoch == th.last.Epoch {
		return rp.n + int(th.last.Offset-rp.cursor.Offset)
	}
	return rp.n
}

// Loop-only.
// AfterReplay runs fn on the loop once w's replay on topic
// (SubscribeSince) has been written, before any live message, so that
// what fn writes to w (the demo's "subscribed" message) follows the
// replayed messages. A replay larger than half the route's
// MaxUnsentPerConn is written at the pace the client reads, after
// SubscribeSince returned: a write to w right after SubscribeSince would
// land in the middle of it. With no replay in progress (none was needed,
// or it was written whole) fn runs before AfterReplay returns. fn does not
// run if w closes or unsubscribes first. It returns an error wrapping
// ErrNoHistory when w is not subscribed to history topic.
func (h *Hub) AfterReplay(topic string, w *WebSocket, fn func()) error {
	if !h.onLoop() {
		return fmt.Errorf("loop: hub after replay %q: %w", topic, ErrNotOnLoop)
	}
	t := h.topics[topic]
	if t == nil || t.hist == nil || !t.has(w) {
		return fmt.Errorf("loop: hub after replay %q: %w (not subscribed with SubscribeSince)", topic, pubsub.ErrNoHistory)
	}
	if rp := t.hist.wsReplays[w]; rp != nil {
		rp.done = append(rp.done, fn)
		return nil
	}
	fn()
	return nil
}

// Loop-only.
// AfterStreamReplay is AfterReplay for an event stream subscribed with
// SubscribeStream: fn runs once the replayed events have been written (the
// demo's "subscribed" event follows them).
func (h *Hub) AfterStreamReplay(topic string, es *EventStream, fn func()) error {
	if !h.onLoop() {
		return fmt.Errorf("loop: hub after stream replay %q: %w", topic, ErrNotOnLoop)
	}
	t := h.topics[topic]
	if t == nil || t.hist == nil {
		return fmt.Errorf("loop: hub after stream replay %q: %w", topic, pubsub.ErrNoHistory)
	}
	if rp := t.hist.esReplays[es]; rp != nil {
		rp.done = append(rp.done, fn)
		return nil
	}
	if _, ok := t.hist.streams[es]; !ok {
		return fmt.Errorf("loop: hub after stream replay %q: %w (not subscribed with SubscribeStream)", topic, pubsub.ErrNoHistory)
	}
	fn()
	return nil
}
