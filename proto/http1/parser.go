// Package http1 is a pure, incremental, zero-copy HTTP/1.1 request parser
// (RFC 9112) for an event-loop server, plus a chunked body decoder and a
// small response-head parser for a WebSocket client. It does no I/O and
// starts no goroutines.
//
// The server calls Parser.Parse every time new bytes arrive, passing all
// bytes buffered so far for the connection, starting at the first
// unconsumed byte. Parse returns ErrIncomplete until the head is complete,
// then the number of bytes the head used. A Parser remembers how far it
// has scanned, so a head that arrives one byte at a time is scanned in
// O(n) total.
//
// The parser is deliberately stricter than net/http:
//   - bare LF line terminators are rejected with 400 (net/http accepts
//     them); RFC 9112 2.2 allows either behaviour;
//   - obs-fold is rejected with 400 (net/http unfolds);
//   - Transfer-Encoding together with Content-Length is rejected with 400
//     (net/http lets Transfer-Encoding win);
//   - Transfer-Encoding in an HTTP/1.0 request is rejected with 400
//     (net/http ignores it);
//   - a missing Host in HTTP/1.1 is rejected with 400 (net/http only does
//     so in its server, not in ReadRequest);
//   - versions other than 1.0/1.1 are rejected with 505;
//   - whitespace between a field name and the colon is rejected with 400
//     (RFC 9112 5.1 MUST; net/http accepts it);
//   - userinfo in the target or Host, a non-numeric port in Host, and the
//     asterisk-form with a method other than OPTIONS are rejected with 400;
//   - an Expect other than 100-continue is 417 already at parse time.
//
// It is more lenient in a few places, all allowed by the RFCs: a single
// Content-Length field holding a list of identical values ("5, 5", RFC 9110
// 8.6), leading empty lines before the request line (RFC 9112 2.2; net/http
// skips them only in its server), and BWS before ";" in chunk extensions
// (RFC 9112 7.1.1). A '#fragment' in the target is dropped from Path and
// Query (net/http keeps it in RawQuery/Path).
package http1

import "bytes"

const (
	stLeading = iota // skipping empty lines before the request line
	stReqLine        // looking for the end of the request line
	stHeaders        // looking for the end of each field line
)

// Parser holds the scan position of a request head in progress so that a
// head arriving one byte at a time is scanned once. The zero value is
// ready to use. A Parser is tied to one connection's buffer: after Parse
// returns anything but ErrIncomplete it is reset for the next request.
type Parser struct {
	state int // stLeading, stReqLine or stHeaders
	start int // offset of the request line
	pos   int // offset of the current (incomplete) line
	scan  int // buf[pos:scan] is known to contain no LF
}

// Reset forgets any partial progress.
func (p *Parser) Reset() { *p = Parser{} }

