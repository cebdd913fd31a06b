package loop

// The loop's next turn. Work that yields (a budget per connection, a batch
// of deadlines, a step of a large inflate) must go on only after the loop
// polled its sockets again, or one busy connection holds back the others.
// gnet's own queues do not give that: a task posted while gnet runs its
// task queue (Wake, Execute, AddCallback) runs in the same round, up to 256
// of them, before the next epoll_wait. So the loop kicks itself through a
// socket: one byte written to the private control connection makes it
// readable, and gnet reports it in the I/O phase of its next round, beside
// every other socket that is ready.

var kickByte = []byte{1}

// nextTurn runs fn on the loop after it polled its sockets again.
// Loop-only.
func (l *Loop) nextTurn(fn func()) {
	l.turnFns = append(l.turnFns, fn)
	l.kick()
}

// resumeNextTurn serves c's buffered input again in the loop's next turn.
// Loop-only.
func (l *Loop) resumeNextTurn(c *conn) {
	l.turnConns = append(l.turnConns, c)
	l.kick()
}

func (l *Loop) kick() {
	if l.kicked {
		return
	}
	if l.ctrlPeer == nil {
		// Before the control connection is up (or without one): the next
		// round of gnet's task queue is the best there is.
		l.kicked = true
		l.AddCallback(l.runTurn)
		return
	}
	l.kicked = true
	if _, err := l.ctrlPeer.Write(kickByte); err != nil {
		l.AddCallback(l.runTurn)
	}
}

// runTurn runs what yielded to the loop's next turn. The control
// connection's OnTraffic calls it.
func (l *Loop) runTurn() {
	l.kicked = false
	fns, conns := l.turnFns, l.turnConns
	l.turnFns, l.turnConns = l.turnSpareFns[:0], l.turnSpareConns[:0]
	for i, c := range conns {
		conns[i] = nil
		if !c.cf.has(cfDead) && c.gc.InboundBuffered() > 0 {
			l.begin()
			c.traffic()
			l.leave()
		}
	}
	for i, fn := range fns {
		fns[i] = nil
		l.safeCall(fn)
	}
	l.turnSpareFns, l.turnSpareConns = fns[:0], conns[:0]
}
