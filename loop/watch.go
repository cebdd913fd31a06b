package loop

import (
	"runtime"
	"runtime/debug"
	"time"
)

// Unsent output. gnet tells nothing when a connection's outbound buffer
// drains, so the loop keeps the connections that have unsent output on one
// list and looks at them every watchPoll while the list is not empty: the
// cost is O(connections with unsent output), never O(connections). The same
// pass recomputes the loop-wide total that Options.MaxUnsentTotal bounds.

// watchPoll is how often the watched connections are looked at: the delay
// between a drained output and the close or the resumed read it allows.
const watchPoll = 5 * time.Millisecond

// watch puts c on the list of connections with unsent output. Loop-only.
func (l *Loop) watch(c *conn) {
	if c.cf.has(cfWatched) || c.cf.has(cfDead) {
		return
	}
	c.cf.set(cfWatched, true)
	l.watched = append(l.watched, c)
	l.armWatch()
}

// armWatch makes sure pollWatched runs in watchPoll. Loop-only.
func (l *Loop) armWatch() {
	if !l.watchArmed {
		l.watchArmed = true
		l.timers.add(l.now()+int64(watchPoll), l.watchFn)
	}
}

// pull is a writer waiting for a connection's unsent output to fall to at
// bytes (pullWhen).
type pull struct {
	c  *conn
	at int
	fn func()
}

// pullWhen runs fn once, on the loop, when c's unsent output is at or
// under at bytes: a writer with more to say than a connection should hold
// (a hub's replay of a large history) writes a slice, then waits here for
// the client to read it, so that it goes at the client's pace and never
// trips the slow-consumer bound. The wait costs one entry on a list polled
// with the watched connections (every watchPoll), no timer or goroutine of
// its own; it is dropped when c closes. Loop-only.
func (l *Loop) pullWhen(c *conn, at int, fn func()) {
	if c.cf.has(cfDead) || c.cf.has(cfClosing) {
		return
	}
	l.pulls = append(l.pulls, pull{c, at, fn})
	l.armWatch()
}

// runPulls runs the pulls whose connection drained enough, keeps the
// others, and drops those of closed connections. Loop-only.
func (l *Loop) runPulls() {
	list := l.pulls
	l.pulls = l.pullSpare[:0] // a pull that runs may queue itself again
	for i, p := range list {
		list[i] = pull{}
		switch {
		case p.c.cf.has(cfDead) || p.c.cf.has(cfClosing):
		case p.c.gc.OutboundBuffered() > p.at:
			l.pulls = append(l.pulls, p)
		default:
			l.safeCall(p.fn)
		}
	}
	l.pullSpare = list[:0]
}

// pollWatched closes the closing connections whose output drained, resumes
// reading on paused ones, and recomputes the unsent total. Loop-only.
func (l *Loop) pollWatched() {
	l.watchArmed = false
	list := l.watched
	l.watched = l.watchSpare[:0]
	total := 0
	for i, c := range list {
		list[i] = nil
		if c.cf.has(cfDead) {
			c.cf.set(cfWatched, false)
			continue
		}
		b := c.gc.OutboundBuffered()
		if b == 0 {
			c.cf.set(cfWatched, false)
			c.drained()
			continue
		}
		if c.cf.has(cfPaused) && b <= c.resumeAt() {
			c.drained()
		}
		total += b
		l.watched = append(l.watched, c)
	}
	l.watchSpare = list[:0]
	l.unsent, l.unsentAt = total, l.now()
	l.unsentPub.Store(int64(total))
	if len(l.pulls) > 0 {
		l.runPulls()
	}
	if len(l.watched) > 0 || len(l.pulls) > 0 {
		l.armWatch()
	}
}

// drained runs when c's output drained (or fell under the resume mark).
func (c *conn) drained() {
	switch {
	case c.cf.has(cfClosing):
		c.proceedClose()
	case c.cf.has(cfPaused):
		c.cf.set(cfPaused, false)
		if c.gc.InboundBuffered() > 0 {
			c.gc.Wake(nil) // gnet calls OnTraffic only for new socket data
		}
	}
}

// resumeAt is the unsent output under which a paused connection reads again.
func (c *conn) resumeAt() int { return c.outLimit() / 2 }

// outLimit is the unsent output one connection may have before it counts as
// a slow consumer (WebSocket) or stops reading requests (HTTP).
func (c *conn) outLimit() int {
	if c.kind == kindWS {
		return c.ws().route().opts.MaxUnsentPerConn
	}
	if c.kind == kindHTTP {
		return c.http().app.opts.MaxUnsentPerConn
	}
	return 1 << 20
}

// writePiece bounds the slices a large payload is handed to gnet in.
// gnet copies what the socket does not take into buffers from its pool,
// one per slice, sized to the next power of two: one 64 MiB echo took a
// fresh 64 MiB buffer (allocated and zeroed on the loop, since the
// collector empties that pool bucket between two such messages), where
// 1 MiB pieces come back to the pool one by one as the socket drains and
// serve the next message.
const writePiece = 1 << 20

// writeLarge writes a frame header and its payload, the payload in pieces
// of writePiece bytes or more (gnet's writev takes at most 1024).
func (c *conn) writeLarge(hdr, payload []byte) error {
	piece := max(writePiece, len(payload)/1000+1)
	iov := make([][]byte, 0, 2+len(payload)/piece)
	iov = append(iov, hdr)
	for len(payload) > piece {
		iov = append(iov, payload[:piece])
		payload = payload[piece:]
	}
	return c.writev(append(iov, payload))
}

// unsentOver reports whether n more unsent bytes would take the loop past
// Options.MaxUnsentTotal. The running total only grows between polls (it
// does not see drains), so when it says yes the exact total is computed
// first, at most once per millisecond. Loop-only.
func (l *Loop) unsentOver(n int) bool {
	max := l.opts.MaxUnsentTotal
	if l.unsent+n <= max {
		return false
	}
	if now := l.now(); now-l.unsentAt >= int64(time.Millisecond) {
		total := 0
		for _, c := range l.watched {
			if !c.cf.has(cfDead) {
				total += c.gc.OutboundBuffered()
			}
		}
		l.unsent, l.unsentAt = total, now
	}
	// A lone message on a loop with nothing else unsent always goes (an
	// echo of a 64 MiB message), or no message over the budget could.
	return l.unsent > 0 && l.unsent+n > max
}

// freed notes n bytes of abandoned messages in flight (a large frame whose
// sender was closed). Their buffers go back to gnet's and the runtime's
// pools, where an idle server would keep them as RSS for minutes; with
// Options.ReturnMemoryToOS, once 64 MiB have gathered the loop has them
// returned to the OS, from another goroutine and at most every 10 s (two
// collections: sync.Pool keeps a buffer through one). Loop-only.
func (l *Loop) freed(n int64) {
	if !l.opts.ReturnMemoryToOS {
		return // a process-wide collection is the embedder's call
	}
	l.freedBytes += n
	if l.freedBytes < 64<<20 || l.now()-l.freedAt < int64(10*time.Second) {
		return
	}
	l.freedBytes, l.freedAt = 0, l.now()
	// A second later: gnet releases a connection's buffers after OnClose,
	// and the other connections of the same tick close meanwhile.
	time.AfterFunc(time.Second, func() {
		runtime.GC()
		debug.FreeOSMemory()
	})
}
