package loop

import "time"

const wheelSlots = 1024 // power of two

// wheelBatch bounds the deadlines one turn of the loop fires; the rest wait
// for the next turn, after the loop has polled its sockets. A tick at a
// million connections holds some 20,000 ping deadlines: fired at once (about
// 10 µs each, mostly the ping's write) they would stall every other
// connection for 0.2 s; in batches of 64 a turn stays under a millisecond.
const wheelBatch = 64

// wheel is a hashed timing wheel for per-connection deadlines. Each
// connection embeds its own list node and holds at most one deadline, so an
// idle connection costs no Go timer and no goroutine. Each tick visits one
// slot: the cost per tick is O(entries in that slot), which is the expired
// ones plus the few whose deadline lies more than wheelSlots ticks away.
//
// The wheel also tracks every connection of the loop: one without a
// deadline waits on the idle list, so a connection needs no second pair of
// list links for Stop to find it.
type wheel struct {
	l       *Loop
	res     int64
	slots   [wheelSlots]*conn
	idle    *conn   // tracked connections without a deadline
	due     []*conn // deadlines passed, waiting for their batch (where == onDue)
	dueAt   int     // due[:dueAt] have fired
	cur     int64   // last tick processed
	count   int     // connections in slots
	ticking bool
	tickFn  func()
}

// Values of conn.where.
const (
	onNone uint8 = iota // not tracked (not registered yet, or closed)
	onSlot              // in slots[wexp % wheelSlots]
	onIdle              // on the idle list
	onDue               // in wheel.due: its deadline passed and fires in a coming batch
)

// track adds a newly registered connection, without a deadline. Loop-only.
func (w *wheel) track(c *conn) {
	if c.where == onNone {
		w.link(&w.idle, c)
		c.where = onIdle
	}
}

// untrack forgets a closed connection. Loop-only.
func (w *wheel) untrack(c *conn) {
	w.unlink(c)
}

func (w *wheel) link(head **conn, c *conn) {
	c.wprev = nil
	c.wnext = *head
	if *head != nil {
		(*head).wprev = c
	}
	*head = c
}

// unlink takes c off its list (or out of the due batch); where becomes
// onNone.
func (w *wheel) unlink(c *conn) {
	var head **conn
	switch c.where {
	case onNone:
		return
	case onDue:
		c.where = onNone // its entry in due is skipped
		return
	case onSlot:
		head = &w.slots[c.wexp&(wheelSlots-1)]
		w.count--
	default:
		head = &w.idle
	}
	if c.wprev != nil {
		c.wprev.wnext = c.wnext
	} else {
		*head = c.wnext
	}
	if c.wnext != nil {
		c.wnext.wprev = c.wprev
	}
	c.wnext, c.wprev, c.where = nil, nil, onNone
}

// each calls fn for every tracked connection; fn may change deadlines or
// close connections. Loop-only.
func (w *wheel) each(fn func(*conn)) {
	var all []*conn
	for c := w.idle; c != nil; c = c.wnext {
		all = append(all, c)
	}
	for _, head := range w.slots {
		for c := head; c != nil; c = c.wnext {
			all = append(all, c)
		}
	}
	for _, c := range w.due[w.dueAt:] {
		if c != nil && c.where == onDue {
			all = append(all, c)
		}
	}
	for _, c := range all {
		fn(c)
	}
}

func (w *wheel) init(l *Loop, res time.Duration) {
	w.l = l
	w.res = int64(res)
	w.tickFn = w.tick
}

// set gives c a deadline d from now, replacing any earlier one. Loop-only.
func (w *wheel) set(c *conn, d time.Duration) {
	if c.cf.has(cfDead) || c.where == onNone {
		return // closed (maybe inside a write of the code now setting a deadline)
	}
	w.unlink(c)
	if w.count == 0 {
		w.cur = w.l.now() / w.res
	}
	exp := (w.l.now() + int64(d) + w.res - 1) / w.res
	if exp <= w.cur {
		exp = w.cur + 1
	}
	c.wexp = uint32(exp)
	w.link(&w.slots[exp&(wheelSlots-1)], c)
	c.where = onSlot
	w.count++
	if !w.ticking {
		w.ticking = true
		w.l.timers.add((w.cur+1)*w.res, w.tickFn)
	}
}

// clear removes c's deadline, also one that passed and waits to fire.
// Loop-only.
func (w *wheel) clear(c *conn) {
	if c.where != onSlot && c.where != onDue {
		return
	}
	w.unlink(c)
	w.link(&w.idle, c)
	c.where = onIdle
}

func (w *wheel) tick() {
	now := w.l.now() / w.res
	for w.cur < now && w.count > 0 {
		w.cur++
		s := &w.slots[w.cur&(wheelSlots-1)]
		for c := *s; c != nil; {
			next := c.wnext
			if int32(uint32(w.cur)-c.wexp) >= 0 { // due, modulo 2^32
				w.unlink(c)
				c.where = onDue
				w.due = append(w.due, c)
			}
			c = next
		}
	}
	w.cur = now
	for n := 0; n < wheelBatch && w.dueAt < len(w.due); {
		c := w.due[w.dueAt]
		w.due[w.dueAt] = nil
		w.dueAt++
		if c.where != onDue {
			continue // re-armed, cleared or closed since it fell due
		}
		w.link(&w.idle, c)
		c.where = onIdle
		n++
		w.l.safeCall(c.onDeadline)
	}
	if w.dueAt < len(w.due) {
		// More fell due than one batch: go on in the loop's next turn,
		// after it polled its sockets.
		w.l.nextTurn(w.tickFn)
		return
	}
	w.due, w.dueAt = w.due[:0], 0
	if w.count > 0 {
		w.l.timers.add((w.cur+1)*w.res, w.tickFn)
	} else {
		w.ticking = false
	}
}
