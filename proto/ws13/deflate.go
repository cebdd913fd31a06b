package ws13

import (
	"strconv"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
)

// RSV1 is the "Per-Message Compressed" bit of a frame's first byte when
// permessage-deflate is negotiated (RFC 7692 6: "the RSV1 bit is set on the
// first frame of a compressed message").
const RSV1 byte = 0x40

// DeflateTail is the 4-byte empty stored block a sender strips from the end
// of a compressed message (RFC 7692 7.2.1: "Remove 4 octets (that are
// 0x00 0x00 0xff 0xff) from the tail end"), and a receiver appends again
// before inflating (7.2.2).
var DeflateTail = [4]byte{0, 0, 0xff, 0xff}

// DeflateAgreement is what a server accepted from a client's
// permessage-deflate offer. The server always answers with
// server_no_context_takeover and client_no_context_takeover, so neither side
// keeps a compression context between messages: an idle connection holds no
// compressor or decompressor.
type DeflateAgreement struct {
	// ServerMaxWindowBits is the client's server_max_window_bits, 0 when it
	// sent none (15, the RFC's default, then applies). Below 15 the server
	// must not refer back further than 2^bits bytes; a compressor that
	// cannot bound its window (Go's compress/flate) has to use Huffman-only
	// encoding, which has no back-references.
	ServerMaxWindowBits int
}

// NegotiateDeflate picks the first acceptable permessage-deflate offer from
// the Sec-WebSocket-Extensions values of an upgrade request (several header
// lines allowed) and reports whether one was found. Other extensions are
// ignored.
//
// RFC 7692 5: a server "MUST decline an extension negotiation offer" that
// has an unknown parameter, an invalid value or a parameter given twice;
// such offers are skipped (the next one may still be accepted). Every
// remaining offer is acceptable: the server needs no context takeover from
// either side and inflates with the full 32 KiB window, so
// client_max_window_bits (with or without a value) needs no answer.
func NegotiateDeflate(values ...[]byte) (a DeflateAgreement, ok bool) {
	var opts []httphead.Option
	for _, v := range values {
		var parsed bool
		if opts, parsed = httphead.ParseOptions(v, opts[:0]); !parsed {
			continue // a malformed header line: decline what it holds
		}
		for _, o := range opts {
			if string(o.Name) != wsflate.ExtensionName {
				continue
			}
			var p wsflate.Parameters
			if err := p.Parse(o); err != nil {
				continue
			}
			return DeflateAgreement{ServerMaxWindowBits: int(p.ServerMaxWindowBits)}, true
		}
	}
	return a, false
}

// AppendDeflateResponse appends the Sec-WebSocket-Extensions value that
// accepts a permessage-deflate offer: both no-context-takeover parameters
// and, when the client limited the server's window, the same
// server_max_window_bits (RFC 7692 7.1.2.1: the server "MUST include the
// server_max_window_bits extension parameter in the extension negotiation
// response" with "a value equal to or smaller than the received value").
func AppendDeflateResponse(dst []byte, a DeflateAgreement) []byte {
	dst = append(dst, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"...)
	if a.ServerMaxWindowBits > 0 {
		dst = append(dst, "; server_max_window_bits="...)
		dst = strconv.AppendInt(dst, int64(a.ServerMaxWindowBits), 10)
	}
	return dst
}

// SetDeflate makes the decoder, when v is true, accept RSV1 on the first
// frame of a data message (permessage-deflate was negotiated) and report it
// as Event.Compressed; the payload is then not UTF-8 checked (the caller
// inflates it and checks the result). RSV1 on a control frame or a
// continuation frame stays a protocol error.
func (d *Decoder) SetDeflate(v bool) {
	if v {
		d.state().flags |= flagDeflate
	} else if d.s != nil {
		d.s.flags &^= flagDeflate
	}
}
