//go:build race

package realtime_test

// raceOn: the race detector slows the loop's work five to ten times, and
// CI runs this package beside others: canary budgets allow for it.
const raceOn = true
