// Package notrun makes tests that need an outside tool (chromium, node,
// python3-websocket, python3-tornado) impossible to overlook: Skip skips
// with a "NOT RUN" message, or fails under CI=true, and Main ends the test
// binary with one line naming every test that did not run and why.
package notrun

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

var (
	mu      sync.Mutex
	skipped []string
)

// Skip skips t because what is missing ("no chromium"), or fails it when
// CI=true (.ci/run installs every tool). Goroutine-safe.
func Skip(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("NOT RUN: %s, and CI=true requires it (.ci/run installs it)", what)
	}
	mu.Lock()
	skipped = append(skipped, fmt.Sprintf("%s (%s)", t.Name(), what))
	mu.Unlock()
	t.Skip("NOT RUN: " + what)
}

// Main runs the tests, then prints "NOT RUN: TestX (no chromium), ..." when
// Skip was called. go test hides the output of a passing package unless -v,
// so the line goes to the terminal (/dev/tty) when there is one, else to
// stderr (seen with -v and when the package fails).
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	line := ""
	if len(skipped) > 0 {
		line = "NOT RUN: " + strings.Join(skipped, ", ") + "\n"
	}
	mu.Unlock()
	if line != "" {
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
			tty.WriteString(line)
			tty.Close()
		} else {
			os.Stderr.WriteString(line)
		}
	}
	os.Exit(code)
}
