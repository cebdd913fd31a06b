package loop_test

import (
	"bytes"
	"errors"
	"go/format"
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

// moduleCommands returns the go commands of the indented command block
// between the heading and its program: what the README tells a user to run
// to depend on the module from another module.
func moduleCommands(readme []byte, heading string) ([][]string, error) {
	_, after, ok := bytes.Cut(readme, []byte("\n"+heading))
	if !ok {
		return nil, errors.New("no \"" + heading + "\" heading")
	}
	before, _, ok := bytes.Cut(after, []byte("\n```go\n"))
	if !ok {
		return nil, errors.New("no ```go block after the " + heading + " heading")
	}
	var cmds [][]string
	for _, line := range strings.Split(string(before), "\n") {
		if cmd, ok := strings.CutPrefix(line, "    go "); ok {
			cmds = append(cmds, append([]string{"go"}, strings.Fields(cmd)...))
		}
	}
	return cmds, nil
}

// TestReadmeQuickStartCompiles does what the README's quick start tells a
// user who depends on the module from their own (for the quick start and
// the mount example): in a fresh module outside the repository, next to a
// "clone" (a link to this checkout) named as in the README, it runs the
// README's go commands (go mod init, the replace, go get) with the program
// saved as main.go, then builds and vets it (instead of "go run ."). Offline,
// as CI's module cache holds every dependency: GOPROXY=off, and GOSUMDB=off
// because the checksum database is reached through the proxy (go.sum is
// filled from the module cache, verified when it was downloaded). It does
// not skip under CI=true.
func TestReadmeQuickStartCompiles(t *testing.T) {
	for _, heading := range []string{"## Quick start", "## Inside an existing net/http server"} {
		t.Run(strings.TrimPrefix(heading, "## "), func(t *testing.T) {
			readmeBuild(t, heading, "## Quick start", []string{"go get github.com/tornago/tornago/loop"}, nil)
		})
	}
}

// readmeBuild builds the program of the ```go block after heading, in a
// fresh module set up by the go commands printed between setupHeading and
// its own ```go block, with files (name -> content) beside main.go; it
// returns the binary's path. wantCmds are commands the setup must print
// besides go mod init, the replace and go run.
func readmeBuild(t *testing.T, heading, setupHeading string, wantCmds []string, files map[string][]byte) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	code, err := readmeBlock(readme, heading)
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	if !bytes.HasPrefix(code, []byte("package main\n")) {
		t.Fatalf("README.md: the program after %q must be a whole program starting with \"package main\", got:\n%s", heading, code)
	}
	if formatted, err := format.Source(code); err != nil || !bytes.Equal(formatted, code) {
		t.Errorf("README.md: the program after %q is not gofmt-formatted (%v)", heading, err)
	}
	cmds, err := moduleCommands(readme, setupHeading)
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	var joined []string
	for _, c := range cmds {
		joined = append(joined, strings.Join(c, " "))
	}
	all := strings.Join(joined, "\n")
	for _, want := range append([]string{"go mod init ", "go mod edit -replace github.com/tornago/tornago=../tornago", "go run ."}, wantCmds...) {
		if !strings.Contains(all, want) {
			t.Fatalf("README.md: the commands after %q lack %q; they are:\n%s", setupHeading, want, all)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		notrun.Skip(t, "no go command in PATH: "+err.Error())
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(repo, filepath.Join(dir, "tornago")); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(dir, "myapp")
	if err := os.Mkdir(app, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "main.go"), code, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(app, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "GOPROXY=off", "GOSUMDB=off", "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(goBin, args[1:]...)
		cmd.Dir, cmd.Env = app, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("README %s: %s: %v\n%s\n--- code:\n%s", heading, strings.Join(args, " "), err, out, code)
		}
	}
	for _, c := range cmds {
		if len(c) >= 2 && c[1] == "run" {
			continue // a server: build and vet it instead
		}
		run(c...)
	}
	bin := filepath.Join(dir, "program")
	run("go", "build", "-o", bin, ".")
	// go vet too: the program is what users copy first.
	run("go", "vet", ".")
	return bin
}
