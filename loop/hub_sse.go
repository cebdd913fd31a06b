package loop

// The Hub's Server-Sent Events subscribers: a history topic's messages as
// events whose id is the message's position, so that a browser's
// EventSource resumes by itself with Last-Event-ID.

import (
	"fmt"

	"github.com/tornago/tornago/loop/pubsub"
)

// Loop-only.
// SubscribeStream subscribes es, an event stream of the hub's loop, to
// history topic: each message becomes an event with id the message's
// position ("E-N"), type "message" and the message's data (one data: line
// per line of it), or what the hub's SetFrame function makes of it,
// encoded once per loop for every stream. With since non-zero (the
// stream's LastEventID, parsed), the kept messages after it are sent
// first, none lost or repeated before the live ones; the zero since (no
// Last-Event-ID) means from now: nothing old. When the history no longer
// reaches back, or since is beyond it (pubsub.Position.Beyond), es is
// subscribed from now on and the error wraps ErrHistoryGone; a since ahead
// within pubsub.MaxLead is this loop lagging, as in SubscribeSince. It returns how many messages it replayed. A stream that
// ends is dropped from its topics by itself.
func (h *Hub) SubscribeStream(topic string, es *EventStream, since pubsub.Position) (int, error) {
	if !h.onLoop() {
		return 0, fmt.Errorf("loop: hub subscribe stream %q: %w", topic, ErrNotOnLoop)
	}
	if h.closed.Load() {
		return 0, fmt.Errorf("loop: hub subscribe stream %q: %w", topic, ErrHubClosed)
	}
	if es.Closed() {
		return 0, fmt.Errorf("loop: hub subscribe stream %q: %w", topic, ErrStreamClosed)
	}
	t := h.topics[topic]
	if t == nil || t.hist == nil {
		return 0, fmt.Errorf("loop: hub subscribe stream %q since %s: %w", topic, since, pubsub.ErrNoHistory)
	}
	th := t.hist
	if _, ok := th.streams[es]; ok {
		return 0, nil
	}
	if h.unwatchStreams == nil {
		h.unwatchStreams = h.l.onEventStreamClose(h.forgetStream)
	}
	skip, n, err := h.resume(t, since, func(m pubsub.Message) error {
		data := m.Data
		if h.frameFn != nil {
			h.frame = h.frameFn(h.frame[:0], topic, m.Pos, m.Data)
			data = h.frame // Send copies: the buffer serves the next one
		}
		return es.Send(m.Pos.String(), "", data)
	})
	if cap(h.frame) > 64<<10 {
		h.frame = nil // one large message passed through: do not keep its size
	}
	var gone error
	if err != nil {
		gone = fmt.Errorf("loop: hub subscribe stream %q since %s: %w", topic, since, err)
	}
	if es.Closed() {
		return n, fmt.Errorf("loop: hub subscribe stream %q: %w", topic, ErrStreamClosed)
	}
	th.streams[es] = skip
	h.byStream[es] = append(h.byStream[es], t)
	return n, gone
}

// forgetStream drops es from all its topics. Loop-only.
func (h *Hub) forgetStream(es *EventStream) {
	forgetIn(h.byStream, es, func(t *hubTopic) { delete(t.hist.streams, es) })
}
