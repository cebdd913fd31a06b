//go:build !race

package realtime_test

const raceOn = false
