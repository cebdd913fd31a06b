package loop

// The Hub's side of topic history: KeepHistory, resuming subscribers
// (SubscribeSince), positioned frames, and reading the history on the loop
// (History, Watch) for transports that are not WebSockets.

import (
	"errors"
	"fmt"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
)

// topicHistory is a history topic's state on one hub. Loop-only.
type topicHistory struct {
	// local is the history itself when the hub has no broker; with a
	// HistoryBroker the broker keeps it and local is nil.
	local *pubsub.HistoryBuffer
	// last is the newest message fanned out on this loop (or the head the
	// broker reported at subscription): a resume replays up to it and the
	// rest arrives live.
	last pubsub.Position
	// pos holds the subscribers that get positioned frames, each with the
	// position it already had when it resumed ahead of this loop (a client
	// that saw more on another node); messages up to it are skipped.
	pos     map[*WebSocket]pubsub.Position
	streams map[*EventStream]pubsub.Position // SubscribeStream's, with pos's skip rule
	// wsReplays and esReplays hold the positioned subscribers whose
	// replay is still being written at their client's pace (hub_replay.go):
	// they are in neither pos nor streams, so that live messages skip
	// them (the replay reaches those in the history).
	wsReplays map[*WebSocket]*replay
	esReplays map[*EventStream]*replay
	watchers  map[*hubWatcher]struct{}
	scratch   []pubsub.Message
	o         pubsub.HistoryOptions // what KeepHistory was given
}

// pendingKeep is a KeepHistory call waiting for the broker, with the dones
// of the calls for the same topic and options made meanwhile.
type pendingKeep struct {
	o     pubsub.HistoryOptions
	dones []func(error)
}

type hubWatcher struct{ fn func(pubsub.Message) }

// Loop-only, or before Start (off the loop: done gets ErrNotOnLoop).
// KeepHistory makes topic keep history within o, from now on, subscribers
// or not: every message published on it gets a Position, SubscribeSince
// resumes a WebSocket after the last position it saw, and History and
// Watch serve other transports (SSE, long polling). Without a broker the
// history is this hub's own, in the loop's memory; with a HistoryBroker
// (MemoryBroker, natsbroker) the broker keeps it and the positions are the
// same on every hub sharing it; with another Broker done gets an error
// wrapping ErrNoHistory. Calling it again for the topic with the same
// options is a no-op; with other options done gets an error wrapping
// pubsub.ErrHistoryOptionsDiffer.
//
// It does not block the loop: the broker's calls (natsbroker's wait for JetStream, up
// to 10 s) run off it, and done (may be nil) runs on the loop with the
// result; until then the topic is not a history topic (SubscribeSince,
// History and Watch return ErrNoHistory). Without a broker the topic keeps
// history when KeepHistory returns. Before the loop starts the broker's
// calls are made on the caller's goroutine and done runs before
// KeepHistory returns, so that the topics are ready for the first client.
func (h *Hub) KeepHistory(topic string, o pubsub.HistoryOptions, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	fail := func(err error) { h.report(done, fmt.Errorf("loop: hub keep history %q: %w", topic, err)) }
	switch {
	case !h.onLoop():
		fail(ErrNotOnLoop)
		return
	case h.closed.Load():
		fail(ErrHubClosed)
		return
	case !o.Keeps():
		fail(fmt.Errorf("%w: no bound set (MaxMessages, MaxBytes or MaxAge)", pubsub.ErrNoHistory))
		return
	}
	differ := func(had pubsub.HistoryOptions) {
		fail(fmt.Errorf("with %+v: %w (%+v)", o, pubsub.ErrHistoryOptionsDiffer, had))
	}
	if t := h.topics[topic]; t != nil && t.hist != nil {
		if t.hist.o != o {
			differ(t.hist.o)
			return
		}
		h.report(done, nil)
		return
	}
	if pk := h.keeping[topic]; pk != nil {
		if pk.o != o {
			differ(pk.o)
			return
		}
		pk.dones = append(pk.dones, done)
		return
	}
	var hb pubsub.HistoryBroker
	switch b := h.broker.(type) {
	case nil:
		local := pubsub.NewHistoryBuffer(o, time.Now().UnixMicro())
		h.installHistory(topic, o, local, local.Head(), nil)
		h.report(done, nil)
		return
	case pubsub.HistoryBroker:
		hb = b
	default:
		fail(fmt.Errorf("%w: the broker (%T) keeps none", pubsub.ErrNoHistory, h.broker))
		return
	}
	pk := &pendingKeep{o: o, dones: []func(error){done}}
	h.keeping[topic] = pk
	bs := &brokerSub{}
	work := func() (pubsub.Position, error) {
		if err := hb.KeepHistory(topic, o); err != nil {
			return pubsub.Position{}, err
		}
		head, cancel, err := hb.SubscribeHistory(topic, func(m pubsub.Message) { h.deliverMessage(topic, bs, m) })
		bs.cancel = cancel
		return head, err
	}
	if h.l.state.Load() == stateNew {
		// Setting up: nothing runs on the loop yet, and the caller may
		// wait (its topics are then ready when the first client comes).
		head, err := work()
		h.kept(topic, pk, bs, head, err)
		return
	}
	h.ops.run(func() {
		head, err := work()
		h.l.AddCallback(func() { h.kept(topic, pk, bs, head, err) })
	})
}

