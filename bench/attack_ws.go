package bench

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// rawWS is a hostile client's WebSocket: a plain net.Conn after a
// hand-written upgrade, so an attack controls every byte it sends (partial
// frames, RSV1 without inflating, sizes over the server's limits) and reads
// only when it wants to. Writes are serialised by wmu; reads belong to one
// goroutine.
type rawWS struct {
	c   net.Conn
	br  *bufio.Reader
	wmu sync.Mutex
	key [4]byte
	// ext is the server's Sec-WebSocket-Extensions answer.
	ext string
}

// dialWS opens host+path with a WebSocket upgrade offering ext (empty: no
// extension) and returns once the 101 head is read; bytes after it stay in
// the bufio.Reader for readFrame.
func dialWS(host, path, ext string, timeout time.Duration) (*rawWS, error) {
	c, err := net.DialTimeout("tcp", host, timeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", host, err)
	}
	var k [16]byte
	rand.Read(k[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(k[:]) + "\r\nSec-WebSocket-Version: 13\r\n"
	if ext != "" {
		req += "Sec-WebSocket-Extensions: " + ext + "\r\n"
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		c.Close()
		return nil, fmt.Errorf("upgrade %s%s: %w", host, path, err)
	}
	w := &rawWS{c: c, br: bufio.NewReaderSize(c, 16<<10)}
	rand.Read(w.key[:])
	status, hdr, err := readHead(w.br)
	if err == nil && status != 101 {
		err = fmt.Errorf("status %d", status)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("upgrade %s%s: %w", host, path, err)
	}
	c.SetDeadline(time.Time{})
	w.ext = hdr["sec-websocket-extensions"]
	return w, nil
}

// readHead reads an HTTP response head: the status and the headers
// (lower-case names, last value wins).
func readHead(br *bufio.Reader) (int, map[string]string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, nil, fmt.Errorf("status line: %w", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return 0, nil, fmt.Errorf("status line %q", strings.TrimSpace(line))
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, nil, fmt.Errorf("status line %q", strings.TrimSpace(line))
	}
	hdr := map[string]string{}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return status, hdr, fmt.Errorf("headers: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return status, hdr, nil
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			hdr[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
}

// frameHeader is a client frame's header: FIN, RSV1 as asked, MASK set with
// the connection's key, and the payload length n.
func (w *rawWS) frameHeader(op byte, fin, rsv1 bool, n int64) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	if rsv1 {
		b0 |= 0x40
	}
	h := []byte{b0, 0}
	switch {
	case n < 126:
		h[1] = byte(n)
	case n < 1<<16:
		h[1] = 126
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h[1] = 127
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	h[1] |= 0x80
	return append(h, w.key[:]...)
}

// mask returns p masked with the connection's key from payload offset off.
func (w *rawWS) mask(p []byte, off int64) []byte {
	out := make([]byte, len(p))
	for i := range p {
		out[i] = p[i] ^ w.key[(off+int64(i))&3]
	}
	return out
}

// frame is a whole masked frame carrying p.
func (w *rawWS) frame(op byte, rsv1 bool, p []byte) []byte {
	return append(w.frameHeader(op, true, rsv1, int64(len(p))), w.mask(p, 0)...)
}

// write sends b whole (goroutine-safe), failing after deadline.
func (w *rawWS) write(b []byte, deadline time.Time) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.c.SetWriteDeadline(deadline)
	_, err := w.c.Write(b)
	return err
}

// writePayload streams n payload bytes of 'x' masked from payload offset
// off, in 64 KiB writes (the masked chunk is built once: its length is a
// multiple of 4, so every chunk starts on the key's first byte).
func (w *rawWS) writePayload(n, off int64, deadline time.Time) (int64, error) {
	const chunk = 64 << 10
	plain := make([]byte, chunk)
	for i := range plain {
		plain[i] = 'x'
	}
	masked := w.mask(plain, 0)
	var sent int64
	for sent < n {
		k := min(int64(chunk), n-sent)
		start := (off + sent) & 3
		var b []byte
		if start == 0 {
			b = masked[:k]
		} else {
			b = w.mask(plain[:k], off+sent)
		}
		if err := w.write(b, deadline); err != nil {
			return sent, err
		}
		sent += k
	}
	return sent, nil
}

// serverFrame is one frame read from the server; payload is kept for
// control frames only (data payloads are discarded while read).
type serverFrame struct {
	op      byte
	fin     bool
	rsv1    bool // compressed (permessage-deflate), on a message's first frame
	length  int64
	payload []byte
}

// readFrame reads the next frame, discarding a data frame's payload.
func (w *rawWS) readFrame() (serverFrame, error) { return w.readFrameTo(nil) }

// readFrameTo reads the next frame; a data frame's payload is appended to
// *keep when keep is not nil, else discarded.
func (w *rawWS) readFrameTo(keep *[]byte) (serverFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return serverFrame{}, err
	}
	f := serverFrame{op: h[0] & 0x0f, fin: h[0]&0x80 != 0, rsv1: h[0]&0x40 != 0, length: int64(h[1] & 0x7f)}
	switch f.length {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return f, err
		}
		f.length = int64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return f, err
		}
		f.length = int64(binary.BigEndian.Uint64(b[:]))
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(w.br, key[:]); err != nil {
			return f, err
		}
	}
	if f.op >= 8 {
		if f.length > 125 {
			return f, fmt.Errorf("control frame of %d bytes", f.length)
		}
		f.payload = make([]byte, f.length)
		if _, err := io.ReadFull(w.br, f.payload); err != nil {
			return f, err
		}
		if masked {
			for i := range f.payload {
				f.payload[i] ^= key[i&3]
			}
		}
		return f, nil
	}
	if keep != nil {
		if f.length > maxKeptPayload-int64(len(*keep)) {
			return f, fmt.Errorf("compressed message over %d bytes", maxKeptPayload)
		}
		start := len(*keep)
		*keep = append(*keep, make([]byte, f.length)...)
		_, err := io.ReadFull(w.br, (*keep)[start:])
		return f, err
	}
	_, err := io.CopyN(io.Discard, w.br, f.length)
	return f, err
}

