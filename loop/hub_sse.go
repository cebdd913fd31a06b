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
// within pubsub.MaxLead is this loop lagging, as in SubscribeSince. It
// returns how many messages it replays: as for SubscribeSince, at the
// pace the client reads (half the stream's MaxUnsentPerConn at a time);
// use AfterStreamReplay to send after them. A replay that the history's
// bounds overtake ends the stream cleanly, and the client resumes. A
// stream that ends is dropped from its topics by itself.
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
	if _, ok := th.streams[es]; ok || th.esReplays[es] != nil {
		return 0, nil
	}
	if h.unwatchStreams == nil {
		h.unwatchStreams = h.l.onEventStreamClose(h.forgetStream)
	}
	skip, replaying, err := h.resume(t, since)
	n := 0
	var gone error
	if err != nil {
		gone = fmt.Errorf("loop: hub subscribe stream %q since %s: %w", topic, since, err)
	}
	if replaying {
		rp := &replay{cursor: since}
		at := replaySlice(es.r.streamLimit())
		caught, err := h.replaySome(t, rp, h.esReplayWriter(topic, es, at))
		h.trimFrame()
		n = rp.n
		switch {
		case es.Closed():
			return n, fmt.Errorf("loop: hub subscribe stream %q: %w", topic, ErrStreamClosed)
		case err != nil && rp.n == 0:
			gone = fmt.Errorf("loop: hub subscribe stream %q since %s: %w", topic, since, err)
		case err != nil:
			es.Close() // the history dropped messages under the replay: the client resumes
			return n, fmt.Errorf("loop: hub subscribe stream %q since %s: %w", topic, since, err)
		case !caught:
			// The rest goes at the client's pace (hub_replay.go).
			th.esReplays[es] = rp
			h.byStream[es] = append(h.byStream[es], t)
			h.l.pullWhen(es.r.c, at, func() { h.continueStream(t, es, rp) })
			return h.backlog(t, rp), nil
		}
	}
	th.streams[es] = skip
	h.byStream[es] = append(h.byStream[es], t)
	return n, gone
}

// forgetStream drops es from all its topics. Loop-only.
func (h *Hub) forgetStream(es *EventStream) {
	forgetIn(h.byStream, es, func(t *hubTopic) {
		delete(t.hist.streams, es)
		delete(t.hist.esReplays, es)
	})
}
