package loop

import (
	"runtime/metrics"
	"testing"
	"time"
)

// forcedGCs is the process's count of forced collections (runtime.GC,
// debug.FreeOSMemory).
func forcedGCs() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// abandonBurst reports 128 MiB of abandoned messages on l's loop, as if
// the loop had run for more than the 10 s between returns to the OS, and
// returns how many forced collections followed within 1.5 s.
func abandonBurst(t *testing.T, opts Options) uint64 {
	opts.Logger = discardLog
	l, _ := startTestLoopWith(t, opts, func(*Loop) *Application { return NewApplication(AppOptions{}) })
	before := forcedGCs()
	done := make(chan struct{})
	l.AddCallback(func() {
		l.freedAt = l.now() - int64(11*time.Second)
		l.freed(128 << 20)
		close(done)
	})
	<-done
	time.Sleep(1500 * time.Millisecond) // freed waits a second
	return forcedGCs() - before
}

// By default the library never forces a collection in the embedder's
// process (before, freed ran runtime.GC and debug.FreeOSMemory).
func TestNoForcedGCByDefault(t *testing.T) {
	if n := abandonBurst(t, Options{}); n != 0 {
		t.Fatalf("%d forced collections with the default options, want 0", n)
	}
}

// With Options.ReturnMemoryToOS the burst is returned to the OS.
func TestReturnMemoryToOS(t *testing.T) {
	if n := abandonBurst(t, Options{ReturnMemoryToOS: true}); n == 0 {
		t.Fatal("no forced collection with ReturnMemoryToOS")
	}
}
