package loop

// Doors for writers outside the package that keep a connection under its
// unsent bound themselves (loop/realtime's latest-value delivery): they
// look at the unsent output before a write and, over the bound, hold what
// they would have written until the client reads, rather than having the
// connection closed as a slow consumer's.

// Loop-only.
// MaxUnsent returns the route's MaxUnsentPerConn: past it a write closes
// the connection (SlowClose) or is skipped (SlowSkip).
func (w *WebSocket) MaxUnsent() int { return w.route().opts.MaxUnsentPerConn }

// Loop-only.
// WhenDrained runs fn once, on the loop, when the connection's unsent
// output (BufferedAmount) is at or under at bytes. It costs one entry on
// the list of connections the loop polls while they have unsent output
// (every 5 ms): no timer or goroutine. fn never runs if the connection
// closes first.
func (w *WebSocket) WhenDrained(at int, fn func()) {
	if w.state == wsClosed || w.cf.has(cfDead) {
		return
	}
	w.l.pullWhen(w.conn(), at, fn)
}

// Loop-only.
// BufferedAmount returns the stream's bytes written but not yet sent (0
// once it ended).
func (es *EventStream) BufferedAmount() int {
	if es.closed || es.r.c.cf.has(cfDead) {
		return 0
	}
	return es.r.c.gc.OutboundBuffered()
}

// Loop-only.
// MaxUnsent returns the stream's bound on unsent output
// (EventStreamOptions.MaxUnsentPerConn): past it a write ends the stream.
func (es *EventStream) MaxUnsent() int { return es.r.streamLimit() }

// Loop-only.
// WhenDrained runs fn once, on the loop, when the stream's unsent output
// is at or under at bytes; as WebSocket.WhenDrained. fn never runs if the
// stream ends first.
func (es *EventStream) WhenDrained(at int, fn func()) {
	if es.closed {
		return
	}
	es.r.c.l.pullWhen(es.r.c, at, fn)
}
