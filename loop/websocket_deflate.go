package loop

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/tornago/tornago/proto/ws13"
)

// CompressionOptions turns on permessage-deflate (RFC 7692) for a route.
// The zero value is the sensible default.
//
// Memory: the server always negotiates server_no_context_takeover and
// client_no_context_takeover, so no connection keeps a compression context
// between messages. A compressor (Go's compress/flate allocates about
// 1.1 MiB at level 1, 790 KiB at levels 2-9) or a decompressor (43 KiB) is
// borrowed from a process-wide pool for one message and returned at once:
// an idle connection costs nothing more than one without compression, and
// the pool holds about as many as messages are compressed concurrently
// (one per loop). The price is a worse ratio for streams of small similar
// messages, which context takeover would compress better.
type CompressionOptions struct {
	// Level is the compress/flate level of outgoing messages, from
	// flate.HuffmanOnly (-2) to flate.BestCompression (9); 0 (and any
	// value out of range) means the default, flate.BestSpeed (1), the best
	// trade of CPU for bytes on a busy loop. A client that limits the
	// server's window (server_max_window_bits < 15) gets Huffman-only
	// output whatever the level.
	Level int
	// Threshold: outgoing messages shorter than this many bytes are sent
	// uncompressed (RFC 7692 allows mixing), since deflating a few bytes
	// costs CPU and saves nothing. Default (0): 128 bytes; negative:
	// compress every data message.
	Threshold int
	// MaxSize: outgoing messages longer than this many bytes are sent
	// uncompressed too, because deflating runs on the loop (some 5-10 ms
	// per MiB at level 1) and would hold every other connection back.
	// Default (0): 1 MiB; negative: no limit.
	MaxSize int
	// KeepInflateBytes bounds the large inflate buffers (over 1 MiB) the
	// route keeps between messages for its next large compressed message,
	// so that a stream of them (a deflate bomb: a 65 KB frame inflating to
	// 64 MiB, over and over) reuses buffers instead of allocating and
	// zeroing one per message and setting the garbage collector off.
	// Kept buffers are freed after a second without a large message; when
	// the bound is reached, larger buffers replace smaller ones. Default
	// (0): one buffer, the largest (at most WSOptions.MaxMessageSize+1
	// bytes); negative: none kept.
	KeepInflateBytes int64

	spares *inflateSpares // the route's kept buffers (withDefaults)
}

// compresses reports whether an outgoing message of n bytes is deflated.
func (o *CompressionOptions) compresses(n int) bool {
	return n >= o.Threshold && n <= o.MaxSize
}

func (o *CompressionOptions) withDefaults() *CompressionOptions {
	if o == nil {
		return nil
	}
	c := *o
	if c.Level == 0 || c.Level < flate.HuffmanOnly || c.Level > flate.BestCompression {
		c.Level = flate.BestSpeed
	}
	if c.Threshold == 0 {
		c.Threshold = 128
	}
	if c.MaxSize == 0 {
		c.MaxSize = 1 << 20
	} else if c.MaxSize < 0 {
		c.MaxSize = math.MaxInt
	}
	c.spares = &inflateSpares{max: c.KeepInflateBytes}
	return &c
}

// deflaters pools flate writers per level (index level+2).
var deflaters [flate.BestCompression + 3]sync.Pool

// deflater is one pooled compressor with its output buffer.
type deflater struct {
	fw  *flate.Writer
	out bytes.Buffer
}

// deflateMessage compresses p as one permessage-deflate message (no context
// takeover: a fresh stream, the trailing empty block stripped) and calls fn
// with the compressed bytes, valid only during fn.
func deflateMessage(level int, p []byte, fn func(z []byte) error) error {
	pool := &deflaters[level+2]
	d, _ := pool.Get().(*deflater)
	if d == nil {
		d = &deflater{}
		var err error
		if d.fw, err = flate.NewWriter(&d.out, level); err != nil {
			return fmt.Errorf("loop: deflate level %d: %w", level, err)
		}
	} else {
		d.fw.Reset(&d.out)
	}
	defer func() {
		// Do not let one huge message pin a huge buffer in the pool.
		if d.out.Cap() > 1<<20 {
			d.out = bytes.Buffer{}
		}
		d.out.Reset()
		pool.Put(d)
	}()
	if _, err := d.fw.Write(p); err != nil {
		return fmt.Errorf("loop: deflate: %w", err)
	}
	// RFC 7692 7.2.1: "Compress all the octets of the payload of the
	// message using DEFLATE", "If the resulting data does not end with an
	// empty DEFLATE block with no compression (the "BTYPE" bits are set to
	// 00), append an empty DEFLATE block with no compression to the tail
	// end", "Remove 4 octets (that are 0x00 0x00 0xff 0xff) from the tail
	// end." Flush emits exactly that empty stored block.
	if err := d.fw.Flush(); err != nil {
		return fmt.Errorf("loop: deflate: %w", err)
	}
	z := d.out.Bytes()
	if !bytes.HasSuffix(z, ws13.DeflateTail[:]) {
		return errors.New("loop: deflate: flush did not end with an empty stored block")
	}
	return fn(z[:len(z)-4])
}

