package pubsub

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Position names one message of a topic's history. Offset grows by one per
// message (the first is 1); Epoch names the history itself and changes when
// it is lost (a restart with memory storage, a NATS server that lost its
// stream), so that an offset from another history is never taken for one of
// this history.
//
// The zero Position (what ParsePosition gives for "" and "0-0": a client
// that has nothing yet) means "from now" wherever a Hub takes one (History,
// SubscribeSince, SubscribeStream; Watch always starts now): nothing old,
// only what comes after. A client that wants every kept message asks
// History with the head's epoch and an Offset of -1.
type Position struct {
	Epoch  int64
	Offset int64
}

// Goroutine-safe.
// String is the position's text form, "E-N" (epoch, offset; both decimal),
// used alike as an SSE event id, a WebSocket's ?since= and a long-poll
// cursor. The zero Position is "".
func (p Position) String() string { return string(p.Append(nil)) }

// Goroutine-safe.
// Append appends the position's text form (String) to dst.
func (p Position) Append(dst []byte) []byte {
	if p == (Position{}) {
		return dst
	}
	dst = strconv.AppendInt(dst, p.Epoch, 10)
	dst = append(dst, '-')
	return strconv.AppendInt(dst, p.Offset, 10)
}

// Goroutine-safe.
// Less reports whether p comes before q: an older epoch (epochs are
// creation times, so a newer history has a larger one), or the same epoch
// and a lower offset.
func (p Position) Less(q Position) bool {
	return p.Epoch < q.Epoch || (p.Epoch == q.Epoch && p.Offset < q.Offset)
}

// ErrBadPosition is returned by ParsePosition for text that is not a
// position.
var ErrBadPosition = errors.New("pubsub: not a position (want EPOCH-OFFSET, two non-negative decimal integers without sign or leading zeros)")

// Goroutine-safe.
// ParsePosition reads the text form of String: "" and "0-0" are the zero
// Position (from now), anything else is two decimal integers without sign
// or leading zero (a "0" alone is fine) joined by "-", each at most
// 2^63-1. Only the canonical form is taken, so that a position has one
// text: "E-+1", "E-01", "E--0" or " E-1" are refused, not read as E-1 or
// E-0 (strconv.ParseInt would take the sign).
func ParsePosition(s string) (Position, error) {
	if s == "" {
		return Position{}, nil
	}
	e, o, ok := strings.Cut(s, "-")
	ep, ok1 := parseNumber(e)
	off, ok2 := parseNumber(o)
	if !ok || !ok1 || !ok2 {
		return Position{}, fmt.Errorf("%w: %q", ErrBadPosition, s)
	}
	return Position{Epoch: ep, Offset: off}, nil
}

// parseNumber reads a non-negative decimal int64 in canonical form: digits
// only, no leading zero but for "0".
func parseNumber(s string) (int64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64) // digits only: fails only beyond 2^63-1
	return n, err == nil
}

// MaxLead bounds how far ahead of a node's head a client's position may be,
// in the head's epoch, and still be taken for the node lagging (the client
// saw those messages on a node further along: through a broker, nodes
// receive each message at slightly different times). A Hub replays nothing
// to such a client and skips the messages up to its position when they
// arrive. 1000 covers a node 100 ms behind at 10,000 messages a second; a
// position further ahead, or of an epoch newer than the node's, is not one
// of this history as the node knows it (Beyond): the Hub answers it like a
// history that no longer reaches back (ErrHistoryGone, with the node's own
// head), so that a client with a bad or stale position is told and gets the
// live messages instead of waiting for positions that may never come.
const MaxLead = 1000

// Goroutine-safe.
// Beyond reports whether p, a position a client resumes from, is beyond
// head, the newest position a node has: of a newer epoch, or more than
// MaxLead ahead of head in its epoch. The zero Position is never beyond.
func (p Position) Beyond(head Position) bool {
	if p.Epoch != head.Epoch {
		return p.Epoch > head.Epoch
	}
	return p.Offset > head.Offset && p.Offset-head.Offset > MaxLead // both >= 0: no overflow
}
