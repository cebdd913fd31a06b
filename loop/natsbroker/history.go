package natsbroker

// Topic history over JetStream (see the package doc). Who does what:
//
//   - KeepHistory (any goroutine, serialized by hmu) makes the stream,
//     starts the topic's first consumer and only then publishes the topic
//     in the hist map, so that the supervisor never sees a topic without
//     a consumer.
//   - the supervisor goroutine alone replaces consumers afterwards: after
//     each status change of nc (watchStatus pokes it), each consumer error
//     and every HistoryCheckEvery, it checks that every stream exists
//     (making it again when the server lost it) and that the topic's
//     consumer reads it in its current epoch.
//   - each consumer's goroutine adds messages to the topic's replica and
//     calls the subscribers, under the topic's mutex; SubscribeHistory and
//     History take the same mutex (short: no I/O under it), which is what
//     makes head + deliveries exact.
//
// A consumer started before a reconnect may, after it, read a new stream
// that took the old one's name: its deliveries are dropped from the
// reconnect on (it is stale) until the supervisor has looked at the stream
// and started a consumer in the right epoch from the replica's next
// offset, so that no message of a new stream enters the old epoch and
// none is lost.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tornago/tornago/loop/pubsub"
)

const (
	// historyToken is the subject token after the prefix under which
	// history topics publish: prefix + "_h." + topic. Plain topics whose
	// first token is "_h" are refused, so the two never meet.
	historyToken = "_h"
	// streamPrefix starts a history stream's name; hashedPrefix one whose
	// subject was too long to spell out.
	streamPrefix = "TORNAGO_H_"
	hashedPrefix = "TORNAGO_HX_"
	// ackTimeout bounds the wait for a stream's ack of a publication, and
	// Close's wait for those in flight.
	ackTimeout = 5 * time.Second
	// apiTimeout bounds each JetStream API request (stream info, consumer
	// creation) and KeepHistory's wait for the replica to catch up.
	apiTimeout = 10 * time.Second
	// retryEvery is how soon a failed check is retried.
	retryEvery = 500 * time.Millisecond
)

var errReserved = errors.New(`the first token "_h" is reserved for history subjects`)

func reserved(topic string) bool {
	return topic == historyToken || strings.HasPrefix(topic, historyToken+".")
}

// history is the Broker's history state.
type history struct {
	js          jetstream.JetStream
	log         *slog.Logger
	storage     jetstream.StorageType
	checkEvery  time.Duration
	hmu         sync.Mutex // serializes KeepHistory and Close's part
	hclosed     bool
	superActive bool
	hist        atomic.Pointer[map[string]*histTopic] // copy on write, under hmu

	kick    chan struct{}
	quit    chan struct{}
	super   sync.WaitGroup
	checkMu sync.Mutex
	abort   context.CancelFunc // cancels the check running, if any

	lastWarn atomic.Int64 // UnixNano of the last refused-publication warning
}

// histTopic is one history topic's stream and replica.
type histTopic struct {
	topic, subject, stream string
	o                      pubsub.HistoryOptions
	cfg                    jetstream.StreamConfig
	// ready: the stream was checked since the last status change, so
	// Publish sends to it.
	ready atomic.Bool
	// settled: nothing happened since the last check that may have put
	// a new stream (a new epoch) under the topic's name: no status
	// change, no consumer error. gen counts those events. PublishAck's
	// positions need both (ack.go): the epoch of the replica names the
	// stream that acknowledged only while settled.
	settled atomic.Bool
	gen     atomic.Uint64

	mu     sync.Mutex
	buf    *pubsub.HistoryBuffer
	subs   map[*histSub]struct{}
	target int64 // KeepHistory waits for the replica to reach it
	// refused holds the offsets of replica messages Options.Accept refused:
	// they stay in the replica (offsets must stay contiguous) with no data,
	// and History skips them. Entries below the replica's oldest are pruned.
	refused map[int64]struct{}
	caught  chan struct{} // closed when it has, nil once closed

	cur    *histConsumer // the supervisor's (KeepHistory's before, Close's after)
	failed bool          // the last check failed (logged once per run of failures)
}

