package http1

// Default limits used for zero fields of Limits.
const (
	DefaultMaxRequestLine = 8 << 10  // 8 KiB
	DefaultMaxHeaderBytes = 64 << 10 // 64 KiB
	DefaultMaxBodyBytes   = 10 << 20 // 10 MiB
)

// Limits bounds what a client may send. Zero (or negative) fields take the
// defaults.
type Limits struct {
	// MaxRequestLine bounds the request-line (method SP target SP version,
	// excluding the CRLF). A longer line is answered with 414. Because the
	// CRLF itself may still be in flight, the parser reports 414 as soon as
	// MaxRequestLine+2 bytes of the line have arrived without an LF.
	MaxRequestLine int
	// MaxHeaderBytes bounds the whole head: leading empty lines, request
	// line, header fields and the final blank line. A head not complete
	// within this many bytes is answered with 431.
	MaxHeaderBytes int
	// MaxBodyBytes bounds the body (413). The loop checks it against
	// Head.ContentLength; ChunkedDecoder enforces it while decoding.
	MaxBodyBytes int64
}

// WithDefaults returns l with zero fields replaced by the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxRequestLine <= 0 {
		l.MaxRequestLine = DefaultMaxRequestLine
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return l
}
