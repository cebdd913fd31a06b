package ws13

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tornago/tornago/proto/http1"
)

// acceptGUID is the GUID of RFC 6455 1.3 / 4.2.2.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptLen is the length of a Sec-WebSocket-Accept value:
// base64 of a 20-byte SHA-1 digest.
const acceptLen = 28

// HandshakeError is a rejected upgrade request: the server answers with
// Status, the Header fields and a body such as Reason, then closes.
type HandshakeError struct {
	Status int
	Reason string
	Header [][2]string
}

// Error implements error: "ws13: handshake <status>: <reason>".
func (e *HandshakeError) Error() string {
	return "ws13: handshake " + strconv.Itoa(e.Status) + ": " + e.Reason
}

func badRequest(reason string) *HandshakeError {
	return &HandshakeError{Status: 400, Reason: reason}
}

// CheckRequest validates an upgrade request from values the HTTP layer
// already parsed: the method, the HTTP version and the values of the
// Upgrade, Connection, Sec-WebSocket-Version and Sec-WebSocket-Key header
// fields, one element per field line in order, as http1.Head.Values returns
// them (nil when the field is absent). It returns nil when the request is a
// valid RFC 6455 opening handshake. It neither keeps nor modifies its
// arguments and does not allocate when the request is valid; it is a pure
// function, safe anywhere.
//
// Failures are 400 Bad Request, except an unsupported or missing
// Sec-WebSocket-Version, which is 426 Upgrade Required with
// "Sec-WebSocket-Version: 13" (RFC 6455 4.2.2: the server "MUST abort the
// WebSocket handshake described in this section and instead send an
// appropriate HTTP error code (such as 426 Upgrade Required) and a
// |Sec-WebSocket-Version| header field indicating the version(s) the server
// is capable of understanding").
func CheckRequest(method []byte, major, minor int, upgrade, connection, version, key [][]byte) *HandshakeError {
	// RFC 6455 4.2.1: "An HTTP/1.1 or higher GET request". A non-GET
	// method gets 400 (product decision, rather than 405).
	if string(method) != "GET" {
		return badRequest("websocket upgrade requires GET")
	}
	if major < 1 || (major == 1 && minor < 1) {
		return badRequest("websocket upgrade requires HTTP/1.1 or later")
	}
	// RFC 6455 4.2.1: "An |Upgrade| header field containing the value
	// "websocket", treated as an ASCII case-insensitive value." RFC 9110
	// 5.3: several field lines of one name are one comma-separated list,
	// so the token may be on any of them.
	if !http1.HasToken(upgrade, "websocket") {
		return badRequest(`Upgrade header must contain "websocket"`)
	}
	// RFC 6455 4.2.1: "A |Connection| header field that includes the token
	// "Upgrade", treated as an ASCII case-insensitive value." Browsers
	// behind some proxies send "Connection: keep-alive" and
	// "Connection: Upgrade" on two lines: the token counts on any line.
	if !http1.HasToken(connection, "upgrade") {
		return badRequest(`Connection header must contain "Upgrade"`)
	}
	// RFC 6455 4.2.1: "A |Sec-WebSocket-Version| header field, with a
	// value of 13."
	if len(version) == 0 || string(http1.TrimOWS(version[0])) != "13" {
		return &HandshakeError{
			Status: 426,
			Reason: "unsupported websocket version",
			Header: [][2]string{{"Sec-WebSocket-Version", "13"}},
		}
	}
	// RFC 6455 11.3.5: "the |Sec-WebSocket-Version| header field MUST NOT
	// appear more than once in an HTTP request." A repeated identical "13"
	// (a proxy duplicating the line) is harmless and tolerated; a second
	// line naming another version is not.
	for _, v := range version[1:] {
		if string(http1.TrimOWS(v)) != "13" {
			return badRequest("Sec-WebSocket-Version sent more than once")
		}
	}
	// RFC 6455 11.3.1: "The |Sec-WebSocket-Key| header field MUST NOT
	// appear more than once in an HTTP request." Two field lines, or one
	// value a proxy joined with a comma (base64 has no comma), is a
	// request whose accept key would be ambiguous.
	if len(key) > 1 || (len(key) == 1 && bytes.IndexByte(key[0], ',') >= 0) {
		return badRequest("Sec-WebSocket-Key sent more than once")
	}
	// RFC 6455 4.2.1: "A |Sec-WebSocket-Key| header field with a
	// base64-encoded (see Section 4 of [RFC4648]) value that, when decoded,
	// is 16 bytes in length."
	if len(key) == 0 || !validKey(http1.TrimOWS(key[0])) {
		return badRequest("invalid Sec-WebSocket-Key")
	}
	return nil
}

