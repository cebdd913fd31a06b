//go:build !linux

package bench

// Without Linux's /proc the harness cannot read another process's memory,
// CPU, threads or sockets: -pid is refused (CheckPID) with a clear error,
// compare and scale (which start servers to measure them) stop with one,
// and the harness's own CPU comes from getrusage. Latency, throughput and
// error figures are the same as on Linux.

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// procStats is false: no /proc to read the server's figures from.
const procStats = false

func procField(pid int, file, key string) string { return "" }

// readStat knows only this process (pid 0), its CPU from getrusage; ppid
// is not known.
func readStat(pid int) (procStat, bool) {
	if pid != 0 {
		return procStat{}, false
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return procStat{}, false
	}
	// Clock ticks at 100 Hz, as /proc/PID/stat on Linux.
	ticks := (ru.Utime.Nano() + ru.Stime.Nano()) / 1e7
	return procStat{pid: syscall.Getpid(), cpu: ticks}, true
}

func childrenOf(pid int) (kids []int, ok bool) { return nil, true }

func scanTree(root procStat) []procStat { return []procStat{root} }

// processAlive: signal 0 reaches pid (a zombie still counts as alive).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func alive(pid int) bool { return processAlive(pid) }

func fdLimit(pid int) int { return 0 }

func ownsListener(pid, pn int) error { return errNoProc }

// kernelRelease is uname's release (e.g. Darwin 23.4.0).
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
}
