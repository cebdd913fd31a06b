package ws13

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// DefaultMaxMessage is the message size limit used when Limits.MaxMessage is
// zero or negative: 10 MiB.
const DefaultMaxMessage int64 = 10 << 20

// MaxControlPayload is the largest payload a control frame may carry.
//
// RFC 6455 5.5: "All control frames MUST have a payload length of 125 bytes or
// less and MUST NOT be fragmented."
const MaxControlPayload = 125

// CloseError is a protocol failure detected while decoding: the endpoint
// should send a close frame with Code and Reason (see AppendCloseFrame) and
// then close the connection.
type CloseError struct {
	Code   StatusCode
	Reason string
}

// Error implements error: "ws13: close <code>: <reason>".
func (e *CloseError) Error() string {
	return "ws13: close " + strconv.Itoa(int(e.Code)) + ": " + e.Reason
}

func protocolError(reason string) *CloseError {
	return &CloseError{Code: CloseProtocolError, Reason: reason}
}

func invalidUTF8(reason string) *CloseError {
	return &CloseError{Code: CloseInvalidPayload, Reason: reason}
}

// Limits bounds what a Decoder accepts.
type Limits struct {
	// MaxMessage is the largest message, after assembling fragments, in
	// bytes. Zero or negative means DefaultMaxMessage. A data frame whose
	// declared length (plus what its message already accumulated) exceeds it
	// fails with 1009 as soon as its header is complete, before the payload
	// arrives. Control frames are not messages and are not counted.
	MaxMessage int64
}

func (l Limits) maxMessage() int64 {
	if l.MaxMessage <= 0 {
		return DefaultMaxMessage
	}
	return l.MaxMessage
}

// EventKind tells what Decoder.Next produced.
type EventKind uint8

