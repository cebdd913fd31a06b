package loop

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop/pubsub"
)

// historyRoute subscribes with ?since= and says {"gone":true} when the
// history no longer reaches back.
type historyRoute struct {
	WebSocketBase
	hub   *Hub
	topic string
}

func (h historyRoute) Open(w *WebSocket) {
	since, err := pubsub.ParsePosition(w.Request().GetArgument("since", ""))
	if err != nil {
		w.Close(CloseProtocolError, "bad since")
		return
	}
	if _, err := h.hub.SubscribeSince(h.topic, w, since); errors.Is(err, pubsub.ErrHistoryGone) {
		w.WriteText([]byte(`{"gone":true}`))
	} else if err != nil {
		w.Close(CloseInternalError, err.Error())
	}
}

// readPositioned reads one positioned frame ("E-N\ndata").
func readPositioned(t *testing.T, c *gws.Conn) (pubsub.Position, string) {
	t.Helper()
	m := readText(t, c)
	ps, data, ok := strings.Cut(m, "\n")
	p, err := pubsub.ParsePosition(ps)
	if !ok || err != nil {
		t.Fatalf("not a positioned frame: %q", m)
	}
	return p, data
}

func TestHubResumeOneLoop(t *testing.T) {
	var hub *Hub
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, nil)
		hub.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 5}, func(err error) { // before Start: done runs before KeepHistory returns
			if err != nil {
				t.Error(err)
			}
		})
		app.HandleWebSocket("/h", func(*Request) WebSocketHandler { return historyRoute{hub: hub, topic: "t"} }, WSOptions{})
	})
	a := gorillaDial(t, addr, "/h", nil)
	waitFor(t, "a subscribed", func() bool { return onLoop(l, func() int { n, _ := hub.Subscribers("t"); return n }) == 1 })
	for i := 1; i <= 3; i++ {
		hub.PublishAsync("t", fmt.Appendf(nil, "m%d", i), nil)
	}
	var last pubsub.Position
	for i := 1; i <= 3; i++ {
		p, d := readPositioned(t, a)
		if p.Offset != int64(i) || d != fmt.Sprintf("m%d", i) {
			t.Fatalf("a got %v %q", p, d)
		}
		last = p
	}
	a.Close()
	// Published while nobody listens: kept for whoever comes back.
	hub.PublishAsync("t", []byte("m4"), nil)
	hub.PublishAsync("t", []byte("m5"), nil)
	waitFor(t, "the history to hold m5", func() bool {
		return onLoop(l, func() int64 { p, _ := hub.Head("t"); return p.Offset }) == 5
	})
	b := gorillaDial(t, addr, "/h?since="+last.String(), nil)
	for i := 4; i <= 5; i++ {
		if p, d := readPositioned(t, b); p.Offset != int64(i) || p.Epoch != last.Epoch || d != fmt.Sprintf("m%d", i) {
			t.Fatalf("b recovered %v %q, want m%d", p, d, i)
		}
	}
	hub.PublishAsync("t", []byte("m6"), nil)
	if p, d := readPositioned(t, b); p.Offset != 6 || d != "m6" {
		t.Fatalf("b live %v %q", p, d)
	}
	// Past the bound (5 kept: 2..6): the client is told.
	c := gorillaDial(t, addr, "/h?since="+pubsub.Position{Epoch: last.Epoch, Offset: 0}.String(), nil)
	if m := readText(t, c); m != `{"gone":true}` {
		t.Fatalf("c got %q", m)
	}
	// And from another epoch (an earlier process).
	d := gorillaDial(t, addr, "/h?since=5-2", nil)
	if m := readText(t, d); m != `{"gone":true}` {
		t.Fatalf("d got %q", m)
	}
	hub.PublishAsync("t", []byte("m7"), nil)
	for _, x := range []*gws.Conn{b, c, d} {
		if p, dd := readPositioned(t, x); p.Offset != 7 || dd != "m7" {
			t.Fatalf("live after resume: %v %q", p, dd)
		}
	}
	// History and Watch serve other transports on the loop.
	got := onLoop(l, func() []string {
		msgs, head, err := hub.History("t", pubsub.Position{Epoch: last.Epoch, Offset: 4}, nil)
		out := []string{head.String(), fmt.Sprint(err)}
		for _, m := range msgs {
			out = append(out, string(m.Data))
		}
		return out
	})
	if strings.Join(got, ",") != fmt.Sprintf("%d-7,<nil>,m5,m6,m7", last.Epoch) {
		t.Fatalf("History: %v", got)
	}
}

