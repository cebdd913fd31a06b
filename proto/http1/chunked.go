package http1

// Bounds on the non-payload parts of a chunked body.
const (
	maxChunkSizeDigits = 16       // hex digits in chunk-size (net/http uses the same bound)
	maxChunkLineBytes  = 4096     // whole chunk-size line including extensions
	maxTrailerBytes    = 64 << 10 // whole trailer section
)

const (
	ckSize         = iota // reading chunk-size hex digits
	ckSizeWS              // after chunk-size: BWS before ";" or CR
	ckExt                 // inside chunk extensions, until CR
	ckSizeLF              // expecting LF after the chunk-size line
	ckData                // copying chunk-data
	ckDataCR              // expecting CR after chunk-data
	ckDataLF              // expecting LF after chunk-data
	ckTrailer             // start of a trailer line (or the final CRLF)
	ckTrailerName         // inside a trailer field name
	ckTrailerValue        // inside a trailer field value
	ckTrailerLF           // expecting LF after a trailer line
	ckEndLF               // expecting the LF of the final CRLF
	ckDone
)

// ChunkedDecoder decodes a chunked body incrementally (RFC 9112 7.1),
// appending the payload to an output slice. The zero value is ready.
// Trailer fields are checked for syntax and discarded; chunk extensions
// are ignored.
type ChunkedDecoder struct {
	state   uint8
	digits  int    // hex digits read in the current chunk-size
	lineLen int    // bytes in the current chunk-size line
	trailer int    // bytes in the trailer section
	size    uint64 // bytes left in the current chunk
	total   int64  // decoded bytes so far
}

// Reset prepares d for a new body.
func (d *ChunkedDecoder) Reset() { *d = ChunkedDecoder{} }

// Done reports whether the last chunk and trailer section were consumed.
func (d *ChunkedDecoder) Done() bool { return d.state == ckDone }

// Decode consumes as much of buf as possible and appends the decoded body
// bytes to dst, returning the extended slice as out. done is true once the
// last-chunk and the trailer section are consumed; bytes after that are
// not consumed (they belong to the next request). n is the number of bytes
// of buf consumed; the caller discards them and passes only the rest next
// time (Decode never needs bytes it has already reported consumed).
//
// maxBody bounds the total decoded size (*Error 413); maxBody <= 0 means
// DefaultMaxBodyBytes. Malformed framing yields *Error 400, an oversized
// trailer section *Error 431. After an error the decoder must be Reset.
func (d *ChunkedDecoder) Decode(buf []byte, dst []byte, maxBody int64) (n int, out []byte, done bool, err error) {
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	i := 0
	for i < len(buf) {
		c := buf[i]
		switch d.state {
		case ckSize:
			// RFC 9112 7.1: chunk = chunk-size [ chunk-ext ] CRLF
			// chunk-data CRLF; chunk-size = 1*HEXDIG
			v, ok := hexVal(c)
			if !ok {
				if d.digits == 0 {
					return i, dst, false, errChunkSize
				}
				d.state = ckSizeWS
				continue // re-examine c
			}
			d.digits++
			if d.digits > maxChunkSizeDigits {
				return i, dst, false, errChunkSizeTooLong
			}
			d.size = d.size<<4 | uint64(v)
			// RFC 9112 7.1: "Recipients MUST anticipate potentially large
			// hexadecimal numerals and prevent parsing errors due to
			// integer conversion overflows or precision loss due to
			// integer representation."
			if d.size > uint64(maxBody-d.total) {
				return i, dst, false, errBodyTooLarge
			}
		case ckSizeWS:
			// RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name
			// [ BWS "=" BWS chunk-ext-val ] ). Trailing BWS before CRLF is
			// tolerated as net/http does.
			switch c {
			case ' ', '\t':
			case ';':
				d.state = ckExt
			case '\r':
				d.state = ckSizeLF
			default:
				return i, dst, false, errChunkSize
			}
		case ckExt:
			// RFC 9112 7.1.1: "A recipient MUST ignore unrecognized chunk
			// extensions." We skip them but bound their length and reject
			// control characters (including a bare LF).
			if c == '\r' {
				d.state = ckSizeLF
			} else if isCTLExceptHT(c) {
				return i, dst, false, errChunkSize
			}
		case ckSizeLF:
			if c != '\n' {
				return i, dst, false, errChunkSize
			}
			d.digits, d.lineLen = 0, 0
			if d.size == 0 {
				// RFC 9112 7.1: last-chunk = 1*("0") [ chunk-ext ] CRLF
				d.state = ckTrailer
			} else {
				d.state = ckData
			}
			i++
			continue
		case ckData:
			k := len(buf) - i
			if uint64(k) > d.size {
				k = int(d.size)
			}
			dst = append(dst, buf[i:i+k]...)
			d.size -= uint64(k)
			d.total += int64(k)
			i += k
			if d.size == 0 {
				d.state = ckDataCR
			}
			continue
		case ckDataCR:
			if c != '\r' {
				return i, dst, false, errChunkData
			}
			d.state = ckDataLF
		case ckDataLF:
			if c != '\n' {
				return i, dst, false, errChunkData
			}
			d.state = ckSize
			i++
			continue
		case ckTrailer:
			// RFC 9112 7.1: chunked-body = *chunk last-chunk trailer-section
			// CRLF; trailer-section = *( field-line CRLF ).
			// RFC 9112 7.1.2: "A recipient that removes the chunked coding
			// from a message MAY selectively retain or discard the received
			// trailer fields." We discard them.
			if c == '\r' {
				d.state = ckEndLF
			} else if isTchar[c] {
				d.state = ckTrailerName
			} else {
				return i, dst, false, errTrailer
			}
		case ckTrailerName:
			if c == ':' {
				d.state = ckTrailerValue
			} else if !isTchar[c] {
				return i, dst, false, errTrailer
			}
		case ckTrailerValue:
			if c == '\r' {
				d.state = ckTrailerLF
			} else if isCTLExceptHT(c) {
				return i, dst, false, errTrailer
			}
		case ckTrailerLF:
			if c != '\n' {
				return i, dst, false, errTrailer
			}
			d.state = ckTrailer
		case ckEndLF:
			if c != '\n' {
				return i, dst, false, errTrailer
			}
			d.state = ckDone
			return i + 1, dst, true, nil
		case ckDone:
			return i, dst, true, nil
		}
		// Byte-wise states: account for line lengths.
		if d.state <= ckSizeLF {
			d.lineLen++
			if d.lineLen > maxChunkLineBytes {
				return i, dst, false, errChunkExtTooLong
			}
		} else if d.state >= ckTrailer {
			d.trailer++
			if d.trailer > maxTrailerBytes {
				return i, dst, false, errTrailerTooLarge
			}
		}
		i++
	}
	return i, dst, d.state == ckDone, nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
