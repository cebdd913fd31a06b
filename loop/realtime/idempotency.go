package realtime

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
)

// Exactly-once client publish (PROTOCOL.md, publish with idem): a
// Server remembers, per user and key, the publishes of the last
// Limits.IdempotencyWindow (at most Limits.MaxIdempotencyKeys of them,
// the oldest forgotten first), so that a retry gets the first one's
// reply and is not published again. A retry that reaches another loop or
// process is dropped by the broker (pubsub.IDPublisher: MemoryBroker's
// window, JetStream's Nats-Msg-Id) under an id derived from the same
// user and key.

// idemEntry is one remembered publish: under way (waiters wait for its
// result) or done (pos is its reply).
type idemEntry struct {
	key     string
	at      time.Time
	done    bool
	pos     pubsub.Position
	waiters []func(pubsub.Position, error)
}

// idemWindow is a Server's remembered publishes, oldest first in order.
// Loop-only.
type idemWindow struct {
	m     map[string]*idemEntry
	order []*idemEntry
	head  int
}

func (w *idemWindow) expire(now time.Time, win time.Duration) {
	for w.head < len(w.order) && now.Sub(w.order[w.head].at) >= win {
		w.drop()
	}
}

func (w *idemWindow) drop() {
	e := w.order[w.head]
	if w.m[e.key] == e {
		delete(w.m, e.key)
	}
	w.order[w.head] = nil
	w.head++
	if w.head > 1024 && w.head*2 > len(w.order) {
		n := copy(w.order, w.order[w.head:])
		clear(w.order[n:])
		w.order, w.head = w.order[:n], 0
	}
}

func (w *idemWindow) add(e *idemEntry, max int) {
	if w.m == nil {
		w.m = make(map[string]*idemEntry)
	}
	for len(w.m) >= max && w.head < len(w.order) {
		w.drop()
	}
	w.m[e.key] = e
	w.order = append(w.order, e)
}

// idemKey is user's key idem, unambiguous whatever the user id holds.
func idemKey(user, idem string) string {
	return strconv.Itoa(len(user)) + ":" + user + idem
}

// brokerID is the id a broker deduplicates key's publication with: a
// hash, short and free of any byte a NATS header refuses.
func brokerID(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:16])
}

// publishOnce is publish with user's idempotency key idem (none: a plain
// publish): a publish of the same user and key within the window gets
// the first's result (when it comes) rather than publishing again; a
// failed one is forgotten, so that its retry publishes. Loop-only.
func (s *Server) publishOnce(user, idem, topic string, data []byte, done func(pubsub.Position, error)) {
	if idem == "" {
		s.publish(topic, data, done)
		return
	}
	w := &s.idem
	w.expire(time.Now(), s.lim.IdempotencyWindow)
	key := idemKey(user, idem)
	if e := w.m[key]; e != nil {
		if e.done {
			done(e.pos, nil)
		} else {
			e.waiters = append(e.waiters, done)
		}
		return
	}
	e := &idemEntry{key: key, at: time.Now()}
	w.add(e, s.lim.MaxIdempotencyKeys)
	s.publishID(topic, data, brokerID(key), func(pos pubsub.Position, err error) {
		if err != nil {
			if w.m[key] == e {
				delete(w.m, key) // its retry publishes
			}
		} else {
			e.done, e.pos = true, pos
		}
		ws := e.waiters
		e.waiters = nil
		done(pos, err)
		for _, f := range ws {
			f(pos, err)
		}
	})
}
