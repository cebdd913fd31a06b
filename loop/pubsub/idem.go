package pubsub

import (
	"fmt"
	"time"
)

// IDPublisher is a Broker that drops a publication whose id it already
// published on the same topic within a window: a retried publish (a
// client that sends it again after a reconnect, maybe to another loop or
// process) reaches subscribers once. It is optional: a Hub whose broker
// does not implement it publishes ids' messages with Publish (a loop's
// own window still drops the retries that reach the same loop).
// Goroutine-safe.
type IDPublisher interface {
	Broker
	// PublishWithID is Publish, unless id (non-empty) was published on
	// topic within the broker's window: then it returns nil and publishes
	// nothing.
	PublishWithID(topic string, data []byte, id string) error
}

// AckPublisher is a Broker that tells a publisher where its publication
// was stored: the position a history topic (HistoryBroker.KeepHistory)
// gave it, the same that every subscriber sees, on every node. For an id
// it already published on topic within its window (see IDPublisher) it
// publishes nothing and reports the first publication's position, so
// that a retry gets the same reply as its first attempt, from whichever
// loop or process. Optional: a Hub whose broker lacks it replies without
// positions. Goroutine-safe.
type AckPublisher interface {
	IDPublisher
	// PublishAck is PublishWithID (id may be empty: no deduplication)
	// that reports the outcome to done. When it returns an error nothing
	// was published and done is not called; otherwise done is called
	// exactly once, with the position (zero on a topic without history)
	// or with the error that kept the broker from storing it (the message
	// may or may not have been stored: a retry with the same id is safe).
	// done runs on a goroutine of the broker's choosing: the caller's,
	// before PublishAck returns (MemoryBroker), or one of the broker's
	// own (natsbroker's ack waiter), which is shared by every publication:
	// done must not block nor call the broker (a Hub's only queues the
	// result onto its loop). data may be reused once PublishAck returns.
	PublishAck(topic string, data []byte, id string, done func(Position, error)) error
}

// DefaultIDWindow is how long a broker (and a realtime server) remembers
// a publication's id by default: the window of JetStream's deduplication.
const DefaultIDWindow = 2 * time.Minute

// DefaultMaxIDs bounds the ids an IDWindow remembers by default; past it
// the oldest is forgotten before its time (its retry would publish again).
// Each costs its id (at most a few hundred bytes) plus about 100 bytes.
const DefaultMaxIDs = 100000

// IDWindow remembers ids for a time, within a count: the oldest are
// forgotten first. Not goroutine-safe: its owner holds it under a lock or
// on one loop.
type IDWindow struct {
	Window time.Duration // zero: DefaultIDWindow
	Max    int           // zero: DefaultMaxIDs
	seen   map[string]idSeen
	order  []idAt // oldest first, from head
	head   int
}

type idAt struct {
	id string
	at time.Time
}

// idSeen is what a window keeps with an id: when it was added and the
// position its publication got (zero when none).
type idSeen struct {
	at  time.Time
	pos Position
}

// Not goroutine-safe.
// Seen reports whether id was added within the window; if not, it adds
// it (now).
func (w *IDWindow) Seen(id string, now time.Time) bool {
	_, seen := w.Remember(id, now, Position{})
	return seen
}

// Not goroutine-safe.
// Remember is Seen that keeps pos with a new id: for an id added within
// the window it returns the position kept with it and true; otherwise it
// adds id with pos (now) and returns pos and false.
func (w *IDWindow) Remember(id string, now time.Time, pos Position) (Position, bool) {
	w.expire(now)
	if s, ok := w.seen[id]; ok {
		return s.pos, true
	}
	if w.seen == nil {
		w.seen = make(map[string]idSeen)
	}
	max := w.Max
	if max <= 0 {
		max = DefaultMaxIDs
	}
	for len(w.seen) >= max {
		w.drop()
	}
	w.seen[id] = idSeen{now, pos}
	w.order = append(w.order, idAt{id, now})
	return pos, false
}

// lookup returns the position kept with id and true when id was added
// within the window.
func (w *IDWindow) lookup(id string, now time.Time) (Position, bool) {
	w.expire(now)
	s, ok := w.seen[id]
	return s.pos, ok
}

// Not goroutine-safe.
// Len returns how many ids the window remembers.
func (w *IDWindow) Len() int { return len(w.seen) }

func (w *IDWindow) expire(now time.Time) {
	win := w.Window
	if win <= 0 {
		win = DefaultIDWindow
	}
	for w.head < len(w.order) && now.Sub(w.order[w.head].at) >= win {
		w.drop()
	}
}

// drop forgets the oldest id.
func (w *IDWindow) drop() {
	delete(w.seen, w.order[w.head].id)
	w.order[w.head] = idAt{}
	w.head++
	if w.head > 1024 && w.head*2 > len(w.order) {
		n := copy(w.order, w.order[w.head:])
		clear(w.order[n:])
		w.order, w.head = w.order[:n], 0
	}
}

var (
	_ IDPublisher  = (*MemoryBroker)(nil)
	_ AckPublisher = (*MemoryBroker)(nil)
)

// Goroutine-safe.
// PublishWithID implements IDPublisher within DefaultIDWindow and
// DefaultMaxIDs (ids per broker, every topic's).
func (b *MemoryBroker) PublishWithID(topic string, data []byte, id string) error {
	return b.PublishAck(topic, data, id, nil)
}

// Goroutine-safe.
// PublishAck implements AckPublisher: it publishes as PublishWithID and
// calls done (may be nil) before it returns, on the caller's goroutine,
// after the subscribers got the message, with the position the topic's
// history gave it (zero on a topic without history) or, for an id
// already published on topic within the window, the first publication's
// position. Positions are assigned and ids remembered under one lock, so
// a retry racing its first publication still gets the first's position.
func (b *MemoryBroker) PublishAck(topic string, data []byte, id string, done func(Position, error)) error {
	pos := b.publishAck(topic, data, id)
	if done != nil {
		done(pos, nil)
	}
	return nil
}

// publishAck is PublishAck under pub (released even if a subscriber
// panics): it returns the position.
func (b *MemoryBroker) publishAck(topic string, data []byte, id string) Position {
	b.pub.Lock()
	defer b.pub.Unlock()
	if id == "" {
		return b.publishLocked(topic, data)
	}
	// Under pub: no other publication between the lookup and Remember.
	key, now := fmt.Sprint(len(topic), ":", topic, id), time.Now()
	if b.ids == nil {
		b.ids = &IDWindow{}
	}
	if pos, seen := b.ids.lookup(key, now); seen {
		return pos
	}
	pos := b.publishLocked(topic, data)
	b.ids.Remember(key, now, pos)
	return pos
}
