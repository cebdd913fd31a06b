package ws13

// StatusCode is a WebSocket close code (RFC 6455 7.4): the 2-byte integer
// that starts a close frame's body. It is tornago's own type, so that no
// third-party type shows in the API; gobwas/ws is used for framing helpers
// only.
type StatusCode uint16

// Close codes (RFC 6455 7.4.1, and the IANA "WebSocket Close Code Number
// Registry" for 1013).
const (
	// CloseNormal: "1000 indicates a normal closure, meaning that the
	// purpose for which the connection was established has been fulfilled."
	CloseNormal StatusCode = 1000
	// CloseGoingAway: "1001 indicates that an endpoint is "going away", such
	// as a server going down or a browser having navigated away from a page."
	CloseGoingAway StatusCode = 1001
	// CloseProtocolError: "1002 indicates that an endpoint is terminating
	// the connection due to a protocol error."
	CloseProtocolError StatusCode = 1002
	// CloseNoStatus: "1005 is a reserved value and MUST NOT be set as a
	// status code in a Close control frame by an endpoint. It is designated
	// for use in applications expecting a status code to indicate that no
	// status code was actually present."
	CloseNoStatus StatusCode = 1005
	// CloseAbnormal: "1006 is a reserved value and MUST NOT be set as a
	// status code in a Close control frame by an endpoint. It is designated
	// for use in applications expecting a status code to indicate that the
	// connection was closed abnormally, e.g., without sending or receiving a
	// Close control frame."
	CloseAbnormal StatusCode = 1006
	// CloseInvalidPayload: "1007 indicates that an endpoint is terminating
	// the connection because it has received data within a message that was
	// not consistent with the type of the message (e.g., non-UTF-8 [RFC3629]
	// data within a text message)."
	CloseInvalidPayload StatusCode = 1007
	// ClosePolicy: "1008 indicates that an endpoint is terminating the
	// connection because it has received a message that violates its
	// policy."
	ClosePolicy StatusCode = 1008
	// CloseTooBig: "1009 indicates that an endpoint is terminating the
	// connection because it has received a message that is too big for it
	// to process."
	CloseTooBig StatusCode = 1009
	// CloseInternalError: "1011 indicates that a server is terminating the
	// connection because it encountered an unexpected condition that
	// prevented it from fulfilling the request."
	CloseInternalError StatusCode = 1011
	// CloseTryAgainLater (IANA registry, 1013 "Try Again Later"): the server
	// is overloaded; the client should reconnect later.
	CloseTryAgainLater StatusCode = 1013
)