// validKey reports whether key is the base64 encoding of 16 bytes.
func validKey(key []byte) bool {
	if len(key) != 24 || key[22] != '=' || key[23] != '=' {
		return false
	}
	var raw [18]byte
	n, err := base64.StdEncoding.Decode(raw[:], key)
	return err == nil && n == 16
}

// AppendAcceptKey appends the Sec-WebSocket-Accept value for the
// Sec-WebSocket-Key value key to dst:
// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) (RFC 6455
// 4.2.2). It does not allocate beyond growing dst for keys of up to 28 bytes
// (valid keys are 24).
func AppendAcceptKey(dst, key []byte) []byte {
	var sum [sha1.Size]byte
	var tmp [64]byte
	if len(key)+len(acceptGUID) <= len(tmp) {
		n := copy(tmp[:], key)
		n += copy(tmp[n:], acceptGUID)
		sum = sha1.Sum(tmp[:n])
	} else {
		h := sha1.New()
		h.Write(key)
		h.Write([]byte(acceptGUID))
		h.Sum(sum[:0])
	}
	dst = slices.Grow(dst, acceptLen)
	n := len(dst)
	dst = dst[:n+acceptLen]
	base64.StdEncoding.Encode(dst[n:], sum[:])
	return dst
}

// AppendResponse appends the server's 101 answer to an upgrade request
// whose Sec-WebSocket-Key value is key:
//
//	HTTP/1.1 101 Switching Protocols
//	Upgrade: websocket
//	Connection: Upgrade
//	Sec-WebSocket-Accept: <AppendAcceptKey(key)>
//	[Sec-WebSocket-Protocol: subprotocol]    (when not empty)
//	[Sec-WebSocket-Extensions: extensions]   (when not empty)
//	[extra headers]
//
// followed by the empty line. To prevent response splitting, a subprotocol,
// extension or extra header name or value containing CR or LF is left out.
func AppendResponse(dst, key []byte, subprotocol string, extensions string, extra [][2]string) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\n"+
		"Upgrade: websocket\r\n"+
		"Connection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "...)
	dst = AppendAcceptKey(dst, key)
	dst = append(dst, "\r\n"...)
	if subprotocol != "" && safeHeader(subprotocol) {
		dst = appendHeaderLine(dst, "Sec-WebSocket-Protocol", subprotocol)
	}
	if extensions != "" && safeHeader(extensions) {
		dst = appendHeaderLine(dst, "Sec-WebSocket-Extensions", extensions)
	}
	for _, h := range extra {
		if h[0] != "" && safeHeader(h[0]) && safeHeader(h[1]) && !strings.ContainsRune(h[0], ':') {
			dst = appendHeaderLine(dst, h[0], h[1])
		}
	}
	return append(dst, "\r\n"...)
}

func safeHeader(s string) bool {
	return !strings.ContainsAny(s, "\r\n")
}