// histSub is a subscriber: SubscribeHistory's (deliver) or Subscribe's
// (data).
type histSub struct {
	deliver func(pubsub.Message)
	data    func([]byte)
}

// histConsumer is one ordered consumer of a topic's stream, in one epoch.
type histConsumer struct {
	cc         jetstream.ConsumeContext
	epoch      int64
	reconnects uint64      // nc's count when it started
	stale      atomic.Bool // its deliveries are dropped
}

func (b *Broker) initHistory(opts Options) {
	b.log = opts.Logger
	b.checkEvery = opts.HistoryCheckEvery
	b.storage = jetstream.MemoryStorage
	if opts.FileStorage {
		b.storage = jetstream.FileStorage
	}
	b.kick = make(chan struct{}, 1)
	b.quit = make(chan struct{})
	// jetstream.New only builds the context: no request, no subscription
	// until the first asynchronous publication.
	b.js, _ = jetstream.New(b.nc,
		jetstream.WithPublishAsyncTimeout(ackTimeout),
		jetstream.WithPublishAsyncMaxPending(cap(b.queue)),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			b.failed.Add(1)
			b.warnRefused(m.Subject, err)
		}))
}

// histTopic returns topic's history, nil when it keeps none.
func (b *Broker) histTopic(topic string) *histTopic {
	if m := b.hist.Load(); m != nil {
		return (*m)[topic]
	}
	return nil
}

// Goroutine-safe (pure). StreamName returns the JetStream stream name KeepHistory uses for topic
// under prefix: "TORNAGO_H_" followed by the history subject (prefix +
// "_h." + topic) with '.' spelled '_', letters and digits kept and every
// other byte spelled '-' and two hex digits ("tornago." and "room.go":
// TORNAGO_H_tornago_-5Fh_room_go). A name that would pass 200 bytes is
// "TORNAGO_HX_" and a hash of the subject instead. Goroutine-safe.
func StreamName(prefix, topic string) string {
	subject := prefix + historyToken + "." + topic
	var sb strings.Builder
	sb.WriteString(streamPrefix)
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(subject); i++ {
		switch c := subject[i]; {
		case c == '.':
			sb.WriteByte('_')
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			sb.WriteByte(c)
		default:
			sb.WriteByte('-')
			sb.WriteByte(hexDigits[c>>4])
			sb.WriteByte(hexDigits[c&15])
		}
	}
	if sb.Len() > 200 {
		h := sha256.Sum256([]byte(subject))
		return hashedPrefix + hex.EncodeToString(h[:20])
	}
	return sb.String()
}

