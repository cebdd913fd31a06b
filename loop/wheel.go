package loop

import "time"

const wheelSlots = 1024 // power of two

// wheel is a hashed timing wheel for per-connection deadlines. Each
// connection embeds its own list node and holds at most one deadline, so an
// idle connection costs no Go timer and no goroutine. Each tick visits one
// slot: the cost per tick is O(entries in that slot), which is the expired
// ones plus the few whose deadline lies more than wheelSlots ticks away.
//
// The wheel also tracks every connection of the loop: one without a
// deadline waits on the idle list, so a connection needs no second pair of
// list links for Shutdown to find it.
type wheel struct {
	l        *Loop
	res      int64
	slots    [wheelSlots]*conn
	idle     *conn   // tracked connections without a deadline
	due      []*conn // scratch of tick
	cur      int64   // last tick processed
	count    int     // connections in slots
	ticking  bool
	tickFn   func()
	tickWhen int64
}

// Values of conn.where.
const (
	onNone uint8 = iota // not tracked (not registered yet, or closed)
	onSlot              // in slots[wexp % wheelSlots]
	onIdle              // on the idle list
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

// unlink takes c off its list; where becomes onNone.
func (w *wheel) unlink(c *conn) {
	var head **conn
	switch c.where {
	case onNone:
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
	if c.dead || c.where == onNone {
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

// clear removes c's deadline. Loop-only.
func (w *wheel) clear(c *conn) {
	if c.where != onSlot {
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
		// Collect first, fire after: a deadline handler may close or
		// re-arm other connections of this slot, which would derail a
		// walk of the list.
		due := w.due[:0]
		for c := w.slots[w.cur&(wheelSlots-1)]; c != nil; c = c.wnext {
			if int32(uint32(w.cur)-c.wexp) >= 0 { // due, modulo 2^32
				due = append(due, c)
			}
		}
		for _, c := range due {
			w.clear(c)
		}
		for i, c := range due {
			due[i] = nil
			// Skip one that an earlier handler re-armed or closed.
			if c.where == onIdle && !c.dead && !c.closing {
				w.l.safeCall(c.onDeadline)
			}
		}
		w.due = due[:0]
	}
	w.cur = now
	if w.count > 0 {
		w.l.timers.add((w.cur+1)*w.res, w.tickFn)
	} else {
		w.ticking = false
	}
}
