package bench

// Attacks s and t (issue 22): hostile presence on the demo's chat
// namespace (presence and join_leave). s churns one topic's membership
// from many clients at their rate limit beside an observer subscriber;
// t floods presence queries on a topic of many idle members.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// rtPresToken is a connect token (TokenSecret's, as rtToken) whose info
// claim is {"name": N} with a name of nameLen bytes: the member's Info
// in presence and join/leave pushes. Without TokenSecret, none.
func (e *attackEnv) rtPresToken(i, nameLen int) string {
	if e.o.TokenSecret == "" {
		return ""
	}
	name := "attacker-" + strconv.Itoa(i) + "-"
	name += strings.Repeat("n", max(0, nameLen-len(name)))
	t, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":  "attacker-" + strconv.Itoa(i),
		"exp":  time.Now().Add(time.Hour).Unix(),
		"info": map[string]string{"name": name},
	}).SignedString([]byte(e.o.TokenSecret))
	return t
}

// presFrame is a server frame as the presence attacks read it: a reply's
// error or a join/leave push.
type presFrame struct {
	ID     uint32              `json:"id"`
	Error  *struct{ Code int } `json:"error"`
	Result *struct {
		Members   []json.RawMessage `json:"members"`
		Truncated bool              `json:"truncated"`
	} `json:"result"`
	Push *struct {
		Topic string `json:"topic"`
		Join  []struct {
			Info json.RawMessage `json:"info"`
		} `json:"join"`
		Leave []struct {
			Info json.RawMessage `json:"info"`
		} `json:"leave"`
		Counts *struct{ Joined, Left, Clients int } `json:"counts"`
	} `json:"push"`
}

// readFrames reads w's frames until deadline or its end, answering pings,
// and hands each text payload (its bytes reused afterwards) to on; it
// says how the connection ended (as rtRead).
func (w *rawWS) readFrames(deadline time.Time, on func(p []byte)) string {
	w.c.SetReadDeadline(deadline)
	var keep []byte
	for {
		keep = keep[:0]
		f, err := w.readFrameTo(&keep)
		if err != nil {
			return closeKind(err)
		}
		switch f.op {
		case 8:
			return closeCode(f.payload)
		case 9:
			w.write(w.frame(10, false, f.payload), time.Now().Add(5*time.Second))
		case 1:
			if on != nil {
				on(keep)
			}
		}
	}
}

// presObserver is a subscriber of the churned topic that reads its
// join/leave pushes and keeps their largest figures.
type presObserver struct {
	pushes, countsPushes, names atomic.Int64
	maxNames, maxInfo           atomic.Int64
}

