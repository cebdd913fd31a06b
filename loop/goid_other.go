//go:build !amd64 && !arm64

package loop

import (
	"runtime"
	"strconv"
	"strings"
)

// getg falls back to parsing the goroutine id from runtime.Stack (about a
// microsecond) on architectures without the assembly stub.
func getg() uintptr {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	if i := strings.IndexByte(s, ' '); i > 0 {
		s = s[:i]
	}
	id, _ := strconv.ParseUint(s, 10, 64)
	return uintptr(id)
}
