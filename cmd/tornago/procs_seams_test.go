package main

// The -procs seams: who may use the embedded NATS, what reaches the
// children's command lines, the side listeners' ports and addresses, and
// the embedded NATS's store directory after a kill -9.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// procEnviron returns pid's environment variable name (from /proc, which
// only the same user may read).
func procEnviron(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok && k == name {
			return v
		}
	}
	return ""
}

// procCmdline returns pid's command line, arguments separated by spaces.
func procCmdline(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// freePortPair returns a port p below 32768 such that p and p+1 are free
// on 127.0.0.1 (children 0 and 1 of a side listener).
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 100 {
		p := 10000 + rand.IntN(20000)
		a, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p
	}
	t.Fatal("no two free consecutive ports")
	return 0
}

var embeddedURL = regexp.MustCompile(`msg="embedded nats" url=(\S+)`)

// TestProcsEmbeddedNATSRefusesStrangers: the embedded NATS of -procs
// refuses a local process that connects without the run's secret (it
// could read every chat message, publish past /receive's checks and purge
// the streams); the children, which have it in their environment, and
// only there, connect.
func TestProcsEmbeddedNATSRefusesStrangers(t *testing.T) {
	addr, cmd, _, stderr := startBinary(t, "-procs", "2")
	kids := waitChildren(t, cmd.Process.Pid, 2, portOf(addr))
	m := embeddedURL.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no embedded nats URL logged:\n%s", stderr)
	}
	u := m[1]
	if !strings.Contains(u, "xxxxx") {
		t.Fatalf("the logged URL %q is not redacted", u)
	}
	host := u[strings.LastIndex(u, "@")+1:]
	if _, err := nats.Connect("nats://"+host, nats.MaxReconnects(0)); err == nil {
		t.Fatal("connected to the embedded NATS without credentials")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("want an authorization error, got %v", err)
	}
	if _, err := nats.Connect("nats://tornago:guess@"+host, nats.MaxReconnects(0)); err == nil {
		t.Fatal("connected to the embedded NATS with a guessed password")
	}
	secret := procEnviron(t, kids[0], "TORNAGO_NATS")
	if secret == "" || !strings.Contains(secret, host) {
		t.Fatalf("child's TORNAGO_NATS %q does not name %s", secret, host)
	}
	nc, err := nats.Connect(secret, nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("the children's URL does not connect: %v", err)
	}
	nc.Close()
	pw, _, _ := strings.Cut(strings.TrimPrefix(secret, "nats://tornago:"), "@")
	if len(pw) < 32 {
		t.Fatalf("password %q: want a long random one", pw)
	}
	for _, pid := range append(kids, cmd.Process.Pid) {
		if strings.Contains(procCmdline(t, pid), pw) {
			t.Errorf("process %d's command line holds the NATS password", pid)
		}
	}
	if strings.Contains(stderr.String(), pw) {
		t.Errorf("the log holds the NATS password %q:\n%s", pw, stderr)
	}
}

