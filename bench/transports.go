package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// TransportsOptions configures the transports scenario against a server
// with Tornago's demo routes: POST /new-message, POST /update-message
// (long poll), GET /poll-message (short poll), /ws + /receive?msg=.
type TransportsOptions struct {
	Base     string        // http://host:port
	Conns    int           // clients per transport, default 100
	Duration time.Duration // per transport, default 10s
	// Every is the publish interval, default 100ms (10 messages/s).
	Every time.Duration
	// PollEvery is the short-poll interval, default 1s.
	PollEvery time.Duration
	PID       int
	Progress  Progress
}

// countingConn counts the TCP payload bytes both ways.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n.Add(int64(k))
	return k, err
}

func (c countingConn) Write(p []byte) (int, error) {
	k, err := c.Conn.Write(p)
	c.n.Add(int64(k))
	return k, err
}

func countingDial(n *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, n}, nil
	}
}

type pollReply struct {
	Messages []struct {
		ID   int64  `json:"id"`
		Body string `json:"body"`
	} `json:"messages"`
}

// Transports delivers the same stream of messages (one every Every, each
// carrying its send time) to Conns clients by short polling, long polling
// and WebSocket in turn, and reports per transport the client-side bytes
// on the wire per delivered message, delivery latency and server CPU.
func Transports(o TransportsOptions) ([]*Result, error) {
	if o.Conns <= 0 {
		o.Conns = 100
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Every <= 0 {
		o.Every = 100 * time.Millisecond
	}
	if o.PollEvery <= 0 {
		o.PollEvery = time.Second
	}
	if err := CheckPID(o.PID, o.Base); err != nil {
		return nil, &InvalidError{"transports", err.Error()}
	}
	var out []*Result
	for _, t := range []string{"short-poll", "long-poll", "websocket"} {
		r, err := transportRun(o, t)
		if r != nil {
			out = append(out, r)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func transportRun(o TransportsOptions, kind string) (*Result, error) {
	var wire, delivered, errs atomic.Int64
	var lastE atomic.Value
	fail := func(err error) {
		errs.Add(1)
		lastE.Store(err.Error())
	}
	var lat latencies
	hc := &http.Client{Timeout: 40 * time.Second, Transport: &http.Transport{
		DialContext: countingDial(&wire), MaxIdleConnsPerHost: o.Conns + 10}}
	pub := &http.Client{Timeout: 10 * time.Second}
	var stop atomic.Bool
	var wg sync.WaitGroup
	record := func(body string) {
		ts, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return // a message from someone else
		}
		lat.add(time.Duration(time.Now().UnixNano() - ts))
		delivered.Add(1)
	}
	// The newest id, so clients start after what earlier runs left.
	cursor0 := int64(0)
	if kind != "websocket" {
		resp, err := pub.Get(o.Base + "/poll-message?cursor=0")
		if err != nil {
			return nil, &InvalidError{"transports", kind + ": " + err.Error()}
		}
		var pr pollReply
		json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		for _, m := range pr.Messages {
			cursor0 = max(cursor0, m.ID)
		}
	}
	poll := func(path string) func() {
		return func() {
			defer wg.Done()
			cursor := cursor0
			for !stop.Load() {
				resp, err := hc.PostForm(o.Base+path, url.Values{"cursor": {strconv.FormatInt(cursor, 10)}})
				if err != nil {
					fail(err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				var pr pollReply
				err = json.NewDecoder(resp.Body).Decode(&pr)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					fail(fmt.Errorf("%s reply: %w", path, err))
				}
				for _, m := range pr.Messages {
					if m.ID > cursor {
						cursor = m.ID
						record(m.Body)
					}
				}
				if path == "/poll-message" {
					time.Sleep(o.PollEvery)
				}
			}
		}
	}
	var wss []*websocket.Conn
	var wsMu sync.Mutex
	for i := 0; i < o.Conns; i++ {
		wg.Add(1)
		switch kind {
		case "short-poll":
			go poll("/poll-message")()
		case "long-poll":
			go poll("/update-message")()
		case "websocket":
			d := websocket.Dialer{NetDialContext: countingDial(&wire), HandshakeTimeout: 10 * time.Second}
			ws, resp, err := d.Dial("ws"+strings.TrimPrefix(o.Base, "http")+"/ws", nil)
			if resp != nil && resp.Body != nil {
				resp.Body.Close()
			}
			if err != nil {
				fail(err)
				wg.Done()
				continue
			}
			wsMu.Lock()
			wss = append(wss, ws)
			wsMu.Unlock()
			go func() {
				defer wg.Done()
				for {
					_, data, err := ws.ReadMessage()
					if err != nil {
						return
					}
					record(string(data))
				}
			}()
		}
	}
	time.Sleep(300 * time.Millisecond)
	wire.Store(0)
	delivered.Store(0)
	m := startCPU(o.PID)
	bar := orNoProgress(o.Progress).Timed(kind, o.Duration)
	published := 0
	for t0 := time.Now(); time.Since(t0) < o.Duration; published++ {
		next := t0.Add(time.Duration(published+1) * o.Every)
		ts := strconv.FormatInt(time.Now().UnixNano(), 10)
		var resp *http.Response
		var err error
		if kind == "websocket" {
			resp, err = pub.Get(o.Base + "/receive?msg=" + ts)
		} else {
			resp, err = pub.PostForm(o.Base+"/new-message", url.Values{"msg": {ts}})
		}
		if err != nil {
			fail(err)
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		bar.Set(int64(time.Since(t0)/time.Millisecond), delivered.Load(), errs.Load())
		time.Sleep(time.Until(next))
	}
	// Let the last message reach the pollers before stopping the clock.
	time.Sleep(min(o.PollEvery, time.Second) + 100*time.Millisecond)
	cpu := m.stop()
	bytes, n := wire.Load(), delivered.Load()
	bar.Done()
	stop.Store(true)
	for _, ws := range wss {
		ws.Close()
	}
	// Long polls end by themselves with the next message or their 30 s
	// timeout; one more message releases them now.
	if kind == "long-poll" {
		if resp, err := pub.PostForm(o.Base+"/new-message", url.Values{"msg": {"bye"}}); err == nil {
			resp.Body.Close()
		}
	}
	wg.Wait()
	hc.CloseIdleConnections()
	res := &Result{Scenario: "transports", Server: kind, URL: o.Base, Client: "net/http + gorilla", Conns: o.Conns, Errors: errs.Load()}
	res.finish(n, lat.sorted(), cpu, harnessCores())
	res.Pace = ""
	per := 0.0
	if n > 0 {
		per = float64(bytes) / float64(n)
	}
	res.Extra = map[string]any{"transport": kind, "published": published, "expected": int64(published) * int64(o.Conns),
		"wire_bytes": bytes, "wire_bytes_per_delivered": per}
	last, _ := lastE.Load().(string)
	if last != "" {
		res.Extra["last_error"] = last
	}
	expected := int64(published) * int64(o.Conns)
	var none error
	if n == 0 {
		none = fmt.Errorf("%s: no message delivered%s", kind, lastErr(last))
	}
	return res, invalidate(res, aliveCheck(o.PID), none, tooMany(kind+" deliveries (missed)", max(expected-n, 0), expected, last))
}
