package bench

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
)

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

func alive(pid int) bool {
	st := procField(pid, "status", "State:")
	return st != "" && !strings.HasPrefix(st, "Z") && !strings.HasPrefix(st, "X")
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
	inodes := listeningInodes(pid, pn)
	if len(inodes) == 0 {
		return fmt.Errorf("-pid %d: nothing listens on port %d", pid, pn)
	}
	// With tornago -procs the children own the listening sockets: any
	// process of the tree will do.
	tree := treePIDs(pid)
	var denied error
	for _, p := range tree {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		if err != nil {
			if denied == nil {
				denied = fmt.Errorf("-pid %d: cannot see the sockets of process %d (%w): run the harness as the server's user", pid, p, err)
			}
			continue
		}
		for _, fd := range fds {
			l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p, fd.Name()))
			if err != nil {
				continue
			}
			if ino, ok := strings.CutPrefix(l, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
				return nil
			}
		}
	}
	if denied != nil {
		return denied
	}
	return fmt.Errorf("-pid %d (%s) is not the process listening on port %d (nor is any of its %d descendants)", pid, procField(pid, "status", "Name:"), pn, len(tree)-1)
}

// listeningInodes are the socket inodes in LISTEN state on port, as seen
// in pid's network namespace.
func listeningInodes(pid, port int) map[string]bool {
	out := map[string]bool{}
	hexPort := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			if len(fs) < 10 || fs[3] != "0A" || !strings.HasSuffix(fs[1], hexPort) {
				continue
			}
			out[fs[9]] = true
		}
	}
	return out
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
	k, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return Machine{Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Kernel: strings.TrimSpace(string(k)), GoVersion: runtime.Version()}
}