// appendDeflatedFrame appends an unmasked compressed frame carrying p.
func appendDeflatedFrame(dst []byte, level int, op ws.OpCode, p []byte) ([]byte, error) {
	err := deflateMessage(level, p, func(z []byte) error {
		start := len(dst)
		dst = ws13.AppendFrame(dst, true, op, z)
		dst[start] |= ws13.RSV1
		return nil
	})
	return dst, err
}

// inflater is one pooled decompressor with the reader it reads from.
type inflater struct {
	fr  io.ReadCloser
	src tailReader
}

var inflaters sync.Pool

// inflateBufs pools the small output buffers of inflated messages
// (*[]byte, at most turnBytes: most messages). Larger ones are kept per
// route by inflateSpares.
var inflateBufs sync.Pool

// inflateSpares keeps a route's large inflate buffers between messages,
// up to CompressionOptions.KeepInflateBytes. A deflate bomb otherwise grew
// a fresh buffer by doubling for every message: 128 MiB allocated and
// zeroed and 64 MiB copied per 64 MiB message, which cost the loop 3 to 10
// times the inflating itself (page faults, memclr, memmove) and set off
// the garbage collector every few messages. A sync.Pool does not do: the
// collector, which runs every few tens of milliseconds under such a load
// (the demo runs with GOGC=10), empties it between two messages of a
// client that waits for its echo. Goroutine-safe: a route may be served by
// several loops.
type inflateSpares struct {
	mu    sync.Mutex
	bufs  []*[]byte
	bytes int64       // capacity of bufs
	max   int64       // KeepInflateBytes: 0 one buffer, negative none
	used  time.Time   // last get or put
	timer *time.Timer // frees bufs after inflateSpareIdle unused
}

// inflateSpareIdle is how long kept buffers wait for a large message
// before they are freed.
const inflateSpareIdle = time.Second

// get takes the largest kept buffer if it is larger than n bytes.
func (s *inflateSpares) get(n int) *[]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	best := -1
	for i, bp := range s.bufs {
		if cap(*bp) > n && (best < 0 || cap(*bp) > cap(*s.bufs[best])) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	bp := s.bufs[best]
	s.bufs = slices.Delete(s.bufs, best, best+1)
	s.bytes -= int64(cap(*bp))
	s.used = time.Now()
	return bp
}

// put keeps bp when it fits the budget, in place of smaller buffers if
// need be: the largest serve every message. What is not kept is left to
// the garbage collector.
func (s *inflateSpares) put(bp *[]byte) {
	c := int64(cap(*bp))
	s.mu.Lock()
	defer s.mu.Unlock()
	budget := s.max
	if budget == 0 {
		budget = c // one buffer
	}
	for s.bytes+c > budget && len(s.bufs) > 0 {
		i := 0
		for k, b := range s.bufs {
			if cap(*b) < cap(*s.bufs[i]) {
				i = k
			}
		}
		if int64(cap(*s.bufs[i])) >= c {
			return // bp is the smallest
		}
		s.bytes -= int64(cap(*s.bufs[i]))
		s.bufs = slices.Delete(s.bufs, i, i+1)
	}
	if s.bytes+c > budget {
		return
	}
	*bp = (*bp)[:0]
	s.bufs = append(s.bufs, bp)
	s.bytes += c
	s.used = time.Now()
	if s.timer == nil {
		s.timer = time.AfterFunc(inflateSpareIdle, s.expire)
	}
}

// expire frees the kept buffers once none was used for inflateSpareIdle.
func (s *inflateSpares) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if idle := time.Since(s.used); idle < inflateSpareIdle && len(s.bufs) > 0 {
		s.timer.Reset(inflateSpareIdle - idle)
		return
	}
	clear(s.bufs)
	s.bufs, s.bytes, s.timer = s.bufs[:0], 0, nil
}

