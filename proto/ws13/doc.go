// Package ws13 is the pure RFC 6455 (WebSocket, version 13) protocol layer of
// tornago: frame decoding and encoding, close frames and the opening
// handshake. It does no I/O and starts no goroutines, so that it can run
// inside an event loop (gnet) on the bytes the loop has already buffered.
//
// # Decoding
//
// A [Decoder] lives in every connection. The loop hands it every byte
// currently buffered for the connection; [Decoder.Next] parses at most one
// frame at the start and reports how many bytes it consumed (0 when the frame
// is not complete yet). Unfragmented data frames and control frames are
// unmasked in place and returned as sub-slices of the input (zero copy, zero
// allocations); fragments are copied into an assembly buffer owned by the
// decoder. Every protocol violation is reported as a [*CloseError] carrying
// the status code that the endpoint should send in its close frame before
// closing the connection.
//
// # Encoding
//
// [AppendFrame], [AppendMaskedFrame], [AppendCloseFrame] and
// [AppendMaskedCloseFrame] append whole frames to a caller's buffer, so a
// reply can be built in the connection's outbound buffer without allocating.
//
// # Handshake
//
// [CheckRequest] validates an upgrade request from header values the HTTP
// layer already parsed, and [AppendResponse] writes the 101 answer.
// [CheckDial], [AppendRequest], [NewKey], [NewMask] and [CheckResponse] serve
// the client side: both of tornago's clients (loop's loop-driven one and
// the blocking wsclient) validate and check with these, and share the
// option defaults in defaults.go. [StatusCode] is the close-code type of
// the whole module.
package ws13
