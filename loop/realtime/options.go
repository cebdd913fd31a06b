package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
)

// Identity is who a connection is, as Authenticate found: the user id
// ("" for an anonymous user), when the credentials expire (zero: never),
// and any information the application attaches (sent to nobody).
type Identity struct {
	User      string
	ExpiresAt time.Time
	Info      json.RawMessage
}

// Credentials is what Authenticate reads: the connect command's fields,
// and the request that carried it (WebSocket upgrade, SSE GET or poll
// POST).
type Credentials struct {
	Token     string
	Name      string
	Version   string
	Data      json.RawMessage
	Header    http.Header // a copy of the request's header fields (Cookie, Authorization, ...); nil for a refresh
	RemoteIP  netip.Addr
	Transport string // "websocket", "sse" or "poll"
}

// ErrUnauthorized, returned (wrapped) by Authenticate, ends the connection
// with 3500 (invalid token: the client does not reconnect by itself); by
// a refresh it is answered with error 101.
var ErrUnauthorized = errors.New("realtime: unauthorized")

// ErrTokenExpired, returned (wrapped) by Authenticate, ends the connection
// with 3005 (the client gets a new token and reconnects); by a refresh or
// VerifySubscribeToken it is answered with error 109.
var ErrTokenExpired = errors.New("realtime: token expired")

// ErrTooManyTopics is what a subscribe or publish on a new history topic
// gets once the Server keeps Limits.MaxHistoryTopics of them (error 106).
var ErrTooManyTopics = errors.New("realtime: too many history topics (Limits.MaxHistoryTopics)")

// Namespace sets the rules of the topics "Name:..." (Name "" is the
// default namespace: topics without ':'). A topic in no configured
// namespace is refused (error 102).
type Namespace struct {
	Name string
	// History keeps the namespace's topics' publications within these
	// bounds (zero: none kept): subscribers resume with since, and
	// publications carry positions.
	History pubsub.HistoryOptions
	// Publish lets clients publish (else error 108; the server may).
	Publish bool
	// SubscribeToken requires a subscription token (VerifySubscribeToken).
	SubscribeToken bool
	// MaxDataBytes bounds a client publication's data (error 115).
	// Default 0: the command size limit only.
	MaxDataBytes int
	// Presence keeps who is subscribed to the namespace's topics, on
	// every loop of the process (presence.go): the presence and
	// presence_stats commands, Server.Presence, POST /api/presence.
	Presence bool
	// JoinLeave pushes the joins and leaves of each topic to its
	// subscribers, coalesced: one push per topic per
	// Options.JoinLeaveInterval on each loop. Needs Presence.
	JoinLeave bool
	// Latest delivers the namespace's publications latest-value: a
	// subscriber whose connection's unsent output is over its bound (the
	// route's MaxUnsentPerConn; long polling: Limits.MaxUnsent) is not
	// closed (3001) but keeps only the newest pending publication of each
	// such topic, sent when it has read, with the count it replaced
	// (skipped; Metrics.LatestSkipped). For values where only the last one
	// matters: a clock, prices, positions.
	Latest bool
	// JoinLeaveMaxNames is the topic size (subscribers in the process)
	// over which join/leave pushes carry counts only. Default 100.
	JoinLeaveMaxNames int
}

