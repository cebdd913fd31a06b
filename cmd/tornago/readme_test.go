package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeFlagTable: the README's one flag table ("### Flags and
// environment") names every flag that `tornago -h` lists exactly once,
// each in its own row's first cell with its environment variable in the
// second, and no flag the binary does not have. The table is what an
// operator reads instead of -h, so a flag added to main.go must land there.
func TestReadmeFlagTable(t *testing.T) {
	out, _ := exec.Command(buildTornago(t), "-h").CombinedOutput() // -h exits 0 or 2 by Go version
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`).FindAllStringSubmatch(string(out), -1) {
		flags = append(flags, m[1])
	}
	if len(flags) < 10 {
		t.Fatalf("tornago -h listed %d flags:\n%s", len(flags), out)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n### Flags and environment\n")
	if !ok {
		t.Fatal(`README.md: no "### Flags and environment" heading`)
	}
	if i := strings.Index(table, "\n#"); i >= 0 {
		table = table[:i]
	}
	rows := map[string]string{} // flag -> its row's environment cell
	seen := map[string]int{}
	cell := regexp.MustCompile("`-([a-z][a-z0-9-]*)`")
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "| `-") || len(cells) < 4 {
			continue
		}
		for _, m := range cell.FindAllStringSubmatch(cells[1], -1) {
			seen[m[1]]++
			rows[m[1]] = cells[2]
		}
	}
	for _, f := range flags {
		switch {
		case seen[f] == 0:
			t.Errorf("README.md flag table: -%s (in tornago -h) is missing", f)
		case seen[f] > 1:
			t.Errorf("README.md flag table: -%s appears %d times", f, seen[f])
		case !strings.Contains(rows[f], "`"+envName(f)+"`"):
			t.Errorf("README.md flag table: -%s's row names %q, not `%s`", f, strings.TrimSpace(rows[f]), envName(f))
		}
		delete(seen, f)
	}
	for f := range seen {
		t.Errorf("README.md flag table: -%s is not a flag of tornago -h", f)
	}
}