func (o *presObserver) on(p []byte) {
	if !bytes.Contains(p, []byte(`"push"`)) {
		return
	}
	var f presFrame
	if json.Unmarshal(p, &f) != nil || f.Push == nil || f.Push.Join == nil && f.Push.Leave == nil && f.Push.Counts == nil {
		return
	}
	o.pushes.Add(1)
	if f.Push.Counts != nil {
		o.countsPushes.Add(1)
	}
	n := int64(len(f.Push.Join) + len(f.Push.Leave))
	o.names.Add(n)
	storeMax(&o.maxNames, n)
	for _, m := range append(f.Push.Join, f.Push.Leave...) {
		storeMax(&o.maxInfo, int64(len(m.Info)))
	}
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// rtPresenceChurn is attack s: RTChurnConns clients subscribe to and
// unsubscribe from chat:churn in a loop at RTChurnRate commands a second
// each (under the 50/s limit) for RTChurnFor (the first 10 alone for a
// second: pushes with names); half carry a name of
// RTChurnName bytes in their token's info (over the 256 B bound: left
// out), half one of 200 bytes (kept). An observer subscribed to the topic
// reads its join/leave pushes: each must list at most 100 names and no
// Info over 256 B.
func rtPresenceChurn(e *attackEnv) error {
	const topic = "chat:churn"
	obs := &presObserver{}
	ow, err := dialRT(e.host, e.rtPresToken(4000000, 16))
	if err != nil {
		return fmt.Errorf("observer: %w", err)
	}
	defer ow.Close()
	if err := ow.sendText([]byte(`{"id":2,"subscribe":{"topic":"` + topic + `"}}`)); err != nil {
		return fmt.Errorf("observer: %w", err)
	}
	oend := make(chan string, 1)
	go func() { oend <- ow.readFrames(time.Now().Add(e.o.RTChurnFor+time.Minute), obs.on) }()

	var errs codeCounter
	var sent, subscribed atomic.Int64
	start := make(chan struct{})
	var ready sync.WaitGroup
	ready.Add(e.o.RTChurnConns)
	var wg sync.WaitGroup
	for i := range e.o.RTChurnConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nameLen := 200
			if i%2 == 1 {
				nameLen = e.o.RTChurnName
			}
			w, err := dialRT(e.host, e.rtPresToken(i, nameLen))
			ready.Done()
			if err != nil {
				e.closed("connect-error")
				return
			}
			defer w.Close()
			done := make(chan string, 1)
			go func() {
				done <- w.readFrames(time.Now().Add(e.o.RTChurnFor+time.Minute), func(p []byte) {
					if !bytes.Contains(p, []byte(`"error"`)) {
						if bytes.Contains(p, []byte(`"head"`)) {
							subscribed.Add(1)
						}
						return
					}
					var f presFrame
					if json.Unmarshal(p, &f) == nil && f.Error != nil {
						errs.add(f.Error.Code, nil)
					}
				})
			}()
			<-start
			// The first 10 churn alone for the first second: fewer than
			// 100 names an interval, so the observer gets names (and
			// Infos), not only counts.
			end := time.Now().Add(e.o.RTChurnFor)
			if i >= 10 {
				time.Sleep(min(time.Second, e.o.RTChurnFor/2))
			}
			// Subscribe and unsubscribe in pairs, RTChurnRate commands a
			// second in 10 writes.
			per := max(2, e.o.RTChurnRate/10) &^ 1
			id := 1
			var b []byte
			for time.Now().Before(end) {
				b = b[:0]
				for k := 0; k < per; k += 2 {
					id += 2
					b = append(b, w.frame(1, false, fmt.Appendf(nil, `{"id":%d,"subscribe":{"topic":"%s"}}`, id, topic))...)
					b = append(b, w.frame(1, false, fmt.Appendf(nil, `{"id":%d,"unsubscribe":{"topic":"%s"}}`, id+1, topic))...)
				}
				if w.write(b, time.Now().Add(5*time.Second)) != nil {
					break
				}
				sent.Add(int64(per))
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(e.o.Drain)
			w.c.SetReadDeadline(time.Now())
			e.closed(<-done)
		}()
	}
	ready.Wait()
	close(start)
	wg.Wait()
	e.endMeasure()
	// The last pushes (counts wait up to JoinLeaveMaxDelay, 2 s).
	time.Sleep(max(e.o.Drain, 2500*time.Millisecond))
	ow.c.SetReadDeadline(time.Now())
	observerEnd := <-oend
	e.set("commands_sent", sent.Load())
	e.set("subscribed", subscribed.Load())
	e.set("errors", errs.String())
	e.set("observer_pushes", obs.pushes.Load())
	e.set("observer_counts_pushes", obs.countsPushes.Load())
	e.set("observer_names", obs.names.Load())
	e.set("observer_max_names", obs.maxNames.Load())
	e.set("observer_max_info", obs.maxInfo.Load())
	e.set("observer_end", observerEnd)
	return nil
}