// maxKeptPayload bounds the compressed bytes of one message readEchoes
// keeps to inflate.
const maxKeptPayload = 256 << 20

// readEchoes is readUntilClose for echoes: it reads whole messages, the
// way a real client does, inflating compressed ones (permessage-deflate,
// no context takeover) to their end, and hears each message's length
// after inflating and its length on the wire. A server that echoes a
// deflate bomb compressed (gorilla) and one that echoes it plain (64 MiB
// per message) so both cost the client a whole message read, and the
// echoes are counted in messages, not in frames (gorilla fragments its
// compressed echoes in 4 KiB frames).
func (w *rawWS) readEchoes(deadline time.Time, pong bool, onMessage func(n, wire int64)) string {
	w.c.SetReadDeadline(deadline)
	var z []byte         // the compressed message so far
	var compressed bool  // the message in progress is compressed
	var n, wire int64    // its bytes so far, plain and on the wire
	var zr io.ReadCloser // reused decompressor
	for {
		// A message's first frame says whether it is compressed (RSV1),
		// before its payload is read (and kept, when compressed).
		b, err := w.br.Peek(1)
		if err != nil {
			return closeKind(err)
		}
		if op := b[0] & 0x0f; op == 1 || op == 2 {
			compressed = b[0]&0x40 != 0
		}
		var keep *[]byte
		if compressed {
			keep = &z // control frames keep their payload apart
		}
		f, err := w.readFrameTo(keep)
		if err != nil {
			return closeKind(err)
		}
		switch f.op {
		case 8:
			return closeCode(f.payload)
		case 9:
			if pong {
				w.write(w.frame(10, false, f.payload), time.Now().Add(5*time.Second))
			}
			continue
		case 0, 1, 2:
		default:
			continue
		}
		wire += f.length
		if !compressed {
			n += f.length
		}
		if !f.fin {
			continue
		}
		if compressed {
			src := io.MultiReader(bytes.NewReader(z), bytes.NewReader(inflateTail[:]))
			if zr == nil {
				zr = flate.NewReader(src)
			} else {
				zr.(flate.Resetter).Reset(src, nil)
			}
			k, err := io.Copy(io.Discard, zr)
			if err != nil {
				return "error"
			}
			n = k
		}
		if onMessage != nil {
			onMessage(n, wire)
		}
		z, compressed, n, wire = z[:0], false, 0, 0
	}
}

// inflateTail ends a permessage-deflate message for a flate reader (RFC
// 7692 7.2.2: append 0x00 0x00 0xff 0xff), then adds a final empty stored
// block so that it reports io.EOF.
var inflateTail = [...]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}

// closeCode is a close frame's status code as text; "1005" when it has
// none (RFC 6455 7.1.5).
func closeCode(payload []byte) string {
	if len(payload) < 2 {
		return "1005"
	}
	return strconv.Itoa(int(binary.BigEndian.Uint16(payload)))
}

// readUntilClose reads and discards frames (answering pings when pong) until
// the server closes, and says how: a close code ("1009"), "eof" (FIN with
// no close frame), "reset", "open" (still open at the read deadline) or
// "error". onData, when not nil, hears each data frame's length.
func (w *rawWS) readUntilClose(deadline time.Time, pong bool, onData func(int64)) string {
	w.c.SetReadDeadline(deadline)
	for {
		f, err := w.readFrame()
		if err != nil {
			return closeKind(err)
		}
		switch f.op {
		case 8:
			return closeCode(f.payload)
		case 9:
			if pong {
				w.write(w.frame(10, false, f.payload), time.Now().Add(5*time.Second))
			}
		case 0, 1, 2:
			if onData != nil {
				onData(f.length)
			}
		}
	}
}

// closeKind names how a read ended without a close frame.
func closeKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "open"
	}
	return "error"
}

// Close closes the TCP connection at once (no close handshake: attackers
// leave rudely).
func (w *rawWS) Close() error { return w.c.Close() }
