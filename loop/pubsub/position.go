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
// The zero Position (what ParsePosition("") gives a client that has
// nothing yet) means "from now" wherever a Hub takes one (History,
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
var ErrBadPosition = errors.New("pubsub: not a position (want EPOCH-OFFSET, two non-negative integers)")

// Goroutine-safe (pure). ParsePosition reads the text form of String. "" is the zero Position.
func ParsePosition(s string) (Position, error) {
	if s == "" {
		return Position{}, nil
	}
	e, o, ok := strings.Cut(s, "-")
	ep, err1 := strconv.ParseInt(e, 10, 64)
	off, err2 := strconv.ParseInt(o, 10, 64)
	if !ok || err1 != nil || err2 != nil || ep < 0 || off < 0 {
		return Position{}, fmt.Errorf("%w: %q", ErrBadPosition, s)
	}
	return Position{Epoch: ep, Offset: off}, nil
}
