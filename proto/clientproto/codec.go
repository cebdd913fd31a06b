package clientproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/tornago/tornago/loop/pubsub"
)

// MaxTopic is the longest topic name, in bytes.
const MaxTopic = 255

// ErrBadCommand is wrapped by every error DecodeCommand returns: the frame
// is not one well-formed command (a client bug, answered with error 107
// or, when nothing can be answered, disconnect 3501).
var ErrBadCommand = errors.New("clientproto: bad command")

// Goroutine-safe.
// DecodeCommand reads one command frame: a JSON object with a positive id
// and exactly one known command field, whose fields are valid (topic
// names as ValidTopic says, since a position pubsub.ParsePosition reads,
// an rpc's method not empty, a publish's data present). The caller bounds
// len(b) (the command size limit) before. On an error that still has a
// usable id, the returned Command carries it, so that the caller can
// answer it with error 107.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		// A field of the wrong type: the JSON is well formed and
		// Unmarshal went on past it, so a valid id is answerable.
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && c.ID > 0 {
			return Command{ID: c.ID}, fmt.Errorf("%w: %v", ErrBadCommand, err)
		}
		return Command{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	if c.ID == 0 {
		return Command{}, fmt.Errorf("%w: no positive id", ErrBadCommand)
	}
	id := Command{ID: c.ID}
	n := 0
	for _, set := range []bool{c.Connect != nil, c.Subscribe != nil, c.Unsubscribe != nil, c.Publish != nil, c.RPC != nil, c.Refresh != nil, c.SubRefresh != nil, c.Ping != nil, c.Presence != nil, c.PresenceStats != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return id, fmt.Errorf("%w: %d command fields, want exactly one", ErrBadCommand, n)
	}
	switch {
	case c.Subscribe != nil:
		if err := ValidTopic(c.Subscribe.Topic); err != nil {
			return id, err
		}
		if _, err := pubsub.ParsePosition(c.Subscribe.Since); err != nil {
			return id, fmt.Errorf("%w: since: %v", ErrBadCommand, err)
		}
	case c.Unsubscribe != nil:
		if err := ValidTopic(c.Unsubscribe.Topic); err != nil {
			return id, err
		}
	case c.Publish != nil:
		if err := ValidTopic(c.Publish.Topic); err != nil {
			return id, err
		}
		if len(c.Publish.Data) == 0 {
			return id, fmt.Errorf("%w: publish without data", ErrBadCommand)
		}
	case c.RPC != nil:
		if c.RPC.Method == "" || len(c.RPC.Method) > MaxTopic {
			return id, fmt.Errorf("%w: rpc method empty or over %d bytes", ErrBadCommand, MaxTopic)
		}
	case c.Presence != nil:
		if err := ValidTopic(c.Presence.Topic); err != nil {
			return id, err
		}
	case c.PresenceStats != nil:
		if err := ValidTopic(c.PresenceStats.Topic); err != nil {
			return id, err
		}
	case c.Refresh != nil:
		if c.Refresh.Token == "" {
			return id, fmt.Errorf("%w: refresh without token", ErrBadCommand)
		}
	case c.SubRefresh != nil:
		if err := ValidTopic(c.SubRefresh.Topic); err != nil {
			return id, err
		}
		if c.SubRefresh.Token == "" {
			return id, fmt.Errorf("%w: sub_refresh without token", ErrBadCommand)
		}
	}
	return c, nil
}

// Goroutine-safe.
// ValidTopic checks a topic name: 1-255 bytes of printable ASCII without
// space. The error wraps ErrBadCommand.
func ValidTopic(t string) error {
	if len(t) == 0 || len(t) > MaxTopic {
		return fmt.Errorf("%w: topic of %d bytes, want 1-%d", ErrBadCommand, len(t), MaxTopic)
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] > '~' {
			return fmt.Errorf("%w: topic %q: byte %d is not printable ASCII without space", ErrBadCommand, t, i)
		}
	}
	return nil
}

// Goroutine-safe.
// Namespace returns the namespace of topic: what comes before its first
// ':', or "" for a name without one.
func Namespace(topic string) string {
	for i := 0; i < len(topic); i++ {
		if topic[i] == ':' {
			return topic[:i]
		}
	}
	return ""
}

// Goroutine-safe.
// PersonalUser returns the user a personal topic ("ns:#42") belongs to,
// and whether topic is one: the text after "ns:#".
func PersonalUser(topic string) (string, bool) {
	ns := Namespace(topic)
	if len(topic) <= len(ns)+1 || topic[len(ns)] != ':' || len(topic) < len(ns)+2 || topic[len(ns)+1] != '#' {
		return "", false
	}
	return topic[len(ns)+2:], true
}

