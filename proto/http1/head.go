package http1

// Field is one header field line. Name and Value are slices into the parsed
// buffer; Value is trimmed of optional whitespace (SP / HTAB).
type Field struct {
	Name, Value []byte
}

// Head is a parsed request head. All byte slices point into the buffer
// given to Parser.Parse and are valid only as long as that buffer is.
type Head struct {
	Method []byte
	Target []byte // request-target as sent
	// Path is the path component of the target, still percent-encoded:
	// for origin-form the target up to '?' (or '#'); for absolute-form the
	// path after the authority (possibly empty); "*" for asterisk-form;
	// nil for authority-form (CONNECT) and opaque absolute URIs.
	Path []byte
	// Query is the part after '?', without any '#fragment'; nil if the
	// target has no '?'.
	Query []byte
	// Authority is host[:port] of an absolute-form or authority-form
	// target, nil for origin-form. RFC 9112 3.2.2: an origin server "MUST
	// ignore the received Host header field (if any) and instead use the
	// host information of the request-target".
	Authority []byte

	Major, Minor int // 1.1 or 1.0; anything else is a 505 Error

	// Fields holds all header fields in order, repeated names kept. The
	// backing array is reused across requests (Reset keeps its capacity).
	Fields []Field

	ContentLength int64 // -1 when absent
	Chunked       bool  // Transfer-Encoding: chunked
	KeepAlive     bool  // HTTP/1.1: unless "Connection: close"; HTTP/1.0: only with "Connection: keep-alive"
	Expect100     bool  // "Expect: 100-continue" on an HTTP/1.1 request
	Upgrade       bool  // Connection has token "upgrade" and an Upgrade field is present
}

// Reset clears h, keeping the capacity of Fields.
func (h *Head) Reset() {
	f := h.Fields[:0]
	*h = Head{Fields: f, ContentLength: -1}
}

// Get returns the first value of the named field (case-insensitive, ASCII),
// nil if absent.
func (h *Head) Get(name string) []byte { return getField(h.Fields, name) }

// Values appends all values of the named field to dst.
func (h *Head) Values(dst [][]byte, name string) [][]byte {
	for i := range h.Fields {
		if EqualFold(h.Fields[i].Name, name) {
			dst = append(dst, h.Fields[i].Value)
		}
	}
	return dst
}

// HasToken reports whether the comma-separated field name contains token
// (case-insensitive), e.g. HasToken("Connection", "upgrade"). All fields
// with that name are considered.
func (h *Head) HasToken(name, token string) bool { return fieldsHaveToken(h.Fields, name, token) }

func getField(fields []Field, name string) []byte {
	for i := range fields {
		if EqualFold(fields[i].Name, name) {
			v := fields[i].Value
			if v == nil {
				v = fields[i].Name[len(fields[i].Name):] // non-nil, empty
			}
			return v
		}
	}
	return nil
}

// EqualFold compares b and s ASCII case-insensitively without allocating
// (header names, tokens).
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
// "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA   (RFC 9110 5.6.2)
var isTchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// isCTLExceptHT reports bytes not allowed in a field value:
// field-vchar = VCHAR / obs-text, plus SP and HTAB (RFC 9110 5.5).
func isCTLExceptHT(c byte) bool { return (c < 0x20 && c != '\t') || c == 0x7f }

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// parseField parses one field-line (without CRLF).
// RFC 9112 5: field-line = field-name ":" OWS field-value OWS
func parseField(line []byte) (Field, bool) {
	i := 0
	for i < len(line) && isTchar[line[i]] {
		i++
	}
	// RFC 9112 5.1: "No whitespace is allowed between the field name and
	// colon. ... A server MUST reject, with a response status code of 400
	// (Bad Request), any received request message that contains whitespace
	// between a header field name and colon."
	// A line starting with SP/HT is obs-fold (RFC 9112 5.2) or whitespace
	// after the start-line (RFC 9112 2.2); both end up here (empty name)
	// and are rejected.
	if i == 0 || i == len(line) || line[i] != ':' {
		return Field{}, false
	}
	v := line[i+1:]
	// RFC 9110 5.5: "a recipient of CR, LF, or NUL within a field value
	// MUST either reject the message or replace each of those characters
	// with SP" — we reject every CTL except HTAB.
	for _, c := range v {
		if isCTLExceptHT(c) {
			return Field{}, false
		}
	}
	return Field{Name: line[:i], Value: TrimOWS(v)}, true
}