func TestHubWatchAndPublishAt(t *testing.T) {
	var hub *Hub
	l, _ := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, nil)
		hub.KeepHistory("clock", pubsub.HistoryOptions{MaxMessages: 10}, nil)
	})
	seen := make(chan pubsub.Message, 10)
	onLoop(l, func() error {
		_, err := hub.Watch("clock", func(m pubsub.Message) { seen <- m })
		hub.PublishAt("clock", pubsub.Position{Epoch: 1, Offset: 100}, []byte("t100"))
		hub.PublishAt("clock", pubsub.Position{Epoch: 1, Offset: 100}, []byte("again")) // ignored
		hub.PublishAt("clock", pubsub.Position{Epoch: 1, Offset: 101}, []byte("t101"))
		return err
	})
	for _, want := range []string{"1-100 t100", "1-101 t101"} {
		m := wsRecv(t, seen, want)
		if got := m.Pos.String() + " " + string(m.Data); got != want {
			t.Fatalf("watched %q, want %q", got, want)
		}
	}
	select {
	case m := <-seen:
		t.Fatalf("a repeated position was sent: %v", m.Pos)
	case <-time.After(50 * time.Millisecond):
	}
	if err := onLoop(l, func() error { return hub.PublishAt("nohistory", pubsub.Position{Epoch: 1, Offset: 1}, nil) }); !errors.Is(err, pubsub.ErrNoHistory) {
		t.Fatalf("PublishAt without history: %v", err)
	}
}

// TestHubResumeAcrossLoops publishes a stream from another goroutine while
// clients on two loops drop and resume, each on whichever loop the kernel
// gives it: every client must see every offset exactly once, in order.
func TestHubResumeAcrossLoops(t *testing.T) {
	broker := &pubsub.MemoryBroker{}
	hubs := make([]*Hub, 2)
	_, addr := startTestGroup(t, 2, func(g *Group, l *Loop, i int) *Application {
		hubs[i] = NewHub(l, Text, broker)
		hubs[i].KeepHistory("s", pubsub.HistoryOptions{MaxMessages: 10000}, func(err error) { // before Start: done runs before KeepHistory returns
			if err != nil {
				t.Error(err)
			}
		})
		app := NewApplication(AppOptions{})
		app.HandleWebSocket("/h", func(*Request) WebSocketHandler { return historyRoute{hub: hubs[i], topic: "s"} }, WSOptions{})
		return app
	})
	const total = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= total; i++ {
			// Waited for: through two loops, only the broker orders them.
			if err := publishWait(hubs[i%2], "s", fmt.Appendf(nil, "%d", i)); err != nil {
				t.Error(err)
				return
			}
			if i%100 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	defer wg.Wait()
	const clients = 4
	errs := make(chan error, clients)
	for k := 0; k < clients; k++ {
		go func() {
			var last pubsub.Position
			for seen := 0; last.Offset < total; {
				u := wsURL(addr, "/h")
				if last != (pubsub.Position{}) {
					u += "?since=" + last.String()
				}
				c, _, err := gws.DefaultDialer.Dial(u, nil)
				if err != nil {
					errs <- err
					return
				}
				// Read a few then drop the connection (a reconnect).
				for n := 0; n < 150+k*37 && last.Offset < total; n++ {
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, m, err := c.ReadMessage()
					if err != nil {
						c.Close()
						errs <- fmt.Errorf("client %d after %v: %w", k, last, err)
						return
					}
					ps, data, _ := strings.Cut(string(m), "\n")
					p, err := pubsub.ParsePosition(ps)
					if err != nil {
						errs <- fmt.Errorf("client %d: %q", k, m)
						c.Close()
						return
					}
					if last != (pubsub.Position{}) && (p.Epoch != last.Epoch || p.Offset != last.Offset+1) {
						errs <- fmt.Errorf("client %d: %v after %v", k, p, last)
						c.Close()
						return
					}
					if data != fmt.Sprint(p.Offset) {
						errs <- fmt.Errorf("client %d: offset %d holds %q", k, p.Offset, data)
					}
					last = p
					seen++
				}
				c.Close()
			}
			errs <- nil
		}()
	}
	deadline := time.After(60 * time.Second)
	for k := 0; k < clients; k++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("clients did not finish")
		}
	}
}

