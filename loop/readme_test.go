package loop_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tornago/tornago/internal/notrun"
)

// readmeBlock returns the first go code block after the README heading
// that starts with heading.
func readmeBlock(readme []byte, heading string) ([]byte, error) {
	_, after, ok := bytes.Cut(readme, []byte("\n"+heading))
	if !ok {
		return nil, errors.New("no \"" + heading + "\" heading")
	}
	_, after, ok = bytes.Cut(after, []byte("\n```go\n"))
	if !ok {
		return nil, errors.New("no ```go block after the " + heading + " heading")
	}
	code, _, ok := bytes.Cut(after, []byte("\n```\n"))
	if !ok {
		return nil, errors.New("the " + heading + " code block is not closed")
	}
	return append(code, '\n'), nil
}

// TestReadmeQuickStartCompiles builds the README's quick start (and the
// mount example) as printed:
// a complete program against this checkout of the module. The file lives
// outside the module, so `go build file.go` run from here resolves its
// imports through this go.mod and the module cache (no network: GOPROXY=off).
func TestReadmeQuickStartCompiles(t *testing.T) {
	for _, heading := range []string{"## Quick start", "## Inside an existing net/http server"} {
		t.Run(strings.TrimPrefix(heading, "## "), func(t *testing.T) { readmeCompiles(t, heading) })
	}
}

func readmeCompiles(t *testing.T, heading string) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	code, err := readmeBlock(readme, heading)
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	if !bytes.HasPrefix(code, []byte("package main\n")) {
		t.Fatalf("README.md: the quick start must be a whole program starting with \"package main\", got:\n%s", code)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		notrun.Skip(t, "no go command in PATH: "+err.Error())
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, code, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, "quickstart"), src)
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README quick start does not compile: %v\n%s\n--- code:\n%s", err, out, code)
	}
	// go vet too: the program is what users copy first.
	cmd = exec.Command(goBin, "vet", src)
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go vet of the README quick start: %v\n%s", err, strings.TrimSpace(string(out)))
	}
}
