package loop

// The Hub's Server-Sent Events subscribers: a history topic's messages as
// events whose id is the message's position, so that a browser's
// EventSource resumes by itself with Last-Event-ID.

import "github.com/tornago/tornago/loop/pubsub"
import "fmt"

// SubscribeStream subscribes es, an event stream of the hub's loop, to
// history topic: each message becomes an event with id the message's
// position ("E-N"), type "message" and the message's data (one data: line
// per line of it), encoded once per loop for every stream. With since
// non-zero (the stream's LastEventID, parsed), the kept messages after it
// are sent first, none lost or repeated before the live ones; when the
// history no longer reaches back, es is subscribed from now on and the
// error wraps ErrHistoryGone. It returns how many messages it replayed. A
// stream that ends is dropped from its topics by itself. Loop-only.
func (h *Hub) SubscribeStream(topic string, es *EventStream, since pubsub.Position) (int, error) {
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
	skip, n, err := h.resume(t, since, func(m pubsub.Message) error { return es.Send(m.Pos.String(), "", m.Data) })
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
	ts, ok := h.byStream[es]
	if !ok {
		return
	}
	delete(h.byStream, es)
	for _, t := range ts {
		delete(t.hist.streams, es)
	}
}

// sendStreams writes m to t's event streams, encoded once.
func (h *Hub) sendStreams(t *hubTopic, m pubsub.Message) {
	th := t.hist
	ev := PrepareEvent(m.Pos.String(), "", m.Data)
	var failed []*EventStream
	for es, skip := range th.streams {
		if skips(skip, m.Pos) {
			continue
		}
		if es.WritePrepared(ev) != nil {
			failed = append(failed, es)
		}
	}
	for _, es := range failed {
		h.forgetStream(es)
	}
}