// Limits are the per-connection limits (PROTOCOL.md, "Limits"); zero
// fields take the defaults.
type Limits struct {
	Subscriptions     int           // default 128 (error 106)
	CommandBytes      int           // default 64 KiB (WebSocket close 3505, POST 413)
	CommandsPerSecond int           // default 50 (error 111; sustained 5 s, or 20x it refused within a second: 3004)
	CommandBurst      int           // default 100
	PendingRPCs       int           // default 16 (error 106)
	RPCTimeout        time.Duration // default 10 s (error 113)
	ConnectTimeout    time.Duration // default 10 s (3502)
	SessionIdle       time.Duration // default 60 s (emulated sessions)
	// MaxUnsent bounds a long-polling session's unacknowledged frames,
	// in bytes (3001 past it). Default 1 MiB. WebSocket and SSE use their
	// routes' MaxUnsentPerConn.
	MaxUnsent int
	// PollWait is how long a poll waits for a frame. Default 25 s.
	PollWait time.Duration
	// MaxPollSessions bounds a loop's long-polling sessions, which hold
	// no connection between polls: past it a connect POST gets 503 (code
	// 100, temporary). Default 10,000 (SSE sessions are bounded by the
	// loop's connections).
	MaxPollSessions int
	// MaxRecoverBytes bounds the data a subscribe with since replays at
	// once: a backlog over it is not replayed, and the reply says gone
	// (the client reloads), rather than the replay passing the
	// connection's unsent bound and closing it as a slow consumer's,
	// again at every reconnect. Default 512 KiB (half the default unsent
	// bounds).
	MaxRecoverBytes int
	// MaxHistoryTopics bounds the topics a Server keeps history for: a
	// history topic is kept from its first use and each costs its
	// bounded history, so without it any client allowed in a namespace
	// with history could make the server keep any number of them
	// (chat:<a new room> after chat:<a new room>). Past it, a subscribe
	// or publish on a new history topic gets error 106 (the server API:
	// a 400 with code 106). Default 10,000.
	MaxHistoryTopics int
	// IdempotencyWindow is how long a Server (each loop's) remembers a
	// client publish's idempotency key (idem): a retry within it is not
	// published again and gets the first's reply. Default 2 min (as
	// JetStream's deduplication, which covers other processes).
	IdempotencyWindow time.Duration
	// MaxIdempotencyKeys bounds the keys a Server remembers (each costs
	// its key, at most 64 bytes, its user id and about 150 bytes); past
	// it the oldest is forgotten early. Default 100,000 (about 25 MB at
	// most with short user ids).
	MaxIdempotencyKeys int
	// MaxPresenceMembers bounds the members a presence answer lists
	// (command or server API; "truncated" past it). Default 1,000.
	MaxPresenceMembers int
	// MaxPresenceInfo bounds the identity Info a member shows in presence
	// and join/leave: a larger Info is left out (the member is listed
	// without it). Default 256 bytes.
	MaxPresenceInfo int
	// PresenceCost is what a presence command (the list; not
	// presence_stats) takes of the connection's command tokens
	// (CommandsPerSecond, CommandBurst): at the defaults 10, so 5 a
	// second, 10 at once. With fewer tokens left it gets error 111 "too
	// many presence requests"; the tokens it took count for the
	// connection's rate (its other commands may then be over it: 111,
	// and sustained 5 s, 3004). Default 10.
	PresenceCost int
	// PresenceBytesPerSecond bounds the bytes of presence answers a
	// Server (a loop) writes a second, all connections together: a
	// thousand clients each within their rate could ask for 1,000
	// members (about 100 KB) 5 times a second, 500 MB/s, and stall the
	// loop (bench attack t). Past it (a tenth of it at once) a presence
	// command gets error 111 "presence busy" (temporary; retry later).
	// An answer is encoded once per topic until its members change.
	// Default 16 MiB (about 160 answers of 1,000 members a second).
	PresenceBytesPerSecond int
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.Subscriptions, 128)
	def(&l.CommandBytes, 64<<10)
	def(&l.CommandsPerSecond, 50)
	def(&l.CommandBurst, 100)
	def(&l.PendingRPCs, 16)
	def(&l.MaxUnsent, 1<<20)
	def(&l.MaxRecoverBytes, 512<<10)
	def(&l.MaxPollSessions, 10000)
	def(&l.MaxHistoryTopics, 10000)
	def(&l.MaxIdempotencyKeys, 100000)
	defD(&l.IdempotencyWindow, 2*time.Minute)
	def(&l.MaxPresenceMembers, 1000)
	def(&l.MaxPresenceInfo, 256)
	def(&l.PresenceCost, 10)
	def(&l.PresenceBytesPerSecond, 16<<20)
	defD(&l.RPCTimeout, 10*time.Second)
	defD(&l.ConnectTimeout, 10*time.Second)
	defD(&l.SessionIdle, 60*time.Second)
	defD(&l.PollWait, 25*time.Second)
	return l
}

