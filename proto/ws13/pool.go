package ws13

import (
	"math/bits"
	"sync"
)

// Assembly buffers are pooled by power-of-two capacity from 512 B to 4 MiB;
// larger ones are left to the garbage collector.
const (
	minClassShift = 9
	maxClassShift = 22
)

var bufPools [maxClassShift - minClassShift + 1]sync.Pool

// boxes recycles the *[]byte boxes the buffer pools hold (a pool of
// pointers, so putting a box back allocates nothing): in steady state
// pooling a buffer costs no allocation.
var boxes sync.Pool

// classOf returns the pool index for a buffer of capacity at least n, and
// the capacity of that class. ok is false when n is above the largest class.
func classOf(n int) (idx, size int, ok bool) {
	if n <= 1<<minClassShift {
		return 0, 1 << minClassShift, true
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxClassShift {
		return 0, 0, false
	}
	return shift - minClassShift, 1 << shift, true
}

// getBuf returns an empty buffer with capacity at least n.
func getBuf(n int) []byte {
	idx, size, ok := classOf(n)
	if !ok {
		// Leave room to grow without reallocating at every fragment.
		return make([]byte, 0, n+n/4)
	}
	if v := bufPools[idx].Get(); v != nil {
		box := v.(*[]byte)
		b := (*box)[:0]
		*box = nil
		boxes.Put(box)
		return b
	}
	return make([]byte, 0, size)
}

// putBuf returns b to its pool when its capacity is exactly a class size.
func putBuf(b []byte) {
	c := cap(b)
	if c < 1<<minClassShift || c > 1<<maxClassShift || c&(c-1) != 0 {
		return
	}
	idx := bits.Len(uint(c)) - 1 - minClassShift
	box, _ := boxes.Get().(*[]byte)
	if box == nil {
		box = new([]byte)
	}
	*box = b[:0]
	bufPools[idx].Put(box)
}
