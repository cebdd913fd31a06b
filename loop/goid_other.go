//go:build !amd64 && !arm64

package loop

// getg falls back to the goroutine id parsed from runtime.Stack (about a
// microsecond; see currentGoroutineID) on architectures without the
// assembly stub. Ids are never reused, unlike g addresses.
func getg() uintptr { return uintptr(currentGoroutineID()) }