// Goroutine-safe.
// AppendReply appends a successful reply to command id: result must be a
// JSON value (nil: {}).
func AppendReply(dst []byte, id uint32, result []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = append(dst, `,"result":`...)
	if len(result) == 0 {
		dst = append(dst, "{}"...)
	} else {
		dst = append(dst, result...)
	}
	return append(dst, '}')
}

// Goroutine-safe.
// AppendResult appends the reply to command id with result v encoded as
// JSON (a ConnectResult, SubscribeResult, ...).
func AppendResult(dst []byte, id uint32, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return AppendError(dst, id, &Error{Code: ErrInternal, Message: "internal error", Temporary: true})
	}
	return AppendReply(dst, id, b)
}

// Goroutine-safe.
// AppendError appends an error reply to command id.
func AppendError(dst []byte, id uint32, e *Error) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = append(dst, `,"error":{"code":`...)
	dst = strconv.AppendUint(dst, uint64(e.Code), 10)
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, e.Message)
	if e.Temporary {
		dst = append(dst, `,"temporary":true`...)
	}
	return append(dst, "}}"...)
}

// Goroutine-safe.
// AppendPublicationPush appends the push of one publication on topic: pos
// is left out when zero (a topic without history); data must be one JSON
// value and is copied as is, never re-encoded. A server encodes it once per
// message and writes the same bytes to every subscriber.
func AppendPublicationPush(dst []byte, topic string, pos pubsub.Position, data []byte) []byte {
	dst = append(dst, `{"push":{"topic":`...)
	dst = AppendString(dst, topic)
	dst = append(dst, `,"pub":{`...)
	if pos != (pubsub.Position{}) {
		dst = append(dst, `"pos":"`...)
		dst = pos.Append(dst)
		dst = append(dst, `",`...)
	}
	dst = append(dst, `"data":`...)
	dst = append(dst, data...)
	return append(dst, "}}}"...)
}

// AppendPublicationPushSkipped is AppendPublicationPush with the count of
// the topic's publications skipped before this one (latest-value
// delivery); skipped 0 gives AppendPublicationPush's bytes.
func AppendPublicationPushSkipped(dst []byte, topic string, pos pubsub.Position, skipped uint64, data []byte) []byte {
	if skipped == 0 {
		return AppendPublicationPush(dst, topic, pos, data)
	}
	dst = append(dst, `{"push":{"topic":`...)
	dst = AppendString(dst, topic)
	dst = append(dst, `,"pub":{`...)
	if pos != (pubsub.Position{}) {
		dst = append(dst, `"pos":"`...)
		dst = pos.Append(dst)
		dst = append(dst, `",`...)
	}
	dst = append(dst, `"skipped":`...)
	dst = strconv.AppendUint(dst, skipped, 10)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, "}}}"...)
}

// Goroutine-safe.
// AppendPush appends p (a sub or unsub push, a disconnect) encoded as JSON.
func AppendPush(dst []byte, p Push) []byte {
	b, err := json.Marshal(p)
	if err != nil { // only RawMessage fields can fail, and Push has none outside Pub
		return dst
	}
	return append(dst, b...)
}

// Goroutine-safe.
// AppendDisconnect appends the disconnect push for code and reason, with
// reconnect as code.Reconnect says.
func AppendDisconnect(dst []byte, code DisconnectCode, reason string) []byte {
	dst = append(dst, `{"disconnect":{"code":`...)
	dst = strconv.AppendUint(dst, uint64(code), 10)
	dst = append(dst, `,"reason":`...)
	dst = AppendString(dst, reason)
	dst = append(dst, `,"reconnect":`...)
	dst = strconv.AppendBool(dst, code.Reconnect())
	return append(dst, "}}"...)
}

const hexDigits = "0123456789abcdef"

// Goroutine-safe.
// AppendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			case c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// Goroutine-safe.
// Code returns the error code err carries: its *Error's, or ErrInternal.
func Code(err error) ErrorCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ErrInternal
}

// Goroutine-safe.
// Temporary reports whether the client may retry a command that failed
// with code (PROTOCOL.md, "Errors").
func (c ErrorCode) Temporary() bool {
	return c == ErrInternal || c == ErrTooManyRequests || c == ErrTimeout
}

// Goroutine-safe.
// NewError returns the protocol error code with message, Temporary as the
// code says.
func NewError(code ErrorCode, message string) *Error {
	return &Error{Code: code, Message: message, Temporary: code.Temporary()}
}
