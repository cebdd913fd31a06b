//go:build amd64 || arm64

package loop

// getg returns the address of the running goroutine's runtime g. It is only
// compared for identity with the loop goroutine's, which lives as long as the
// loop runs; the runtime reuses it once that goroutine exits, which is why
// retireLoopG (engine.go) retires the recorded address first. It costs about a
// nanosecond, which lets every write decide "am I on the loop?" for free.
func getg() uintptr