// rtPresenceFlood is attack t: RTPresMembers idle clients subscribe to
// chat:crowd (names of RTPresName bytes), then RTPresQueriers clients
// subscribed to it too send presence at RTPresRate a second each for
// RTPresFor, reading their replies (each up to the 1,000 members the
// server lists), while RTPresChurn clients subscribe to and unsubscribe
// from it 40 times a second each.
func rtPresenceFlood(e *attackEnv) error {
	const topic = "chat:crowd"
	sub := []byte(`{"id":2,"subscribe":{"topic":"` + topic + `"}}`)
	idle := make([]*rawWS, e.o.RTPresMembers)
	var failed atomic.Int64
	each(len(idle), func(i int) {
		w, err := dialRT(e.host, e.rtPresToken(5000000+i, e.o.RTPresName))
		if err != nil {
			failed.Add(1)
			return
		}
		if w.sendText(sub) != nil {
			w.Close()
			failed.Add(1)
			return
		}
		idle[i] = w
		// Read (and drop) its pushes so that it never lags.
		go w.readFrames(time.Now().Add(e.o.RTPresFor+2*time.Minute), nil)
	})
	defer func() {
		for _, w := range idle {
			if w != nil {
				w.Close()
			}
		}
	}()
	e.set("members_failed", failed.Load())

	var errs codeCounter
	var sent, answered, answeredBytes, truncated, maxMembers atomic.Int64
	var ready sync.WaitGroup
	ready.Add(e.o.RTPresQueriers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range e.o.RTPresQueriers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := dialRT(e.host, e.rtPresToken(6000000+i, e.o.RTPresName))
			ready.Done()
			if err != nil {
				e.closed("connect-error")
				return
			}
			defer w.Close()
			done := make(chan string, 1)
			go func() {
				done <- w.readFrames(time.Now().Add(e.o.RTPresFor+time.Minute), func(p []byte) {
					if bytes.Contains(p[:min(len(p), 40)], []byte(`"push"`)) {
						return
					}
					if bytes.Contains(p[:min(len(p), 40)], []byte(`"members"`)) {
						answered.Add(1)
						answeredBytes.Add(int64(len(p)))
						if bytes.HasSuffix(bytes.TrimSpace(p), []byte(`"truncated":true}}`)) {
							truncated.Add(1)
						}
						if answered.Load()%50 == 1 {
							// Count the members of one reply in 50.
							var f presFrame
							if json.Unmarshal(p, &f) == nil && f.Result != nil {
								storeMax(&maxMembers, int64(len(f.Result.Members)))
							}
						}
						return
					}
					var f presFrame
					if json.Unmarshal(p, &f) == nil && f.Error != nil {
						errs.add(f.Error.Code, nil)
					}
				})
			}()
			if w.sendText(sub) != nil {
				return
			}
			<-start
			per := max(1, e.o.RTPresRate/10)
			id := 2
			var b []byte
			for end := time.Now().Add(e.o.RTPresFor); time.Now().Before(end); {
				b = b[:0]
				for range per {
					id++
					b = append(b, w.frame(1, false, fmt.Appendf(nil, `{"id":%d,"presence":{"topic":"%s"}}`, id, topic))...)
				}
				if w.write(b, time.Now().Add(5*time.Second)) != nil {
					break
				}
				sent.Add(int64(per))
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(e.o.Drain)
			w.c.SetReadDeadline(time.Now())
			e.closed(<-done)
		}()
	}
	// Churners beside: every join or leave makes the topic's encoded
	// answer stale, so the answers after it are listed and encoded anew
	// (the reuse's worst case).
	var churned atomic.Int64
	for i := range e.o.RTPresChurn {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := dialRT(e.host, e.rtPresToken(7000000+i, e.o.RTPresName))
			if err != nil {
				e.closed("connect-error")
				return
			}
			defer w.Close()
			go w.readFrames(time.Now().Add(e.o.RTPresFor+time.Minute), nil)
			<-start
			id := 1
			var b []byte
			for end := time.Now().Add(e.o.RTPresFor); time.Now().Before(end); {
				b = b[:0]
				for range 2 {
					id += 2
					b = append(b, w.frame(1, false, fmt.Appendf(nil, `{"id":%d,"subscribe":{"topic":"%s"}}`, id, topic))...)
					b = append(b, w.frame(1, false, fmt.Appendf(nil, `{"id":%d,"unsubscribe":{"topic":"%s"}}`, id+1, topic))...)
				}
				if w.write(b, time.Now().Add(5*time.Second)) != nil {
					return
				}
				churned.Add(4)
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	ready.Wait()
	time.Sleep(200 * time.Millisecond) // the queriers' subscribe replies
	close(start)
	wg.Wait()
	e.endMeasure()
	e.set("churn_commands", churned.Load())
	e.set("queries_sent", sent.Load())
	e.set("answered", answered.Load())
	e.set("answered_mib", float64(answeredBytes.Load())/(1<<20))
	e.set("truncated", truncated.Load())
	e.set("max_members", maxMembers.Load())
	e.set("errors", errs.String())
	return nil
}