// Event kinds.
const (
	// EventNone: nothing to handle (frame incomplete, or a non-final
	// fragment was consumed into the assembly buffer).
	EventNone EventKind = iota
	// EventMessage: a whole text or binary message.
	EventMessage
	// EventPing: a ping frame; answer with a pong carrying Payload.
	EventPing
	// EventPong: a pong frame.
	EventPong
	// EventClose: a close frame; Code and Reason are set.
	EventClose
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventNone:
		return "none"
	case EventMessage:
		return "message"
	case EventPing:
		return "ping"
	case EventPong:
		return "pong"
	case EventClose:
		return "close"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one result of Decoder.Next.
//
// Payload and Reason alias either the buffer passed to Next (unfragmented
// messages and control frames, unmasked in place) or the decoder's assembly
// buffer (fragmented messages). They are valid only until the caller discards
// the consumed bytes from its buffer, calls Next again, or calls Release,
// whichever comes first: copy them to keep them.
type Event struct {
	Kind EventKind
	// Op is ws.OpText or ws.OpBinary for EventMessage, and the frame's
	// opcode for control events.
	Op ws.OpCode
	// Payload is the unmasked message or control frame payload. For
	// EventClose it is the whole close body (code and reason), which is what
	// an endpoint may echo.
	Payload []byte
	// Code is the status code of an EventClose: the peer's, or
	// CloseNoStatus (1005) when the close frame had no payload.
	Code StatusCode
	// Reason is the UTF-8 close reason of an EventClose.
	Reason []byte
	// Compressed reports an EventMessage whose first frame had RSV1 set
	// (only with SetDeflate): Payload is the raw DEFLATE data, not yet
	// UTF-8 checked.
	Compressed bool
}

// Decoder is the per-connection frame state machine. The zero value is ready
// and decodes the server side of a connection: it requires masked frames.
//
// It is one pointer (8 bytes on 64-bit platforms), nil while the connection
// is between messages with default settings, so an idle connection holds
// nothing else. The state behind it (the assembly buffer of a fragmented
// message, its opcode, its incremental UTF-8 validation, the client-side and
// deflate settings) is allocated by the first fragmented message or setting,
// and dropped again by Release when only defaults remain.
type Decoder struct {
	s *decState
}

type decState struct {
	// buf is the assembly buffer of a fragmented message; len(buf) is the
	// length accumulated so far. It is kept after the final fragment so the
	// event's Payload stays valid, until Release or the next fragmented
	// message (which reuses it).
	buf   []byte
	op    ws.OpCode // opcode of the message being assembled
	utf8  utf8State // validation state of a text message being assembled
	flags uint8
}

func (d *Decoder) state() *decState {
	if d.s == nil {
		d.s = &decState{}
	}
	return d.s
}

func (d *Decoder) flags() uint8 {
	if d.s == nil {
		return 0
	}
	return d.s.flags
}

const (
	flagFragmented uint8 = 1 << iota // a fragmented message is in progress
	flagClient                       // decoding frames sent by a server
	flagDeflate                      // permessage-deflate negotiated: RSV1 allowed
	flagCompressed                   // the message being assembled is compressed
)

// SetClientSide makes the decoder, when v is true, accept unmasked frames
// and reject masked ones, as a client reading a server's frames must; false
// restores the server side.
func (d *Decoder) SetClientSide(v bool) {
	if v {
		d.state().flags |= flagClient
	} else if d.s != nil {
		d.s.flags &^= flagClient
	}
}

// Fragmented reports whether a fragmented message is in progress.
func (d *Decoder) Fragmented() bool { return d.flags()&flagFragmented != 0 }

// Release drops the assembly buffer, returning it to a size-classed pool.
// Call it once done with the Payload of a fragmented message (an
// EventMessage whose Payload does not alias the input), or when the
// connection closes. It is cheap to call when there is no buffer. It must
// not be called while a fragmented message is in progress unless the
// connection is being abandoned (the fragments received so far are lost).
func (d *Decoder) Release() {
	s := d.s
	if s == nil {
		return
	}
	if s.buf != nil {
		putBuf(s.buf)
		s.buf = nil
	}
	if s.flags&flagFragmented != 0 {
		s.flags &^= flagFragmented | flagCompressed
		s.utf8 = utf8Accept
	}
	if s.flags == 0 {
		d.s = nil // defaults only: an idle connection keeps no state
	}
}

// Frame header bits.
const (
	bitFin  = 0x80
	bitsRsv = 0x70
	bitMask = 0x80
)

// Next parses at most one complete frame at the start of buf.
//
// It returns n == 0 and an EventNone when the frame is not complete yet:
// nothing was consumed or modified; call again with more bytes. For a
// complete frame n is its length (header plus payload), and:
//
//   - a control frame produces EventPing, EventPong or EventClose;
//   - an unfragmented data frame produces EventMessage whose Payload aliases
//     buf, unmasked in place (zero copy, zero allocations);
//   - a non-final fragment is copied into the decoder's assembly buffer and
//     produces EventNone with n > 0; the final fragment produces
//     EventMessage whose Payload is the assembly buffer (see Release).
//
// buf is modified in place (payloads are unmasked). Protocol violations are
// returned as *CloseError; some are detected from the header alone, before
// the whole frame is buffered. After an error the decoder and buf must not
// be used any more, except for Release.
func (d *Decoder) Next(buf []byte, lim Limits) (ev Event, n int, err error) {
	if len(buf) < 2 {
		return ev, 0, nil
	}
	b0, b1 := buf[0], buf[1]
	fin := b0&bitFin != 0
	op := ws.OpCode(b0 & 0x0f)
	masked := b1&bitMask != 0
	control := op.IsControl()
	fl := d.flags()
	fragmented := fl&flagFragmented != 0

	// RFC 6455 5.2: "RSV1, RSV2, RSV3: 1 bit each. MUST be 0 unless an
	// extension is negotiated that defines meanings for non-zero values. If
	// a nonzero value is received and none of the negotiated extensions
	// defines the meaning of such a nonzero value, the receiving endpoint
	// MUST _Fail the WebSocket Connection_."
	compressed := false
	if rsv := b0 & bitsRsv; rsv != 0 {
		if rsv != RSV1 || fl&flagDeflate == 0 {
			return ev, 0, protocolError("reserved bits set")
		}
		// RFC 7692 6.1: "An endpoint MUST NOT set the "Per-Message
		// Compressed" bit of control frames and non-first fragments of a
		// data message. An endpoint receiving such a frame MUST _Fail the
		// WebSocket Connection_."
		if op.IsControl() || op == ws.OpContinuation {
			return ev, 0, protocolError("RSV1 set on a control or continuation frame")
		}
		compressed = true
	}
	// RFC 6455 5.2: "%x3-7 are reserved for further non-control frames",
	// "%xB-F are reserved for further control frames"; "If an unknown
	// opcode is received, the receiving endpoint MUST _Fail the WebSocket
	// Connection_."
	if op.IsReserved() {
		return ev, 0, protocolError("reserved opcode")
	}
	// RFC 6455 5.5: "All control frames MUST have a payload length of 125
	// bytes or less and MUST NOT be fragmented."
	if control && !fin {
		return ev, 0, protocolError("fragmented control frame")
	}
	if fl&flagClient == 0 {
		// RFC 6455 5.1: "The server MUST close the connection upon
		// receiving a frame that is not masked."
		if !masked {
			return ev, 0, protocolError("unmasked client frame")
		}
	} else if masked {
		// RFC 6455 5.1: "A client MUST close a connection if it detects a
		// masked frame."
		return ev, 0, protocolError("masked server frame")
	}
	if !control {
		if op == ws.OpContinuation {
			// RFC 6455 5.4: "A fragmented message consists of a single
			// frame with the FIN bit clear and an opcode other than 0,
			// followed by zero or more frames with the FIN bit clear and
			// the opcode set to 0, and terminated by a single frame with
			// the FIN bit set and an opcode of 0." A continuation frame
			// outside such a message is a protocol error.
			if !fragmented {
				return ev, 0, protocolError("continuation frame without a fragmented message")
			}
		} else if fragmented {
			// RFC 6455 5.4: "The fragments of one message MUST NOT be
			// interleaved between the fragments of another message unless
			// an extension has been negotiated that can interpret the
			// interleaving."
			return ev, 0, protocolError("new data frame inside a fragmented message")
		}
	}

	hlen := 2
	length := int64(b1 & 0x7f)
	switch length {
	case 126:
		if len(buf) < 4 {
			return ev, 0, nil
		}
		length = int64(binary.BigEndian.Uint16(buf[2:4]))
		hlen = 4
	case 127:
		if len(buf) < 10 {
			return ev, 0, nil
		}
		u := binary.BigEndian.Uint64(buf[2:10])
		// RFC 6455 5.2: "If 127, the following 8 bytes interpreted as a
		// 64-bit unsigned integer (the most significant bit MUST be 0) are
		// the payload length." (Non-minimal encodings are allowed: the
		// RFC's "the minimal number of bytes MUST be used" binds the
		// sender, and receivers commonly accept them.)
		if u>>63 != 0 {
			return ev, 0, protocolError("64-bit payload length with the most significant bit set")
		}
		length = int64(u)
		hlen = 10
	}
	if control {
		// RFC 6455 5.5: "All control frames MUST have a payload length of
		// 125 bytes or less and MUST NOT be fragmented."
		if length > MaxControlPayload {
			return ev, 0, protocolError("control frame payload longer than 125 bytes")
		}
	} else {
		// RFC 6455 7.4.1: "1009 indicates that an endpoint is terminating
		// the connection because it has received a message that is too big
		// for it to process." Decided from the declared length, before the
		// payload is buffered.
		var acc int64
		if fragmented {
			acc = int64(len(d.s.buf))
		}
		max := lim.maxMessage()
		if compressed || fl&flagCompressed != 0 {
			// Incompressible data grows by a few bytes per 64 KiB
			// stored block; the inflated size is bounded by the caller.
			max += max>>10 + 64
		}
		if length > max-acc {
			return ev, 0, &CloseError{Code: CloseTooBig, Reason: "message too big"}
		}
	}
	if masked {
		hlen += 4
	}
	if int64(len(buf)-hlen) < length {
		return ev, 0, nil // incomplete; len(buf) < hlen makes the left side negative
	}
	end := hlen + int(length)
	p := buf[hlen:end:end]
	if masked {
		ws.Cipher(p, [4]byte(buf[hlen-4:hlen]), 0)
	}

	switch op {
	case ws.OpPing:
		return Event{Kind: EventPing, Op: op, Payload: p}, end, nil
	case ws.OpPong:
		return Event{Kind: EventPong, Op: op, Payload: p}, end, nil
	case ws.OpClose:
		ev, err = parseClose(p)
		return ev, end, err
	}

	if !fragmented && fin {
		if compressed {
			return Event{Kind: EventMessage, Op: op, Payload: p, Compressed: true}, end, nil
		}
		// RFC 6455 8.1: "When an endpoint is to interpret a byte stream as
		// UTF-8 but finds that the byte stream is not, in fact, a valid
		// UTF-8 stream, that endpoint MUST _Fail the WebSocket
		// Connection_."
		if op == ws.OpText && !utf8.Valid(p) {
			return ev, end, invalidUTF8("invalid UTF-8 in text message")
		}
		return Event{Kind: EventMessage, Op: op, Payload: p}, end, nil
	}

	st := d.state()
	if !fragmented {
		// First fragment.
		st.flags |= flagFragmented
		st.flags &^= flagCompressed
		if compressed {
			st.flags |= flagCompressed
		}
		st.op = op
		st.utf8 = utf8Accept
		st.buf = st.buf[:0]
	}
	zipped := st.flags&flagCompressed != 0
	if st.op == ws.OpText && !zipped {
		// RFC 6455 8.1 (as above); validated fragment by fragment so that
		// the connection fails on the fragment where the bytes stop being
		// a prefix of valid UTF-8.
		var ok bool
		if st.utf8, ok = validateUTF8(st.utf8, p); !ok {
			return ev, end, invalidUTF8("invalid UTF-8 in text message")
		}
		if fin && st.utf8 != utf8Accept {
			return ev, end, invalidUTF8("text message ends inside a UTF-8 sequence")
		}
	}
	st.appendFragment(p)
	if !fin {
		return ev, end, nil
	}
	st.flags &^= flagFragmented | flagCompressed
	return Event{Kind: EventMessage, Op: st.op, Payload: st.buf, Compressed: zipped}, end, nil
}

// CheckPartial checks the payload received so far of the incomplete frame at
// the start of buf, so that a text message whose bytes already stopped being
// UTF-8 fails now instead of when its last byte arrives (a peer may trickle a
// large frame in slowly). Call it only after Next returned n == 0 and a nil
// error for the same buf; on other input it does not panic, but its result
// means nothing.
//
// When the frame is a text frame, or a continuation of a text message, and
// the payload bytes present so far, after the bytes of the message's earlier
// fragments, cannot be the beginning of valid UTF-8, it returns a
// *CloseError with 1007 (CloseInvalidPayload); otherwise nil.
// A sequence cut by the end of buf is not an error: its next bytes have not
// arrived. Binary and control frames, frames with an incomplete header and
// compressed messages (permessage-deflate: only the inflated bytes are
// UTF-8) always give nil. After an error the connection is failed as after
// an error from Next.
//
// CheckPartial neither modifies buf (the masked payload is unmasked into a
// small stack buffer, so Next later finds it as it was) nor changes the
// decoder's state. It does not allocate unless it fails, and it takes time
// linear in len(buf): it rescans the payload from its start on every call,
// so a caller should call it when the buffered amount has grown by a
// constant factor (doubled, say), keeping the total work linear in the
// frame's size. Loop-only like the rest of the Decoder.
func (d *Decoder) CheckPartial(buf []byte) error {
	if len(buf) < 2 {
		return nil
	}
	b0, b1 := buf[0], buf[1]
	op := ws.OpCode(b0 & 0x0f)
	s := utf8Accept
	switch {
	case b0&bitsRsv != 0:
		// RSV1 is a compressed message (with SetDeflate; anything else
		// was Next's error): its payload is DEFLATE data, checked once
		// inflated.
		return nil
	case op == ws.OpText && !d.Fragmented():
	case op == ws.OpContinuation && d.Fragmented() && d.s.op == ws.OpText && d.s.flags&flagCompressed == 0:
		// RFC 6455 5.6: "a particular text frame might include a partial
		// UTF-8 sequence; however, the whole message MUST contain valid
		// UTF-8": continue from where the earlier fragments left the
		// validator (a copy: d is not changed).
		s = d.s.utf8
	default:
		return nil
	}
	hlen := 2
	length := uint64(b1 & 0x7f)
	switch length {
	case 126:
		if len(buf) < 4 {
			return nil
		}
		length = uint64(binary.BigEndian.Uint16(buf[2:4]))
		hlen = 4
	case 127:
		if len(buf) < 10 {
			return nil
		}
		length = binary.BigEndian.Uint64(buf[2:10])
		hlen = 10
	}
	masked := b1&bitMask != 0
	var mask [4]byte
	if masked {
		if len(buf) < hlen+4 {
			return nil
		}
		mask = [4]byte(buf[hlen : hlen+4])
		hlen += 4
	}
	p := buf[hlen:]
	if uint64(len(p)) > length {
		p = p[:length]
	}
	// RFC 6455 8.1: "When an endpoint is to interpret a byte stream as
	// UTF-8 but finds that the byte stream is not, in fact, a valid UTF-8
	// stream, that endpoint MUST _Fail the WebSocket Connection_. This rule
	// applies both during the opening handshake and during subsequent data
	// exchange."
	var ok bool
	if !masked {
		if _, ok = validateUTF8(s, p); !ok {
			return invalidUTF8("invalid UTF-8 in text message")
		}
		return nil
	}
	var tmp [1024]byte // a multiple of 4: every chunk starts at mask[0]
	for len(p) > 0 {
		n := copy(tmp[:], p)
		ws.Cipher(tmp[:n], mask, 0)
		if s, ok = validateUTF8(s, tmp[:n]); !ok {
			return invalidUTF8("invalid UTF-8 in text message")
		}
		p = p[n:]
	}
	return nil
}

func (d *decState) appendFragment(p []byte) {
	need := len(d.buf) + len(p)
	if need > cap(d.buf) {
		nb := getBuf(need)
		nb = append(nb, d.buf...)
		if d.buf != nil {
			putBuf(d.buf)
		}
		d.buf = nb
	}
	d.buf = append(d.buf, p...)
}
