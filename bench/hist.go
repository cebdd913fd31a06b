package bench

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"sort"
	"time"
)

// Latencies measured in child processes reach the parent as histograms:
// percentiles of the whole run are read from the merged histogram, never
// averaged over the children's percentiles.

// histSub is the number of buckets per power of two: a value is known to
// within 1/histSub (1.6%).
const histSub = 64

// hist is a log-linear histogram of durations in nanoseconds; not
// goroutine-safe. Its JSON form lists the non-empty buckets only.
type hist struct {
	counts map[int]int64
	n      int64
	max    int64
}

func newHist() *hist { return &hist{counts: map[int]int64{}} }

// histBucket is the bucket of v >= 0: exact below histSub, then histSub
// buckets per power of two.
func histBucket(v int64) int {
	if v < histSub {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - 7 // v >> e is in [64, 128)
	return e*histSub + int(v>>e)
}

// histValue is the middle of bucket b.
func histValue(b int) int64 {
	if b < 2*histSub {
		return int64(b)
	}
	e := b/histSub - 1
	lo := int64(b-e*histSub) << e
	return lo + (int64(1)<<e)/2
}

func (h *hist) add(d time.Duration) {
	h.counts[histBucket(int64(d))]++
	h.n++
	h.max = max(h.max, int64(d))
}

func (h *hist) merge(o *hist) {
	for b, c := range o.counts {
		h.counts[b] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

func (h *hist) buckets() []int {
	bs := make([]int, 0, len(h.counts))
	for b := range h.counts {
		bs = append(bs, b)
	}
	sort.Ints(bs)
	return bs
}

// at is the q-quantile with summarize's rank rule (sample (n-1)*q of the
// sorted samples); the top bucket reports the exact maximum.
func (h *hist) at(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(float64(h.n-1)*q) + 1
	var cum int64
	for _, b := range h.buckets() {
		cum += h.counts[b]
		if cum >= rank {
			return time.Duration(min(histValue(b), h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *hist) summary() Percentiles {
	if h.n == 0 {
		return Percentiles{}
	}
	return Percentiles{N: int(h.n), P50: h.at(0.5), P99: h.at(0.99), P999: h.at(0.999), Max: time.Duration(h.max)}
}

// samples expands the histogram into sorted bucket values (for plots),
// keeping at most limit of them (evenly thinned).
func (h *hist) samples(limit int) []time.Duration {
	step := max(h.n/int64(limit), 1)
	var out []time.Duration
	var k int64
	for _, b := range h.buckets() {
		v := time.Duration(min(histValue(b), h.max))
		for c := h.counts[b]; c > 0; c-- {
			if k%step == 0 {
				out = append(out, v)
			}
			k++
		}
	}
	return out
}

type histJSON struct {
	N       int64      `json:"n"`
	Max     int64      `json:"max_ns"`
	Buckets [][2]int64 `json:"b"`
}

func (h *hist) MarshalJSON() ([]byte, error) {
	j := histJSON{N: h.n, Max: h.max}
	for _, b := range h.buckets() {
		j.Buckets = append(j.Buckets, [2]int64{int64(b), h.counts[b]})
	}
	return json.Marshal(j)
}

func (h *hist) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("histogram: %w", err)
	}
	h.counts, h.n, h.max = map[int]int64{}, j.N, j.Max
	for _, bc := range j.Buckets {
		h.counts[int(bc[0])] += bc[1]
	}
	return nil
}

// latSet is a set of latencies: the raw samples while they stay in the
// process that took them (exact percentiles, as a single-process run
// always reported), a histogram once they crossed a process boundary.
type latSet struct {
	raw []time.Duration
	h   *hist // nil: raw
}

func rawSet(s []time.Duration) latSet { return latSet{raw: s} }

func (l latSet) toHist() *hist {
	if l.h != nil {
		return l.h
	}
	h := newHist()
	for _, d := range l.raw {
		h.add(d)
	}
	return h
}

func (l latSet) MarshalJSON() ([]byte, error) { return l.toHist().MarshalJSON() }

func (l *latSet) UnmarshalJSON(b []byte) error {
	l.h, l.raw = newHist(), nil
	return l.h.UnmarshalJSON(b)
}

func (l latSet) count() int64 {
	if l.h != nil {
		return l.h.n
	}
	return int64(len(l.raw))
}

// mergeLat joins sets: raw samples stay raw, anything else becomes a
// histogram.
func mergeLat(sets ...latSet) latSet {
	allRaw := true
	for _, s := range sets {
		allRaw = allRaw && s.h == nil
	}
	if allRaw {
		var out []time.Duration
		for _, s := range sets {
			out = append(out, s.raw...)
		}
		return rawSet(sortDur(out))
	}
	h := newHist()
	for _, s := range sets {
		h.merge(s.toHist())
	}
	return latSet{h: h}
}

// sorted is the samples for plots and summarize: raw ones sorted, or a
// histogram's (at most a million) bucket values.
func (l latSet) sorted() []time.Duration {
	if l.h != nil {
		return l.h.samples(1 << 20)
	}
	return sortDur(l.raw)
}

func (l latSet) summary() Percentiles {
	if l.h != nil {
		return l.h.summary()
	}
	return summarize(sortDur(l.raw))
}
