package main

// The long-poll log over NATS JetStream: one stream in memory storage
// holds the chat for every process on the NATS server; message ids are its
// sequence numbers, and the epoch is its creation time, so every process
// answers with the same ids and epoch, and a cursor is valid on all of them.
//
// Each process reads the stream with one ordered consumer into its feed,
// which every loop's replica copies. Posts go to a goroutine (the loop
// never waits for NATS) that publishes asynchronously; the ack's sequence
// number comes back to the posting loop with AddCallback.
//
// When the NATS server restarts, the memory stream is gone: the first
// process to reconnect creates it again, with a new creation time. Every
// process checks the stream after a reconnect (and every checkEvery, for a
// stream deleted by hand), and on a new one starts its feed over in the new
// epoch. Until that check, messages from a consumer started before the
// reconnect are dropped, so no message of the new stream enters the old
// epoch; the consumer restarts from the feed's next id, so none is lost.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tornago/tornago/loop"
)

const (
	// chatStream and chatSubject name the chat's stream; the subject has
	// natsbroker's "tornago." prefix, under a token no hub topic uses.
	chatStream  = "TORNAGO_LONGPOLL"
	chatSubject = "tornago.longpoll.chat"
	// publishTimeout bounds the wait for a post's ack, and so a post's
	// answer and close.
	publishTimeout = 5 * time.Second
	// checkEvery is how often the stream's identity is checked without a
	// reconnect; retryEvery how soon a failed check is retried.
	checkEvery = 5 * time.Second
	retryEvery = 500 * time.Millisecond
	// maxPosts and maxPostBytes bound the posts waiting for NATS; beyond,
	// /new-message answers 503.
	maxPosts     = 1024
	maxPostBytes = 8 << 20
)

var (
	errNoJetStream  = errors.New("the NATS server has no JetStream")
	errNotConnected = errors.New("not connected to NATS")
	errPostBacklog  = errors.New("too many posts waiting for NATS")
	errLogClosed    = errors.New("the chat log is closed")
)

type jetStreamChatLog struct {
	*chatFeed
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger
	cfg jetstream.StreamConfig

	mu        sync.RWMutex // append holds it shared, close alone
	closed    bool
	closeOnce sync.Once
	posts     chan chatPost
	acks      chan chatAck
	bytes     atomic.Int64 // body bytes of the posts not yet answered
	pubs      sync.WaitGroup

	status  chan nats.Status
	kick    chan struct{}
	quit    chan struct{}
	super   sync.WaitGroup
	checkMu sync.Mutex
	abort   context.CancelFunc // cancels the check running, if any
	cur     *chatConsumer      // the supervisor's (close's, after it ended)
	failed  bool               // the last check failed (logged once per run)
}

type chatPost struct {
	l    *loop.Loop
	data []byte
	done func(int64, error)
}

type chatAck struct {
	p chatPost
	f jetstream.PubAckFuture
}

// chatConsumer is one ordered consumer of the stream, in one epoch.
type chatConsumer struct {
	cc         jetstream.ConsumeContext
	epoch      int64
	reconnects uint64      // nc's count when it started
	stale      atomic.Bool // its deliveries are dropped until replaced
}

func streamEpoch(info *jetstream.StreamInfo) int64 { return info.Created.UnixMicro() }

