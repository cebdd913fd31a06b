package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair with the given size; the caller
// writes to tty and reads what a terminal would show from ptm.
func openPTY(t *testing.T, cols, rows uint16) (ptm, tty *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows}); err != nil {
		t.Fatalf("set size: %v", err)
	}
	return ptm, tty
}

// TestBarsOnZeroWidthTerminal: on a terminal that reports 0 columns (a pty
// nobody sized) the bars are drawn, in full, as on a sized one.
func TestBarsOnZeroWidthTerminal(t *testing.T) {
	for _, size := range []struct{ cols, rows uint16 }{{0, 0}, {100, 30}} {
		t.Run(fmt.Sprintf("%dx%d", size.cols, size.rows), func(t *testing.T) {
			ptm, tty := openPTY(t, size.cols, size.rows)
			var shown bytes.Buffer
			read := make(chan struct{})
			go func() { io.Copy(&shown, ptm); close(read) }()
			p := newProgressTo(tty, false)
			b := p.Phase("connect", 10)
			b.Set(10, 0, 0)
			b.Done()
			p.Wait()
			time.Sleep(100 * time.Millisecond) // let the pty pass it on
			tty.Close()
			ptm.SetReadDeadline(time.Now().Add(time.Second))
			<-read
			out := shown.String()
			if !strings.Contains(out, "connect") || !strings.Contains(out, "10 / 10") || !strings.Contains(out, "err 0") {
				t.Fatalf("bars not drawn on a %dx%d terminal: %q", size.cols, size.rows, out)
			}
		})
	}
}
