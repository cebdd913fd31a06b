package ws13

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Errors returned (wrapped with details) by CheckCloseFrame.
var (
	ErrCloseCode   = errors.New("ws13: close code may not be sent")
	ErrCloseReason = errors.New("ws13: invalid close reason")
)

// CheckCloseFrame reports whether an endpoint may send a close frame with
// code and reason, as gobwas/ws's CheckCloseFrameData does: code must be one
// ValidCloseCode accepts (1000-1003, 1007-1014, 3000-4999), and reason valid
// UTF-8 of at most 123 bytes. Errors wrap ErrCloseCode or ErrCloseReason. It
// is a pure function, safe anywhere.
//
// A close frame without a status code (the peer sees 1005) has an empty
// body: AppendCloseFrame writes one for code 0 or 1005, which this check,
// being about codes put on the wire, rejects.
func CheckCloseFrame(code StatusCode, reason string) error {
	// RFC 6455 7.4.1: 1004 "Reserved. The specific meaning might be
	// defined in the future."; 1005 and 1006 are "a reserved value and
	// MUST NOT be set as a status code in a Close control frame by an
	// endpoint", as is 1015; RFC 6455 7.4.2: "Status codes in the range
	// 0-999 are not used."; 1016-2999 are "reserved for definition by this
	// protocol, its future revisions, and extensions specified in a
	// permanent and readily available public specification" (1012-1014 are
	// registered with IANA since), and 5000 and above are not defined.
	if !ValidCloseCode(code) {
		return fmt.Errorf("%w: %d", ErrCloseCode, code)
	}
	// RFC 6455 5.5: "All control frames MUST have a payload length of 125
	// bytes or less", two of which are the code.
	if len(reason) > MaxControlPayload-2 {
		return fmt.Errorf("%w: %d bytes, at most %d fit", ErrCloseReason, len(reason), MaxControlPayload-2)
	}
	// RFC 6455 5.5.1: "Following the 2-byte integer, the body MAY contain
	// UTF-8-encoded data with value /reason/".
	if !utf8.ValidString(reason) {
		return fmt.Errorf("%w: not valid UTF-8", ErrCloseReason)
	}
	return nil
}

// parseClose checks a close frame body.
func parseClose(p []byte) (Event, error) {
	ev := Event{Kind: EventClose, Op: ws.OpClose, Payload: p}
	switch len(p) {
	case 0:
		// RFC 6455 7.1.5: "If this Close control frame contains no status
		// code, _The WebSocket Connection Close Code_ is considered to be
		// 1005."
		ev.Code = CloseNoStatus
		return ev, nil
	case 1:
		// RFC 6455 5.5.1: "If there is a body, the first two bytes of the
		// body MUST be a 2-byte unsigned integer (in network byte order)
		// representing a status code".
		return ev, protocolError("close frame body of 1 byte")
	}
	ev.Code = StatusCode(binary.BigEndian.Uint16(p))
	ev.Reason = p[2:]
	// RFC 6455 7.4.1/7.4.2: 1004 is reserved, "1005 ... MUST NOT be set as
	// a status code in a Close control frame by an endpoint" (likewise 1006
	// and 1015), "Status codes in the range 0-999 are not used".
	if !ValidCloseCode(ev.Code) {
		return ev, protocolError("invalid close code " + strconv.Itoa(int(ev.Code)))
	}
	// RFC 6455 5.5.1: "Following the 2-byte integer, the body MAY contain
	// UTF-8-encoded data with value /reason/"; 8.1: invalid UTF-8 MUST
	// fail the connection.
	if !utf8.Valid(ev.Reason) {
		return ev, invalidUTF8("invalid UTF-8 in close reason")
	}
	return ev, nil
}

// ValidCloseCode reports whether a peer may send code in a close frame:
// 1000-1003, 1007-1014 and 3000-4999.
//
// 1012 (Service Restart), 1013 (Try Again Later) and 1014 (Bad Gateway) are
// not in RFC 6455 but are registered in the IANA "WebSocket Close Code
// Number Registry" and sent by real servers, so they are accepted.
// 1004 is reserved, 1005, 1006 and 1015 must never be sent, 0-999,
// 1016-2999 (unassigned protocol codes) and 5000 and above are invalid.
func ValidCloseCode(code StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// closeReason returns reason cut to at most 123 bytes (125 minus the code)
// at a UTF-8 character boundary.
func closeReason(reason string) string {
	const max = MaxControlPayload - 2
	if len(reason) <= max {
		return reason
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

func appendCloseBody(dst []byte, code StatusCode, reason string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}

// AppendCloseFrame appends an unmasked close frame (as a server sends) with
// code and reason to dst. Code 0 or 1005 (CloseNoStatus) produces an
// empty body and reason is ignored (RFC 6455 7.4.1: 1005 "MUST NOT be set
// as a status code in a Close control frame"). The reason is cut to fit the
// 125-byte control payload limit at a UTF-8 character boundary. It writes
// any other code as given: check a code and reason that come from an
// application with CheckCloseFrame first.
func AppendCloseFrame(dst []byte, code StatusCode, reason string) []byte {
	if code == 0 || code == CloseNoStatus {
		return append(dst, bitFin|byte(ws.OpClose), 0)
	}
	reason = closeReason(reason)
	dst = slices.Grow(dst, 2+2+len(reason))
	dst = appendHeader(dst, true, ws.OpClose, false, 2+len(reason))
	return appendCloseBody(dst, code, reason)
}

// AppendMaskedCloseFrame is AppendCloseFrame for a client: the frame is
// masked with mask.
func AppendMaskedCloseFrame(dst []byte, mask [4]byte, code StatusCode, reason string) []byte {
	if code == 0 || code == CloseNoStatus {
		return append(dst, bitFin|byte(ws.OpClose), bitMask, mask[0], mask[1], mask[2], mask[3])
	}
	reason = closeReason(reason)
	dst = slices.Grow(dst, 2+4+2+len(reason))
	dst = appendHeader(dst, true, ws.OpClose, true, 2+len(reason))
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = appendCloseBody(dst, code, reason)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}
