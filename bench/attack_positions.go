package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// j. far-ahead positions: clients resume with positions a history does not
// hold (far ahead of its head, of a newer epoch, malformed) on /ws?since=,
// /sse (Last-Event-ID) and /update-message while a publisher posts
// /receive. Each must get a live message (one published during the attack)
// or a clear refusal (a close code, a 4xx); a client that hears nothing
// is "silent": the server took its position at its word and skips
// everything up to it.

// farPositions are the resume positions, cycled over the clients, for a
// history whose head is epoch e, offset n: beyond the head by more than
// pubsub.MaxLead (1000) even after the attack's publications moved the
// head on (n+1001 was within the bound once a poll asked after the first
// few, and waited for messages that never came), the largest offset, a newer epoch, the largest
// epoch, a position within MaxLead (the node lagging: messages come after
// 5 more), and text that is not a canonical position.
func farPositions(e, n int64) []string {
	es := strconv.FormatInt(e, 10)
	return []string{
		es + "-" + strconv.FormatInt(n+1001+100000, 10),
		es + "-9223372036854775807",
		strconv.FormatInt(e+1, 10) + "-1",
		"9223372036854775807-9223372036854775807",
		es + "-" + strconv.FormatInt(n+5, 10),
		es + "-+1",
	}
}

// farOutcome counts how the far-ahead clients ended, per transport.
type farOutcome struct {
	mu     sync.Mutex
	m      map[string]map[string]int64
	silent atomic.Int64
}

func (o *farOutcome) add(transport, how string) {
	if how == "silent" {
		o.silent.Add(1)
	}
	o.mu.Lock()
	if o.m == nil {
		o.m = map[string]map[string]int64{}
	}
	if o.m[transport] == nil {
		o.m[transport] = map[string]int64{}
	}
	o.m[transport][how]++
	o.mu.Unlock()
}

// live reports whether a message position p ("E-N") is one published
// during the attack: after head n in epoch e.
func farLive(p string, e, n int64) bool {
	es, os, ok := strings.Cut(p, "-")
	ep, err1 := strconv.ParseInt(es, 10, 64)
	off, err2 := strconv.ParseInt(os, 10, 64)
	return ok && err1 == nil && err2 == nil && ep == e && off > n
}

func farAhead(e *attackEnv) error {
	o := e.o
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.PostForm(o.Base+"/poll-message", url.Values{"since": {"0-0"}})
	if err != nil {
		return fmt.Errorf("far-ahead: head: %w", err)
	}
	var page struct{ Head string }
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	hs, ns, _ := strings.Cut(page.Head, "-")
	he, err1 := strconv.ParseInt(hs, 10, 64)
	hn, err2 := strconv.ParseInt(ns, 10, 64)
	if err != nil || err1 != nil || err2 != nil {
		return fmt.Errorf("far-ahead: no head position in /poll-message?since=0-0 (%q): %v", page.Head, err)
	}
	positions := farPositions(he, hn)
	var out farOutcome
	deadline := time.Now().Add(o.FarFor + 5*time.Second)
	var wg sync.WaitGroup
	var resolved atomic.Int64
	ready := make(chan struct{})
	for i := range o.FarClients {
		pos := positions[i%len(positions)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var how string
			defer func() { resolved.Add(1) }()
			switch i / len(positions) % 3 {
			case 0:
				how = farWS(e, pos, he, hn, deadline)
				out.add("ws", how)
			case 1:
				how = farSSE(e, pos, he, hn, deadline)
				out.add("sse", how)
			default:
				<-ready // polls ask after the others subscribed, like a real poller
				how = farPoll(e, pos, he, hn, deadline)
				out.add("longpoll", how)
			}
		}()
	}
	// Let the WebSockets and streams subscribe before the first message.
	time.Sleep(300 * time.Millisecond)
	close(ready)
	var st statusCounter
	// Publish for FarFor, and on while clients wait (a slow machine may
	// answer some only after that): each needs a message published after
	// it subscribed.
	end := time.Now().Add(o.FarFor)
	for k := 0; time.Now().Before(end) || resolved.Load() < int64(o.FarClients) && time.Now().Before(deadline.Add(-time.Second)); k++ {
		status, _, err := send(hc, e.methodFor("/receive"), o.Base+"/receive", []byte("msg=far"+strconv.Itoa(k)))
		st.add(status, err)
		time.Sleep(o.FarEvery)
	}
	wg.Wait()
	e.endMeasure()
	e.set("receive_statuses", st.String())
	out.mu.Lock()
	for tr, m := range out.m {
		e.set(tr, sortedCounts(m))
	}
	out.mu.Unlock()
	e.set("silent", out.silent.Load())
	e.set("positions", strings.Join(positions, " "))
	return nil
}

// farWS resumes a /ws?since= client at pos and reports how it ended: "live"
// (a positioned frame published during the attack), "close-CODE", or
// "silent" (nothing by the deadline; "eof", "reset": dropped without a
// close frame).
func farWS(e *attackEnv, pos string, he, hn int64, deadline time.Time) string {
	w, err := dialWS(e.host, "/ws?since="+url.QueryEscape(pos), "", 10*time.Second)
	if err != nil {
		return "dial-error"
	}
	defer w.Close()
	w.c.SetReadDeadline(deadline)
	var buf []byte
	for {
		buf = buf[:0]
		f, err := w.readFrameTo(&buf)
		if err != nil {
			if k := closeKind(err); k != "open" {
				return k
			}
			return "silent"
		}
		switch {
		case f.op == 8:
			return "close-" + closeCode(f.payload)
		case f.op == 1 && len(buf) > 0 && buf[0] >= '0' && buf[0] <= '9':
			p, _, _ := strings.Cut(string(buf), "\n")
			if farLive(p, he, hn) {
				return "live"
			}
		}
	}
}

// farSSE resumes an /sse stream with Last-Event-ID pos: "live" (an event
// whose id is a position published during the attack), "status-N" (no
// stream), or "silent".
func farSSE(e *attackEnv, pos string, he, hn int64, deadline time.Time) string {
	req, _ := http.NewRequest("GET", e.o.Base+"/sse", nil)
	req.Header.Set("Last-Event-ID", pos)
	hc := &http.Client{Timeout: time.Until(deadline)}
	resp, err := hc.Do(req)
	if err != nil {
		return "dial-error"
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "status-" + strconv.Itoa(resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	id, event := "", ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "silent"
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if event == "" && farLive(id, he, hn) {
				return "live"
			}
			id, event = "", ""
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		}
	}
}

// farPoll long-polls /update-message from pos, following each answer's
// head as the page does: "live" (a message published during the attack),
// "status-N", or "silent".
func farPoll(e *attackEnv, pos string, he, hn int64, deadline time.Time) string {
	since := pos
	for time.Now().Before(deadline) {
		ctx := &http.Client{Timeout: time.Until(deadline)}
		resp, err := ctx.PostForm(e.o.Base+"/update-message", url.Values{"since": {since}})
		if err != nil {
			return "silent" // no answer by the deadline
		}
		var page struct {
			Head     string
			Messages []struct{ Pos string }
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return "status-" + strconv.Itoa(resp.StatusCode)
		}
		if err != nil {
			return "bad-answer"
		}
		for _, m := range page.Messages {
			if farLive(m.Pos, he, hn) {
				return "live"
			}
		}
		if page.Head != "" {
			since = page.Head
		}
	}
	return "silent"
}