// kickingHistory is historyRoute that closes each connection with 1001
// after it has sent every message the test's counter allows.
type kickingHistory struct {
	historyRoute
	kick chan *WebSocket
}

func (k kickingHistory) Open(w *WebSocket) {
	k.historyRoute.Open(w)
	k.kick <- w
}

// TestClientResume: a DialWebSocket client with Reconnect and Resume is
// dropped by the server again and again while messages are published; it
// must see every offset once, in order, resuming with since= each time.
func TestClientResume(t *testing.T) {
	var hub *Hub
	kick := make(chan *WebSocket, 16)
	srv, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, nil)
		hub.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 1000}, nil)
		app.HandleWebSocket("/h", func(*Request) WebSocketHandler {
			return kickingHistory{historyRoute{hub: hub, topic: "t"}, kick}
		}, WSOptions{})
	})
	cl := clientLoop(t)
	got := make(chan string, 1000)
	opened := make(chan struct{}, 16)
	c, err := cl.DialWebSocket(wsURL(addr, "/h?since="), ClientHandler{
		OnOpen: func(*WebSocket) { opened <- struct{}{} },
		OnMessage: func(_ *WebSocket, _ MessageType, data []byte) {
			if data[0] != '{' { // the gone notice never comes here
				got <- string(data)
			}
		},
	}, ClientOptions{Reconnect: true, Resume: true, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const total, drops = 300, 5
	var ws *WebSocket
	next := 1
	for d := 0; d <= drops; d++ {
		wsRecv(t, opened, "an open")
		ws = wsRecv(t, kick, "the server side")
		for ; next <= total*(d+1)/(drops+1); next++ {
			hub.PublishAsync("t", fmt.Appendf(nil, "%d", next), nil)
		}
		if d < drops {
			// Published before the drop is noticed, and during it: resumed.
			onLoop(srv, func() error { return ws.Close(CloseGoingAway, "kicked") })
			hub.PublishAsync("t", []byte("x"), nil)
			next++
		}
	}
	var last int64
	for i := 0; i < total; i++ { // the "x"s took a number each
		m := wsRecv(t, got, "a message")
		ps, _, _ := strings.Cut(m, "\n")
		p, err := pubsub.ParsePosition(ps)
		if err != nil || p.Offset != last+1 {
			t.Fatalf("message %d: %q after offset %d", i, m, last)
		}
		last = p.Offset
	}
	if pos := onLoop(cl, c.Position); pos.Offset != last {
		t.Fatalf("client position %v, last received %d", pos, last)
	}
	// SetPosition moves where the next reconnect resumes from.
	head := onLoop(srv, func() pubsub.Position { p, _ := hub.Head("t"); return p })
	onLoop(cl, func() error { c.SetPosition(pubsub.Position{Epoch: head.Epoch, Offset: last - 3}); return nil })
	onLoop(srv, func() error { return ws.Close(CloseGoingAway, "kicked") })
	wsRecv(t, opened, "the reopen")
	wsRecv(t, kick, "the server side again")
	for want := last - 2; want <= last; want++ {
		m := wsRecv(t, got, "a replayed message")
		if p, _ := pubsub.ParsePosition(strings.SplitN(m, "\n", 2)[0]); p.Offset != want {
			t.Fatalf("after SetPosition: %q, want offset %d", m, want)
		}
	}
}

// hubEvent is one event read from a text/event-stream.
type hubEvent struct{ id, event, data string }

// readHubEvent reads one event (skipping comments) from br.
func readHubEvent(t *testing.T, br *bufio.Reader) hubEvent {
	t.Helper()
	var ev hubEvent
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev.id != "" || data != nil || ev.event != "" {
				ev.data = strings.Join(data, "\n")
				return ev
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[6:])
		}
	}
}

