package bench

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strconv"
)

// errNoProc is why -pid, and the modes that start servers to measure them
// (compare, scale), are refused without /proc (proc_other.go).
var errNoProc = errors.New("the server's memory and CPU are read from /proc, which only Linux has: -pid, compare and scale need Linux (run without -pid elsewhere: latency and throughput are still measured)")

// MaxFailShare is the share of connections, messages or requests that may
// fail before a run is declared invalid (its figures would describe the
// failures, not the server). Set it before a run; not goroutine-safe.
var MaxFailShare = 0.05

// InvalidError says why a run could not measure what it reports. The
// scenario functions return it together with the (partial) Result, whose
// Invalid field holds the same reason.
type InvalidError struct {
	Scenario, Reason string
}

func (e *InvalidError) Error() string { return e.Scenario + ": " + e.Reason }

// IsInvalid reports whether err is (or wraps) an InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// invalidate marks r invalid with the first non-nil reason among checks and
// returns it as an *InvalidError; nil when every check passed.
func invalidate(r *Result, checks ...error) error {
	for _, err := range checks {
		if err != nil {
			r.Invalid = err.Error()
			r.Machine = thisMachine()
			return &InvalidError{Scenario: r.Scenario, Reason: r.Invalid}
		}
	}
	return nil
}

// tooMany is an error when more than MaxFailShare of total failed (what
// names them: "connections", "messages").
func tooMany(what string, failed, total int64, last string) error {
	if total <= 0 || float64(failed) <= MaxFailShare*float64(total) {
		return nil
	}
	return fmt.Errorf("%d of %d %s failed (more than %g%%)%s", failed, total, what, MaxFailShare*100, lastErr(last))
}

func lastErr(s string) string {
	if s == "" {
		return ""
	}
	return "; last error: " + s
}

// openCheck is the verdict on an opening phase: none open, or too many
// failed, makes the run invalid.
func openCheck(asked int, op *opened) error {
	last, _ := op.lastErr.Load().(string)
	if len(op.live()) == 0 {
		return fmt.Errorf("no connection opened (%d asked)%s", asked, lastErr(last))
	}
	return tooMany("connections", int64(asked-len(op.live())), int64(asked), last)
}

// aliveCheck fails when the server process pid (if any) is gone or a zombie.
func aliveCheck(pid int) error {
	if pid <= 0 {
		return nil
	}
	if !alive(pid) {
		return fmt.Errorf("server process %d exited during the run", pid)
	}
	return nil
}

// CheckPID returns an error unless process pid, or one of its descendants,
// holds a socket listening on the TCP port of rawURL (ws://, wss://,
// http:// or https://): with any other process the harness would report
// someone else's CPU and memory. A pid whose tree holds this harness is
// refused too. pid 0 passes (nothing is measured).
func CheckPID(pid int, rawURL string) error {
	if pid <= 0 {
		return nil
	}
	if !procStats {
		return fmt.Errorf("-pid %d: %w", pid, errNoProc)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("-pid check: %w", err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"ws": "80", "http": "80", "wss": "443", "https": "443"}[u.Scheme]
	}
	pn, err := strconv.Atoi(port)
	if err != nil || pn <= 0 {
		return fmt.Errorf("-pid check: no port in %q", rawURL)
	}
	if !alive(pid) {
		return fmt.Errorf("-pid %d: no such process", pid)
	}
	if self := os.Getpid(); pid != self && isDescendant(self, pid) {
		return fmt.Errorf("-pid %d (%s) is an ancestor of this harness: its process tree would count the harness as the server", pid, procField(pid, "status", "Name:"))
	}
	return ownsListener(pid, pn)
}

// Machine describes where a run was made, so two runs can be compared
// honestly.
type Machine struct {
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
}

func thisMachine() Machine {
	return Machine{Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Kernel: kernelRelease(), GoVersion: runtime.Version()}
}
