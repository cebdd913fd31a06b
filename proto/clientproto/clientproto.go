// Package clientproto is the Tornago client protocol's encoding (version
// 1, PROTOCOL.md beside this file): the frames a client and the server
// exchange over WebSocket, SSE or long polling, as Go values, with their
// error and disconnect codes. It is pure: no I/O, no goroutines.
//
// Every frame is one JSON object. A Command goes from client to server; a
// Reply (to a command, same ID) or a Push goes back.
package clientproto

import "encoding/json"

// Version is the protocol version this package encodes.
const Version = 1

// Command is one client frame: an ID and exactly one of the command
// fields.
type Command struct {
	ID          uint32              `json:"id"`
	Connect     *ConnectRequest     `json:"connect,omitempty"`
	Subscribe   *SubscribeRequest   `json:"subscribe,omitempty"`
	Unsubscribe *UnsubscribeRequest `json:"unsubscribe,omitempty"`
	Publish     *PublishRequest     `json:"publish,omitempty"`
	RPC         *RPCRequest         `json:"rpc,omitempty"`
	Refresh     *RefreshRequest     `json:"refresh,omitempty"`
	// SubRefresh replaces a subscription's token before it expires.
	SubRefresh *SubRefreshRequest `json:"sub_refresh,omitempty"`
	Ping       *PingRequest       `json:"ping,omitempty"`
	// Presence and PresenceStats ask who is subscribed to a topic of a
	// namespace with presence (the asker must be subscribed too).
	Presence      *PresenceRequest `json:"presence,omitempty"`
	PresenceStats *PresenceRequest `json:"presence_stats,omitempty"`
}

// PresenceRequest names the topic of presence and presence_stats.
type PresenceRequest struct {
	Topic string `json:"topic"`
}

// ClientInfo is one subscriber in presence results and join/leave
// pushes: client id, user id, and the info the auth hook attached (left
// out when over the server's bound).
type ClientInfo struct {
	Client string          `json:"client"`
	User   string          `json:"user,omitempty"`
	Info   json.RawMessage `json:"info,omitempty"`
}

// PresenceResult is the result of presence: at most the server's bound
// of members (Truncated says some were left out).
type PresenceResult struct {
	Members   []ClientInfo `json:"members"`
	Truncated bool         `json:"truncated,omitempty"`
}

// PresenceStatsResult is the result of presence_stats.
type PresenceStatsResult struct {
	Clients int `json:"clients"`
	Users   int `json:"users"`
}

// JoinLeaveCounts is a join/leave push of a topic over the namespace's
// size for names: how many joined and left, and the subscribers now.
type JoinLeaveCounts struct {
	Joined  int `json:"joined"`
	Left    int `json:"left"`
	Clients int `json:"clients"`
}

