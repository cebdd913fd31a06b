package http1

import "bytes"

// ResponseHead is a parsed response head (status line and header fields),
// as read by a WebSocket client from the server's handshake reply. Slices
// point into the parsed buffer.
type ResponseHead struct {
	Major, Minor int
	Status       int
	Reason       []byte
	Fields       []Field
}

// Get returns the first value of the named field (case-insensitive, ASCII),
// nil if absent.
func (h *ResponseHead) Get(name string) []byte { return getField(h.Fields, name) }

// HasToken reports whether the comma-separated field name contains token
// (case-insensitive).
func (h *ResponseHead) HasToken(name, token string) bool {
	return fieldsHaveToken(h.Fields, name, token)
}

// ParseResponse parses a status line and header fields at the start of
// buf into h (reusing h.Fields' capacity). It returns n, the bytes used
// through the blank line, or ErrIncomplete, or an *Error with Status 502
// when the head is malformed or larger than maxBytes (default 64 KiB when
// maxBytes <= 0). Bare LF terminators are rejected.
//
// ParseResponse keeps no state between calls; it rescans buf every time,
// which is fine for the small handshake replies it is meant for.
func ParseResponse(buf []byte, maxBytes int, h *ResponseHead) (n int, err error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxHeaderBytes
	}
	*h = ResponseHead{Fields: h.Fields[:0]}
	stop := len(buf)
	if stop > maxBytes {
		stop = maxBytes
	}
	pos := 0
	for first := true; ; first = false {
		i := bytes.IndexByte(buf[pos:stop], '\n')
		if i < 0 {
			if len(buf) >= maxBytes {
				return 0, errRespTooLarge
			}
			return 0, ErrIncomplete
		}
		i += pos
		if i == pos || buf[i-1] != '\r' {
			return 0, errRespBareLF
		}
		line := buf[pos : i-1]
		pos = i + 1
		if first {
			if !parseStatusLine(line, h) {
				return 0, errRespStatusLine
			}
			continue
		}
		if len(line) == 0 {
			return pos, nil
		}
		f, ok := parseField(line)
		if !ok {
			return 0, errRespFieldLine
		}
		h.Fields = append(h.Fields, f)
	}
}

// parseStatusLine parses RFC 9112 4:
// status-line = HTTP-version SP status-code SP [ reason-phrase ].
// A missing SP before an empty reason is tolerated ("SHOULD accept").
func parseStatusLine(line []byte, h *ResponseHead) bool {
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[6] != '.' ||
		!isDigit(line[5]) || !isDigit(line[7]) || line[8] != ' ' ||
		!isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) {
		return false
	}
	h.Major, h.Minor = int(line[5]-'0'), int(line[7]-'0')
	if h.Major != 1 {
		return false
	}
	h.Status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if h.Status < 100 {
		return false
	}
	rest := line[12:]
	if len(rest) > 0 {
		if rest[0] != ' ' {
			return false
		}
		rest = rest[1:]
	}
	// reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
	for _, c := range rest {
		if isCTLExceptHT(c) {
			return false
		}
	}
	h.Reason = rest
	return true
}