// Goroutine-safe; it blocks up to its timeout (a Hub calls it off its loop). KeepHistory implements pubsub.HistoryBroker: it makes topic's stream, or
// finds it (a later process's options win: the stream's limits are
// updated to o), and starts this process's replica of it. It returns once
// the replica holds what the stream held when it was called (at most 10
// s), so History then answers for every kept message.
//
// The stream is named StreamName(prefix, topic) and holds the subject
// prefix + "_h." + topic, in the NATS server's memory (Options.FileStorage:
// on its disk), with o's bounds (MaxMessages, MaxBytes, MaxAge) and
// DiscardOld: offsets then grow by one. JetStream's MaxBytes counts each
// message's subject and 16 bytes besides its data, so with MaxBytes the
// stream may keep a few messages fewer than the replica: a process that
// starts later has fewer of them.
//
// Every process must call it for the topic, before subscribing or
// publishing on it: a plain subscription made before does not see the
// history topic's messages. Calling it again with the same options is a
// no-op; with others, an error wrapping pubsub.ErrHistoryOptionsDiffer
// that names both. On a NATS server without JetStream it returns an error
// wrapping pubsub.ErrNoHistory. It waits for NATS (one or
// two requests): call it off the loop, at start. Goroutine-safe.
func (b *Broker) KeepHistory(topic string, o pubsub.HistoryOptions) error {
	if topic == "" || strings.ContainsAny(topic, " \t\r\n*>") {
		return fmt.Errorf("natsbroker: keep history of %q: not a subject", topic)
	}
	if !o.Keeps() {
		return fmt.Errorf("natsbroker: keep history of %q: the options keep nothing: %w", topic, pubsub.ErrNoHistory)
	}
	b.hmu.Lock()
	defer b.hmu.Unlock()
	if b.hclosed {
		return fmt.Errorf("natsbroker: keep history of %q: %w", topic, ErrClosed)
	}
	if t := b.histTopic(topic); t != nil {
		if t.o != o {
			return fmt.Errorf("natsbroker: keep history of %q with %+v: %w (%+v)", topic, o, pubsub.ErrHistoryOptionsDiffer, t.o)
		}
		return nil
	}
	t := &histTopic{
		topic:   topic,
		subject: b.prefix + historyToken + "." + topic,
		stream:  StreamName(b.prefix, topic),
		o:       o,
		subs:    map[*histSub]struct{}{},
	}
	t.cfg = jetstream.StreamConfig{
		Name:        t.stream,
		Description: "tornago hub history of " + topic,
		Subjects:    []string{t.subject},
		Storage:     b.storage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxMsgs:     limit(int64(o.MaxMessages)),
		MaxBytes:    limit(int64(o.MaxBytes)),
		MaxAge:      o.MaxAge,
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	rc := b.nc.Stats().Reconnects
	s, err := b.js.CreateOrUpdateStream(ctx, t.cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // created meanwhile
		s, err = b.js.Stream(ctx, t.stream)
	}
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("natsbroker: keep history of %q: the NATS server has no JetStream (%v): %w", topic, err, pubsub.ErrNoHistory)
	}
	if err != nil {
		return fmt.Errorf("natsbroker: keep history of %q: stream %s: %w", topic, t.stream, err)
	}
	info := s.CachedInfo()
	epoch := streamEpoch(info)
	t.buf = pubsub.NewHistoryBuffer(o, epoch)
	if info.State.Msgs > 0 {
		t.target, t.caught = int64(info.State.LastSeq), make(chan struct{})
	}
	caught := t.caught
	if err := b.startConsumer(ctx, t, epoch, rc); err != nil {
		return fmt.Errorf("natsbroker: keep history of %q: %w", topic, err)
	}
	if caught != nil {
		select {
		case <-caught:
		case <-ctx.Done():
			b.log.Warn("natsbroker: history replica still catching up", "topic", topic, "stream", t.stream, "want", t.target)
		}
	}
	t.ready.Store(true)
	t.settled.Store(true)
	next := map[string]*histTopic{topic: t}
	if m := b.hist.Load(); m != nil {
		for k, v := range *m {
			next[k] = v
		}
	}
	b.hist.Store(&next)
	if !b.superActive {
		b.superActive = true
		b.super.Add(1)
		go b.supervise()
	}
	if b.nc.Stats().Reconnects != rc { // watchStatus did not see t yet
		t.ready.Store(false)
		t.unsettle()
		b.poke()
	}
	return nil
}