// report gives err to done on the loop (never re-entrantly), or at once
// while setting up.
func (h *Hub) report(done func(error), err error) {
	if h.l.state.Load() == stateNew {
		done(err)
		return
	}
	h.l.AddCallback(func() { done(err) })
}

// kept ends a KeepHistory with a HistoryBroker, on the loop: it makes the
// topic a history topic from head, the broker's position when the hub
// subscribed, and calls the dones.
func (h *Hub) kept(topic string, pk *pendingKeep, bs *brokerSub, head pubsub.Position, err error) {
	if h.keeping[topic] == pk {
		delete(h.keeping, topic)
	}
	switch {
	case h.closed.Load():
		err = ErrHubClosed
	case err == nil:
		h.installHistory(topic, pk.o, nil, head, bs)
	}
	if err != nil {
		h.cancelSub(bs)
		err = fmt.Errorf("loop: hub keep history %q: %w", topic, err)
	}
	setup := h.l.state.Load() == stateNew // the caller's goroutine, before Start
	for _, done := range pk.dones {
		if setup {
			done(err)
		} else {
			h.l.safeCall(func() { done(err) }) // a panic in one must not skip the others
		}
	}
}

// installHistory makes topic a history topic, with local as its history
// (no broker) or bs as its HistoryBroker subscription. Loop-only.
func (h *Hub) installHistory(topic string, o pubsub.HistoryOptions, local *pubsub.HistoryBuffer, last pubsub.Position, bs *brokerSub) {
	th := &topicHistory{local: local, last: last, o: o, pos: map[*WebSocket]pubsub.Position{},
		streams: map[*EventStream]pubsub.Position{}, watchers: map[*hubWatcher]struct{}{},
		wsReplays: map[*WebSocket]*replay{}, esReplays: map[*EventStream]*replay{}}
	h.watch()
	t := h.topics[topic]
	if t == nil {
		t = &hubTopic{name: topic, subs: map[*WebSocket]struct{}{}}
		h.topics[topic] = t
	} else if t.sub != nil {
		h.cancelSub(t.sub) // the plain subscription: deliveries now come with positions
	}
	t.sub, t.hist = bs, th
	if bs == nil {
		return
	}
	// Messages the broker delivered between SubscribeHistory and now
	// reached the loop before t.sub was bs and were ignored: send them
	// from the broker's history (History does not block: see
	// pubsub.Broker).
	msgs, err := h.broker.(pubsub.HistoryBroker).History(topic, last, -1, nil)
	if err != nil {
		h.l.log.Warn("hub: history after subscribing", "topic", topic, "err", err)
	}
	for _, m := range msgs {
		h.fanOutMessage(t, m)
	}
}

// deliverMessage moves a delivery of HistoryBroker subscription bs onto
// the loop; it runs on the broker's goroutine.
func (h *Hub) deliverMessage(topic string, bs *brokerSub, m pubsub.Message) {
	if err := h.l.addDataCallback(len(m.Data), func() {
		if t := h.topics[topic]; t != nil && t.hist != nil && t.sub == bs {
			h.fanOutMessage(t, m)
		}
	}); errors.Is(err, ErrLoopBacklog) {
		// fanOutMessage fetches what was dropped from the broker's
		// history when the next message shows the gap.
		h.dropped.Add(1)
	}
}