// inflateTurnWork bounds what the inflate steps of one turn allocate and
// deliver together (see stepInflates).
const inflateTurnWork = 16 << 20

// inflateGrowth is the factor an inflate buffer grows by when no kept
// buffer is larger: fewer copies and allocations than doubling (a 64 MiB
// message allocates 84 MiB in 3 buffers from 1 MiB, not 126 MiB in 6),
// at the price of at most 4 times its length in capacity.
const inflateGrowth = 4

// tailReader reads p, then the tail RFC 7692 7.2.2 asks the receiver to
// append ("Append 4 octets of 0x00 0x00 0xff 0xff to the tail end of the
// payload of the message"), then a final empty stored block so that the
// flate reader reports io.EOF rather than io.ErrUnexpectedEOF.
type tailReader struct {
	p    []byte
	tail int
}

var inflateTail = [...]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}

func (r *tailReader) Read(b []byte) (int, error) {
	if len(r.p) > 0 {
		n := copy(b, r.p)
		r.p = r.p[n:]
		return n, nil
	}
	if r.tail == len(inflateTail) {
		return 0, io.EOF
	}
	n := copy(b, inflateTail[r.tail:])
	r.tail += n
	return n, nil
}

// ReadByte makes tailReader an io.ByteReader, so flate reads it directly
// instead of wrapping it in a bufio.Reader per message.
func (r *tailReader) ReadByte() (byte, error) {
	var b [1]byte
	if _, err := r.Read(b[:]); err != nil {
		return 0, err
	}
	return b[0], nil
}

var (
	errInflateTooBig  = errors.New("inflated message too big")
	errInflateCorrupt = errors.New("invalid DEFLATE data")
)

// putInflateBuf returns an inflate buffer to the pool of small ones or to
// the route's kept large ones (spares, nil when not known: then a large
// buffer is left to the garbage collector).
func putInflateBuf(bp *[]byte, spares *inflateSpares) {
	if cap(*bp) > turnBytes {
		if spares != nil {
			spares.put(bp)
		}
		return
	}
	*bp = (*bp)[:0]
	inflateBufs.Put(bp)
}

// negotiateDeflate answers a permessage-deflate offer of r when the route
// enables compression; ext is the Sec-WebSocket-Extensions response value.
func negotiateDeflate(r *Request, co *CompressionOptions) (ext string, level int, ok bool) {
	if co == nil {
		return "", 0, false
	}
	a, ok := ws13.NegotiateDeflate(r.head.Values(nil, "Sec-WebSocket-Extensions")...)
	if !ok {
		return "", 0, false
	}
	level = co.Level
	if a.ServerMaxWindowBits > 0 && a.ServerMaxWindowBits < 15 {
		// compress/flate cannot bound its LZ77 window; Huffman-only
		// output has no back-references at all, so any window fits.
		level = flate.HuffmanOnly
	}
	return string(ws13.AppendDeflateResponse(nil, a)), level, true
}

// deflated returns p's frame compressed at level, encoding it on first use.
func (p *PreparedMessage) deflated(level int) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.zframes == nil {
		p.zframes = make([][]byte, flate.BestCompression+3)
	}
	if f := p.zframes[level+2]; f != nil {
		return f, nil
	}
	op, payload := p.split()
	f, err := appendDeflatedFrame(nil, level, op, payload)
	if err != nil {
		return nil, err
	}
	p.zframes[level+2] = f
	return f, nil
}

// inflateJob is a compressed message whose inflation goes on over several
// turns of the loop: at most turnBytes of output per turn, so a small frame
// that inflates to MaxMessageSize (a deflate bomb) cannot hold the loop for
// the half second that takes. The next frames of the connection wait in
// gnet's buffer meanwhile, so messages keep their order.
type inflateJob struct {
	f        *inflater
	bp       *[]byte        // the output, from inflateBufs or spares
	next     *[]byte        // the larger buffer bp moves to (grow), or nil
	spares   *inflateSpares // the route's kept large buffers
	op       ws.OpCode
	limit    int64
	reserved int64 // output bytes counted in the loop's MaxPartialTotal
	// work is what the last step cost beyond inflating: the bytes of a
	// buffer it allocated and of those it copied (grow), plus the
	// message's when it delivered it (the
	// handler may write as much: an echo). stepInflates bounds it per turn.
	work int64
}