// ConnectRequest opens the session: it must be a connection's first
// command.
type ConnectRequest struct {
	Token   string          `json:"token,omitempty"`
	Name    string          `json:"name,omitempty"`
	Version string          `json:"version,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// SubscribeRequest subscribes to Topic, resuming after Since when it is
// set ("" or "0-0": from now).
type SubscribeRequest struct {
	Topic string `json:"topic"`
	Since string `json:"since,omitempty"`
	Token string `json:"token,omitempty"`
}

// UnsubscribeRequest ends a subscription.
type UnsubscribeRequest struct {
	Topic string `json:"topic"`
}

// PublishRequest publishes Data (any JSON value) on Topic. Idem, when
// set (at most MaxIdemBytes), is the publish's idempotency key: a retry
// with the same key by the same user within the server's window is not
// published again and gets the first one's reply.
type PublishRequest struct {
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
	Idem  string          `json:"idem,omitempty"`
}

// MaxIdemBytes bounds a publish's idempotency key (error 107 past it).
const MaxIdemBytes = 64

// RPCRequest calls the application's Method with Data.
type RPCRequest struct {
	Method string          `json:"method"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// RefreshRequest replaces the connection's token before it expires.
type RefreshRequest struct {
	Token string `json:"token"`
}

// SubRefreshRequest replaces the token of the subscription to Topic
// before it expires; the result is a RefreshResult (the subscription's
// new expiry).
type SubRefreshRequest struct {
	Topic string `json:"topic"`
	Token string `json:"token"`
}

// PingRequest asks for an empty reply.
type PingRequest struct{}

// Reply answers the command with the same ID: Result or Error.
type Reply struct {
	ID     uint32          `json:"id"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// ConnectResult is the result of connect.
type ConnectResult struct {
	Client  string `json:"client"`
	Version string `json:"version"`
	Ping    int    `json:"ping"`
	Expires bool   `json:"expires"`
	TTL     int64  `json:"ttl,omitempty"`
	Session string `json:"session,omitempty"`
	Limits  Limits `json:"limits"`
}

// Limits are the per-connection limits the server enforces.
type Limits struct {
	Subscriptions     int `json:"subscriptions"`
	CommandBytes      int `json:"command_bytes"`
	CommandsPerSecond int `json:"commands_per_second"`
	PendingRPCs       int `json:"pending_rpcs"`
}

// SubscribeResult is the result of subscribe.
type SubscribeResult struct {
	Head      string `json:"head,omitempty"`
	Recovered int    `json:"recovered"`
	Gone      bool   `json:"gone"`
	// Expires says the subscription ends in TTL seconds (its token's
	// exp) unless a sub_refresh moves it: then the server sends an unsub
	// push with ErrTokenExpired.
	Expires bool  `json:"expires,omitempty"`
	TTL     int64 `json:"ttl,omitempty"`
}

// PublishResult is the result of publish.
type PublishResult struct {
	Pos string `json:"pos,omitempty"`
}

// RPCResult is the result of rpc.
type RPCResult struct {
	Data json.RawMessage `json:"data,omitempty"`
}

// RefreshResult is the result of refresh and of sub_refresh.
type RefreshResult struct {
	Expires bool  `json:"expires"`
	TTL     int64 `json:"ttl,omitempty"`
}

// Push is a server frame that answers no command: a publication or a
// subscription change of Topic (in Push), or the Disconnect that ends the
// connection.
type Push struct {
	Push       *TopicPush  `json:"push,omitempty"`
	Disconnect *Disconnect `json:"disconnect,omitempty"`
}

// TopicPush is about one topic: exactly one of Pub, Sub, Unsub, or a
// join/leave event (Join and/or Leave, or Counts).
type TopicPush struct {
	Topic  string           `json:"topic"`
	Pub    *Publication     `json:"pub,omitempty"`
	Sub    *SubPush         `json:"sub,omitempty"`
	Unsub  *UnsubPush       `json:"unsub,omitempty"`
	Join   []ClientInfo     `json:"join,omitempty"`
	Leave  []ClientInfo     `json:"leave,omitempty"`
	Counts *JoinLeaveCounts `json:"counts,omitempty"`
}

// Publication is one message of a topic; Pos is empty on a topic without
// history.
type Publication struct {
	Pos string `json:"pos,omitempty"`
	// Skipped counts this topic's publications the connection did not
	// get just before this one: a subscriber of a namespace with latest
	// delivery that read too slowly gets only the newest (PROTOCOL.md,
	// "Latest-value delivery"). Absent: none.
	Skipped uint64          `json:"skipped,omitempty"`
	Data    json.RawMessage `json:"data"`
}

// SubPush says the server subscribed the connection (server API).
type SubPush struct {
	Head string `json:"head,omitempty"`
}

// UnsubPush says the server ended a subscription.
type UnsubPush struct {
	Code   ErrorCode `json:"code"`
	Reason string    `json:"reason,omitempty"`
}

// Disconnect is the last frame of a connection.
type Disconnect struct {
	Code      DisconnectCode `json:"code"`
	Reason    string         `json:"reason"`
	Reconnect bool           `json:"reconnect"`
}

// Error is a command's failure.
type Error struct {
	Code      ErrorCode `json:"code"`
	Message   string    `json:"message"`
	Temporary bool      `json:"temporary,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// ErrorCode is an error reply's code (PROTOCOL.md, "Errors").
// Applications' own codes start at 1000.
type ErrorCode uint32

// The protocol's error codes.
const (
	ErrInternal          ErrorCode = 100
	ErrUnauthorized      ErrorCode = 101
	ErrUnknownTopic      ErrorCode = 102
	ErrPermissionDenied  ErrorCode = 103
	ErrMethodNotFound    ErrorCode = 104
	ErrAlreadySubscribed ErrorCode = 105
	ErrLimitExceeded     ErrorCode = 106
	ErrBadRequest        ErrorCode = 107
	ErrNotAvailable      ErrorCode = 108
	ErrTokenExpired      ErrorCode = 109
	ErrSessionExpired    ErrorCode = 110
	ErrTooManyRequests   ErrorCode = 111
	ErrTimeout           ErrorCode = 113
	ErrNotSubscribed     ErrorCode = 114
	ErrTooLarge          ErrorCode = 115
)

// DisconnectCode ends a connection (PROTOCOL.md, "Disconnect codes"); on
// WebSocket it is also the close code.
type DisconnectCode uint16

// The protocol's disconnect codes: 3000-3499 reconnect, 3500-3999 do not.
const (
	DisconnectShutdown         DisconnectCode = 3000
	DisconnectSlow             DisconnectCode = 3001
	DisconnectNoPong           DisconnectCode = 3002
	DisconnectServerBusy       DisconnectCode = 3003
	DisconnectTooManyRequests  DisconnectCode = 3004
	DisconnectTokenExpired     DisconnectCode = 3005
	DisconnectSessionExpired   DisconnectCode = 3006
	DisconnectUnauthorized     DisconnectCode = 3500
	DisconnectBadRequest       DisconnectCode = 3501
	DisconnectStale            DisconnectCode = 3502
	DisconnectForced           DisconnectCode = 3503
	DisconnectPermissionDenied DisconnectCode = 3504
	DisconnectTooLarge         DisconnectCode = 3505
)

// Reconnect reports whether a client should reconnect after c (with
// backoff): 3000-3499 yes, 3500-3999 no; WebSocket's 1001 (going away)
// and 1006 (abnormal closure) count as reconnect.
func (c DisconnectCode) Reconnect() bool {
	return c >= 3000 && c < 3500 || c == 1001 || c == 1006
}