// limit is a JetStream limit: -1 for none.
func limit(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

func streamEpoch(info *jetstream.StreamInfo) int64 { return info.Created.UnixMicro() }

// Goroutine-safe; it may block (a Hub calls it off its loop). SubscribeHistory implements pubsub.HistoryBroker. head is the replica's
// newest position; deliver then gets every message the replica adds, in
// order, once each, with nothing between head and the first (it is called
// under the topic's lock, which SubscribeHistory held to read head).
// Messages of a new epoch (the stream was lost and made again) start at
// offset 1. After an outage longer than the stream's bounds cover, the
// offsets may jump: the stream dropped the messages in between, which a
// subscriber can treat as ErrHistoryGone. deliver runs on the topic's consumer goroutine and must not
// block nor call the broker for the topic (a Hub's only queues onto its
// loop); it may keep m.Data but must not modify it (every subscriber and
// the replica share it). No deliver runs once cancel or Close has
// returned. Goroutine-safe; it waits for no I/O.
func (b *Broker) SubscribeHistory(topic string, deliver func(m pubsub.Message)) (pubsub.Position, func(), error) {
	t := b.histTopic(topic)
	if t == nil {
		return pubsub.Position{}, nil, fmt.Errorf("natsbroker: subscribe to the history of %q: %w", topic, pubsub.ErrNoHistory)
	}
	s := &histSub{deliver: deliver}
	t.mu.Lock()
	head := t.buf.Head()
	t.subs[s] = struct{}{}
	t.mu.Unlock()
	return head, func() { t.unsubscribe(s) }, nil
}

func (t *histTopic) subscribe(s *histSub) func() {
	t.mu.Lock()
	t.subs[s] = struct{}{}
	t.mu.Unlock()
	return func() { t.unsubscribe(s) }
}

func (t *histTopic) unsubscribe(s *histSub) {
	t.mu.Lock()
	delete(t.subs, s)
	t.mu.Unlock()
}

// Goroutine-safe, non-blocking: it answers from memory (a loop calls it). History implements pubsub.HistoryBroker from this process's replica,
// without asking NATS: a message another process published is there once
// this process's consumer got it (usually within a millisecond of its
// ack). The messages' Data is shared and must not be modified. An after
// past the replica's head (a client that saw more on a process further
// along) gives nothing and no error. Goroutine-safe; it waits for no I/O.
func (b *Broker) History(topic string, after pubsub.Position, upTo int64, dst []pubsub.Message) ([]pubsub.Message, error) {
	t := b.histTopic(topic)
	if t == nil {
		return dst, fmt.Errorf("natsbroker: history of %q: %w", topic, pubsub.ErrNoHistory)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	from := len(dst)
	dst, err := t.buf.After(after, upTo, time.Now(), dst)
	if len(t.refused) > 0 {
		kept := dst[:from]
		for _, m := range dst[from:] {
			if _, bad := t.refused[m.Pos.Offset]; !bad {
				kept = append(kept, m)
			}
		}
		clear(dst[len(kept):])
		dst = kept
	}
	if err != nil {
		return dst, fmt.Errorf("natsbroker: history of %q: %w", topic, err)
	}
	return dst, nil
}

// publishHistory hands p to its stream; the ack (or its absence) is
// handled by the JetStream context's handlers. Publishing goroutine only.
func (b *Broker) publishHistory(p publication) {
	// The stall wait bounds this goroutine's wait when MaxPending acks
	// are due; meanwhile the queue fills and Publish says ErrBacklog.
	opts := []jetstream.PublishOpt{jetstream.WithStallWait(ackTimeout)}
	var epoch int64
	var gen uint64
	settled := false
	if p.ack != nil { // before the publication: what the ack is checked against
		gen, settled = p.hist.gen.Load(), p.hist.settled.Load()
		p.hist.mu.Lock()
		epoch = p.hist.buf.Head().Epoch
		p.hist.mu.Unlock()
	}
	if p.id != "" {
		opts = append(opts, jetstream.WithMsgID(p.id))
	}
	f, err := b.js.PublishAsync(p.hist.subject, p.data, opts...)
	if err != nil {
		b.failed.Add(1)
		b.warnRefused(p.hist.subject, err)
		if p.ack != nil {
			p.ack(pubsub.Position{}, fmt.Errorf("natsbroker: publish %q to stream %s: %w", p.topic, p.hist.stream, err))
		}
		return
	}
	if p.ack != nil {
		// Bounded: when the waiter lags MaxPending acks behind, this
		// goroutine waits (each of its waits is bounded) and Publish says
		// ErrBacklog meanwhile.
		b.acks <- pendingAck{f: f, t: p.hist, done: p.ack, by: time.Now().Add(ackTimeout + ackGrace), epoch: epoch, gen: gen, settled: settled}
	}
}

// warnRefused logs a refused history publication, at most one every 5 s.
func (b *Broker) warnRefused(subject string, err error) {
	now := time.Now().UnixNano()
	if last := b.lastWarn.Load(); now-last < int64(5*time.Second) || !b.lastWarn.CompareAndSwap(last, now) {
		return
	}
	b.log.Warn("natsbroker: a history publication was not stored (more may follow, counted in Failed)", "subject", subject, "err", err, "failed", b.failed.Load())
}

// historyStatusChanged: nc's status changed. Every stream must be checked
// before it takes publications again; a check in flight on the connection
// that just dropped would wait for its timeout: it is cancelled, and the
// new check follows at once. watchStatus only.
func (b *Broker) historyStatusChanged() {
	m := b.hist.Load()
	if m == nil {
		return
	}
	for _, t := range *m {
		t.ready.Store(false)
		t.unsettle()
	}
	b.checkMu.Lock()
	if b.abort != nil {
		b.abort()
	}
	b.checkMu.Unlock()
	b.poke()
}

// poke asks the supervisor for a check. Goroutine-safe.
func (b *Broker) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// supervise checks the streams when poked and every checkEvery.
func (b *Broker) supervise() {
	defer b.super.Done()
	tick := time.NewTicker(b.checkEvery)
	defer tick.Stop()
	for {
		select {
		case <-b.quit:
			return
		case <-b.kick:
		case <-tick.C:
		}
		if !b.checkAll() {
			time.AfterFunc(retryEvery, b.poke)
		}
	}
}

// checkAll checks every history topic and reports false when one check
// failed. Not connected, it waits for the reconnect. Supervisor only.
func (b *Broker) checkAll() bool {
	m := b.hist.Load()
	if m == nil || !b.nc.IsConnected() {
		return true
	}
	rc := b.nc.Stats().Reconnects // before the checks: a reconnect during one makes its consumer stale
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	b.checkMu.Lock()
	b.abort = cancel
	b.checkMu.Unlock()
	defer func() {
		b.checkMu.Lock()
		b.abort = nil
		b.checkMu.Unlock()
		cancel()
	}()
	ok := true
	for _, t := range *m {
		if ctx.Err() != nil {
			return false
		}
		ok = b.check(ctx, t, rc) && ok
	}
	return ok
}

// check makes sure t's stream exists and t's consumer reads it in its
// current epoch. Supervisor only.
func (b *Broker) check(ctx context.Context, t *histTopic, rc uint64) bool {
	gen := t.gen.Load()
	info, err := b.streamInfo(ctx, t)
	if err == nil {
		epoch := streamEpoch(info)
		c := t.cur
		if c == nil || c.stale.Load() || c.reconnects != rc || c.epoch != epoch {
			err = b.startConsumer(ctx, t, epoch, rc)
		}
	}
	if err != nil {
		if !t.failed && ctx.Err() != context.Canceled {
			b.log.Warn("natsbroker: history stream check failed; retrying", "topic", t.topic, "stream", t.stream, "err", err)
			t.failed = true
		}
		return false
	}
	if t.failed {
		b.log.Info("natsbroker: history stream back", "topic", t.topic, "stream", t.stream)
		t.failed = false
	}
	t.ready.Store(true)
	if t.gen.Load() == gen { // else the event poked: another check follows
		t.settled.Store(true)
	}
	return true
}

// unsettle notes an event that may have put a new stream under t's name.
func (t *histTopic) unsettle() {
	t.settled.Store(false)
	t.gen.Add(1)
}

// streamInfo returns t's stream's info, making the stream when the server
// lost it.
func (b *Broker) streamInfo(ctx context.Context, t *histTopic) (*jetstream.StreamInfo, error) {
	s, err := b.js.Stream(ctx, t.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = b.js.CreateStream(ctx, t.cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another process was first
			s, err = b.js.Stream(ctx, t.stream)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", t.stream, err)
	}
	return s.CachedInfo(), nil
}

// startConsumer replaces t's consumer with one reading epoch's stream
// from the replica's next offset, after resetting the replica when epoch
// is new. Supervisor only (KeepHistory's before the supervisor sees t).
func (b *Broker) startConsumer(ctx context.Context, t *histTopic, epoch int64, reconnects uint64) error {
	stopConsumer(t)
	t.mu.Lock()
	if old := t.buf.Head().Epoch; old != epoch {
		b.log.Info("natsbroker: new history stream, new epoch (the NATS server lost the old one)", "topic", t.topic, "stream", t.stream, "epoch", epoch, "old", old)
		t.buf.Reset(epoch)
		clear(t.refused)
	}
	next := t.buf.Next().Offset
	t.mu.Unlock()
	cons, err := b.js.OrderedConsumer(ctx, t.stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       uint64(next), // the oldest kept when those are gone
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("consumer of %s: %w", t.stream, err)
	}
	c := &histConsumer{epoch: epoch, reconnects: reconnects}
	c.cc, err = cons.Consume(func(m jetstream.Msg) { b.deliver(t, c, m) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// Mark it before the ordered consumer resets itself: it may
			// reset onto a new stream that took the old one's name.
			c.stale.Store(true)
			t.unsettle()
			b.log.Debug("natsbroker: history consumer error", "topic", t.topic, "err", err)
			b.poke()
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", t.stream, err)
	}
	t.cur = c
	return nil
}

// stopConsumer stops t's consumer; once it returns, none of its
// deliveries reaches the replica.
func stopConsumer(t *histTopic) {
	c := t.cur
	if c == nil {
		return
	}
	t.cur = nil
	c.stale.Store(true)
	c.cc.Stop()
	// deliver checks stale under mu: one that passed the check holds mu,
	// so this empty section waits for it.
	t.mu.Lock()
	t.mu.Unlock() //nolint:staticcheck // the barrier

}

// deliver adds m to t's replica and hands it to t's subscribers. It runs
// on c's goroutine.
func (b *Broker) deliver(t *histTopic, c *histConsumer, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		b.log.Debug("natsbroker: history message without metadata", "topic", t.topic, "err", err)
		return
	}
	// A message received after a reconnect may come from a new stream of
	// the same name: drop it until check has looked.
	if c.stale.Load() || b.nc.Stats().Reconnects != c.reconnects {
		if !c.stale.Swap(true) {
			t.unsettle()
			b.poke()
		}
		return
	}
	msg := pubsub.Message{
		Pos:  pubsub.Position{Epoch: c.epoch, Offset: int64(meta.Sequence.Stream)},
		Data: m.Data(), // nats.go allocated it for this message alone
		Time: meta.Timestamp,
	}
	ok := b.accepts(t.topic, msg.Data)
	if !ok {
		msg.Data = nil // its offset stays taken; its bytes go now
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.stale.Load() {
		return
	}
	if epoch := t.buf.Head().Epoch; epoch != msg.Pos.Epoch {
		clear(t.refused) // Add resets the replica to the new epoch
	}
	if !t.buf.Add(msg) {
		return
	}
	if t.caught != nil && msg.Pos.Offset >= t.target {
		close(t.caught)
		t.caught = nil
	}
	if len(t.refused) > 0 {
		// The replica's offsets are contiguous: the oldest kept is the
		// head's minus the count.
		oldest := t.buf.Head().Offset - int64(t.buf.Len()) + 1
		for off := range t.refused {
			if off < oldest {
				delete(t.refused, off)
			}
		}
	}
	if !ok {
		if t.refused == nil {
			t.refused = map[int64]struct{}{}
		}
		t.refused[msg.Pos.Offset] = struct{}{}
		return
	}
	for s := range t.subs {
		if s.deliver != nil {
			s.deliver(msg)
		} else {
			s.data(msg.Data)
		}
	}
}

// closeHistory waits for the history publications' acks (at most
// ackTimeout), ends the supervisor and stops the consumers. Close only,
// after the publishing goroutine ended.
func (b *Broker) closeHistory() {
	b.hmu.Lock()
	b.hclosed = true
	active := b.superActive
	b.hmu.Unlock()
	if !active {
		return
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-time.After(ackTimeout):
		b.log.Warn("natsbroker: closing with history publications not acknowledged", "pending", b.js.PublishAsyncPending())
	}
	close(b.quit)
	b.super.Wait()
	if m := b.hist.Load(); m != nil {
		for _, t := range *m {
			stopConsumer(t)
		}
	}
}
