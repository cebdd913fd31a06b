package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The clients of the transports scenario: one goroutine each (the
// harness's side; the server is what is measured). Every client keeps the
// position of the last message it has (the WebSocket frame's "E-N", the SSE
// id, the poll's "pos"), counts every message of the run by the sequence
// number in its body, and at the drop (mid-run) closes its connection and
// resumes from that position on a new one.

// txRun is one transport's run, shared by its clients.
type txRun struct {
	o    TransportsOptions
	kind string
	// tag marks this run's messages: `"run":"<tag>"` in every body.
	tag []byte
	// head0 is the chat's position before the run: every client starts
	// from it, so it is due every message the run publishes.
	head0 string
	// drop is cancelled at mid-run: every client's first connection ends.
	drop context.Context

	wire      atomic.Int64 // client bytes on the wire, both ways
	dials     atomic.Int64 // TCP connections opened
	requests  atomic.Int64 // HTTP requests (a WebSocket upgrade is one)
	delivered atomic.Int64 // first deliveries of (client, seq)
	resumed   atomic.Int64 // clients that reconnected after the drop
	gone      atomic.Int64 // answers saying the history no longer reached back
	foreign   atomic.Int64 // messages not of this run
	errs      atomic.Int64
	lastErr   atomic.Value
	lat       latencies
}

func (r *txRun) fail(err error) {
	r.errs.Add(1)
	r.lastErr.Store(err.Error())
}

// dial is the clients' dialer: it counts connections and their bytes.
func (r *txRun) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	r.dials.Add(1)
	return countingConn{c, &r.wire}, nil
}

// txClient is one client; only its goroutine touches it until the run
// ends.
type txClient struct {
	r    *txRun
	pos  string   // the last position this client has
	seen []uint16 // deliveries per seq (index 0 unused)
	hc   *http.Client
	tr   *http.Transport
	// resumed is set once the client has reconnected after the drop.
	resumed bool
}

func newTxClient(r *txRun) *txClient {
	c := &txClient{r: r, pos: r.head0}
	if r.kind != "websocket" {
		// One transport per client, as one browser per user: its
		// connections are its own, and the drop closes them.
		c.tr = &http.Transport{DialContext: r.dial, MaxIdleConnsPerHost: 2, DisableCompression: true}
		c.hc = &http.Client{Transport: c.tr, Timeout: 45 * time.Second}
	}
	return c
}

// deliver counts one message body; a body not of this run is foreign.
func (c *txClient) deliver(body []byte) {
	if !bytes.Contains(body, c.r.tag) {
		c.r.foreign.Add(1)
		return
	}
	seq, ok1 := jsonInt(body, "seq")
	ts, ok2 := jsonInt(body, "ts")
	if !ok1 || !ok2 || seq <= 0 || seq > 1<<24 {
		c.r.fail(fmt.Errorf("%s: bad message %.80q", c.r.kind, body))
		return
	}
	for int64(len(c.seen)) <= seq {
		c.seen = append(c.seen, make([]uint16, len(c.seen)+64)...)
	}
	c.seen[seq]++
	if c.seen[seq] == 1 {
		c.r.lat.add(time.Duration(time.Now().UnixNano() - ts))
		c.r.delivered.Add(1)
	}
}

// tally counts, over seqs 1..published, the ones never delivered and the
// deliveries beyond the first.
func (c *txClient) tally(published int) (lost, repeated int64) {
	for s := 1; s <= published; s++ {
		n := 0
		if s < len(c.seen) {
			n = int(c.seen[s])
		}
		if n == 0 {
			lost++
		} else {
			repeated += int64(n - 1)
		}
	}
	for s := published + 1; s < len(c.seen); s++ {
		repeated += int64(max(int(c.seen[s])-1, 0))
	}
	return lost, repeated
}

// run holds the client's sessions until ctx ends: the first until the
// drop, then one resumed from the last position. A session that ends by
// itself (an error, the server closing) is counted and retried after a
// pause.
func (c *txClient) run(ctx context.Context) {
	dropped := false
	for ctx.Err() == nil {
		sctx := ctx
		if !dropped {
			sctx = c.r.drop
		}
		err := c.session(sctx)
		if ctx.Err() != nil {
			return
		}
		if !dropped && c.r.drop.Err() != nil {
			dropped, c.resumed = true, true
			c.r.resumed.Add(1)
			continue
		}
		if err == nil {
			err = errors.New("session ended")
		}
		c.r.fail(fmt.Errorf("%s: %w", c.r.kind, err))
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *txClient) session(ctx context.Context) error {
	switch c.r.kind {
	case "websocket":
		return c.wsSession(ctx)
	case "sse":
		return c.sseSession(ctx)
	case "long-poll":
		return c.pollSession(ctx, true)
	default:
		return c.pollSession(ctx, false)
	}
}

// control is the subscribed frame or event.
type control struct {
	Type string `json:"type"`
	Head string `json:"head"`
	Gone bool   `json:"gone"`
}

func (c *txClient) onControl(data []byte) error {
	var ctl control
	if err := json.Unmarshal(data, &ctl); err != nil {
		return fmt.Errorf("control %.80q: %w", data, err)
	}
	if ctl.Gone {
		c.r.gone.Add(1)
	}
	if ctl.Head != "" {
		c.pos = ctl.Head
	}
	return nil
}

// wsSession reads /ws?since=pos: "E-N\n<body>" messages and JSON control
// frames.
func (c *txClient) wsSession(ctx context.Context) error {
	d := websocket.Dialer{NetDialContext: c.r.dial, HandshakeTimeout: 10 * time.Second}
	u := "ws" + strings.TrimPrefix(c.r.o.Base, "http") + "/ws?since=" + url.QueryEscape(c.pos)
	c.r.requests.Add(1)
	ws, resp, err := d.DialContext(ctx, u, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return fmt.Errorf("dial %s: %w", u, err)
	}
	// The drop (or the end) closes the socket under the reader, as a
	// network failure would.
	stop := context.AfterFunc(ctx, func() { ws.NetConn().Close() })
	defer stop()
	defer ws.Close()
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ws read: %w", err)
		}
		switch {
		case len(data) > 0 && data[0] == '{':
			if err := c.onControl(data); err != nil {
				return err
			}
		case len(data) > 0 && data[0] >= '0' && data[0] <= '9':
			pos, body, ok := bytes.Cut(data, []byte{'\n'})
			if !ok {
				return fmt.Errorf("ws frame without a position: %.80q", data)
			}
			c.pos = string(pos)
			c.deliver(body)
		default:
			return fmt.Errorf("ws frame neither a message nor a control: %.80q", data)
		}
	}
}