// TestHubSubscribeStream: SSE subscribers of a history topic get each
// message with its position as the event id, resume from Last-Event-ID
// exactly, and learn when the history is gone.
func TestHubSubscribeStream(t *testing.T) {
	var hub *Hub
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, nil)
		hub.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 3}, nil)
		app.Handle("/sse", Methods{Get: func(r *Request) {
			es, err := r.EventStream(EventStreamOptions{})
			if err != nil {
				return
			}
			since, _ := pubsub.ParsePosition(es.LastEventID())
			if _, err := hub.SubscribeStream("t", es, since); errors.Is(err, pubsub.ErrHistoryGone) {
				es.Send("", "gone", []byte("reload"))
			}
		}})
	})
	open := func(last string) (*bufio.Reader, func()) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/sse", nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("content type %q", ct)
		}
		return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
	}
	a, closeA := open("")
	waitFor(t, "the stream subscribed", func() bool {
		return onLoop(l, func() int { return len(hub.topics["t"].hist.streams) }) == 1
	})
	hub.PublishAsync("t", []byte("one"), nil)
	hub.PublishAsync("t", []byte("two\nlines"), nil)
	e1, e2 := readHubEvent(t, a), readHubEvent(t, a)
	if e1.data != "one" || e2.data != "two\nlines" || e1.id == "" {
		t.Fatalf("events %+v %+v", e1, e2)
	}
	closeA()
	waitFor(t, "the stream forgotten", func() bool {
		return onLoop(l, func() int { return len(hub.topics["t"].hist.streams) }) == 0
	})
	hub.PublishAsync("t", []byte("three"), nil)
	b, closeB := open(e1.id)
	defer closeB()
	if e := readHubEvent(t, b); e.data != "two\nlines" || e.id != e2.id {
		t.Fatalf("resumed with %+v, want two", e)
	}
	if e := readHubEvent(t, b); e.data != "three" {
		t.Fatalf("resumed with %+v, want three", e)
	}
	hub.PublishAsync("t", []byte("four"), nil)
	if e := readHubEvent(t, b); e.data != "four" {
		t.Fatalf("live %+v", e)
	}
	hub.PublishAsync("t", []byte("five"), nil)
	if e := readHubEvent(t, b); e.data != "five" {
		t.Fatalf("live %+v", e)
	}
	// Kept: three, four, five. After one: gone.
	c, closeC := open(e1.id)
	defer closeC()
	if e := readHubEvent(t, c); e.event != "gone" {
		t.Fatalf("past the history: %+v", e)
	}
}

