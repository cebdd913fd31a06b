//go:build linux

package bench

// The server's memory, CPU, threads, process tree and listening sockets
// are read from Linux's /proc. Elsewhere (proc_other.go) the harness
// measures only itself and refuses -pid with a clear error.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// procStats is true where the server's figures can be read (/proc).
const procStats = true

func procField(pid int, file, key string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key) {
			return strings.TrimSpace(strings.TrimPrefix(line, key))
		}
	}
	return ""
}

// readStat parses /proc/PID/stat ("self" for pid 0); ok is false when the
// process is gone.
func readStat(pid int) (procStat, bool) {
	p := "self"
	if pid > 0 {
		p = strconv.Itoa(pid)
	}
	b, err := os.ReadFile("/proc/" + p + "/stat")
	if err != nil {
		return procStat{}, false
	}
	return parseStat(string(b))
}

// childrenOf reads /proc/PID/task/*/children (each thread's children: a
// Go program forks from any of its threads); ok is false when the kernel
// has no such files (CONFIG_PROC_CHILDREN), and the caller scans /proc.
func childrenOf(pid int) (kids []int, ok bool) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, true // gone since: no children to add
	}
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/children")
		if errors.Is(err, fs.ErrNotExist) {
			if _, e := os.Stat(dir + "/" + t.Name()); e == nil {
				return nil, false // the task is there, the file is not
			}
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				kids = append(kids, n)
			}
		}
	}
	return kids, true
}

// scanTree finds root's descendants through every /proc/*/stat's ppid.
func scanTree(root procStat) []procStat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []procStat{root}
	}
	kids := map[int][]procStat{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == root.pid {
			continue
		}
		if st, ok := readStat(n); ok {
			kids[st.ppid] = append(kids[st.ppid], st)
		}
	}
	out := []procStat{root}
	for i := 0; i < len(out); i++ {
		out = append(out, kids[out[i].pid]...)
	}
	return out
}

// processAlive: /proc/PID exists and is not a zombie (a server the harness
// started and that exited stays a zombie until StopServers reaps it).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	st := s[i+2]
	return st != 'Z' && st != 'X'
}

// fdLimit is the soft "Max open files" of pid, 0 when unknown.
func fdLimit(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

func alive(pid int) bool {
	st := procField(pid, "status", "State:")
	return st != "" && !strings.HasPrefix(st, "Z") && !strings.HasPrefix(st, "X")
}

// ownsListener returns an error unless pid or one of its descendants
// holds a socket listening on port pn (the sockets in /proc/PID/fd against
// the LISTEN inodes of /proc/PID/net/tcp*).
func ownsListener(pid, pn int) error {
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

// kernelRelease is the running kernel's release, for Machine.
func kernelRelease() string {
	k, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(k))
}
