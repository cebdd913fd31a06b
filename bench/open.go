package bench

import (
	"sync"
	"sync/atomic"
	"time"
)

// OpenOptions bounds how connections are opened.
type OpenOptions struct {
	// Rate is connections started per second. Default 2000.
	Rate int
	// Src spreads source addresses over 127.0.0.1..127.0.0.Src. Default 1
	// for up to 20k connections, else one per 20k.
	Src int
	// SrcBase offsets the source addresses (child processes use distinct ones).
	SrcBase int
	// Timeout bounds the whole opening phase. Default 60s + n/Rate.
	Timeout time.Duration
}

func (o *OpenOptions) defaults(n int) {
	if o.Rate <= 0 {
		o.Rate = 2000
	}
	if o.Src <= 0 {
		o.Src = 1 + n/20000
	}
	if o.Timeout <= 0 {
		o.Timeout = 60*time.Second + time.Duration(n/o.Rate)*time.Second
	}
}

// opened is the outcome of opening n connections.
type opened struct {
	conns   []conn // nil where the connection failed
	errs    atomic.Int64
	closed  atomic.Int64 // closed after opening, before closeAll
	closing atomic.Bool
	lat     latencies
	lastErr atomic.Value
}

func (o *opened) live() []conn {
	var cs []conn
	for _, c := range o.conns {
		if c != nil {
			cs = append(cs, c)
		}
	}
	return cs
}

func (o *opened) closeAll() {
	o.closing.Store(true)
	var wg sync.WaitGroup
	cs := o.live()
	// Closing is bounded per connection by the driver; do it in a few
	// goroutines so 19k closes do not take 19k round trips in a row.
	const workers = 16
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(cs); i += workers {
				cs[i].Close()
			}
		}(w)
	}
	wg.Wait()
}

// openConns opens n connections to rawURL at a bounded rate; mk gives the
// scenario's handler for connection i (its onOpen runs after the harness
// recorded the connection). ready, if set, is how a scenario tells that a
// connection is usable (e.g. after a welcome message); by default onOpen.
func openConns(d driver, rawURL string, n int, opt OpenOptions, mk func(i int) handler, bar ProgressBar) *opened {
	opt.defaults(n)
	o := &opened{conns: make([]conn, n)}
	var mu sync.Mutex
	var done atomic.Int64
	all := make(chan struct{})
	finish := func() {
		if done.Add(1) == int64(n) {
			close(all)
		}
		if bar != nil {
			bar.Set(done.Load(), 0, o.errs.Load())
		}
	}
	inflight := make(chan struct{}, 1000)
	start := time.Now()
	deadline := start.Add(opt.Timeout)
	for i := 0; i < n; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(opt.Rate))); wait > 0 {
			time.Sleep(wait)
		}
		if time.Now().After(deadline) {
			o.errs.Add(int64(n - i))
			for k := i; k < n; k++ {
				finish()
			}
			break
		}
		inflight <- struct{}{}
		h := mk(i)
		t0 := time.Now()
		var once sync.Once
		wrapped := handler{
			onOpen: func(c conn) {
				o.lat.add(time.Since(t0))
				mu.Lock()
				o.conns[i] = c
				mu.Unlock()
				once.Do(func() { <-inflight; finish() })
				if h.onOpen != nil {
					h.onOpen(c)
				}
			},
			onMessage: h.onMessage,
			onClose: func(c conn, err error) {
				if c == nil {
					o.errs.Add(1)
					if err != nil {
						o.lastErr.Store(err.Error())
					}
					once.Do(func() { <-inflight; finish() })
				} else if !o.closing.Load() {
					o.closed.Add(1)
					if err != nil {
						o.lastErr.Store(err.Error())
					}
				}
				if h.onClose != nil {
					h.onClose(c, err)
				}
			},
		}
		d.Dial(rawURL, srcAddr(i, opt.Src, opt.SrcBase), wrapped)
	}
	select {
	case <-all:
	case <-time.After(time.Until(deadline) + time.Second):
	}
	mu.Lock()
	o.conns = append([]conn(nil), o.conns...)
	mu.Unlock()
	if bar != nil {
		bar.Done()
	}
	return o
}
