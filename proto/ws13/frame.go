package ws13

import (
	"encoding/binary"
	"slices"

	"github.com/gobwas/ws"
)

// HeaderLen returns the length of the header of a frame with a payload of
// payloadLen bytes, with the 4-byte masking key when masked. The length is
// encoded minimally (RFC 6455 5.2: "the minimal number of bytes MUST be used
// to encode the length").
func HeaderLen(payloadLen int, masked bool) int {
	n := 2
	switch {
	case payloadLen <= 125:
	case payloadLen <= 0xFFFF:
		n += 2
	default:
		n += 8
	}
	if masked {
		n += 4
	}
	return n
}

func appendHeader(dst []byte, fin bool, op ws.OpCode, masked bool, length int) []byte {
	b0 := byte(op & 0x0f)
	if fin {
		b0 |= bitFin
	}
	var b1 byte
	if masked {
		b1 = bitMask
	}
	switch {
	case length <= 125:
		return append(dst, b0, b1|byte(length))
	case length <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, b0, b1|126), uint16(length))
	default:
		return binary.BigEndian.AppendUint64(append(dst, b0, b1|127), uint64(length))
	}
}

// AppendFrame appends an unmasked frame (as a server sends) with the given
// FIN bit, opcode and payload to dst and returns the extended slice. It
// grows dst at most once. It does not check that control frames are final
// and at most 125 bytes: that is the caller's business.
func AppendFrame(dst []byte, fin bool, op ws.OpCode, payload []byte) []byte {
	dst = slices.Grow(dst, HeaderLen(len(payload), false)+len(payload))
	dst = appendHeader(dst, fin, op, false, len(payload))
	return append(dst, payload...)
}

// AppendMaskedFrame appends a frame masked with mask (as a client sends) to
// dst and returns the extended slice. The payload is copied to dst and
// masked there; payload itself is not modified.
//
// RFC 6455 5.3: "The masking key needs to be unpredictable"; use NewMask.
func AppendMaskedFrame(dst []byte, fin bool, op ws.OpCode, mask [4]byte, payload []byte) []byte {
	dst = slices.Grow(dst, HeaderLen(len(payload), true)+len(payload))
	dst = appendHeader(dst, fin, op, true, len(payload))
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}

// AppendHeader appends an unmasked (server) frame header for a payload of
// length bytes, so a large payload can be written with writev, uncopied.
func AppendHeader(dst []byte, fin bool, op ws.OpCode, length int) []byte {
	return appendHeader(dst, fin, op, false, length)
}

// MaxFrameHeader is the longest frame header: 2 bytes, an 8-byte extended
// length and a 4-byte masking key (RFC 6455 5.2).
const MaxFrameHeader = 14

// FrameLen returns the total length (header, masking key and payload) of
// the frame starting at buf once its header is complete, so a caller that
// buffers a large frame can wait until that many bytes arrived instead of
// parsing the partial frame again on every read. ok is false when buf does
// not hold the whole header yet.
func FrameLen(buf []byte) (n int64, ok bool) {
	if len(buf) < 2 {
		return 0, false
	}
	hlen := int64(2)
	length := int64(buf[1] & 0x7f)
	switch length {
	case 126:
		if len(buf) < 4 {
			return 0, false
		}
		length = int64(binary.BigEndian.Uint16(buf[2:4]))
		hlen = 4
	case 127:
		if len(buf) < 10 {
			return 0, false
		}
		length = int64(binary.BigEndian.Uint64(buf[2:10]) &^ (1 << 63))
		hlen = 10
	}
	if buf[1]&bitMask != 0 {
		hlen += 4
	}
	return hlen + length, true
}
