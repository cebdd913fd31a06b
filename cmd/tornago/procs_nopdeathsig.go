//go:build !linux && !freebsd

package main

import "os/exec"

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal (macOS, the other BSDs): there, a supervisor killed with SIGKILL
// leaves its children running, holding the port, until they are stopped
// by hand (a SIGINT/SIGTERM to the supervisor still stops them all, as on
// Linux). The README's "Supported systems" says so.
func setParentDeathSignal(cmd *exec.Cmd) {}