// startAuthNATS runs a nats-server with JetStream and a user "app" with
// password pw on 127.0.0.1 until the test ends.
func startAuthNATS(t *testing.T, pw string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Username: "app", Password: pw, JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// TestProcsExternalNATSSecretAndForeignMessages: -procs 2 given an
// external NATS URL with a password through TORNAGO_NATS (to keep it out
// of ps) passes it to no child's command line and no pprof /cmdline; and
// what a program publishes straight into that NATS, past /receive's
// checks (invalid UTF-8, a 600 KB message where /receive allows 64 KiB),
// reaches no /ws client of any child, live or on a resume, while a
// canary published through /receive reaches them all.
func TestProcsExternalNATSSecretAndForeignMessages(t *testing.T) {
	const pw = "s3cret-pw-in-env"
	ns := startAuthNATS(t, pw)
	natsURL := strings.Replace(ns.ClientURL(), "nats://", "nats://app:"+pw+"@", 1)
	pp := freePortPair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	addr, cmd, _, stderr := startBuiltEnv(t, buildTornago(t), addr, []string{"TORNAGO_NATS=" + natsURL},
		"-procs", "2", "-pprof", "127.0.0.1:"+strconv.Itoa(pp))
	port := portOf(addr)
	kids := waitChildren(t, cmd.Process.Pid, 2, port)
	for _, pid := range append(kids, cmd.Process.Pid) {
		if c := procCmdline(t, pid); strings.Contains(c, pw) {
			t.Errorf("process %d's command line holds the password: %q", pid, c)
		}
	}
	for i := range 2 {
		code, body := getBody(t, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/cmdline", pp+i))
		if code != 200 || strings.Contains(body, pw) {
			t.Errorf("child %d's pprof /cmdline (%d) holds the password or failed: %q", i, code, body)
		}
	}
	if strings.Contains(stderr.String(), pw) {
		t.Errorf("the log holds the password:\n%s", stderr)
	}

	_, all := dialSpread(t, addr, port, kids, "/ws", 1, 200)
	resume := dial(t, addr, "/ws?since=")
	_, sub := read(t, resume)
	if !strings.Contains(sub, `"type":"subscribed"`) {
		t.Fatalf("resume: %q", sub)
	}
	in, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for _, bad := range [][]byte{[]byte("\xff\xfe not UTF-8"), bytes.Repeat([]byte("x"), 600<<10)} {
		if err := in.Publish("tornago._h.chat", bad); err != nil {
			t.Fatal(err)
		}
	}
	in.Flush()
	if code, body := httpGet(t, "http://"+addr+"/receive?msg=canary"); code != 200 {
		t.Fatalf("/receive: %d %s\n%s", code, body, stderr)
	}
	for i, c := range all {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, got := read(t, c); got != "canary" {
			t.Fatalf("client %d got %.40q, want canary", i, got)
		}
	}
	_, first := read(t, resume)
	if !strings.HasSuffix(first, "\ncanary") {
		t.Fatalf("positioned client got %.40q, want the canary", first)
	}
	// A client resuming from before the foreign messages gets the
	// canary alone.
	pos, _, _ := strings.Cut(first, "\n")
	epoch, off, _ := strings.Cut(pos, "-")
	n, _ := strconv.Atoi(off)
	again := dial(t, addr, fmt.Sprintf("/ws?since=%s-%d", epoch, n-3))
	if _, got := read(t, again); !strings.HasSuffix(got, "\ncanary") {
		t.Fatalf("resumed client got %.40q first, want the canary", got)
	}
	if !strings.Contains(stderr.String(), "refused a message from NATS") {
		t.Errorf("the refusal was not logged:\n%s", stderr)
	}
}

// TestProcsSidePortsCollide: with -procs 2, -metrics P and -pprof P+1
// would give child 1 the port of child 0's pprof: the parent refuses at
// once, saying why, instead of crash-looping a child.
func TestProcsSidePortsCollide(t *testing.T) {
	p := freePortPair(t)
	bin := buildTornago(t)
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", "0", "-procs", "2",
		"-metrics", "127.0.0.1:"+strconv.Itoa(p), "-pprof", "127.0.0.1:"+strconv.Itoa(p+1))
	var out lockedBuffer
	cmd.Stderr = &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running after 20 s\n%s", &out)
	}
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	log := out.String()
	if !strings.Contains(log, "overlap") || strings.Contains(log, "child started") {
		t.Errorf("want a refusal naming the overlap before any child starts:\n%s", log)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("refused after %v", d)
	}
	// Apart, the same flags work: child 1 serves metrics on P+1.
	q := freePortPair(t)
	addr, pc, _, stderr := startBinary(t, "-procs", "2", "-metrics", "127.0.0.1:"+strconv.Itoa(p), "-pprof", "127.0.0.1:"+strconv.Itoa(q))
	waitChildren(t, pc.Process.Pid, 2, portOf(addr))
	for _, u := range []string{
		fmt.Sprintf("http://127.0.0.1:%d/metrics", p+1),
		fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", q+1),
	} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c := http.Client{Timeout: time.Second}
			if resp, err := c.Get(u); err == nil && resp.StatusCode == 200 {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not served\n%s", u, stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestSideListenersBindHost: -metrics :P and -pprof :Q bind the -host
// address, not every interface; without -host they bind every interface
// and the log says so loudly.
func TestSideListenersBindHost(t *testing.T) {
	p := freePort(t)
	addr, _, _, stderr := startBinary(t, "-metrics", ":"+strconv.Itoa(p)) // startBinary gives -host 127.0.0.1
	_ = addr
	want := fmt.Sprintf(`msg="metrics listening" addr=127.0.0.1:%d`, p)
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("want %s in the log:\n%s", want, stderr)
	}
	if strings.Contains(stderr.String(), "every interface") {
		t.Fatalf("warned with -host given:\n%s", stderr)
	}
	// No -host: every interface, and a warning.
	q := freePort(t)
	cmd := exec.Command(buildTornago(t), "-port", "0", "-pprof", ":"+strconv.Itoa(q))
	var out lockedBuffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "pprof listens on every interface"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning for pprof on every interface:\n%s", &out)
		}
	}
}