// Parse parses the request head at the start of buf into h (h is Reset
// first). It returns n, the number of bytes the head used (through the
// blank line, including any leading empty lines), or ErrIncomplete (n==0)
// when more bytes are needed, or an *Error the server must answer before
// closing. After anything but ErrIncomplete p is reset for the next
// request. h's slices point into buf.
//
// Between calls that return ErrIncomplete, buf must start at the same byte
// and only grow (its contents may be moved to a new array).
func (p *Parser) Parse(buf []byte, lim Limits, h *Head) (n int, err error) {
	lim = lim.WithDefaults()
	h.Reset()
	if p.scan > len(buf) || p.pos > len(buf) {
		p.Reset() // the caller broke the contract; start over
	}
	// Lines already validated in an earlier call were not stored in h
	// (h's slices would point into an old buffer); if there were any,
	// the head is re-extracted once it is complete.
	fill := p.state != stHeaders
	maxHead := len(buf)
	if maxHead > lim.MaxHeaderBytes {
		maxHead = lim.MaxHeaderBytes
	}

	if p.state == stLeading {
		// RFC 9112 2.2: "In the interest of robustness, a server that is
		// expecting to receive and parse a request-line SHOULD ignore at
		// least one empty line (CRLF) received prior to the request-line."
		i := p.pos
		for {
			if i+1 >= maxHead {
				p.pos, p.scan = i, i
				if i < maxHead && buf[i] != '\r' && buf[i] != '\n' {
					break // request line starts at the last byte so far
				}
				if i < maxHead && buf[i] == '\n' {
					p.Reset()
					return 0, errLeadingBareLF
				}
				if len(buf) >= lim.MaxHeaderBytes {
					p.Reset()
					return 0, errHeadTooLarge
				}
				return 0, ErrIncomplete
			}
			if buf[i] == '\r' && buf[i+1] == '\n' {
				i += 2
				continue
			}
			if buf[i] == '\n' {
				p.Reset()
				return 0, errLeadingBareLF
			}
			break
		}
		p.state, p.start, p.pos, p.scan = stReqLine, i, i, i
	}

	if p.state == stReqLine {
		// The request line (without CRLF) may be MaxRequestLine bytes, so
		// its LF must lie before start+MaxRequestLine+2. Whichever limit
		// is tighter decides the status, so that the outcome does not
		// depend on how the bytes were split into reads.
		end, tooBig := p.start+lim.MaxRequestLine+2, errURITooLong
		if lim.MaxHeaderBytes < end {
			end, tooBig = lim.MaxHeaderBytes, errHeadTooLarge
		}
		stop := len(buf)
		if stop > end {
			stop = end
		}
		i := bytes.IndexByte(buf[p.scan:stop], '\n')
		if i < 0 {
			p.scan = stop
			if len(buf) >= end {
				// RFC 9112 3: "A server that receives a request-target
				// longer than any URI it wishes to parse MUST respond with
				// a 414 (URI Too Long) status code."
				p.Reset()
				return 0, tooBig
			}
			return 0, ErrIncomplete
		}
		i += p.scan
		// RFC 9112 2.2: "a recipient MAY recognize a single LF as a line
		// terminator" — we do not (strictness against smuggling).
		if i == p.start || buf[i-1] != '\r' {
			p.Reset()
			return 0, errBareLF
		}
		if err := parseRequestLine(buf[p.start:i-1], h); err != nil {
			p.Reset()
			return 0, err
		}
		p.state, p.pos, p.scan = stHeaders, i+1, i+1
	}

	for {
		i := bytes.IndexByte(buf[p.scan:maxHead], '\n')
		if i < 0 {
			p.scan = maxHead
			if len(buf) >= lim.MaxHeaderBytes {
				// RFC 6585 5: 431 "indicates that the server is unwilling
				// to process the request because its header fields are
				// too large."
				p.Reset()
				return 0, errHeadTooLarge
			}
			return 0, ErrIncomplete
		}
		i += p.scan
		if i == p.pos || buf[i-1] != '\r' {
			p.Reset()
			return 0, errBareLF
		}
		line := buf[p.pos : i-1]
		p.pos, p.scan = i+1, i+1
		if len(line) == 0 {
			break // RFC 9112 2.1: the empty line ends the header section
		}
		f, ok := parseField(line)
		if !ok {
			p.Reset()
			return 0, errFieldLine
		}
		h.Fields = append(h.Fields, f)
	}

	n = p.pos
	start := p.start
	p.Reset()
	if !fill {
		h.Reset()
		extractHead(buf[start:n], h)
	}
	if err := h.finish(); err != nil {
		return 0, err
	}
	return n, nil
}

// extractHead re-parses an already validated head (request line through
// the blank line) into h.
func extractHead(b []byte, h *Head) {
	i := bytes.IndexByte(b, '\n')
	_ = parseRequestLine(b[:i-1], h)
	b = b[i+1:]
	for {
		i = bytes.IndexByte(b, '\n')
		if i <= 1 {
			return
		}
		f, _ := parseField(b[:i-1])
		h.Fields = append(h.Fields, f)
		b = b[i+1:]
	}
}

// parseRequestLine parses "method SP request-target SP HTTP-version".
func parseRequestLine(line []byte, h *Head) error {
	// RFC 9112 3: request-line = method SP request-target SP HTTP-version.
	// "Although the request-line grammar rule requires that each of the
	// component elements be separated by a single SP octet, recipients MAY
	// instead parse on whitespace-delimited word boundaries" — we don't.
	// RFC 9110 9.1: method = token.
	i := 0
	for i < len(line) && isTchar[line[i]] {
		i++
	}
	if i == len(line) || line[i] != ' ' {
		return errRequestLine
	}
	if i == 0 {
		return errMethod
	}
	h.Method = line[:i]
	rest := line[i+1:]
	j := bytes.IndexByte(rest, ' ')
	if j <= 0 {
		return errRequestLine
	}
	target, version := rest[:j], rest[j+1:]

	// RFC 9112 2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT, and
	// HTTP-name is case-sensitive. RFC 9110 15.6.6: 505 "indicates that
	// the server does not support ... the major version of HTTP that was
	// used in the request message".
	if len(version) != 8 || string(version[:5]) != "HTTP/" || version[6] != '.' ||
		version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9' {
		return errVersion
	}
	h.Major, h.Minor = int(version[5]-'0'), int(version[7]-'0')
	if h.Major != 1 || h.Minor > 1 {
		return errVersionNotSup
	}
	return parseTarget(target, h)
}