func newInflateJob(z []byte, op ws.OpCode, limit int64, spares *inflateSpares) *inflateJob {
	f, _ := inflaters.Get().(*inflater)
	if f == nil {
		f = &inflater{}
		f.src = tailReader{p: z}
		f.fr = flate.NewReader(&f.src)
	} else {
		f.src = tailReader{p: z}
		f.fr.(flate.Resetter).Reset(&f.src, nil)
	}
	bp, _ := inflateBufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	if cap(*bp) == 0 {
		*bp = make([]byte, 0, min(int64(4*len(z)+512), limit+1, turnBytes))
	}
	return &inflateJob{f: f, bp: bp, op: op, limit: limit, spares: spares}
}

// step inflates up to max more bytes; done reports the message whole. A
// full buffer first moves to a larger one (grow), which may take the
// whole step and more: then step returns with nothing inflated.
func (j *inflateJob) step(most int) (done bool, err error) {
	if len(*j.bp) == cap(*j.bp) && !j.grow() {
		return false, nil
	}
	out := *j.bp
	target := len(out) + most
	defer func() { *j.bp = out }()
	for len(out) < target && len(out) < cap(out) {
		n, err := j.f.fr.Read(out[len(out):min(cap(out), target)])
		out = out[:len(out)+n]
		if int64(len(out)) > j.limit {
			return false, errInflateTooBig
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("%w: %v", errInflateCorrupt, err)
		}
	}
	return false, nil
}

// inflateMove bounds what one step copies of a full inflate buffer into
// its larger successor: a 16 MiB buffer moving to a new 64 MiB one (when
// the route's kept buffers are all in use, as at a bomb's start) took one
// turn 50 to 200 ms, most of it faulting in the fresh pages, and the
// canary's round trip with it. A larger buffer moves over several turns.
const inflateMove = 2 << 20

// grow moves j's buffer (full) to a larger one, at most inflateMove bytes
// a call, and reports whether it is done. The larger buffer is the
// largest the route kept when it is larger, else a new one inflateGrowth
// times the capacity (at least 512 bytes, at most the limit plus the byte
// that tells a message over the limit). The old buffer goes back to its
// pool.
func (j *inflateJob) grow() bool {
	out := *j.bp
	if j.next == nil {
		if j.spares != nil {
			j.next = j.spares.get(cap(out))
		}
		if j.next == nil {
			c := min(max(int64(cap(out))*inflateGrowth, 512), j.limit+1)
			j.next = &[]byte{}
			*j.next = make([]byte, 0, c)
			j.work += c
		}
	}
	next := *j.next
	n := min(len(out)-len(next), inflateMove)
	next = append(next, out[len(next):len(next)+n]...)
	*j.next = next
	j.work += int64(n)
	if len(next) < len(out) {
		return false
	}
	if cap(out) > 0 {
		putInflateBuf(j.bp, j.spares)
	}
	j.bp, j.next = j.next, nil
	return true
}

// detach copies the compressed input not inflated yet, which points into
// gnet's buffer or the decoder's, so that the job outlives them.
func (j *inflateJob) detach() { j.f.src.p = append([]byte(nil), j.f.src.p...) }

// releaseInflate releases j and its share of MaxPartialTotal.
func (w *WebSocket) releaseInflate(j *inflateJob) {
	if j.f == nil {
		return
	}
	w.l.partial -= j.reserved
	if w.state == wsClosed {
		w.l.freed(j.reserved)
	}
	j.reserved = 0
	j.release()
}

func (j *inflateJob) release() {
	j.f.src = tailReader{}
	inflaters.Put(j.f)
	putInflateBuf(j.bp, j.spares)
	if j.next != nil {
		putInflateBuf(j.next, j.spares)
	}
	j.f, j.bp, j.next, j.spares = nil, nil, nil, nil
}

// inflated delivers a compressed message, or starts inflating it over
// several turns (cfInflating) when it inflates to more than turnBytes.
func (w *WebSocket) inflated(ev *ws13.Event) {
	o := &w.route().opts
	j := newInflateJob(ev.Payload, ev.Op, o.MaxMessageSize, o.Compression.spares)
	if !w.inflateStep(j) {
		j.detach()
		l := w.l
		l.inflates[w.conn()] = j
		w.conn().cf.set(cfInflating, true)
		l.inflating = append(l.inflating, w.conn())
		if !l.inflateArmed {
			l.inflateArmed = true
			l.nextTurn(l.stepInflates)
		}
	}
}