// TestProcsKill9LeavesNoNATSDir: the store directory of the embedded NATS
// does not survive a kill -9 of the parent (its children remove it as
// they stop), and a start removes the directories left by a run whose
// processes all died (their lock is free), but not those of a live run
// or of someone else's layout.
func TestProcsKill9LeavesNoNATSDir(t *testing.T) {
	tmp := t.TempDir()
	stale := filepath.Join(tmp, "tornago-nats-stale")
	os.Mkdir(stale, 0o700)
	os.WriteFile(filepath.Join(stale, natsDirLock), nil, 0o600)
	unlocked := filepath.Join(tmp, "tornago-nats-nolock") // not ours to judge
	os.Mkdir(unlocked, 0o700)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	addr, cmd, exited, stderr := startBuiltEnv(t, buildTornago(t), addr, []string{"TMPDIR=" + tmp}, "-procs", "2")
	kids := waitChildren(t, cmd.Process.Pid, 2, portOf(addr))
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale directory survived the start: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(unlocked); err != nil {
		t.Errorf("a directory without the lock file was removed: %v", err)
	}
	dirs, _ := filepath.Glob(filepath.Join(tmp, "tornago-nats-*"))
	var live string
	for _, d := range dirs {
		if d != unlocked {
			live = d
		}
	}
	if live == "" {
		t.Fatalf("no store directory in %s: %v\n%s", tmp, dirs, stderr)
	}
	if removeOrphanedNATSDir(live) {
		t.Fatal("removed the directory of a running parent")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(live); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			for _, k := range kids {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", k))
				t.Logf("child %d: %.200s", k, b)
			}
			t.Fatalf("%s survived the kill -9 of the parent by 20 s\n%s", live, stderr)
		}
	}
}

// TestRedactURL: passwords and bare tokens of NATS URLs (one or a list)
// never reach a log.
func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                   "nats://127.0.0.1:4222",
		"nats://app:pw@127.0.0.1:4222":            "nats://app:xxxxx@127.0.0.1:4222",
		"nats://s3cr3ttoken@h:4222":               "nats://xxxxx@h:4222",
		"nats://a:pw@h1:4222,nats://a:pw@h2:4222": "nats://a:xxxxx@h1:4222,nats://a:xxxxx@h2:4222",
		"nats://a:p%zz@h:4222":                    "(unparsable URL with credentials)",
		"tls://user:pass@nats.internal:4443?x=1":  "tls://user:xxxxx@nats.internal:4443?x=1",
		"nats://h1:4222, nats://tok@h2:4222":      "nats://h1:4222,nats://xxxxx@h2:4222",
		"":                                        "",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckSidePorts: the port ranges of -procs children's side
// listeners are refused when they overlap, and only then.
func TestCheckSidePorts(t *testing.T) {
	for _, c := range []struct {
		host, metrics, pprof string
		port, n              int
		ok                   bool
	}{
		{"127.0.0.1", "127.0.0.1:9100", "127.0.0.1:9101", 8888, 2, false},
		{"127.0.0.1", "127.0.0.1:9100", "127.0.0.1:9102", 8888, 2, true},
		{"127.0.0.1", ":9100", "127.0.0.1:9101", 8888, 2, false}, // :P is -host
		{"", "127.0.0.2:9100", "127.0.0.1:9100", 8888, 2, true},  // other addresses
		{"", "127.0.0.1:9100", ":9100", 8888, 2, false},          // every interface
		{"127.0.0.1", "127.0.0.1:8887", "", 8888, 2, false},      // onto -port
		{"127.0.0.1", "127.0.0.1:0", "127.0.0.1:0", 8888, 4, true},
		{"127.0.0.1", "127.0.0.1:65535", "", 8888, 2, false},
		{"127.0.0.1", "127.0.0.1:x", "", 8888, 2, false},
	} {
		err := checkSidePorts(serverConfig{host: c.host, port: c.port, metricsAddr: c.metrics, pprofAddr: c.pprof}, c.n)
		if (err == nil) != c.ok {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
