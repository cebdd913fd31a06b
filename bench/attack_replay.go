package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// historyReplay is attack j: ReplayConns clients resume at once from the
// oldest position of a large history (ReplayMsgs messages of ReplaySize
// bytes posted to /new-message first) on /ws?since=, and read at full
// speed. Each should get every kept message once, in order, then the
// "subscribed" control message, on its one connection: a server that
// writes a replay past its slow-consumer bound cuts them off instead. A
// server without the positioned protocol (the gorilla reference) is not
// applicable (the probe "positioned:/ws?since=").
func historyReplay(e *attackEnv) error {
	hc := &http.Client{Timeout: 30 * time.Second}
	method := e.methodFor("/new-message")
	body := formBody(e.o.ReplaySize, 'r')
	for i := range e.o.ReplayMsgs {
		status, _, err := send(hc, method, e.o.Base+"/new-message", body)
		if err != nil || status < 200 || status > 299 {
			return fmt.Errorf("filling the history: message %d: status %d: %v", i, status, err)
		}
	}
	e.set("history_bytes", e.o.ReplayMsgs*e.o.ReplaySize)
	head, err := replayHead(e.host, "/ws?since=")
	if err != nil {
		return fmt.Errorf("after filling the history: %w", err)
	}
	e.set("head", head.String())
	// From right before the messages posted here (the history may hold
	// older ones, from an earlier run against the same server).
	start := replayPos{head.epoch, max(head.offset-int64(e.o.ReplayMsgs), 0)}
	from := "/ws?since=" + start.String()
	var complete, cut atomic.Int64
	var mu sync.Mutex
	var times []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(e.o.ReplayFor)
	for range e.o.ReplayConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			w, err := dialWS(e.host, from, "", 10*time.Second)
			if err != nil {
				e.closed("dial-error")
				return
			}
			defer w.Close()
			end, ok := readReplay(w, head, deadline)
			if !ok {
				cut.Add(1)
				e.closed(end)
				return
			}
			complete.Add(1)
			mu.Lock()
			times = append(times, time.Since(t0))
			mu.Unlock()
		}()
	}
	wg.Wait()
	e.endMeasure()
	e.set("complete", complete.Load())
	e.set("cut_off", cut.Load())
	e.set("all_complete", complete.Load() == int64(e.o.ReplayConns))
	if len(times) > 0 {
		slices.Sort(times)
		e.set("catch_up_p50_ms", times[len(times)/2].Milliseconds())
		e.set("catch_up_max_ms", times[len(times)-1].Milliseconds())
	}
	return nil
}

// replayPos is a position, E-N.
type replayPos struct{ epoch, offset int64 }

func (p replayPos) String() string { return fmt.Sprintf("%d-%d", p.epoch, p.offset) }

func parseReplayPos(s []byte) (replayPos, bool) {
	e, o, ok := bytes.Cut(s, []byte("-"))
	if !ok {
		return replayPos{}, false
	}
	ep, err1 := strconv.ParseInt(string(e), 10, 64)
	off, err2 := strconv.ParseInt(string(o), 10, 64)
	return replayPos{ep, off}, err1 == nil && err2 == nil
}

// replayHead subscribes on path (/ws?since=: from now) and returns the
// head the "subscribed" control message reports.
func replayHead(host, path string) (replayPos, error) {
	w, err := dialWS(host, path, "", 5*time.Second)
	if err != nil {
		return replayPos{}, err
	}
	defer w.Close()
	w.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var keep []byte
	for {
		keep = keep[:0]
		f, err := w.readFrameTo(&keep)
		if err != nil {
			return replayPos{}, fmt.Errorf("no subscribed message: %w", err)
		}
		if f.op != 1 || !bytes.HasPrefix(keep, []byte("{")) {
			continue
		}
		var ctl struct{ Type, Head string }
		if json.Unmarshal(keep, &ctl) == nil && ctl.Type == "subscribed" {
			if p, ok := parseReplayPos([]byte(ctl.Head)); ok {
				return p, nil
			}
			return replayPos{}, fmt.Errorf("subscribed with head %q", ctl.Head)
		}
	}
}

// readReplay reads a resuming client's messages: positioned frames
// ("E-N\n" + data) with consecutive offsets up to head at least, then the
// "subscribed" control message. It says how the connection ended when it
// did not get them all ("gap", a close code, "eof", ...).
func readReplay(w *rawWS, head replayPos, deadline time.Time) (string, bool) {
	w.c.SetReadDeadline(deadline)
	var keep []byte
	last := int64(-1)
	for {
		keep = keep[:0]
		f, err := w.readFrameTo(&keep)
		if err != nil {
			return closeKind(err), false
		}
		switch {
		case f.op == 8:
			return closeCode(f.payload), false
		case f.op != 1 && f.op != 2 && f.op != 0:
			continue
		case bytes.HasPrefix(keep, []byte(`{"type":"subscribed"`)):
			return "", last >= head.offset
		}
		ps, _, _ := bytes.Cut(keep[:min(len(keep), 40)], []byte("\n"))
		p, ok := parseReplayPos(ps)
		if !ok || p.epoch != head.epoch || (last >= 0 && p.offset != last+1) {
			return "gap", false
		}
		last = p.offset
	}
}
