//go:build linux || freebsd

package main

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal asks the kernel to send the child parentDeathSignal
// when the parent dies (Linux prctl PR_SET_PDEATHSIG, FreeBSD procctl
// PROC_PDEATHSIG_CTL), so that a supervisor killed with SIGKILL leaves no
// child holding the port.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: parentDeathSignal}
}
