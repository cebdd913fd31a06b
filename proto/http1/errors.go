package http1

import (
	"errors"
	"strconv"
)

// Error is a client error with the HTTP status the server must answer
// before closing the connection.
type Error struct {
	Status int
	Reason string
}

// Error implements error: "http1: <status> <reason>".
func (e *Error) Error() string {
	return "http1: " + strconv.Itoa(e.Status) + " " + e.Reason
}

// ErrIncomplete means more bytes are needed; it is not a client fault.
var ErrIncomplete = errors.New("http1: incomplete")

// Preallocated errors so that the parsers never allocate, even on failure.
// Callers must treat them as read-only.
var (
	errBareLF           = &Error{400, "bare LF line terminator"}
	errLeadingBareLF    = &Error{400, "bare LF before request line"}
	errRequestLine      = &Error{400, "malformed request line"}
	errMethod           = &Error{400, "invalid method"}
	errTarget           = &Error{400, "invalid request-target"}
	errAsterisk         = &Error{400, "asterisk-form target is only allowed for OPTIONS"}
	errVersion          = &Error{400, "malformed HTTP version"}
	errVersionNotSup    = &Error{505, "HTTP version not supported"}
	errFieldLine        = &Error{400, "malformed header field line"}
	errFieldValue       = &Error{400, "invalid character in header field value"}
	errContentLength    = &Error{400, "invalid Content-Length"}
	errMultiCL          = &Error{400, "conflicting Content-Length values"}
	errTEAndCL          = &Error{400, "both Transfer-Encoding and Content-Length"}
	errTEHTTP10         = &Error{400, "Transfer-Encoding in HTTP/1.0 request"}
	errTEEmpty          = &Error{400, "empty Transfer-Encoding"}
	errTEChunkedTwice   = &Error{400, "chunked applied more than once"}
	errTEUnsupported    = &Error{501, "unsupported transfer coding"}
	errNoHost           = &Error{400, "missing Host header"}
	errMultiHost        = &Error{400, "more than one Host header"}
	errBadHost          = &Error{400, "invalid Host header"}
	errExpectation      = &Error{417, "unsupported expectation"}
	errURITooLong       = &Error{414, "request line too long"}
	errHeadTooLarge     = &Error{431, "request header too large"}
	errChunkSize        = &Error{400, "malformed chunk size line"}
	errChunkSizeTooLong = &Error{400, "chunk size too long"}
	errChunkExtTooLong  = &Error{400, "chunk extension too long"}
	errChunkData        = &Error{400, "missing CRLF after chunk data"}
	errTrailer          = &Error{400, "malformed trailer field"}
	errTrailerTooLarge  = &Error{431, "trailer section too large"}
	errBodyTooLarge     = &Error{413, "request body too large"}
	errRespStatusLine   = &Error{502, "malformed status line"}
	errRespFieldLine    = &Error{502, "malformed response header field"}
	errRespBareLF       = &Error{502, "bare LF in response head"}
	errRespTooLarge     = &Error{502, "response head too large"}
)
