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
	seen   map[string]time.Time
	order  []idAt // oldest first, from head
	head   int
}

type idAt struct {
	id string
	at time.Time
}

// Not goroutine-safe.
// Seen reports whether id was added within the window; if not, it adds
// it (now).
func (w *IDWindow) Seen(id string, now time.Time) bool {
	w.expire(now)
	if _, ok := w.seen[id]; ok {
		return true
	}
	if w.seen == nil {
		w.seen = make(map[string]time.Time)
	}
	max := w.Max
	if max <= 0 {
		max = DefaultMaxIDs
	}
	for len(w.seen) >= max {
		w.drop()
	}
	w.seen[id] = now
	w.order = append(w.order, idAt{id, now})
	return false
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

var _ IDPublisher = (*MemoryBroker)(nil)

// Goroutine-safe.
// PublishWithID implements IDPublisher within DefaultIDWindow and
// DefaultMaxIDs (ids per broker, every topic's).
func (b *MemoryBroker) PublishWithID(topic string, data []byte, id string) error {
	if id != "" {
		b.pub.Lock()
		if b.ids == nil {
			b.ids = &IDWindow{}
		}
		seen := b.ids.Seen(fmt.Sprint(len(topic), ":", topic, id), time.Now())
		b.pub.Unlock()
		if seen {
			return nil
		}
	}
	return b.Publish(topic, data)
}