func newJetStreamChatLog(nc *nats.Conn, o longPollOptions, log *slog.Logger) (*jetStreamChatLog, error) {
	o = o.withDefaults()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishTimeout), jetstream.WithPublishAsyncMaxPending(maxPosts))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	j := &jetStreamChatLog{
		nc: nc, js: js, log: log,
		cfg: jetstream.StreamConfig{
			Name:        chatStream,
			Description: "tornago long-poll chat (the same ids and epoch on every node)",
			Subjects:    []string{chatSubject},
			Storage:     jetstream.MemoryStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxMsgs:     int64(o.MaxMessages),
			MaxBytes:    int64(o.MaxBytes),
			MaxMsgSize:  int32(min(o.MaxMessageBytes, math.MaxInt32)), // our posts have no headers
		},
		posts: make(chan chatPost, maxPosts),
		acks:  make(chan chatAck, maxPosts),
		kick:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
	}
	if mp := nc.MaxPayload(); int64(o.MaxMessageBytes) > mp {
		log.Warn("long-poll chat: messages over the NATS server's max_payload will get 503", "max_payload", mp, "longpoll-message-bytes", o.MaxMessageBytes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The latest node to start sets the limits (its flags win).
	s, err := js.CreateOrUpdateStream(ctx, j.cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // created meanwhile
		s, err = js.Stream(ctx, chatStream)
	}
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) || errors.Is(err, nats.ErrNoResponders) {
		return nil, errNoJetStream
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", chatStream, err)
	}
	epoch := streamEpoch(s.CachedInfo())
	j.chatFeed = newChatFeed(o, epoch)
	j.status = nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING)
	if err := j.startConsumerAt(ctx, epoch, nc.Stats().Reconnects); err != nil {
		nc.RemoveStatusListener(j.status)
		return nil, err
	}
	j.pubs.Add(2)
	go j.publish()
	go j.answer()
	j.super.Add(2)
	go j.supervise()
	go j.watch()
	log.Info("long-poll chat on JetStream", "stream", chatStream, "epoch", epoch, "messages", s.CachedInfo().State.Msgs)
	return j, nil
}

// append implements chatLog.
func (j *jetStreamChatLog) append(l *loop.Loop, body string, done func(int64, error)) error {
	if !j.nc.IsConnected() {
		return errNotConnected
	}
	n := int64(len(body))
	if j.bytes.Add(n) > maxPostBytes {
		j.bytes.Add(-n)
		return errPostBacklog
	}
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.closed {
		j.bytes.Add(-n)
		return errLogClosed
	}
	select {
	case j.posts <- chatPost{l, []byte(body), done}:
		return nil
	default:
		j.bytes.Add(-n)
		return errPostBacklog
	}
}

// publish hands posts to NATS in order; it may wait (PublishAsync stalls
// when too many acks are pending), the loops do not.
func (j *jetStreamChatLog) publish() {
	defer j.pubs.Done()
	defer close(j.acks)
	for p := range j.posts {
		f, err := j.js.PublishAsync(chatSubject, p.data, jetstream.WithExpectStream(chatStream))
		if err != nil {
			j.finish(p, 0, fmt.Errorf("publish: %w", err))
			continue
		}
		j.acks <- chatAck{p, f}
	}
}

// answer waits for each ack (at most publishTimeout) and gives the posting
// loop the message's id.
func (j *jetStreamChatLog) answer() {
	defer j.pubs.Done()
	for a := range j.acks {
		select {
		case ack := <-a.f.Ok():
			j.finish(a.p, int64(ack.Sequence), nil)
		case err := <-a.f.Err():
			j.finish(a.p, 0, fmt.Errorf("publish: %w", err))
		}
	}
}

func (j *jetStreamChatLog) finish(p chatPost, id int64, err error) {
	j.bytes.Add(-int64(len(p.data)))
	p.l.AddCallback(func() { p.done(id, err) })
}

// supervise checks the stream when poked (reconnects, consumer errors, a
// failed check) and every checkEvery, and replaces the consumer when it is
// stale.
func (j *jetStreamChatLog) supervise() {
	defer j.super.Done()
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		select {
		case <-j.quit:
			return
		case <-j.kick:
		case <-t.C:
		}
		if !j.check() {
			time.AfterFunc(retryEvery, j.poke)
		}
	}
}

// watch turns the connection's status changes into checks. A check sent
// on the connection that just dropped would wait for its timeout: it is
// cancelled, and the reconnect's own check follows at once. The reconnect
// count, not this, keeps deliveries in order meanwhile.
func (j *jetStreamChatLog) watch() {
	defer j.super.Done()
	for {
		select {
		case <-j.quit:
			return
		case _, ok := <-j.status:
			if !ok {
				return
			}
			j.checkMu.Lock()
			if j.abort != nil {
				j.abort()
			}
			j.checkMu.Unlock()
			j.poke()
		}
	}
}

