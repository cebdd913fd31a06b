package notrun

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// TestMissingTool is the child's test: it needs a tool nobody has.
func TestMissingTool(t *testing.T) {
	if os.Getenv("NOTRUN_CHILD") != "1" {
		t.Skip("run by TestLine as a child")
	}
	Skip(t, "no frobnicator")
}

// TestLine: without -v the test binary ends with the NOT RUN line (here on
// stderr: the child has no terminal), and CI=true turns the skip into a
// failure.
func TestLine(t *testing.T) {
	run := func(ci string) (string, error) {
		c := exec.Command(os.Args[0], "-test.run", "^TestMissingTool$")
		c.Env = append(os.Environ(), "NOTRUN_CHILD=1", "CI="+ci)
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no /dev/tty
		out, err := c.CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	if err != nil || !strings.Contains(out, "NOT RUN: TestMissingTool (no frobnicator)\n") {
		t.Fatalf("without CI: %v\n%s", err, out)
	}
	out, err = run("true")
	if err == nil || !strings.Contains(out, "--- FAIL: TestMissingTool") {
		t.Fatalf("CI=true: %v\n%s", err, out)
	}
}
