package realtime

import (
	"github.com/tornago/tornago/loop/pubsub"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// Latest-value delivery (Namespace.Latest). A publication of a Latest
// topic that would put a subscriber's connection over its unsent bound is
// held instead of written: one slot per topic per lagging connection,
// which a newer publication replaces (counted: skipped). When the
// connection's output has drained to half its bound, the held ones are
// written, each with its skipped count, and the connection is a normal
// one again. Memory: at most one held publication per Latest topic per
// lagging connection, each a reference to the frame encoded once for
// every subscriber (no copy).

// lag is a lagging connection's held publications.
type lag struct {
	held map[*topic]*heldPub
}

// heldPub is the newest publication of a topic not yet written to a
// lagging connection, and how many it replaced.
type heldPub struct {
	pos     pubsub.Position
	data    []byte // within a bcast's frame, shared and never modified
	skipped uint64
}

// outState returns c's unsent output, its bound, and the wait for it to
// drain; ok false for a transport that has none (an SSE session between
// streams).
func outState(c *Client) (unsent, max int, when func(at int, fn func()), ok bool) {
	switch tr := c.tr.(type) {
	case *wsConn:
		if tr.w == nil {
			return 0, 0, nil, false
		}
		return tr.w.BufferedAmount(), tr.w.MaxUnsent(), tr.w.WhenDrained, true
	case *session:
		if tr.es != nil {
			return tr.es.BufferedAmount(), tr.es.MaxUnsent(), tr.es.WhenDrained, true
		}
		if tr.typ == TransportPoll {
			return tr.bytes, tr.s.lim.MaxUnsent, tr.whenAcked, true
		}
	}
	return 0, 0, nil, false
}

// holdLatest holds t's publication (pos, data; its frame b) for c when c
// lags, and reports whether it did: then it is not written now.
// Loop-only.
func (s *Server) holdLatest(c *Client, t *topic, pos pubsub.Position, data []byte, b *bcast) bool {
	if c.state == stClosed {
		return false
	}
	// data as a slice of the frame (AppendPublicationPush ends with the
	// data and "}}}"): the frame is made for this publication and kept
	// as long as a lagging subscriber needs it, where data may be the
	// broker's buffer.
	shared := b.frame[len(b.frame)-3-len(data) : len(b.frame)-3]
	if lg := s.lags[c]; lg != nil {
		if h := lg.held[t]; h != nil {
			h.pos, h.data = pos, shared
			h.skipped++
			s.m.skipped.Add(1)
		} else {
			lg.held[t] = &heldPub{pos: pos, data: shared}
		}
		return true
	}
	unsent, max, when, ok := outState(c)
	// An empty output takes any one message, as the loop's bound does.
	if !ok || unsent == 0 || unsent+len(b.frame)+16 <= max {
		return false
	}
	if s.lags == nil {
		s.lags = map[*Client]*lag{}
	}
	s.lags[c] = &lag{held: map[*topic]*heldPub{t: {pos: pos, data: shared}}}
	when(max/2, func() { s.flushLatest(c) })
	return true
}

// flushLatest writes c's held publications once its output drained,
// as far as its bound allows (the rest waits for the next drain).
// Loop-only.
func (s *Server) flushLatest(c *Client) {
	lg := s.lags[c]
	if lg == nil || c.state == stClosed {
		delete(s.lags, c)
		return
	}
	for t, h := range lg.held {
		if c.sub(t.name) != t { // unsubscribed meanwhile
			delete(lg.held, t)
			continue
		}
		unsent, max, when, ok := outState(c)
		if !ok {
			break
		}
		frame := cp.AppendPublicationPushSkipped(s.scratch[:0], t.name, h.pos, h.skipped, h.data)
		if unsent > 0 && unsent+len(frame)+16 > max {
			c.keepScratch(frame)
			when(max/2, func() { s.flushLatest(c) })
			return
		}
		delete(lg.held, t)
		c.send(frame)
		c.keepScratch(frame)
		if c.state == stClosed {
			break
		}
	}
	delete(s.lags, c)
}

// whenAcked is outState's wait for a long-polling session: fn runs when
// the client acknowledged frames down to at bytes (ack).
func (ss *session) whenAcked(at int, fn func()) {
	ss.drainAt, ss.drained = at, fn
}