// fanOutMessage sends m, the next message of history topic t, to every
// subscriber: framed once without a position for Subscribe's subscribers
// and once with it for SubscribeSince's, then to the watchers. Loop-only.
func (h *Hub) fanOutMessage(t *hubTopic, m pubsub.Message) {
	th := t.hist
	if m.Pos.Epoch == th.last.Epoch {
		if m.Pos.Offset <= th.last.Offset {
			return // already sent (a resubscription's overlap)
		}
		if hb, ok := h.broker.(pubsub.HistoryBroker); ok && m.Pos.Offset > th.last.Offset+1 {
			// Deliveries were dropped for the loop's backlog: send the
			// gap from the broker's history first, so that positioned
			// subscribers miss nothing the history still holds.
			gap, err := hb.History(t.name, th.last, m.Pos.Offset-1, th.scratch[:0])
			for _, g := range gap {
				h.sendMessage(t, g)
			}
			clear(gap)
			th.scratch = gap[:0]
			if err != nil {
				h.l.log.Warn("hub: messages lost for the loop's backlog", "topic", t.name, "from", th.last.Offset+1, "to", m.Pos.Offset-1, "err", err)
			}
		}
	}
	h.sendMessage(t, m)
}

func (h *Hub) sendMessage(t *hubTopic, m pubsub.Message) {
	th := t.hist
	if th.local != nil {
		th.local.Add(m)
	}
	th.last = m.Pos
	if len(t.subs) > 0 {
		h.writeAll(t, prepareMessage(h.typ, m.Data))
	}
	h.tellFollowers(t, m.Data)
	// Positioned subscribers: framed once for this loop, whoever they are.
	var framed []byte
	if h.frameFn != nil && (len(th.pos) > 0 || len(th.streams) > 0) {
		framed = h.frameFn(make([]byte, 0, 64+len(m.Data)), t.name, m.Pos, m.Data)
	}
	if len(th.pos) > 0 {
		frame := framed
		if h.frameFn == nil {
			frame = appendPositioned(make([]byte, 0, 24+len(m.Data)), m)
		}
		p := prepareMessage(h.typ, frame)
		failed := h.failed[:0]
		h.failed = nil // a nested fan-out (from an OnClose) gets its own
		failed = sendPositioned(th.pos, m.Pos, (*WebSocket).writePrepared, p, failed)
		h.forgetFailed(failed)
	}
	if len(th.streams) > 0 {
		data := m.Data
		if h.frameFn != nil {
			data = framed
		}
		ev := prepareEvent(m.Pos.String(), "", data)
		for _, es := range sendPositioned(th.streams, m.Pos, (*EventStream).WritePrepared, ev, nil) {
			h.forgetStream(es)
		}
	}
	for wt := range th.watchers {
		h.l.safeCall(func() { wt.fn(m) })
	}
}

// sendPositioned writes p, the message at pos encoded once, to the
// positioned subscribers subs (SubscribeSince's WebSockets or
// SubscribeStream's event streams) with write, but for those that resumed
// ahead of this loop and have it already (skips). It appends to failed the
// ones whose write failed (closed, or closed as slow consumers) and
// returns it: the caller forgets them once the loop over subs is done.
func sendPositioned[S comparable, P any](subs map[S]pubsub.Position, pos pubsub.Position, write func(S, P) error, p P, failed []S) []S {
	for s, skip := range subs {
		if skips(skip, pos) {
			continue
		}
		if write(s, p) != nil {
			failed = append(failed, s)
		}
	}
	return failed
}

// FrameFunc builds what a history topic's positioned subscribers get for
// one message (see Hub.SetFrame): it appends to dst the application's own
// frame for data, the message at pos on topic, and returns the extended
// buffer. It runs on the loop; data must not be modified or kept.
type FrameFunc func(dst []byte, topic string, pos pubsub.Position, data []byte) []byte