// sseSession reads GET /sse: the first from ?since=, a resumed one with
// Last-Event-ID as a browser's EventSource sends it.
func (c *txClient) sseSession(ctx context.Context) error {
	u := c.r.o.Base + "/sse"
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	if !c.resumed {
		req.URL.RawQuery = "since=" + url.QueryEscape(c.pos)
	} else {
		req.Header.Set("Last-Event-ID", c.pos)
	}
	req.Header.Set("Accept", "text/event-stream")
	c.r.requests.Add(1)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("GET /sse: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return fmt.Errorf("GET /sse: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	err = readSSE(resp.Body, func(ev sseEvent) error {
		if ev.Type == "subscribed" {
			if ev.ID != "" {
				c.pos = ev.ID
			}
			return c.onControl(ev.Data)
		}
		if ev.ID != "" {
			c.pos = ev.ID
		}
		c.deliver(ev.Data)
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("the event stream ended")
	}
	return err
}

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	Type string // "message" when absent
	ID   string // "" when the event had no id field
	Data []byte // the data lines joined with "\n"
}

// readSSE parses an event stream (the WHATWG "event stream
// interpretation": field:value lines, a blank line dispatches, ':' starts a
// comment, one optional space after the colon) and calls on for each event
// with data. It returns on's error, the reader's, or nil at EOF.
func readSSE(r io.Reader, on func(sseEvent) error) error {
	br := bufio.NewReaderSize(r, 16<<10)
	var ev sseEvent
	var data []byte
	hasData := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: gather it whole.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
		if len(line) == 0 {
			if hasData {
				if ev.Type == "" {
					ev.Type = "message"
				}
				ev.Data = data
				if err := on(ev); err != nil {
					return err
				}
			}
			ev, data, hasData = sseEvent{}, nil, false
			continue
		}
		if line[0] == ':' {
			continue // comment (heartbeat)
		}
		name, value, _ := bytes.Cut(line, []byte{':'})
		value = bytes.TrimPrefix(value, []byte{' '})
		switch string(name) {
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		case "id":
			ev.ID = string(value)
		case "event":
			ev.Type = string(value)
		}
	}
}

// pollReply is a /update-message or /poll-message answer.
type pollReply struct {
	Epoch    int64  `json:"epoch"`
	Head     string `json:"head"`
	Messages []struct {
		ID   int64  `json:"id"`
		Pos  string `json:"pos"`
		Body string `json:"body"`
	} `json:"messages"`
	More    bool  `json:"more"`
	Missed  int64 `json:"missed"`
	Waiting *int  `json:"waiting"`
}

// pollSession polls with since=pos until ctx ends: POST /update-message
// (long) again at once after each answer, or GET /poll-message (short)
// every PollEvery (at once while "more"). At the drop the connection is
// closed, in flight or idle.
func (c *txClient) pollSession(ctx context.Context, long bool) error {
	defer c.tr.CloseIdleConnections()
	for ctx.Err() == nil {
		var req *http.Request
		var err error
		q := url.Values{"since": {c.pos}}
		if long {
			req, err = http.NewRequestWithContext(ctx, "POST", c.r.o.Base+"/update-message", strings.NewReader(q.Encode()))
			if err == nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
		} else {
			req, err = http.NewRequestWithContext(ctx, "GET", c.r.o.Base+"/poll-message?"+q.Encode(), nil)
		}
		if err != nil {
			return err
		}
		c.r.requests.Add(1)
		resp, err := c.hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
		}
		var pr pollReply
		err = json.NewDecoder(resp.Body).Decode(&pr)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if ctx.Err() != nil {
			return nil // the answer may be cut short: resume from pos
		}
		if err != nil || resp.StatusCode != 200 {
			return fmt.Errorf("%s %s: %s: %v", req.Method, req.URL.Path, resp.Status, err)
		}
		for _, m := range pr.Messages {
			c.pos = m.Pos
			c.deliver([]byte(m.Body))
		}
		if pr.Missed != 0 {
			c.r.gone.Add(1)
			if len(pr.Messages) == 0 && pr.Head != "" {
				c.pos = pr.Head
			}
		}
		if long || pr.More {
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(c.r.o.PollEvery):
		}
	}
	return nil
}