// Options configures a Server; the zero value serves anonymous users on
// no namespace (configure Namespaces).
type Options struct {
	// Authenticate turns a connect (or refresh) into an identity. It runs
	// off the loop (the loop's executor: Options.Executor* of the loop),
	// and the connection's later commands wait for it. Return errors
	// wrapping ErrUnauthorized (3500) or ErrTokenExpired (3005); any
	// other refuses with 3504. nil: every connection is anonymous (User
	// ""), whatever its token.
	Authenticate func(ctx context.Context, c Credentials) (Identity, error)
	// CanSubscribe and CanPublish, when set, decide per topic, off the
	// loop (after the namespace's rules passed). An error wrapping a
	// *clientproto.Error is answered with its code, any other with 103.
	CanSubscribe func(ctx context.Context, id Identity, topic string) error
	CanPublish   func(ctx context.Context, id Identity, topic string, data json.RawMessage) error
	// VerifySubscribeToken checks a subscription token for user and
	// topic (namespaces with SubscribeToken), off the loop, at subscribe
	// and sub_refresh. nil: such namespaces refuse every subscription
	// (103). A non-zero exp ends the subscription then (an unsub push
	// with 109) unless a sub_refresh moved it.
	VerifySubscribeToken func(ctx context.Context, token, user, topic string) (exp time.Time, err error)
	Namespaces           []Namespace
	Limits               Limits
	// WebSocket configures /connection/websocket (its MaxMessageSize is
	// set from Limits.CommandBytes); EventStream the SSE streams.
	WebSocket   loop.WSOptions
	EventStream loop.EventStreamOptions
	// Relay carries the emulated transports' polls and command POSTs to
	// the process holding their session, when the kernel gives them to
	// another (several processes on one port: tornago -procs): the
	// process's broker (natsbroker). nil: sessions are found within the
	// process only (every loop of it), a request reaching another
	// process gets 404 (code 110: the client connects again).
	Relay pubsub.Broker
	// Logger receives the server's warnings and errors. Default:
	// slog.Default().
	Logger *slog.Logger
	// Version is the server's version sent in connect results.
	Version string
	// HookTimeout bounds the context given to the hooks. Default 10 s.
	HookTimeout time.Duration
	// Presence is the presence shared by the Servers of one process (one
	// per loop). nil: the process-wide DefaultPresence.
	Presence *PresenceGroup
	// JoinLeaveInterval is how long a loop gathers joins and leaves
	// before pushing them (namespaces with JoinLeave). Default 100 ms.
	JoinLeaveInterval time.Duration
	// JoinLeaveQuiet: the joins and leaves of a topic over its
	// namespace's JoinLeaveMaxNames (counts pushes, a frame to every
	// subscriber) wait until none came for this long (the storm is over),
	// or until they are twice the subscribers, or JoinLeaveMaxDelay.
	// Default DefaultJoinLeaveQuiet.
	JoinLeaveQuiet time.Duration
	// JoinLeaveMaxDelay is the longest a counts push waits while joins
	// and leaves keep coming (see JoinLeaveQuiet): how stale the counts
	// of a large topic may be during a storm. Default
	// DefaultJoinLeaveMaxDelay.
	JoinLeaveMaxDelay time.Duration
}

// The defaults of Options.JoinLeaveQuiet and Options.JoinLeaveMaxDelay:
// a reconnect storm spread over up to 10 s (with no pause of a second)
// costs one counts push per subscriber, and a large topic's counts are
// at most 10 s stale while it lasts (presence_stats is exact at any
// time). A second of quiet, not less: a loaded harness or server pauses
// for a few hundred milliseconds in the middle of a storm (300 ms let
// through a push in the middle of a 10,000-client storm: 3.2N frames).
const (
	DefaultJoinLeaveQuiet    = time.Second
	DefaultJoinLeaveMaxDelay = 10 * time.Second
)
