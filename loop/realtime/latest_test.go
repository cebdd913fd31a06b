package realtime_test

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
)

// dialSmall dials with a 4 KiB receive buffer, so that a client that does
// not read fills the server's output soon.
func dialSmall(t *testing.T, addr string) *wsc {
	t.Helper()
	d := websocket.Dialer{NetDialContext: (&net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}).DialContext}
	c, _, err := d.Dial("ws://"+addr+"/connection/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &wsc{t: t, c: c}
}

// On a Latest namespace, a subscriber that does not read is not closed:
// once it reads it gets the newest publication with the count it missed
// (every publication is either delivered or counted), while a reader
// beside it gets every one.
func TestLatestDelivery(t *testing.T) {
	const n = 1500
	o := realtime.Options{
		Namespaces: []realtime.Namespace{{Name: "clock", Latest: true, History: pubsub.HistoryOptions{MaxMessages: 100}}},
		WebSocket:  loop.WSOptions{MaxUnsentPerConn: 32 << 10},
	}
	s, addr := start(t, o, nil)
	reader, lazy := dial(t, addr), dialSmall(t, addr)
	for _, c := range []*wsc{reader, lazy} {
		c.connect("")
		c.ok(c.cmd("subscribe", map[string]any{"topic": "clock:utc"}), nil)
	}
	got := make(chan error, 1)
	go func() {
		for i := 0; i < n; {
			reader.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, b, err := reader.c.ReadMessage()
			if err != nil {
				got <- err
				return
			}
			var f frame
			if err := json.Unmarshal(b, &f); err != nil || f.Push == nil || f.Push.Pub == nil {
				got <- fmt.Errorf("frame %s: %v", b, err)
				return
			}
			if v := pubValue(f); v != i || f.Push.Pub.Skipped != 0 {
				got <- fmt.Errorf("reader: publication %d (skipped %d), want %d", v, f.Push.Pub.Skipped, i)
				return
			}
			i++
		}
		got <- nil
	}()
	pad := strings.Repeat("x", 500)
	for i := range n {
		data := []byte(`{"i":` + strconv.Itoa(i) + `,"pad":"` + pad + `"}`)
		for s.PublishAsync("clock:utc", data, nil) != nil {
			time.Sleep(time.Millisecond)
		}
		if i%20 == 19 {
			time.Sleep(2 * time.Millisecond) // the reader keeps up
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// The laggard reads now: everything it gets or was told it missed
	// adds up to n, and it ends with the last one.
	accounted, last, jumps := 0, -1, 0
	for last != n-1 {
		f := lazy.read()
		if f.Push == nil || f.Push.Pub == nil {
			t.Fatalf("laggard: %+v", f)
		}
		v := pubValue(f)
		if v != last+1+int(f.Push.Pub.Skipped) {
			t.Fatalf("laggard: publication %d skipped %d after %d", v, f.Push.Pub.Skipped, last)
		}
		if f.Push.Pub.Skipped > 0 {
			jumps++
		}
		accounted += 1 + int(f.Push.Pub.Skipped)
		last = v
	}
	m := s.Metrics()
	if accounted != n || jumps == 0 || m.LatestSkipped == 0 {
		t.Fatalf("laggard accounted %d of %d, %d jumps; metrics skipped %d", accounted, n, jumps, m.LatestSkipped)
	}
	t.Logf("laggard: %d jumps, %d skipped", jumps, m.LatestSkipped)
	// Nobody was closed.
	lazy.ok(lazy.cmd("ping", map[string]any{}), nil)
	reader.ok(reader.cmd("ping", map[string]any{}), nil)
	if m.Connections != 2 || len(m.Disconnects) != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

func pubValue(f frame) int {
	var v struct{ I int }
	_ = json.Unmarshal(f.Push.Pub.Data, &v)
	return v.I
}
