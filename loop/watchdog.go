package loop

import (
	"bytes"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

// The blocked-loop watchdog (Tornado's set_blocking_log_threshold). The
// loop marks the outermost frame of every handler, callback, timer and
// traffic callback: at entry it stores a fresh sequence number, at exit 0
// (Loop.begin and Loop.leave). A goroutine looks at the mark every
// threshold/2; the same non-zero number on three looks in a row means one
// frame has run for at least the threshold, and the watchdog logs the loop
// goroutine's stack while it is still blocked, once per stall. The loop
// pays two atomic stores per outermost frame, and a nil check when the
// option is off; no clock is read on the loop.

type watchdog struct {
	l         *Loop
	threshold time.Duration
	mark      atomic.Uint64 // sequence number of the running outermost frame, 0 between frames
	seq       uint64        // loop-only
	gid       atomic.Uint64 // the loop goroutine's id, for picking its stack
	stalls    atomic.Int64
	stop      chan struct{}
}

func newWatchdog(l *Loop, threshold time.Duration) *watchdog {
	return &watchdog{l: l, threshold: threshold, stop: make(chan struct{})}
}

// begin opens a busy section (a handler frame) on the loop; the outermost
// one marks the watchdog. Loop-only.
func (l *Loop) begin() {
	if l.busy == 0 && l.wd != nil {
		l.wd.seq++
		l.wd.mark.Store(l.wd.seq)
	}
	l.busy++
}

// run is the watchdog goroutine; it returns when stop is closed.
func (wd *watchdog) run() {
	t := time.NewTicker(wd.threshold / 2)
	defer t.Stop()
	var last uint64
	looks := 0
	for {
		select {
		case <-wd.stop:
			return
		case <-t.C:
		}
		m := wd.mark.Load()
		if m == 0 || m != last {
			last, looks = m, 1
			continue
		}
		looks++
		// Seen on looks k, k+1, k+2: the frame started before look k and
		// still ran two half-thresholds later.
		if looks == 3 {
			wd.report(time.Duration(looks-1) * wd.threshold / 2)
		}
	}
}

// report logs the loop goroutine's stack and counts the stall.
func (wd *watchdog) report(atLeast time.Duration) {
	wd.stalls.Add(1)
	wd.l.log.Warn("loop: blocked: a handler, callback or timer has been running too long",
		"blocked_for_at_least", atLeast, "threshold", wd.threshold,
		"stack", string(goroutineStack(wd.gid.Load())))
}

// goroutineStack returns the stack of the goroutine with id gid (all
// goroutines' when gid is 0 or not found).
func goroutineStack(gid uint64) []byte {
	buf := make([]byte, 256<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		if len(buf) >= 64<<20 {
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	if gid == 0 {
		return buf
	}
	head := []byte("goroutine " + strconv.FormatUint(gid, 10) + " [")
	for rest := buf; len(rest) > 0; {
		end := bytes.Index(rest, []byte("\n\n"))
		if end < 0 {
			end = len(rest)
		}
		if bytes.HasPrefix(rest, head) {
			return rest[:end]
		}
		if end+2 > len(rest) {
			break
		}
		rest = rest[end+2:]
	}
	return buf
}

// currentGoroutineID parses the running goroutine's id from the first line
// of its stack ("goroutine 42 [running]:"). It costs a microsecond: called
// once, on the loop's first entry.
func currentGoroutineID() uint64 {
	var b [64]byte
	s := b[:runtime.Stack(b[:], false)]
	s = bytes.TrimPrefix(s, []byte("goroutine "))
	if i := bytes.IndexByte(s, ' '); i > 0 {
		s = s[:i]
	}
	id, _ := strconv.ParseUint(string(s), 10, 64)
	return id
}