// BenchmarkHistoryTopicCost measures what an empty history topic costs:
// the hub's topic state alone (no broker), and with a MemoryBroker (its
// history and one subscription per hub). go test -bench HistoryTopicCost
// -run ^$ ./loop.
func BenchmarkHistoryTopicCost(b *testing.B) {
	const topics = 10000
	for _, withBroker := range []bool{false, true} {
		name := "hub"
		if withBroker {
			name = "memorybroker"
		}
		b.Run(name, func(b *testing.B) {
			var perTopic float64
			for i := 0; i < b.N; i++ {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				var broker pubsub.Broker
				if withBroker {
					broker = &pubsub.MemoryBroker{}
				}
				h := NewHub(New(Options{}), Text, broker)
				for k := 0; k < topics; k++ {
					h.KeepHistory(fmt.Sprintf("topic.%06d", k), pubsub.HistoryOptions{MaxMessages: 100}, func(err error) { // before Start: done runs before KeepHistory returns
						if err != nil {
							b.Fatal(err)
						}
					})
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perTopic = float64(after.HeapAlloc-before.HeapAlloc) / topics
				runtime.KeepAlive(h)
				runtime.KeepAlive(broker)
			}
			b.ReportMetric(perTopic, "B/topic")
		})
	}
}

// TestHubRefillsDroppedDeliveries: broker deliveries dropped because the
// loop's queue was over MaxAsyncBytes are fetched from the broker's
// history when the next one shows the gap, so a positioned subscriber
// still gets every offset once, in order.
func TestHubRefillsDroppedDeliveries(t *testing.T) {
	broker := &pubsub.MemoryBroker{}
	var hub *Hub
	l, addr := startTestLoopWith(t, Options{TimeoutResolution: 10 * time.Millisecond, MaxAsyncBytes: 3000}, func(l *Loop) *Application {
		hub = NewHub(l, Text, broker)
		hub.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 100}, func(err error) { // before Start: done runs before KeepHistory returns
			if err != nil {
				t.Error(err)
			}
		})
		app := NewApplication(AppOptions{})
		app.HandleWebSocket("/h", func(*Request) WebSocketHandler { return historyRoute{hub: hub, topic: "t"} }, WSOptions{})
		return app
	})
	c := gorillaDial(t, addr, "/h?since=", nil)
	waitFor(t, "subscribed", func() bool { return onLoop(l, func() int { n, _ := hub.Subscribers("t"); return n }) == 1 })
	// Hold the loop while 10 deliveries of 1,000 bytes arrive: the queue
	// takes about three, the rest are dropped.
	held, release := make(chan struct{}), make(chan struct{})
	l.AddCallback(func() { close(held); <-release })
	<-held
	payload := strings.Repeat("x", 1000)
	for i := 1; i <= 10; i++ {
		broker.Publish("t", []byte(payload))
	}
	close(release)
	if hub.Dropped() == 0 {
		t.Fatal("no delivery was dropped: the test does not test the refill")
	}
	// Callbacks run in order: once this one ran, the queued deliveries
	// are out and the queue is empty again.
	head := onLoop(l, func() pubsub.Position { p, _ := hub.Head("t"); return p })
	if head.Offset >= 10 {
		t.Fatalf("head %v: nothing to refill", head)
	}
	broker.Publish("t", []byte("last")) // shows the gap
	for want := int64(1); want <= 11; want++ {
		p, data := readPositioned(t, c)
		if p.Offset != want || (want == 11) != (data == "last") {
			t.Fatalf("got offset %d (%d bytes), want %d", p.Offset, len(data), want)
		}
	}
}

// TestHubResumeAhead: a client resuming with a position ahead of this
// loop (it saw more on a node further along) gets nothing replayed, and
// the messages up to its position are skipped when this loop sends them,
// on a WebSocket and on an event stream alike.
func TestHubResumeAhead(t *testing.T) {
	var hub *Hub
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, nil)
		hub.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 10}, nil)
		app.HandleWebSocket("/h", func(*Request) WebSocketHandler { return historyRoute{hub: hub, topic: "t"} }, WSOptions{})
		app.Handle("/sse", Methods{Get: func(r *Request) {
			es, _ := r.EventStream(EventStreamOptions{})
			since, _ := pubsub.ParsePosition(es.LastEventID())
			hub.SubscribeStream("t", es, since)
		}})
	})
	head := onLoop(l, func() pubsub.Position { p, _ := hub.Head("t"); return p })
	ahead := pubsub.Position{Epoch: head.Epoch, Offset: head.Offset + 2}
	c := gorillaDial(t, addr, "/h?since="+ahead.String(), nil)
	req, _ := http.NewRequest("GET", "http://"+addr+"/sse", nil)
	req.Header.Set("Last-Event-ID", ahead.String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	waitFor(t, "both subscribed", func() bool {
		return onLoop(l, func() int { n, _ := hub.Subscribers("t"); return n + len(hub.topics["t"].hist.streams) }) == 2
	})
	for _, m := range []string{"seen elsewhere 1", "seen elsewhere 2", "new"} {
		hub.PublishAsync("t", []byte(m), nil)
	}
	if p, d := readPositioned(t, c); d != "new" || p.Offset != head.Offset+3 {
		t.Fatalf("websocket got %v %q, want only the third", p, d)
	}
	if e := readHubEvent(t, br); e.data != "new" {
		t.Fatalf("stream got %+v, want only the third", e)
	}
}

