package loop

import "time"

const wheelSlots = 1024 // power of two

// wheel is a hashed timing wheel for per-connection deadlines. Each
// connection embeds its own list node and holds at most one deadline, so an
// idle connection costs no Go timer and no goroutine. Each tick visits one
// slot: the cost per tick is O(entries in that slot), which is the expired
// ones plus the few whose deadline lies more than wheelSlots ticks away.
type wheel struct {
	l        *Loop
	res      int64
	slots    [wheelSlots]*conn
	cur      int64 // last tick processed
	count    int
	ticking  bool
	tickFn   func()
	tickWhen int64
}

func (w *wheel) init(l *Loop, res time.Duration) {
	w.l = l
	w.res = int64(res)
	w.tickFn = w.tick
}

// set gives c a deadline d from now, replacing any earlier one. Loop-only.
func (w *wheel) set(c *conn, d time.Duration) {
	w.clear(c)
	if c.dead {
		return // closed inside a write of the code now setting a deadline
	}
	if w.count == 0 {
		w.cur = w.l.now() / w.res
	}
	exp := (w.l.now() + int64(d) + w.res - 1) / w.res
	if exp <= w.cur {
		exp = w.cur + 1
	}
	c.wexp = uint32(exp)
	s := &w.slots[exp&(wheelSlots-1)]
	c.wnext = *s
	c.wprev = nil
	if *s != nil {
		(*s).wprev = c
	}
	*s = c
	c.winWheel = true
	w.count++
	if !w.ticking {
		w.ticking = true
		w.l.timers.add((w.cur+1)*w.res, w.tickFn)
	}
}

// clear removes c's deadline. Loop-only.
func (w *wheel) clear(c *conn) {
	if !c.winWheel {
		return
	}
	if c.wprev != nil {
		c.wprev.wnext = c.wnext
	} else {
		w.slots[c.wexp&(wheelSlots-1)] = c.wnext
	}
	if c.wnext != nil {
		c.wnext.wprev = c.wprev
	}
	c.wnext, c.wprev, c.winWheel = nil, nil, false
	w.count--
}

func (w *wheel) tick() {
	now := w.l.now() / w.res
	for w.cur < now && w.count > 0 {
		w.cur++
		s := &w.slots[w.cur&(wheelSlots-1)]
		for c := *s; c != nil; {
			next := c.wnext
			if int32(uint32(w.cur)-c.wexp) >= 0 { // due, modulo 2^32
				w.clear(c)
				w.l.safeCall(c.onDeadline)
			}
			c = next
		}
	}
	w.cur = now
	if w.count > 0 {
		w.l.timers.add((w.cur+1)*w.res, w.tickFn)
	} else {
		w.ticking = false
	}
}
