package ws13

import "time"

// Defaults shared by tornago's WebSocket endpoints: the loop's server routes
// (loop.WSOptions), its loop-driven client (loop.ClientOptions) and the
// blocking client (wsclient.DialOptions). An option field left zero means
// the default below wherever it appears; a negative duration means "off"
// for PingInterval (the only one that can be off) and the default for the
// others. DefaultMaxMessage (10 MiB, Tornado's) is the MaxMessageSize
// default.
const (
	// DefaultHandshakeTimeout bounds a client's connect and upgrade.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultCloseTimeout bounds the wait for the peer's close frame after
	// ours (Tornado's 5 s).
	DefaultCloseTimeout = 5 * time.Second
	// DefaultPingInterval is how often an endpoint pings to detect a
	// half-open peer: under the 60 s idle cut of common proxies.
	DefaultPingInterval = 25 * time.Second
	// DefaultPingTimeout is how long a pong may take after a ping before
	// the connection is closed.
	DefaultPingTimeout = 20 * time.Second
)
