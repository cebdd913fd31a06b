package loop

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tornago/tornago/proto/http1"
)

// ErrFinished is returned when writing to a request that is already finished.
var ErrFinished = errors.New("loop: request already finished")

// Request is one HTTP request and its response, like Tornado's
// RequestHandler instance. All its methods are loop-only: those that send
// (Write, Flush, Finish, Redirect, SendError, EventStream) return
// ErrNotOnLoop from another goroutine and do nothing; from there, hand the
// work to the loop with r.Loop().AddCallback (or RunInExecutor's
// callback). Its fields and the
// bytes they refer to stay valid until the request is finished, also for an
// asynchronous handler.
type Request struct {
	Method   string
	Path     string   // percent-decoded path
	RawQuery string   // query string without '?'
	PathArgs []string // capture groups of the route pattern
	Body     []byte   // the decoded body (Content-Length or chunked)
	Proto    string   // "HTTP/1.1" or "HTTP/1.0"

	head       http1.Head
	raw        []byte
	c          *conn
	hc         *httpConn
	args       map[string][]string
	status     int
	hdr        []string // name, value pairs
	out        []byte
	async      bool
	pending    bool // counted in pendingAsync (stats.go)
	dispatched bool
	finished   bool
	gone       bool
	onGone     func()
	keep       bool
	headOnly   bool
	start      int64     // loop clock when the head was parsed (access log)
	fwd        forwarded // RemoteIP, Scheme and Host, resolved on first use

	// Streamed responses (stream.go).
	streaming bool         // the head is sent: Flush ran
	chunked   bool         // the body is sent in chunks (HTTP/1.1); else until close
	streamMax int          // unsent-output bound; 0: AppOptions.MaxUnsentPerConn
	bodySent  int          // body bytes sent so far (access log)
	es        *EventStream // the request's event stream, if any
}

// Loop-only.
// Header returns the first value of a request header (case-insensitive).
func (r *Request) Header(name string) string { return string(r.head.Get(name)) }

// Loop-only.
// Headers returns every value of a repeated request header.
func (r *Request) Headers(name string) []string {
	var out []string
	for _, v := range r.head.Values(nil, name) {
		out = append(out, string(v))
	}
	return out
}

// Loop-only.
// HeaderMap returns a copy of the request's header fields (names in
// canonical form, repeated ones in order), for code that keeps them past
// the request or runs off the loop (an authentication hook).
func (r *Request) HeaderMap() http.Header {
	h := make(http.Header, len(r.head.Fields))
	for _, f := range r.head.Fields {
		k := http.CanonicalHeaderKey(string(f.Name))
		h[k] = append(h[k], string(f.Value))
	}
	return h
}

// Loop-only.
// Cookie returns the named cookie's value, "" when absent.
func (r *Request) Cookie(name string) string {
	for _, line := range r.head.Values(nil, "Cookie") {
		for _, part := range strings.Split(string(line), ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}

// Loop-only.
// RemoteAddr is the TCP peer's address as "ip:port": behind a reverse
// proxy, the proxy's. RemoteIP gives the client's address through a trusted
// proxy. "" once the connection is gone.
func (r *Request) RemoteAddr() string {
	if r.c == nil || r.c.gc == nil || r.c.cf.has(cfDead) {
		return ""
	}
	return r.c.gc.RemoteAddr().String()
}

// Goroutine-safe.
// Loop returns the loop serving the request.
func (r *Request) Loop() *Loop { return r.c.l }

func (r *Request) parseArgs() {
	if r.args != nil {
		return
	}
	r.args = map[string][]string{}
	_ = http1.ParseQuery(r.args, []byte(r.RawQuery))
	ct := r.Header("Content-Type")
	if strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		_ = http1.ParseQuery(r.args, r.Body)
	}
}

// Loop-only.
// GetArgument returns the last value of a query or urlencoded-body argument,
// or def when it is absent (Tornado's get_argument).
func (r *Request) GetArgument(name, def string) string {
	r.parseArgs()
	if v := r.args[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return def
}

// Loop-only.
// GetArguments returns every value of an argument, query first then body.
func (r *Request) GetArguments(name string) []string {
	r.parseArgs()
	return r.args[name]
}

// Loop-only.
// DecodeJSON decodes a JSON body into v.
func (r *Request) DecodeJSON(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("loop: decode JSON body: %w", err)
	}
	return nil
}

// Loop-only.
// SetStatus sets the response status (default 200).
func (r *Request) SetStatus(code int) { r.status = code }

// Loop-only.
// Status returns the response status set so far.
func (r *Request) Status() int { return r.status }

// Loop-only.
// SetHeader sets a response header, replacing earlier values.
func (r *Request) SetHeader(name, value string) {
	for i := 0; i < len(r.hdr); i += 2 {
		if strings.EqualFold(r.hdr[i], name) {
			r.hdr = append(r.hdr[:i], r.hdr[i+2:]...)
			i -= 2
		}
	}
	r.AddHeader(name, value)
}

// Loop-only.
// AddHeader adds a response header value. CR and LF are removed to prevent
// response splitting.
func (r *Request) AddHeader(name, value string) {
	r.hdr = append(r.hdr, stripCRLF(name), stripCRLF(value))
}

func stripCRLF(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", "", "\n", "").Replace(s)
}

// Loop-only.
// SetCookie adds a Set-Cookie header (value not escaped; attrs like "Path=/").
func (r *Request) SetCookie(name, value string, attrs ...string) {
	v := name + "=" + value
	for _, a := range attrs {
		v += "; " + a
	}
	r.AddHeader("Set-Cookie", v)
}

func (r *Request) hasHeader(name string) bool {
	for i := 0; i < len(r.hdr); i += 2 {
		if strings.EqualFold(r.hdr[i], name) {
			return true
		}
	}
	return false
}

// Loop-only.
// Write appends to the response body: a string or []byte as is, any other
// value as JSON (Tornado writes a dict as JSON), setting Content-Type.
func (r *Request) Write(v any) error {
	if !r.c.l.InLoop() {
		return ErrNotOnLoop
	}
	if r.finished {
		return ErrFinished
	}
	switch b := v.(type) {
	case string:
		r.out = append(r.out, b...)
	case []byte:
		r.out = append(r.out, b...)
	default:
		js, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("loop: write JSON: %w", err)
		}
		if !r.hasHeader("Content-Type") {
			r.SetHeader("Content-Type", "application/json; charset=UTF-8")
		}
		r.out = append(r.out, js...)
	}
	return nil
}