// parseTarget validates the request-target and splits it (RFC 9112 3.2).
func parseTarget(t []byte, h *Head) error {
	// RFC 9112 3.2: "A client MUST send ... request-target" made of URI
	// characters; CTLs and SP are never allowed (SP was split off already).
	for _, c := range t {
		if c < 0x20 || c == 0x7f {
			return errTarget
		}
	}
	h.Target = t
	switch {
	case t[0] == '/':
		// origin-form = absolute-path [ "?" query ]
		return splitPathQuery(t, h)
	case len(t) == 1 && t[0] == '*':
		// RFC 9112 3.2.4: "The asterisk-form of request-target is only
		// used for a server-wide OPTIONS request".
		if string(h.Method) != "OPTIONS" {
			return errAsterisk
		}
		h.Path = t
		return nil
	case string(h.Method) == "CONNECT":
		// RFC 9112 3.2.3: authority-form = uri-host ":" port, "only used
		// for CONNECT requests".
		if !validAuthority(t) {
			return errTarget
		}
		h.Authority = t
		return nil
	}
	// RFC 9112 3.2.2: absolute-form = absolute-URI.
	// scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 3.1)
	i := 0
	for i < len(t) && (isAlpha(t[i]) || i > 0 && (isDigit(t[i]) || t[i] == '+' || t[i] == '-' || t[i] == '.')) {
		i++
	}
	if i == 0 || i == len(t) || t[i] != ':' {
		return errTarget
	}
	rest := t[i+1:]
	if len(rest) >= 2 && rest[0] == '/' && rest[1] == '/' {
		rest = rest[2:]
		k := 0
		for k < len(rest) && rest[k] != '/' && rest[k] != '?' && rest[k] != '#' {
			k++
		}
		if !validAuthority(rest[:k]) {
			return errTarget
		}
		h.Authority = rest[:k]
		return splitPathQuery(rest[k:], h)
	}
	if len(rest) > 0 && rest[0] == '/' {
		return splitPathQuery(rest, h)
	}
	// Opaque URI ("urn:x"): no path; keep only the query.
	err := splitPathQuery(rest, h)
	h.Path = nil
	return err
}

// splitPathQuery sets Path and Query from "path [? query] [# fragment]".
func splitPathQuery(t []byte, h *Head) error {
	p := 0
	for p < len(t) && t[p] != '?' && t[p] != '#' {
		// RFC 3986 2.1: pct-encoded = "%" HEXDIG HEXDIG
		if t[p] == '%' && (p+2 >= len(t) || !isHex(t[p+1]) || !isHex(t[p+2])) {
			return errTarget
		}
		p++
	}
	h.Path = t[:p]
	if p < len(t) && t[p] == '?' {
		q := t[p+1:]
		if f := bytes.IndexByte(q, '#'); f >= 0 {
			q = q[:f]
		}
		h.Query = q
	}
	return nil
}

