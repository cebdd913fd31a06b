// Package wsclient is tornago's blocking WebSocket client, for scripts,
// tools (cmd/wscat) and tests, in the shape of Python's
// websocket.create_connection: [Dial] connects and returns a [*Conn] with
// Send, Recv and Close, each running on the calling goroutine.
//
// It is one of tornago's two WebSocket clients. The other,
// loop.Loop.DialWebSocket, is driven by a loop and costs no goroutine per
// connection: use it for many connections inside a server. The two share
// their option names and defaults (proto/ws13's table: a zero field means
// the default), the header type (net/http's Header), the URL and header
// validation (ws13.CheckDial) and the handshake-response check
// (ws13.CheckResponse), and close codes are ws13.StatusCode in both.
//
// wsclient does not import loop, so loop's own tests can use it as a
// client. Only ws:// is supported: terminate TLS in a proxy.
package wsclient