func appendHeaderLine(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// ParseSubprotocols splits Sec-WebSocket-Protocol header values into their
// comma-separated tokens, trimmed of white space, skipping empty ones, and
// appends them to dst in order.
func ParseSubprotocols(dst []string, values ...[]byte) []string {
	for _, v := range values {
		for len(v) > 0 {
			var item []byte
			if item, v = http1.NextToken(v); len(item) > 0 {
				dst = append(dst, string(item))
			}
		}
	}
	return dst
}

// NewKey returns a new Sec-WebSocket-Key value: 16 bytes from crypto/rand,
// base64-encoded (24 bytes). RFC 6455 4.1: "The nonce MUST be selected
// randomly for each connection."
func NewKey() []byte {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		panic("ws13: crypto/rand: " + err.Error()) // never fails since Go 1.24
	}
	key := make([]byte, 24)
	base64.StdEncoding.Encode(key, raw[:])
	return key
}

// NewMask returns a new masking key for a client frame.
//
// RFC 6455 5.3: "The masking key is a 32-bit value chosen at random by the
// client. ... The masking key needs to be unpredictable; thus, the masking
// key MUST be derived from a strong source of entropy". It comes straight
// from crypto/rand, which on Linux reads the kernel's vDSO getrandom with
// per-thread state: fast enough per frame, and no shared generator to guard.
func NewMask() (mask [4]byte) {
	if _, err := rand.Read(mask[:]); err != nil {
		panic("ws13: crypto/rand: " + err.Error()) // never fails since Go 1.24
	}
	return mask
}

// Errors returned (wrapped with details) by CheckResponse.
var (
	ErrResponseStatus     = errors.New("ws13: handshake response status is not 101")
	ErrResponseUpgrade    = errors.New(`ws13: handshake response Upgrade header lacks "websocket"`)
	ErrResponseConnection = errors.New(`ws13: handshake response Connection header lacks "Upgrade"`)
	ErrResponseAccept     = errors.New("ws13: handshake response Sec-WebSocket-Accept does not match the key")
)

// checkResponseHead checks the status and the three fields every server's
// 101 reply must have, for CheckResponse: status 101, Upgrade containing
// "websocket", Connection containing "Upgrade" and the Sec-WebSocket-Accept
// value derived from key.
func checkResponseHead(status int, upgrade, connection, accept []byte, key []byte) error {
	// RFC 6455 4.1: "If the status code received from the server is not
	// 101, the client handles the response per HTTP [RFC2616] procedures."
	if status != 101 {
		return fmt.Errorf("%w: got %d", ErrResponseStatus, status)
	}
	// RFC 6455 4.1: "If the response lacks an |Upgrade| header field or the
	// |Upgrade| header field contains a value that is not an ASCII case-
	// insensitive match for the value "websocket", the client MUST _Fail
	// the WebSocket Connection_."
	if !http1.HasToken([][]byte{upgrade}, "websocket") {
		return fmt.Errorf("%w: got %q", ErrResponseUpgrade, upgrade)
	}
	// RFC 6455 4.1: "If the response lacks a |Connection| header field or
	// the |Connection| header field doesn't contain a token that is an
	// ASCII case-insensitive match for the value "Upgrade", the client MUST
	// _Fail the WebSocket Connection_."
	if !http1.HasToken([][]byte{connection}, "upgrade") {
		return fmt.Errorf("%w: got %q", ErrResponseConnection, connection)
	}
	// RFC 6455 4.1: "If the response lacks a |Sec-WebSocket-Accept| header
	// field or the |Sec-WebSocket-Accept| contains a value other than the
	// base64-encoded SHA-1 of the concatenation of the |Sec-WebSocket-Key|
	// (as a string, not base64-decoded) with the string "258EAFA5-E914-
	// 47DA-95CA-C5AB0DC85B11" but ignoring any leading and trailing
	// whitespace, the client MUST _Fail the WebSocket Connection_."
	var want [acceptLen]byte
	AppendAcceptKey(want[:0], key)
	if got := http1.TrimOWS(accept); subtle.ConstantTimeCompare(got, want[:]) != 1 {
		return fmt.Errorf("%w: got %q, want %q", ErrResponseAccept, got, want[:])
	}
	return nil
}