// Loop-only (or before the loop starts).
// SetFrame sets how the messages of history topics are framed for
// SubscribeSince's WebSockets (each message one frame of the hub's type)
// and in the data of SubscribeStream's events (whose id stays the
// position), so that an application with its own envelope (JSON with a
// "pos" field, say) keeps well-formed frames and resume. f runs once per
// loop per live message, whatever the number of subscribers, and once per
// replayed message per resuming subscriber. nil restores the default:
// "E-N\n" + data for WebSockets, data alone for event streams. Set it
// before the first subscriber: a client cannot tell a change apart.
func (h *Hub) SetFrame(f FrameFunc) error {
	if !h.onLoop() {
		return fmt.Errorf("loop: hub set frame: %w", ErrNotOnLoop)
	}
	h.frameFn = f
	return nil
}

// appendFrame appends m as SubscribeSince's subscribers get it: SetFrame's
// function, or appendPositioned.
func (h *Hub) appendFrame(dst []byte, topic string, m pubsub.Message) []byte {
	if h.frameFn != nil {
		return h.frameFn(dst, topic, m.Pos, m.Data)
	}
	return appendPositioned(dst, m)
}

// appendPositioned appends what SubscribeSince's subscribers receive for
// m by default: the position's text form, a newline, then the data ("E-N\n"
// + data). A client keeps the position of the last one it got and resumes
// from it.
func appendPositioned(dst []byte, m pubsub.Message) []byte {
	dst = m.Pos.Append(dst)
	dst = append(dst, '\n')
	return append(dst, m.Data...)
}

// skips reports whether a subscriber that resumed ahead of this loop at
// skip already has the message at p.
func skips(skip, p pubsub.Position) bool {
	return skip.Offset != 0 && skip.Epoch == p.Epoch && p.Offset <= skip.Offset
}

// Loop-only.
// SubscribeSince subscribes w to history topic like Subscribe, except that
// w gets each message as one frame of the hub's type holding the message's
// position, by default the position, a newline, and the data ("E-N\n" +
// data; SetFrame sets the application's own), and that it resumes: with
// since non-zero (the last position w's client got, from any node sharing
// the history), the kept messages after since are written to w first, then
// the live ones, none lost or repeated in between. The zero since (a
// client that has nothing: ParsePosition("")) means from now: nothing old,
// only what comes after. It returns how many messages it replays. When
// the history no longer reaches back to since (dropped by its bounds, or
// since is of an older epoch), or since is beyond it (of a newer epoch, or
// more than pubsub.MaxLead ahead of this loop's head: see
// pubsub.Position.Beyond), w is subscribed anyway, from now on, and the
// error wraps ErrHistoryGone, so that the handler can tell its client to
// reload. A since ahead of the head within MaxLead is this loop lagging:
// nothing is replayed, and the messages up to since are skipped when they
// come.
//
// The replay goes at the pace the client reads: what fits in half the
// route's MaxUnsentPerConn is written before SubscribeSince returns, the
// rest slice by slice as the client reads (no timer or goroutine: the
// subscriber's cursor waits for its output to drain), so that a client
// that keeps up catches up on one connection whatever the history's size,
// and is never taken for a slow consumer. Live messages wait behind the
// replay (it reaches them in the history). Use AfterReplay to write to w
// after the replayed messages. A replay that the history's bounds
// overtake (the topic drops messages before a slow client read them)
// closes w with 1013, and its client resumes.
//
// Replayed frames are copied per subscriber; live ones are framed once per
// loop. With the default framing, the app's own frames to w should not
// start with a digit, so that a client tells them from positioned ones.
func (h *Hub) SubscribeSince(topic string, w *WebSocket, since pubsub.Position) (int, error) {
	if !h.onLoop() {
		return 0, fmt.Errorf("loop: hub subscribe %q: %w", topic, ErrNotOnLoop)
	}
	if h.closed.Load() {
		return 0, fmt.Errorf("loop: hub subscribe %q: %w", topic, ErrHubClosed)
	}
	if !w.writable() {
		return 0, fmt.Errorf("loop: hub subscribe %q: %w", topic, ErrWebSocketClosed)
	}
	t := h.topics[topic]
	if t == nil || t.hist == nil {
		return 0, fmt.Errorf("loop: hub subscribe %q since %s: %w", topic, since, pubsub.ErrNoHistory)
	}
	if t.has(w) {
		return 0, nil
	}
	skip, replaying, err := h.resume(t, since)
	n := 0
	var gone error
	if err != nil {
		gone = fmt.Errorf("loop: hub subscribe %q since %s: %w", topic, since, err)
	}
	if replaying {
		rp := &replay{cursor: since}
		at := replaySlice(w.route().opts.MaxUnsentPerConn)
		caught, err := h.replaySome(t, rp, h.wsReplayWriter(topic, w, at))
		h.trimFrame()
		n = rp.n
		switch {
		case !w.writable():
			return n, fmt.Errorf("loop: hub subscribe %q: %w", topic, ErrWebSocketClosed)
		case err != nil && rp.n == 0:
			gone = fmt.Errorf("loop: hub subscribe %q since %s: %w", topic, since, err)
		case err != nil:
			// The history dropped messages under the replay (MaxAge):
			// the client resumes and learns it then.
			w.Close(CloseTryAgainLater, "history replay fell behind: resume again")
			return n, fmt.Errorf("loop: hub subscribe %q since %s: %w", topic, since, err)
		case !caught:
			// The rest goes at the client's pace (hub_replay.go).
			t.hist.wsReplays[w] = rp
			h.byWS[w] = append(h.byWS[w], t)
			h.l.pullWhen(w.conn(), at, func() { h.continueWS(t, w, rp) })
			return h.backlog(t, rp), nil
		}
	}
	t.hist.pos[w] = skip
	h.byWS[w] = append(h.byWS[w], t)
	return n, gone
}

