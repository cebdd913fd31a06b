package ws13

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/tornago/tornago/proto/http1"
)

// Errors returned (wrapped with details) by the client-side checks.
var (
	ErrURL                 = errors.New("ws13: invalid WebSocket URL")
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

// CheckDial validates what a client is asked to dial, before anything is
// sent: rawURL must be a ws:// URL naming a host (wss:// is not supported:
// terminate TLS in a proxy), every header field must pass
// CheckRequestHeader and subprotocols CheckSubprotocols. It returns the
// parsed URL (its query string is part of the request-target) and the
// host:port to connect to, port 80 when the URL has none. Errors wrap
// ErrURL or ErrRequestHeader. header is an http.Header (or any map of field
// names to values).
func CheckDial(rawURL string, header map[string][]string, subprotocols []string) (u *url.URL, addr string, err error) {
	u, err = url.Parse(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrURL, err)
	}
	if u.Scheme != "ws" {
		return nil, "", fmt.Errorf("%w: scheme %q not supported (ws:// only; terminate TLS in a proxy)", ErrURL, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, "", fmt.Errorf("%w: no host", ErrURL)
	}
	for name, vals := range header {
		for _, v := range vals {
			if err := CheckRequestHeader(name, v); err != nil {
				return nil, "", err
			}
		}
	}
	if err := CheckSubprotocols(subprotocols); err != nil {
		return nil, "", err
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return u, addr, nil
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
//	[extra headers, in name order]
//
// followed by the empty line. key is a NewKey value; extra is an
// http.Header (or any map of field names to values). The caller validates
// with CheckDial (or CheckRequestHeader) first; a field that fails the
// check (and a subprotocol holding CR or LF) is left out here rather than
// sent, so the result is never a split request. An extra Host field
// replaces host.
func AppendRequest(dst []byte, host, requestURI string, key []byte, subprotocols []string, extra map[string][]string) []byte {
	for name, vals := range extra {
		if strings.EqualFold(name, "Host") && len(vals) > 0 && safeHeader(vals[0]) {
			host = vals[0]
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
	if len(extra) == 0 {
		return append(dst, "\r\n"...)
	}
	// Name order, so that a request is the same bytes every time (a map's
	// order is random).
	for _, name := range slices.Sorted(maps.Keys(extra)) {
		if strings.EqualFold(name, "Host") {
			continue
		}
		for _, v := range extra[name] {
			if CheckRequestHeader(name, v) != nil {
				continue
			}
			dst = appendHeaderLine(dst, name, v)
		}
	}
	return append(dst, "\r\n"...)
}

// ClientOffer is what a client's opening handshake offered, for
// CheckResponse.
type ClientOffer struct {
	// Key is the Sec-WebSocket-Key value sent (a NewKey value).
	Key []byte
	// Subprotocols are the subprotocols offered in Sec-WebSocket-Protocol.
	Subprotocols []string
	// Extensions are the names of the extensions offered in
	// Sec-WebSocket-Extensions; nil: none, so any extension in the
	// response fails it.
	Extensions []string
}

// Accepted is what a server's valid 101 reply selected.
type Accepted struct {
	// Subprotocol is the subprotocol the server selected, trimmed of white
	// space; "" for none.
	Subprotocol string
	// Extensions is the Sec-WebSocket-Extensions value, trimmed; "" for
	// none. Every extension in it was offered.
	Extensions string
}

// CheckResponse validates a server's reply to a client's opening handshake
// (RFC 6455 4.1), the one check both of tornago's clients make: status 101,
// Upgrade containing "websocket", Connection containing "Upgrade", the
// Sec-WebSocket-Accept value derived from offer.Key, a subprotocol (if any)
// among offer.Subprotocols and extensions (if any) among offer.Extensions.
// header returns the value of a response field, nil when absent (as
// http1.ResponseHead.Get does). Errors wrap ErrResponseStatus,
// ErrResponseUpgrade, ErrResponseConnection, ErrResponseAccept,
// ErrResponseSubprotocol or ErrResponseExtension. It is a pure function.
func CheckResponse(status int, header func(name string) []byte, offer ClientOffer) (Accepted, error) {
	if err := checkResponseHead(status, header("Upgrade"), header("Connection"), header("Sec-WebSocket-Accept"), offer.Key); err != nil {
		return Accepted{}, err
	}
	proto := http1.TrimOWS(header("Sec-WebSocket-Protocol"))
	if err := CheckResponseSubprotocol(proto, offer.Subprotocols); err != nil {
		return Accepted{}, err
	}
	exts := http1.TrimOWS(header("Sec-WebSocket-Extensions"))
	if err := CheckResponseExtensions(exts, offer.Extensions); err != nil {
		return Accepted{}, err
	}
	return Accepted{Subprotocol: string(proto), Extensions: string(exts)}, nil
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

// DialError is what a failed client handshake reports, for both of
// Tornago's clients (loop.DialError for the loop-driven one,
// wsclient.DialError for the blocking one): the URL, the HTTP status of the
// server's reply (0 when none arrived) and the cause.
type DialError struct {
	URL    string
	Status int
	Err    error
}

// Error implements error.
func (e *DialError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("websocket dial %s: status %d: %v", e.URL, e.Status, e.Err)
	}
	return fmt.Sprintf("websocket dial %s: %v", e.URL, e.Err)
}

// Unwrap returns the cause: a net error, a timeout, ErrURL or
// ErrRequestHeader (bad arguments, nothing was sent), or one of the
// ErrResponse* values (the server's reply failed the handshake).
func (e *DialError) Unwrap() error { return e.Err }