// TestHubResumeBeyond: a position beyond the history as this loop knows it
// (more than pubsub.MaxLead ahead of its head, or of a newer epoch) is
// answered like a history that no longer reaches back, on a WebSocket, an
// event stream and History alike: ErrHistoryGone, and the live messages
// arrive (they were all skipped before: the subscriber was silenced for
// good). Within MaxLead it is this loop lagging (TestHubResumeAhead).
func TestHubResumeBeyond(t *testing.T) {
	var hub *Hub
	gone := make(chan error, 16)
	l, addr := wsStartLoop(t, func(l *Loop, app *Application) {
		hub = NewHub(l, Text, nil)
		hub.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 10}, nil)
		app.HandleWebSocket("/h", func(*Request) WebSocketHandler { return historyRoute{hub: hub, topic: "t"} }, WSOptions{})
		app.Handle("/sse", Methods{Get: func(r *Request) {
			es, _ := r.EventStream(EventStreamOptions{})
			since, _ := pubsub.ParsePosition(es.LastEventID())
			_, err := hub.SubscribeStream("t", es, since)
			gone <- err
		}})
	})
	hub.PublishAsync("t", []byte("first"), nil)
	waitFor(t, "the first message", func() bool {
		return onLoop(l, func() int64 { p, _ := hub.Head("t"); return p.Offset }) == 1
	})
	head := onLoop(l, func() pubsub.Position { p, _ := hub.Head("t"); return p })
	beyond := []pubsub.Position{
		{Epoch: head.Epoch, Offset: head.Offset + pubsub.MaxLead + 1},
		{Epoch: head.Epoch, Offset: 1<<63 - 1},
		{Epoch: head.Epoch + 1, Offset: 1},
		{Epoch: head.Epoch + 1, Offset: 0},
	}
	var wss []*gws.Conn
	var streams []*bufio.Reader
	for _, p := range beyond {
		c := gorillaDial(t, addr, "/h?since="+p.String(), nil)
		if m := readText(t, c); m != `{"gone":true}` {
			t.Fatalf("websocket since %s: %q, want gone", p, m)
		}
		wss = append(wss, c)
		req, _ := http.NewRequest("GET", "http://"+addr+"/sse", nil)
		req.Header.Set("Last-Event-ID", p.String())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := <-gone; !errors.Is(err, pubsub.ErrHistoryGone) {
			t.Fatalf("stream since %s: %v, want ErrHistoryGone", p, err)
		}
		streams = append(streams, bufio.NewReader(resp.Body))
		type hist struct {
			msgs []pubsub.Message
			head pubsub.Position
			err  error
		}
		r := onLoop(l, func() hist { m, h, err := hub.History("t", p, nil); return hist{m, h, err} })
		msgs, h, err := r.msgs, r.head, r.err
		if !errors.Is(err, pubsub.ErrHistoryGone) || len(msgs) != 0 || h != head {
			t.Fatalf("History since %s: %v %v %v, want ErrHistoryGone and head %s", p, msgs, h, err, head)
		}
	}
	hub.PublishAsync("t", []byte("live"), nil)
	for i, c := range wss {
		if p, d := readPositioned(t, c); d != "live" || p.Offset != head.Offset+1 {
			t.Errorf("websocket since %s got %v %q, want the live message", beyond[i], p, d)
		}
	}
	for i, br := range streams {
		if e := readHubEvent(t, br); e.data != "live" {
			t.Errorf("stream since %s got %+v, want the live message", beyond[i], e)
		}
	}
}