// resume decides how a subscriber coming back at since starts: with a
// replay of the kept messages after since (replay), or none, with skip,
// what the subscriber already has beyond this loop (it resumed ahead,
// from a node further along, within pubsub.MaxLead), or from now with
// ErrHistoryGone (wrapped) when since is beyond the history
// (pubsub.Position.Beyond). Loop-only.
func (h *Hub) resume(t *hubTopic, since pubsub.Position) (skip pubsub.Position, replay bool, err error) {
	th := t.hist
	switch {
	case since == (pubsub.Position{}):
		return pubsub.Position{}, false, nil // from now (see pubsub.Position)
	case since.Beyond(th.last):
		return pubsub.Position{}, false, beyondErr(since, th.last)
	case !since.Less(th.last):
		// At or ahead of this loop, within MaxLead: nothing to replay,
		// and what the client already has must not be sent again when
		// it arrives.
		return since, false, nil
	}
	return pubsub.Position{}, true, nil
}

// beyondErr is what resuming from since, beyond head (pubsub.Position.Beyond),
// gets: the history as this loop knows it does not reach there.
func beyondErr(since, head pubsub.Position) error {
	if since.Epoch != head.Epoch {
		return fmt.Errorf("%w: %s is of epoch %d, newer than the history's %d", pubsub.ErrHistoryGone, since, since.Epoch, head.Epoch)
	}
	return fmt.Errorf("%w: %s is more than %d (pubsub.MaxLead) ahead of the head %s", pubsub.ErrHistoryGone, since, pubsub.MaxLead, head)
}

// history appends to dst the kept messages after since up to what this
// loop has sent, from the hub's own history or the broker's.
func (h *Hub) history(t *hubTopic, since pubsub.Position, dst []pubsub.Message) ([]pubsub.Message, error) {
	th := t.hist
	if th.local != nil {
		return th.local.After(since, th.last.Offset, time.Now(), dst)
	}
	if since.Epoch != th.last.Epoch {
		return dst, fmt.Errorf("%w: epoch %d is not the history's %d", pubsub.ErrHistoryGone, since.Epoch, th.last.Epoch)
	}
	return h.broker.(pubsub.HistoryBroker).History(t.name, since, th.last.Offset, dst)
}

