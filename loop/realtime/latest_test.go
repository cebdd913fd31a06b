package realtime_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// dialSmall dials with a 4 KiB receive buffer, so that a client that does
// not read fills the server's output soon.
func dialSmall(t *testing.T, addr string) *wsc {
	t.Helper()
	d := websocket.Dialer{NetDialContext: (&net.Dialer{Control: smallRcvBuf}).DialContext}
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
	// Memory: the laggard holds one publication (one topic), however
	// many it missed.
	if conns, held := realtime.HeldLatest(s); conns != 1 || held != 1 {
		t.Fatalf("held: %d connections, %d publications; want 1, 1", conns, held)
	}
	// The laggard reads now: everything it gets or was told it missed
	// adds up to n, and it ends with the last one.
	catchUp(t, s, n, lazy.read)
	if conns, held := realtime.HeldLatest(s); conns != 0 || held != 0 {
		t.Fatalf("held after the catch-up: %d connections, %d publications", conns, held)
	}
	m := s.Metrics()
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

// catchUp reads a laggard's publications 0..n-1 of one Latest topic with
// next: each is the one after the last read plus the count skipped, they
// add up to n, at least one jump, and the server counted the skipped.
func catchUp(t *testing.T, s *realtime.Server, n int, next func() frame) {
	t.Helper()
	accounted, last, jumps, skipped := 0, -1, 0, 0
	for last != n-1 {
		f := next()
		if f.Push == nil || f.Push.Pub == nil {
			continue // a reply
		}
		v, k := pubValue(f), int(f.Push.Pub.Skipped)
		if v != last+1+k {
			t.Fatalf("laggard: publication %d skipped %d after %d", v, k, last)
		}
		if k > 0 {
			jumps++
		}
		skipped += k
		accounted += 1 + k
		last = v
	}
	if m := s.Metrics(); accounted != n || jumps == 0 || m.LatestSkipped < int64(skipped) {
		t.Fatalf("laggard accounted %d of %d, %d jumps, %d skipped; metrics skipped %d", accounted, n, jumps, skipped, m.LatestSkipped)
	}
	t.Logf("laggard: %d jumps, %d skipped", jumps, skipped)
}

// publishN publishes n publications {"i":0..n-1,"pad":...} on topic and
// waits for the last.
func publishN(t *testing.T, s *realtime.Server, topic string, n int) {
	t.Helper()
	pad := strings.Repeat("x", 500)
	for i := range n {
		data := []byte(`{"i":` + strconv.Itoa(i) + `,"pad":"` + pad + `"}`)
		done := make(chan struct{})
		for s.PublishAsync(topic, data, func(pubsub.Position, error) { close(done) }) != nil {
			time.Sleep(time.Millisecond)
		}
		<-done
	}
}

// The same on an SSE stream that does not read: not ended, and once read
// it gives the newest with the skipped count.
func TestLatestSSE(t *testing.T) {
	const n = 1500
	o := realtime.Options{
		Namespaces:  []realtime.Namespace{{Name: "clock", Latest: true, History: pubsub.HistoryOptions{MaxMessages: 100}}},
		EventStream: loop.EventStreamOptions{MaxUnsentPerConn: 32 << 10},
	}
	s, addr := start(t, o, nil)
	nc, err := (&net.Dialer{Control: smallRcvBuf}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "GET /connection/sse?connect=%s HTTP/1.1\r\nHost: x\r\n\r\n", url.QueryEscape(`{"id":1,"connect":{}}`))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := &sseClient{t: t, resp: resp, rd: bufio.NewReader(resp.Body)}
	var r cp.ConnectResult
	if err := json.Unmarshal(sc.next().Result, &r); err != nil || r.Session == "" {
		t.Fatalf("connect: %v %+v", err, r)
	}
	if code, _ := post(t, "http://"+addr+"/connection/command?session="+url.QueryEscape(r.Session), `{"id":2,"subscribe":{"topic":"clock:utc"}}`); code != 202 {
		t.Fatal(code)
	}
	if f := sc.next(); f.ID != 2 || f.Error != nil {
		t.Fatalf("subscribe: %+v", f)
	}
	publishN(t, s, "clock:utc", n)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	catchUp(t, s, n, sc.next)
	if m := s.Metrics(); m.Sessions[realtime.TransportSSE] != 1 || len(m.Disconnects) != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

// The same for a long-polling session that does not poll: over
// Limits.MaxUnsent it is not ended; its next polls give the newest with
// the skipped count.
func TestLatestPoll(t *testing.T) {
	const n = 50
	o := realtime.Options{
		Namespaces: []realtime.Namespace{{Name: "clock", Latest: true, History: pubsub.HistoryOptions{MaxMessages: 100}}},
		Limits:     realtime.Limits{MaxUnsent: 4 << 10, PollWait: 300 * time.Millisecond},
	}
	s, addr := start(t, o, nil)
	base := "http://" + addr + "/connection/poll"
	a, fs := poll(t, base, `{"id":1,"connect":{}}`)
	var r cp.ConnectResult
	json.Unmarshal(fs[0].Result, &r)
	sess := url.QueryEscape(r.Session)
	post(t, "http://"+addr+"/connection/command?session="+sess, `{"id":2,"subscribe":{"topic":"clock:utc"}}`)
	publishN(t, s, "clock:utc", n)
	var queue []frame
	next := a.Next
	catchUp(t, s, n, func() frame {
		for len(queue) == 0 {
			a, fs := poll(t, base+"?session="+sess+"&next="+strconv.FormatUint(next, 10), "")
			next = a.Next
			queue = fs
		}
		f := queue[0]
		queue = queue[1:]
		if f.Disconnect != nil {
			t.Fatalf("disconnected: %+v", f.Disconnect)
		}
		return f
	})
	if m := s.Metrics(); m.Sessions[realtime.TransportPoll] != 1 || len(m.Disconnects) != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

func smallRcvBuf(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	if err != nil {
		return err
	}
	return serr
}
