package ws13

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/tornago/tornago/proto/http1"
)

// Errors returned (wrapped with details) by the client-side checks.
var (
	ErrRequestHeader       = errors.New("ws13: invalid handshake request header")
	ErrResponseSubprotocol = errors.New("ws13: handshake response selected a subprotocol the client did not offer")
	ErrResponseExtension   = errors.New("ws13: handshake response selected an extension the client did not offer")
)

// reservedRequestHeaders are set by AppendRequest itself; a caller's copy
// would duplicate or contradict them.
var reservedRequestHeaders = []string{
	"upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
	"sec-websocket-protocol", "sec-websocket-extensions",
}

// CheckRequestHeader validates an extra header field a client wants to send
// with its opening handshake: the name must be an HTTP token (RFC 9110 5.1),
// the value must hold no CR, LF or NUL (which would split the request), and
// the name must not be one the handshake sets itself (Upgrade, Connection,
// Sec-WebSocket-Key, -Version, -Protocol, -Extensions; offer subprotocols
// through AppendRequest instead). Host is allowed: it replaces the default.
// Errors wrap ErrRequestHeader.
func CheckRequestHeader(name, value string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrRequestHeader)
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Errorf("%w: name %q is not a token", ErrRequestHeader, name)
		}
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Errorf("%w: value of %s holds CR, LF or NUL", ErrRequestHeader, name)
	}
	for _, r := range reservedRequestHeaders {
		if strings.EqualFold(name, r) {
			return fmt.Errorf("%w: %s is set by the handshake itself", ErrRequestHeader, name)
		}
	}
	return nil
}

// isTokenChar reports whether c is a tchar (RFC 9110 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// AppendRequest appends a client's opening handshake (RFC 6455 4.1) to dst:
//
//	GET <requestURI> HTTP/1.1
//	Host: <host>
//	Upgrade: websocket
//	Connection: Upgrade
//	Sec-WebSocket-Key: <key>
//	Sec-WebSocket-Version: 13
//	[Sec-WebSocket-Protocol: <subprotocols joined with ", ">]
//	[extra headers]
//
// followed by the empty line. key is a NewKey value. The caller validates
// extra with CheckRequestHeader first; a field that fails the check (and a
// subprotocol holding CR or LF) is left out here rather than sent, so the
// result is never a split request. An extra Host field replaces host.
func AppendRequest(dst []byte, host, requestURI string, key []byte, subprotocols []string, extra [][2]string) []byte {
	for _, h := range extra {
		if strings.EqualFold(h[0], "Host") && safeHeader(h[1]) {
			host = h[1]
		}
	}
	if requestURI == "" {
		requestURI = "/"
	}
	dst = append(dst, "GET "...)
	dst = append(dst, requestURI...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	dst = appendHeaderLine(dst, "Host", host)
	dst = append(dst, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	dst = append(dst, key...)
	dst = append(dst, "\r\nSec-WebSocket-Version: 13\r\n"...)
	first := true
	for _, p := range subprotocols {
		if p == "" || !safeHeader(p) {
			continue
		}
		if first {
			dst = append(dst, "Sec-WebSocket-Protocol: "...)
			first = false
		} else {
			dst = append(dst, ", "...)
		}
		dst = append(dst, p...)
	}
	if !first {
		dst = append(dst, "\r\n"...)
	}
	for _, h := range extra {
		if strings.EqualFold(h[0], "Host") || CheckRequestHeader(h[0], h[1]) != nil {
			continue
		}
		dst = appendHeaderLine(dst, h[0], h[1])
	}
	return append(dst, "\r\n"...)
}

// CheckResponseSubprotocol validates the Sec-WebSocket-Protocol value of a
// server's 101 reply (nil or empty when absent) against the subprotocols the
// client offered. RFC 6455 4.1: "If the response includes a
// |Sec-WebSocket-Protocol| header field and this header field indicates the
// use of a subprotocol that was not present in the client's handshake (the
// server has indicated a subprotocol not requested by the client), the
// client MUST _Fail the WebSocket Connection_." Errors wrap
// ErrResponseSubprotocol.
func CheckResponseSubprotocol(got []byte, offered []string) error {
	got = http1.TrimOWS(got)
	if len(got) == 0 {
		return nil
	}
	for _, o := range offered {
		if string(got) == o {
			return nil
		}
	}
	return fmt.Errorf("%w: got %q, offered %q", ErrResponseSubprotocol, got, offered)
}

// CheckResponseExtensions validates the Sec-WebSocket-Extensions value of a
// server's 101 reply (nil or empty when absent) against the extension names
// the client offered (nil: none). RFC 6455 4.1: "If the response includes a
// |Sec-WebSocket-Extensions| header field and this header field indicates
// the use of an extension that was not present in the client's handshake
// (the server has indicated an extension not requested by the client), the
// client MUST _Fail the WebSocket Connection_." Errors wrap
// ErrResponseExtension.
func CheckResponseExtensions(got []byte, offered []string) error {
	for len(got) > 0 {
		var item []byte
		item, got = http1.NextToken(got)
		if i := bytes.IndexByte(item, ';'); i >= 0 {
			item = http1.TrimOWS(item[:i])
		}
		if len(item) == 0 {
			continue
		}
		ok := false
		for _, o := range offered {
			if strings.EqualFold(string(item), o) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%w: %q", ErrResponseExtension, item)
		}
	}
	return nil
}

// CheckSubprotocols validates the subprotocols a client offers. RFC 6455
// 4.1: "The request MAY include a header field with the name
// |Sec-WebSocket-Protocol|. If present, this value indicates one or more
// comma-separated subprotocol the client wishes to speak, ordered by
// preference. The elements that comprise this value MUST be non-empty
// strings with characters in the range U+0021 to U+007E not including
// separator characters as defined in [RFC2616] and MUST all be unique
// strings." Errors wrap ErrRequestHeader.
func CheckSubprotocols(list []string) error {
	for i, p := range list {
		if p == "" {
			return fmt.Errorf("%w: empty subprotocol", ErrRequestHeader)
		}
		for j := 0; j < len(p); j++ {
			if !isTokenChar(p[j]) {
				return fmt.Errorf("%w: subprotocol %q is not a token", ErrRequestHeader, p)
			}
		}
		for _, q := range list[:i] {
			if q == p {
				return fmt.Errorf("%w: subprotocol %q offered twice", ErrRequestHeader, p)
			}
		}
	}
	return nil
}
