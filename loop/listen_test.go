package loop

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// freePort returns a loopback address whose port was free a moment ago.
// It picks below the kernel's ephemeral range: a port from ":0" is closed
// again before the loop binds it, and in that window any outgoing
// connection or ":0" listener of a concurrent test (each loop's control
// pair is one) may take it, so the loop's Start failed with "address
// already in use" (TestPipelineBeforeReady, 32 loops at once, in CI).
// Below the range only an explicit bind takes a port.
func freePort(t testing.TB) string {
	t.Helper()
	lo := ephemeralLow()
	for i := 0; lo > 11000 && i < 200; i++ {
		port := 10000 + rand.IntN(lo-10000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		return ln.Addr().String()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return lo // a range starting at or below 11000 leaves freePort to ":0"
}

// Listen is goroutine-safe before Start: listeners added from several
// goroutines at once all serve (go test -race flagged the unlocked append).
func TestListenConcurrent(t *testing.T) {
	const n = 8
	l := New(Options{TimeoutResolution: 10 * time.Millisecond})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			app := NewApplication(AppOptions{})
			app.HandleFunc("/", func(r *Request) { r.Write(fmt.Sprint(i)) })
			errs <- l.Listen("127.0.0.1:0", app)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	runUntilCleanup(t, "loop", l.Start, l.Ready(), l.Stop, 5*time.Second)
	addrs := l.Addrs()
	if len(addrs) != n {
		t.Fatalf("%d listeners, want %d", len(addrs), n)
	}
	for _, a := range addrs {
		resp, err := http.Get("http://" + a.String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("%s: %d %q", a, resp.StatusCode, body)
		}
	}
}

// An Application serves one Loop: a second loop's Listen with it fails
// with a message saying so, and the first loop still listens with it
// (twice, on two ports, is fine).
func TestApplicationServesOneLoop(t *testing.T) {
	app := NewApplication(AppOptions{})
	a, b := New(Options{}), New(Options{})
	defer a.Stop(t.Context())
	defer b.Stop(t.Context())
	if err := a.Listen(freePort(t), app); err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(freePort(t), app); err != nil {
		t.Fatalf("second listener of the same loop: %v", err)
	}
	err := b.Listen(freePort(t), app)
	if !errors.Is(err, errAppShared) || !strings.Contains(err.Error(), "another Loop") {
		t.Fatalf("second loop's Listen: %v, want errAppShared", err)
	}

	g := NewGroup(2, Options{})
	defer g.Stop(t.Context())
	shared := NewApplication(AppOptions{})
	err = g.Listen("127.0.0.1:0", func(*Loop, int) *Application { return shared })
	if !errors.Is(err, errAppShared) {
		t.Fatalf("group sharing one Application: %v, want errAppShared", err)
	}
}
