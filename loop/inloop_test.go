package loop

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// InLoop compares goroutine struct addresses, and the runtime reuses the g
// of a goroutine that exited. Once the loop goroutine is gone no goroutine
// may pass for it: here the window before Start marks the loop stopped is
// reopened (state set back to running) and new goroutines, among which the
// runtime usually hands out the loop's old g again, must all see false.
func TestInLoopFalseAfterLoopGoroutineExits(t *testing.T) {
	l := New(Options{Logger: discardLog})
	if err := l.Listen(freePort(t), NewApplication(AppOptions{})); err != nil {
		t.Fatal(err)
	}
	started := startAsync(l)
	<-l.Ready()
	gch := make(chan uintptr, 1)
	l.AddCallback(func() { gch <- getg() })
	loopG := <-gch
	stopWithin(t, l, time.Second)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	l.state.Store(stateRunning) // as between the loop goroutine's exit and Start's end
	defer l.state.Store(stateStopped)

	const n = 2000
	var reused, wrong atomic.Int64
	var checked, creators sync.WaitGroup
	release := make(chan struct{})
	// Started from several goroutines and kept alive until all have
	// checked, so that free gs come from every P's list, not the same g
	// over and over.
	for range 16 {
		creators.Go(func() {
			for range n / 16 {
				checked.Add(1)
				go func() {
					if getg() == loopG {
						reused.Add(1)
					}
					if l.InLoop() {
						wrong.Add(1)
					}
					checked.Done()
					<-release
				}()
			}
		})
	}
	creators.Wait()
	checked.Wait()
	close(release)
	t.Logf("%d of %d new goroutines reused the loop goroutine's g", reused.Load(), n)
	if wrong.Load() > 0 {
		t.Fatalf("InLoop true on %d goroutines after the loop goroutine exited", wrong.Load())
	}
}