// Loop-only.
// History appends to dst the kept messages of history topic after since
// that this loop has sent, oldest first, and returns the position of the
// newest one sent (the head: what came after it arrives through Watch).
// When the history no longer reaches back to since, or since is beyond it
// (pubsub.Position.Beyond), it returns dst unchanged and an error wrapping
// ErrHistoryGone. The zero since (a client that has nothing:
// ParsePosition("") or "0-0") means from now, as in SubscribeSince:
// nothing and no error, like a since at the head or ahead of it within
// pubsub.MaxLead (this loop lagging). An Offset of -1 asks for every kept message of since's epoch (a
// client that wants all there is, say the head's epoch). The messages'
// Data must not be modified, and stays valid as long as the caller keeps
// it.
func (h *Hub) History(topic string, since pubsub.Position, dst []pubsub.Message) ([]pubsub.Message, pubsub.Position, error) {
	if !h.onLoop() {
		return dst, pubsub.Position{}, fmt.Errorf("loop: hub history %q: %w", topic, ErrNotOnLoop)
	}
	t := h.topics[topic]
	if t == nil || t.hist == nil {
		return dst, pubsub.Position{}, fmt.Errorf("loop: hub history %q: %w", topic, pubsub.ErrNoHistory)
	}
	head := t.hist.last
	switch {
	case since == (pubsub.Position{}):
		return dst, head, nil // from now
	case since.Beyond(head):
		return dst, head, fmt.Errorf("loop: hub history %q: %w", topic, beyondErr(since, head))
	case !since.Less(head):
		return dst, head, nil // at or ahead of this loop, within MaxLead: nothing yet
	}
	msgs, err := h.history(t, since, dst)
	if err != nil {
		return msgs, head, fmt.Errorf("loop: hub history %q since %s: %w", topic, since, err)
	}
	return msgs, head, nil
}

// Loop-only.
// Head returns the position of the newest message of history topic sent
// on this loop (Offset 0 when none yet in its epoch).
func (h *Hub) Head(topic string) (pubsub.Position, error) {
	if !h.onLoop() {
		return pubsub.Position{}, fmt.Errorf("loop: hub head %q: %w", topic, ErrNotOnLoop)
	}
	t := h.topics[topic]
	if t == nil || t.hist == nil {
		return pubsub.Position{}, fmt.Errorf("loop: hub head %q: %w", topic, pubsub.ErrNoHistory)
	}
	return t.hist.last, nil
}

// Loop-only.
// Watch calls fn on the loop with every message of history topic sent
// after this call, in order, right after the topic's WebSockets got it,
// until cancel is called: a long poll or an SSE stream follows the topic
// with it (History first, then Watch, in one loop turn, misses nothing).
// Like the zero Position elsewhere, it starts from now: nothing old.
// fn must not keep m.Data past its return unless it treats it as
// read-only; a panic in fn is recovered and logged. cancel is loop-only
// too.
func (h *Hub) Watch(topic string, fn func(m pubsub.Message)) (cancel func(), err error) {
	if !h.onLoop() {
		return nil, fmt.Errorf("loop: hub watch %q: %w", topic, ErrNotOnLoop)
	}
	if h.closed.Load() {
		return nil, fmt.Errorf("loop: hub watch %q: %w", topic, ErrHubClosed)
	}
	t := h.topics[topic]
	if t == nil || t.hist == nil {
		return nil, fmt.Errorf("loop: hub watch %q: %w", topic, pubsub.ErrNoHistory)
	}
	wt := &hubWatcher{fn: fn}
	t.hist.watchers[wt] = struct{}{}
	return func() { delete(t.hist.watchers, wt) }, nil
}

// Loop-only.
// PublishAt publishes data on history topic at pos, a position the caller
// computes (a clock's tick can be its second, so that every loop names the
// same tick alike without sharing anything). pos must follow the last
// position: an offset at or below it is ignored, one beyond the next drops
// the kept messages (offsets stay contiguous), and a new epoch starts the
// history over. Only for a hub without a broker. data may be reused once
// PublishAt returns. After Close it returns ErrHubClosed.
func (h *Hub) PublishAt(topic string, pos pubsub.Position, data []byte) error {
	switch {
	case !h.onLoop():
		return fmt.Errorf("loop: hub publish %q at %s: %w", topic, pos, ErrNotOnLoop)
	case h.closed.Load():
		return fmt.Errorf("loop: hub publish %q at %s: %w", topic, pos, ErrHubClosed)
	}
	t := h.topics[topic]
	if t == nil || t.hist == nil || t.hist.local == nil {
		return fmt.Errorf("loop: hub publish %q at %s: %w (PublishAt needs KeepHistory on a hub without a broker)", topic, pos, pubsub.ErrNoHistory)
	}
	h.fanOutMessage(t, pubsub.Message{Pos: pos, Data: append([]byte(nil), data...), Time: time.Now()})
	return nil
}