// Loop-only: call it in the handler, before it returns (a plain field
// write; from another goroutine it would race with the loop reading it).
// Async marks the request as asynchronous: returning from the handler does
// not finish it; call Finish later from a callback or timer on the loop
// (long polling). Use OnConnectionClose to learn that the client left.
func (r *Request) Async() { r.async = true }

// Loop-only.
// OnConnectionClose sets fn to run (once, on the loop) if the client closes
// the connection before the request is finished (Tornado's
// on_connection_close), so a long poll can drop its waiter.
func (r *Request) OnConnectionClose(fn func()) { r.onGone = fn }

// Loop-only.
// Gone reports whether the client has closed the connection.
func (r *Request) Gone() bool { return r.gone }

// Loop-only.
// Finished reports whether Finish ran.
func (r *Request) Finished() bool { return r.finished }

// Loop-only.
// Finish sends the response. Finishing twice, or after the client left,
// is harmless and returns ErrFinished or nil respectively.
func (r *Request) Finish() error {
	if !r.c.l.InLoop() {
		return ErrNotOnLoop
	}
	if r.finished {
		return ErrFinished
	}
	r.finished = true
	r.c.l.st.asyncDone(r)
	if !r.gone {
		r.hc.finish(r.c, r)
	}
	if r.es != nil {
		r.es.ended()
	}
	return nil
}

// Loop-only.
// Redirect answers 302 (or 301 when permanent) with Location url; it
// returns Finish's error.
func (r *Request) Redirect(u string, permanent bool) error {
	if !r.c.l.InLoop() {
		return ErrNotOnLoop
	}
	if permanent {
		r.status = 301
	} else {
		r.status = 302
	}
	r.SetHeader("Location", u)
	return r.Finish()
}

// Loop-only.
// SendError discards any output and finishes with an error page for code.
// After Flush the head is gone: the stream is cut instead (the connection
// closes without the last chunk, so the client sees a truncated response,
// not a complete one). It returns ErrFinished after Finish.
func (r *Request) SendError(code int) error {
	if !r.c.l.InLoop() {
		return ErrNotOnLoop
	}
	if r.finished {
		return ErrFinished
	}
	if r.streaming {
		r.out = r.out[:0]
		r.abortStream(false)
		return nil
	}
	r.out = r.out[:0]
	r.status = code
	r.SetHeader("Content-Type", "text/html; charset=UTF-8")
	txt := http1.StatusText(code)
	r.out = fmt.Appendf(r.out, "<html><title>%d: %s</title><body>%d: %s</body></html>", code, txt, code, txt)
	return r.Finish()
}

func (r *Request) appendResponse(dst []byte, server string) []byte {
	bodyless := bodylessStatus(r.status)
	dst = r.appendHead(dst, server, bodyless, false)
	if !r.headOnly && !bodyless {
		dst = append(dst, r.out...)
	}
	return dst
}

// appendHead appends the status line and headers; stream selects the
// framing of a streamed body (chunked, or until close) over Content-Length.
func (r *Request) appendHead(dst []byte, server string, bodyless, stream bool) []byte {
	r.c.l.st.countStatus(r.status)
	dst = http1.AppendStatusLine(dst, r.status)
	dst = append(dst, "Server: "...)
	dst = append(dst, server...)
	dst = append(dst, "\r\n"...)
	for i := 0; i < len(r.hdr); i += 2 {
		if framingHeader(r.hdr[i]) {
			continue // the loop frames the response itself
		}
		dst = append(dst, r.hdr[i]...)
		dst = append(dst, ": "...)
		dst = append(dst, r.hdr[i+1]...)
		dst = append(dst, "\r\n"...)
	}
	if !r.hasHeader("Content-Type") && (len(r.out) > 0 || stream) {
		dst = append(dst, "Content-Type: text/html; charset=UTF-8\r\n"...)
	}
	switch {
	case bodyless:
	case stream && r.chunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case stream: // HTTP/1.0: the body ends with the connection
	default:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(r.out)), 10)
		dst = append(dst, "\r\n"...)
	}
	if !r.keep {
		dst = append(dst, "Connection: close\r\n"...)
	} else if r.head.Minor == 0 {
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// framingHeader reports headers a handler may not set: the loop writes
// Content-Length and Connection itself, and a second, contradicting value
// would let a proxy and the client frame the response differently.
func framingHeader(name string) bool {
	return strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "Connection") ||
		strings.EqualFold(name, "Transfer-Encoding")
}

func unescapePath(p []byte) string {
	s, err := url.PathUnescape(string(p))
	if err != nil {
		return string(p)
	}
	return s
}