// validAuthority checks host [ ":" port ] (RFC 3986 3.2, RFC 9110 7.2).
// userinfo is rejected: RFC 9110 4.2.4 "a recipient SHOULD parse for
// userinfo and treat its presence as an error". host is an IP-literal in
// brackets or a reg-name of unreserved / sub-delims characters; port is
// *DIGIT. An empty authority is valid (an empty Host field is allowed).
func validAuthority(a []byte) bool {
	i := 0
	if len(a) > 0 && a[0] == '[' {
		// IP-literal = "[" ( IPv6address / IPvFuture ) "]", loosely.
		for i = 1; i < len(a) && a[i] != ']'; i++ {
			c := a[i]
			if !isHex(c) && c != ':' && c != '.' && c != '%' && c != '-' && c != '_' && c != '~' && !isAlpha(c) && !isDigit(c) {
				return false
			}
		}
		if i == len(a) || i == 1 {
			return false
		}
		i++
	} else {
		for ; i < len(a) && a[i] != ':'; i++ {
			c := a[i]
			if isAlpha(c) || isDigit(c) {
				continue
			}
			switch c {
			case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
			default:
				return false
			}
		}
	}
	if i == len(a) {
		return true
	}
	if a[i] != ':' {
		return false
	}
	for _, c := range a[i+1:] {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// finish derives the framing and connection semantics from the fields.
func (h *Head) finish() error {
	var (
		cl                       int64 = -1
		hasTE, hasHost, multiHst bool
		teErr                    error
		connClose, connKeep      bool
		connUpgrade, hasUpgrade  bool
		expect100, expectOther   bool
		chunkedSeen              int
		lastChunked              bool
		hostErr                  bool
	)
	for i := range h.Fields {
		f := &h.Fields[i]
		name, v := f.Name, f.Value
		switch len(name) {
		case 4:
			if EqualFold(name, "host") {
				// RFC 9112 3.2: "A server MUST respond with a 400 (Bad
				// Request) status code to any HTTP/1.1 request message
				// that lacks a Host header field and to any request
				// message that contains more than one Host header field
				// line or a Host header field with an invalid field value."
				if hasHost {
					multiHst = true
				}
				hasHost = true
				if !validAuthority(v) {
					hostErr = true
				}
			}
		case 6:
			if EqualFold(name, "expect") {
				// RFC 9110 10.1.1: "A server that receives an Expect field
				// value containing a member other than 100-continue MAY
				// respond with a 417 (Expectation Failed) status code".
				for len(v) > 0 {
					var e []byte
					if e, v = NextToken(v); len(e) == 0 {
						break
					}
					if EqualFold(e, "100-continue") {
						expect100 = true
					} else {
						expectOther = true
					}
				}
			}
		case 7:
			if EqualFold(name, "upgrade") {
				hasUpgrade = true
			}
		case 10:
			if EqualFold(name, "connection") {
				for len(v) > 0 {
					var e []byte
					e, v = NextToken(v)
					switch {
					case EqualFold(e, "close"):
						connClose = true
					case EqualFold(e, "keep-alive"):
						connKeep = true
					case EqualFold(e, "upgrade"):
						connUpgrade = true
					}
				}
			}
		case 14:
			if EqualFold(name, "content-length") {
				// RFC 9110 8.6: Content-Length = 1*DIGIT. "a recipient MAY
				// either reject the message as invalid or replace that
				// invalid field value with a single instance of the
				// decimal value, since this likely indicates that a
				// duplicate was generated or combined by an upstream
				// message processor" (for a list of identical values).
				// RFC 9112 6.3: "If a message is received without
				// Transfer-Encoding and with an invalid Content-Length
				// header field, then the message framing is invalid and
				// the recipient MUST treat it as an unrecoverable error
				// ... the server MUST respond with a 400".
				for rest := v; rest != nil; {
					// Content-Length is 1*DIGIT, not a #list: an empty
					// element, which NextToken would skip, is invalid.
					if r := TrimOWS(rest); len(r) == 0 || r[0] == ',' {
						return errContentLength
					}
					var e []byte
					e, rest = NextToken(rest) // one element; nil after the last
					n, ok := parseDecimal(e)
					if !ok {
						return errContentLength
					}
					if cl >= 0 && n != cl {
						return errMultiCL
					}
					cl = n
				}
			}
		case 17:
			if EqualFold(name, "transfer-encoding") {
				hasTE = true
				for len(v) > 0 {
					var e []byte
					e, v = NextToken(v) // skips empty elements (RFC 9110 5.6.1)
					switch {
					case len(e) == 0:
					case EqualFold(e, "chunked"):
						chunkedSeen++
						lastChunked = true
					default:
						// RFC 9112 6.1: "A server that receives a request
						// message with a transfer coding it does not
						// understand SHOULD respond with 501 (Not
						// Implemented)."
						if teErr == nil {
							teErr = errTEUnsupported
						}
						lastChunked = false
					}
				}
			}
		}
	}
	if hasTE {
		// RFC 9112 6.1: "A server or client that receives an HTTP/1.0
		// message containing a Transfer-Encoding header field MUST treat
		// the message as if the framing is faulty".
		if h.Minor == 0 {
			return errTEHTTP10
		}
		if teErr != nil {
			return teErr
		}
		// RFC 9112 6.1: "A sender MUST NOT apply the chunked transfer
		// coding more than once to a message body".
		if chunkedSeen == 0 {
			return errTEEmpty
		}
		if chunkedSeen > 1 || !lastChunked {
			return errTEChunkedTwice
		}
		// RFC 9112 6.3: "If a message is received with both a
		// Transfer-Encoding and a Content-Length header field, the
		// Transfer-Encoding overrides the Content-Length. Such a message
		// might indicate an attempt to perform request smuggling ... and
		// ought to be handled as an error." We reject.
		if cl >= 0 {
			return errTEAndCL
		}
		h.Chunked = true
	}
	h.ContentLength = cl
	if multiHst {
		return errMultiHost
	}
	if hostErr {
		return errBadHost
	}
	if !hasHost && h.Minor == 1 {
		return errNoHost
	}
	if expectOther {
		return errExpectation
	}
	// RFC 9110 10.1.1: "A server that receives a 100-continue expectation
	// in an HTTP/1.0 request MUST ignore that expectation."
	h.Expect100 = expect100 && h.Minor == 1
	// RFC 9112 9.3: "If the received protocol is HTTP/1.1 (or later), the
	// connection will persist after the current response [unless close];
	// if the received protocol is HTTP/1.0, the "keep-alive" connection
	// option is present ... the connection will persist".
	if h.Minor == 1 {
		h.KeepAlive = !connClose
	} else {
		h.KeepAlive = connKeep && !connClose
	}
	h.Upgrade = connUpgrade && hasUpgrade
	return nil
}

// parseDecimal parses 1*DIGIT into a non-negative int64.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63-1-int64(c-'0'))/10 {
			return 0, false // overflow
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