// poke asks the supervisor for a check. Goroutine-safe.
func (j *jetStreamChatLog) poke() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// check makes sure the stream exists and the consumer reads it in its
// current epoch, and reports false when it could not (the supervisor
// retries soon). Not connected, it waits for the reconnect. Supervisor
// only.
func (j *jetStreamChatLog) check() bool {
	if !j.nc.IsConnected() {
		return true
	}
	rc := j.nc.Stats().Reconnects // before the check: a reconnect during it makes the consumer stale
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	j.checkMu.Lock()
	j.abort = cancel
	j.checkMu.Unlock()
	defer func() {
		j.checkMu.Lock()
		j.abort = nil
		j.checkMu.Unlock()
		cancel()
	}()
	info, err := j.streamInfo(ctx)
	if err == nil {
		epoch := streamEpoch(info)
		c := j.cur
		if c != nil && !c.stale.Load() && c.reconnects == rc && c.epoch == epoch {
			j.recovered()
			return true
		}
		if e, _ := j.position(); e != epoch {
			j.log.Info("long-poll chat: new stream, new epoch (the NATS server lost the old one)", "stream", chatStream, "epoch", epoch, "old", e)
			j.reset(epoch)
		}
		err = j.startConsumerAt(ctx, epoch, rc)
	}
	if err != nil {
		if !j.failed && ctx.Err() != context.Canceled {
			j.log.Warn("long-poll chat: JetStream check failed; retrying", "err", err)
			j.failed = true
		}
		return false
	}
	j.recovered()
	return true
}

func (j *jetStreamChatLog) recovered() {
	if j.failed {
		j.log.Info("long-poll chat: JetStream back")
	}
	j.failed = false
}

// streamInfo returns the stream's info, creating the stream when the
// server lost it.
func (j *jetStreamChatLog) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	s, err := j.js.Stream(ctx, chatStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = j.js.CreateStream(ctx, j.cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another node was first
			s, err = j.js.Stream(ctx, chatStream)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", chatStream, err)
	}
	return s.CachedInfo(), nil
}

// startConsumerAt replaces the consumer with one reading epoch's stream
// from the feed's next id. Supervisor only (or before it runs).
func (j *jetStreamChatLog) startConsumerAt(ctx context.Context, epoch int64, reconnects uint64) error {
	j.stopConsumer()
	_, next := j.position()
	cons, err := j.js.OrderedConsumer(ctx, chatStream, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       uint64(next), // the oldest kept when those are gone
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("consumer of %s: %w", chatStream, err)
	}
	c := &chatConsumer{epoch: epoch, reconnects: reconnects}
	c.cc, err = cons.Consume(func(m jetstream.Msg) { j.deliver(c, m) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// Mark it before the ordered consumer resets itself: it may
			// reset onto a new stream that took the old one's name.
			c.stale.Store(true)
			j.log.Debug("long-poll chat: consumer error", "err", err)
			j.poke()
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", chatStream, err)
	}
	j.cur = c
	return nil
}

func (j *jetStreamChatLog) stopConsumer() {
	if j.cur != nil {
		j.cur.stale.Store(true)
		j.cur.cc.Stop()
		j.cur = nil
	}
}

// deliver runs on the consumer's goroutine.
func (j *jetStreamChatLog) deliver(c *chatConsumer, m jetstream.Msg) {
	// A message received after a reconnect may come from a new stream of
	// the same name: drop it until check has looked.
	if c.stale.Load() || j.nc.Stats().Reconnects != c.reconnects {
		if !c.stale.Swap(true) {
			j.poke()
		}
		return
	}
	meta, err := m.Metadata()
	if err != nil {
		j.log.Debug("long-poll chat: message without metadata", "err", err)
		return
	}
	j.put(c.epoch, int64(meta.Sequence.Stream), encodeBody(string(m.Data())))
}

// close implements chatLog. Later calls return at once.
func (j *jetStreamChatLog) close() {
	j.closeOnce.Do(func() {
		j.mu.Lock()
		j.closed = true
		close(j.posts)
		j.mu.Unlock()
		j.pubs.Wait()
		close(j.quit)
		j.super.Wait()
		j.stopConsumer()
		if j.status != nil {
			j.nc.RemoveStatusListener(j.status)
		}
	})
}