// stepInflates runs one step of every pending inflation, once per turn of
// the loop (a callback runs after the loop polled its sockets), and goes
// on serving a connection's input once its message is whole. One step per
// connection per turn, however many reads arrive: the output a step makes
// is not bounded by the input that woke it.
//
// The steps of one turn together allocate and deliver at most
// inflateTurnWork bytes (beyond that the connections not served yet go
// first next turn): four clients whose messages inflate to 64 MiB in
// step, as a deflate bomb's do, otherwise each took a new 64 MiB buffer
// (page faults on a cold heap) and then each delivered its message, whose
// echo the handler wrote, all in the same turn: 190 ms without polling.
func (l *Loop) stepInflates() {
	l.inflateArmed = false
	list := l.inflating
	l.inflating = nil
	var skipped, stepped []*conn
	var work int64
	for i, c := range list {
		if c.cf.has(cfDead) || !c.cf.has(cfInflating) {
			continue
		}
		if work >= inflateTurnWork {
			skipped = list[i:]
			break
		}
		done, w := c.ws().continueInflate()
		work += w
		if !done {
			stepped = append(stepped, c)
			continue
		}
		if c.gc.InboundBuffered() > 0 {
			c.traffic() // the frames that waited behind the message
		}
	}
	if len(skipped)+len(stepped) > 0 {
		// Next turn: those skipped first, then those stepped, then the
		// messages started meanwhile (traffic above, into l.inflating).
		next := make([]*conn, 0, len(skipped)+len(stepped)+len(l.inflating))
		l.inflating = append(append(append(next, skipped...), stepped...), l.inflating...)
	}
	if len(l.inflating) > 0 && !l.inflateArmed {
		l.inflateArmed = true
		l.nextTurn(l.stepInflates)
	}
}

// inflateStep runs one step of j; it returns false while j is not done, and
// delivers or fails the message (and releases j) when it is.
func (w *WebSocket) inflateStep(j *inflateJob) bool {
	j.work = 0
	before := len(*j.bp)
	done, err := j.step(turnBytes)
	if grown := int64(len(*j.bp) - before); err == nil && grown > 0 && !done {
		l := w.l
		if l.partial+grown > l.opts.MaxPartialTotal {
			w.fail(CloseTryAgainLater, "server busy: too many large messages in flight")
			w.releaseInflate(j)
			return true
		}
		l.partial += grown
		j.reserved += grown
	}
	if err == nil && !done {
		return false
	}
	defer w.releaseInflate(j)
	switch {
	case errors.Is(err, errInflateTooBig):
		// RFC 6455 7.4.1: 1009 "a message that is too big for it to
		// process"; the limit applies to the inflated size.
		w.fail(CloseTooBig, "message too big")
		return true
	case err != nil:
		// RFC 7692 8: an endpoint that cannot inflate a message "MUST
		// _Fail the WebSocket Connection_"; 1007 as for other bad data.
		w.fail(CloseInvalidPayload, err.Error())
		return true
	}
	data := *j.bp
	// RFC 6455 8.1: invalid UTF-8 in a text message fails the connection.
	if j.op == ws.OpText && !utf8.Valid(data) {
		w.fail(CloseInvalidPayload, "invalid UTF-8 in text message")
		return true
	}
	if w.state == wsOpen {
		w.countIn(len(data))
		j.work += int64(len(data))
		w.guard(func() { w.h.OnMessage(w, MessageType(j.op), data) })
	}
	return true
}

// continueInflate runs the next step of the connection's pending message;
// done is false while it is not done (the caller yields the turn), work is
// the step's inflateJob.work.
func (w *WebSocket) continueInflate() (done bool, work int64) {
	c := w.conn()
	j := c.l.inflates[c]
	if j == nil {
		done = true
	} else {
		done = w.inflateStep(j)
		work = j.work
	}
	if done {
		delete(c.l.inflates, c)
		c.cf.set(cfInflating, false)
	}
	return done, work
}

// dropInflate releases a pending inflation of a closed connection.
func (w *WebSocket) dropInflate() {
	c := w.conn()
	if !c.cf.has(cfInflating) {
		return
	}
	if j := c.l.inflates[c]; j != nil {
		w.releaseInflate(j)
	}
	delete(c.l.inflates, c)
	c.cf.set(cfInflating, false)
}
