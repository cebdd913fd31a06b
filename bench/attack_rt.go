package bench

// Attacks n-r (issue 21): hostile clients of the client protocol
// (proto/clientproto/PROTOCOL.md) on /connection/websocket and on the SSE
// emulation (/connection/sse + /connection/command). Each counts the
// documented codes its attackers get: error codes of replies in
// Extra["errors"], disconnect codes (WebSocket close frames, SSE
// disconnect events) in Closes.

import (
	"bufio"
	"bytes"
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

	"github.com/golang-jwt/jwt/v5"
)

const rtWSPath = "/connection/websocket"

// rtToken is attacker i's connect token: an HS256 JWT signed with
// TokenSecret when set (a server with -token-hmac-secret), else none (the
// demo's anonymous users).
func (e *attackEnv) rtToken(i int) string {
	if e.o.TokenSecret == "" {
		return ""
	}
	t, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   "attacker-" + strconv.Itoa(i),
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString([]byte(e.o.TokenSecret))
	return t
}

// rtConnectCmd is a connect command with id 1.
func rtConnectCmd(token string) []byte {
	b, _ := json.Marshal(map[string]any{"id": 1, "connect": map[string]any{"token": token, "name": "attacker"}})
	return b
}

// rtFrame is a server frame of the protocol, the fields the attacks read.
type rtFrame struct {
	ID     uint32          `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code int `json:"code"`
	} `json:"error"`
	Disconnect *struct {
		Code int `json:"code"`
	} `json:"disconnect"`
	Push json.RawMessage `json:"push"`
}

// sendText sends one masked text frame.
func (w *rawWS) sendText(p []byte) error {
	return w.write(w.frame(1, false, p), time.Now().Add(10*time.Second))
}

// rtRead reads protocol frames until the connection ends or deadline,
// handing each decoded frame to on (which may be nil), answering pings;
// it says how the connection ended: a close code, "eof", "reset", "open".
func (w *rawWS) rtRead(deadline time.Time, on func(f rtFrame)) string {
	if on == nil {
		return w.readFrames(deadline, nil)
	}
	return w.readFrames(deadline, func(p []byte) {
		var rf rtFrame
		if json.Unmarshal(p, &rf) == nil {
			on(rf)
		}
	})
}

// dialRT opens a protocol WebSocket and connects with token; it returns
// once the connect reply came (an error reply or close is an error).
func dialRT(host, token string) (*rawWS, error) {
	w, err := dialWS(host, rtWSPath, "", 10*time.Second)
	if err != nil {
		return nil, err
	}
	if err := w.sendText(rtConnectCmd(token)); err != nil {
		w.Close()
		return nil, err
	}
	w.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var keep []byte
	for {
		keep = keep[:0]
		f, err := w.readFrameTo(&keep)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("connect: %s", closeKind(err))
		}
		if f.op == 8 {
			w.Close()
			return nil, fmt.Errorf("connect: closed %s", closeCode(f.payload))
		}
		var rf rtFrame
		if f.op != 1 || json.Unmarshal(keep, &rf) != nil || rf.ID != 1 {
			continue
		}
		if rf.Error != nil {
			w.Close()
			return nil, fmt.Errorf("connect: error %d", rf.Error.Code)
		}
		w.c.SetReadDeadline(time.Time{})
		return w, nil
	}
}

// codeCounter counts error codes of replies.
type codeCounter struct{ statusCounter }

func (c *codeCounter) count(f rtFrame) {
	if f.Error != nil {
		c.add(f.Error.Code, nil)
	}
}

// addKey counts one answer under k.
func (s *statusCounter) addKey(k string) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]int64{}
	}
	s.m[k]++
	s.mu.Unlock()
}

// post POSTs body (JSON) to u with hc and counts the answer's status (0
// for no answer).
func (s *statusCounter) post(hc *http.Client, u string, body io.Reader) {
	resp, err := hc.Post(u, "application/json", body)
	if err != nil {
		s.add(0, err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.add(resp.StatusCode, nil)
}

// rtAttacker connects attacker i (dialRT) and reads its frames for d
// from then in a goroutine, handing each to on; done says how the
// connection ended. When the connect fails it counts "connect-error"
// and returns a nil w.
func (e *attackEnv) rtAttacker(i int, d time.Duration, on func(f rtFrame)) (w *rawWS, done <-chan string) {
	w, err := dialRT(e.host, e.rtToken(i))
	if err != nil {
		e.closed("connect-error")
		return nil, nil
	}
	ended := make(chan string, 1)
	go func() { ended <- w.rtRead(time.Now().Add(d), on) }()
	return w, ended
}

// each runs fn(i) for i in [0, n), at most 64 at once, and waits.
func each(n int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

// rtUnauth is attack n: rounds of RTUnauthConns WebSockets, for
// RTUnauthFor, each send a command other than connect first (error 101,
// close 3500), or connect with a garbage token or a JWT signed with
// another secret (close 3500 when the server checks tokens); and
// commands are POSTed to forged sessions (404, error 110).
func rtUnauth(e *attackEnv) error {
	var errs codeCounter
	var accepted atomic.Int64
	kinds := []string{"command-before-connect", "garbage-token", "forged-jwt"}
	forged := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "admin",
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))})
	forgedTok, _ := forged.SignedString([]byte("not-the-servers-secret-0123456789"))
	rounds := 0
	for end := time.Now().Add(e.o.RTUnauthFor); rounds == 0 || time.Now().Before(end); rounds++ {
		each(e.o.RTUnauthConns, func(i int) {
			w, err := dialWS(e.host, rtWSPath, "", 10*time.Second)
			if err != nil {
				e.closed("dial-error")
				return
			}
			defer w.Close()
			var cmd []byte
			switch kinds[i%len(kinds)] {
			case "command-before-connect":
				cmd = []byte(`{"id":1,"subscribe":{"topic":"chat:lobby"}}`)
			case "garbage-token":
				cmd = rtConnectCmd("garbage." + strconv.Itoa(i) + ".token")
			default:
				cmd = rtConnectCmd(forgedTok)
			}
			if w.sendText(cmd) != nil {
				e.closed("write-error")
				return
			}
			end := w.rtRead(time.Now().Add(10*time.Second), func(f rtFrame) {
				errs.count(f)
				if f.ID == 1 && f.Result != nil {
					accepted.Add(1)
					w.c.SetReadDeadline(time.Now()) // a server that does not check tokens: done
				}
			})
			e.closed(end)
		})
	}
	// Forged session ids on the emulated transports' command door.
	var posts statusCounter
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := range e.o.RTUnauthConns / 10 {
		u := "http://" + e.host + "/connection/command?session=" + url.QueryEscape("forged-"+strconv.Itoa(i))
		posts.post(hc, u, strings.NewReader(`{"id":1,"subscribe":{"topic":"chat:x"}}`))
	}
	e.endMeasure()
	e.set("attackers", int64(rounds*e.o.RTUnauthConns))
	e.set("before_connect", int64(rounds*((e.o.RTUnauthConns+len(kinds)-1)/len(kinds))))
	e.set("errors", errs.String())
	e.set("accepted", accepted.Load())
	e.set("tokens_checked", e.o.TokenSecret != "")
	e.set("forged_session_posts", posts.String())
	return nil
}

// rtSubFlood is attack o: RTSubConns connections each subscribe to
// RTSubTopics distinct topics: a first burst within the command bucket,
// then the rate limit's worth per second until past the subscription
// limit (error 106), then the rest at once (error 111; past 20 times the
// rate refused within a second, close 3004).
func rtSubFlood(e *attackEnv) error {
	var errs codeCounter
	var okSubs atomic.Int64
	each(e.o.RTSubConns, func(i int) {
		w, done := e.rtAttacker(i, time.Minute, func(f rtFrame) {
			errs.count(f)
			if f.ID > 1 && f.Error == nil && f.Result != nil {
				okSubs.Add(1)
			}
		})
		if w == nil {
			return
		}
		defer w.Close()
		sub := func(k int) []byte {
			return w.frame(1, false, fmt.Appendf(nil, `{"id":%d,"subscribe":{"topic":"chat:flood-%d-%d"}}`, k+2, i, k))
		}
		// 90 at once, then 45 a second (under the default 50/s) until
		// 150 (past 128), then everything left in one write.
		k := 0
		batch := func(n int) bool {
			var b []byte
			for ; n > 0 && k < e.o.RTSubTopics; n-- {
				b = append(b, sub(k)...)
				k++
			}
			return w.write(b, time.Now().Add(10*time.Second)) == nil
		}
		ok := batch(90)
		for ok && k < 150 && k < e.o.RTSubTopics {
			time.Sleep(time.Second)
			ok = batch(45)
		}
		if ok {
			batch(e.o.RTSubTopics)
		}
		time.Sleep(e.o.Drain)
		w.c.SetReadDeadline(time.Now())
		e.closed(<-done)
	})
	e.endMeasure()
	e.set("errors", errs.String())
	e.set("subscribed", okSubs.Load())
	return nil
}

// rtMalformed is attack p: RTMalformedConns connections per case send
// JSON garbage before and after connect (no id to answer: 3501), a
// command with a malformed field after connect (error 107, the
// connection lives), a binary frame (3501), a command nested 30,000 deep
// (3501), and a frame of RTOversize bytes (3505); on the SSE emulation,
// a session's command POST gets garbage (400) and RTOversize bytes (413).
func rtMalformed(e *attackEnv) error {
	var errs codeCounter
	deep := []byte(`{"id":2,"publish":{"topic":"chat:x","data":` + strings.Repeat("[", 30000) + strings.Repeat("]", 30000) + `}}`)
	cases := []struct {
		name    string
		connect bool
		frame   func(w *rawWS) []byte
	}{
		{"garbage-before-connect", false, func(w *rawWS) []byte { return w.frame(1, false, []byte(`{"id":1,"connect":{`)) }},
		{"garbage-after-connect", true, func(w *rawWS) []byte { return w.frame(1, false, []byte(`{"id":2,"subscribe":[1,2`)) }},
		{"bad-field-after-connect", true, func(w *rawWS) []byte {
			return w.frame(1, false, []byte(`{"id":2,"subscribe":{"topic":["chat:x"]}}`))
		}},
		{"binary", true, func(w *rawWS) []byte { return w.frame(2, false, []byte(`{"id":2,"ping":{}}`)) }},
		{"deep-nesting", true, func(w *rawWS) []byte { return w.frame(1, false, deep) }},
		{"oversized", true, nil},
	}
	outcome := map[string]*statusCounter{}
	for _, c := range cases {
		outcome[c.name] = &statusCounter{}
	}
	each(e.o.RTMalformedConns*len(cases), func(i int) {
		c := cases[i%len(cases)]
		var w *rawWS
		var err error
		if c.connect {
			w, err = dialRT(e.host, e.rtToken(i))
		} else {
			w, err = dialWS(e.host, rtWSPath, "", 10*time.Second)
		}
		if err != nil {
			e.closed("connect-error")
			return
		}
		defer w.Close()
		dl := time.Now().Add(30 * time.Second)
		if c.frame != nil {
			err = w.write(c.frame(w), dl)
		} else {
			if err = w.write(w.frameHeader(1, true, false, e.o.RTOversize), dl); err == nil {
				_, err = w.writePayload(e.o.RTOversize, 0, dl)
			}
		}
		// A ping behind: a connection that lives answers it.
		if err == nil {
			w.sendText([]byte(`{"id":3,"ping":{}}`))
		}
		alive := false
		end := w.rtRead(time.Now().Add(5*time.Second), func(f rtFrame) {
			errs.count(f)
			if f.ID == 3 && f.Error == nil {
				alive = true
				w.c.SetReadDeadline(time.Now())
			}
		})
		if alive {
			end = "alive"
		}
		outcome[c.name].addKey(end)
		if end != "alive" {
			e.closed(end)
		}
	})
	// The SSE emulation's command door.
	posts := &statusCounter{}
	sse, err := openRTSSE(e.host, e.rtToken(0))
	if err != nil {
		return fmt.Errorf("sse session: %w", err)
	}
	defer sse.Close()
	hc := &http.Client{Timeout: 30 * time.Second}
	big := bytes.Repeat([]byte("x"), int(e.o.RTOversize))
	for _, body := range [][]byte{[]byte("{{{garbage\n"), []byte(`{"id":2,"ping":{}}` + "\n" + "\x00\xff"), big} {
		posts.post(hc, "http://"+e.host+"/connection/command?session="+url.QueryEscape(sse.session), bytes.NewReader(body))
	}
	e.endMeasure()
	for name, c := range outcome {
		e.set(name, c.String())
	}
	e.set("errors", errs.String())
	e.set("sse_command_posts", posts.String())
	return nil
}

// rtRPCFlood is attack q: RTRPCConns connections each start 24 "delay"
// RPCs of RTRPCHold (past the 16 pending: error 106, or 104 on a server
// without that method), then send "time" RPCs at RTRPCRate a second for
// RTRPCFor (over the 50/s limit: error 111; sustained 5 s: close 3004).
func rtRPCFlood(e *attackEnv) error {
	var errs codeCounter
	var answered atomic.Int64
	each(e.o.RTRPCConns, func(i int) {
		w, done := e.rtAttacker(i, e.o.RTRPCFor+e.o.RTRPCHold+10*time.Second, func(f rtFrame) {
			errs.count(f)
			if f.Error == nil && f.Result != nil {
				answered.Add(1)
			}
		})
		if w == nil {
			return
		}
		defer w.Close()
		id := 1
		var b []byte
		for range 24 {
			id++
			b = fmt.Appendf(b[:0], `{"id":%d,"rpc":{"method":"delay","data":{"ms":%d}}}`, id, e.o.RTRPCHold.Milliseconds())
			w.sendText(b)
		}
		// RTRPCRate a second in batches every 50 ms.
		per := max(1, e.o.RTRPCRate/20)
		end := time.Now().Add(e.o.RTRPCFor)
		var batch []byte
		for time.Now().Before(end) {
			batch = batch[:0]
			for range per {
				id++
				batch = append(batch, w.frame(1, false, fmt.Appendf(nil, `{"id":%d,"rpc":{"method":"time"}}`, id))...)
			}
			if w.write(batch, time.Now().Add(5*time.Second)) != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		select {
		case end := <-done:
			e.closed(end)
		case <-time.After(e.o.RTRPCHold + e.o.Drain):
			w.c.SetReadDeadline(time.Now())
			e.closed(<-done)
		}
	})
	e.endMeasure()
	e.set("errors", errs.String())
	e.set("answered", answered.Load())
	return nil
}

// rtSSE is an SSE session of the protocol: its stream and session id.
type rtSSE struct {
	c       net.Conn
	br      *bufio.Reader
	session string
}

func (s *rtSSE) Close() error { return s.c.Close() }

// openRTSSE opens /connection/sse with a connect command and reads up to
// the connect reply (its session id).
func openRTSSE(host, token string) (*rtSSE, error) {
	c, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	q := url.QueryEscape(string(rtConnectCmd(token)))
	if _, err := io.WriteString(c, "GET /connection/sse?connect="+q+" HTTP/1.1\r\nHost: "+host+"\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	s := &rtSSE{c: c, br: bufio.NewReaderSize(c, 4096)}
	status, hdr, err := readHead(s.br)
	if err == nil && (status != 200 || !strings.HasPrefix(hdr["content-type"], "text/event-stream")) {
		err = fmt.Errorf("status %d, %q", status, hdr["content-type"])
	}
	for err == nil {
		var f rtFrame
		if f, err = s.next(); err != nil {
			break
		}
		if f.ID == 1 {
			var res struct{ Session string }
			json.Unmarshal(f.Result, &res)
			if res.Session == "" {
				err = fmt.Errorf("connect refused")
				break
			}
			s.session = res.Session
			c.SetDeadline(time.Time{})
			return s, nil
		}
	}
	c.Close()
	return nil, fmt.Errorf("sse connect: %w", err)
}

// next reads the stream's next data line as a frame (chunked framing and
// comments skipped: only "data: {...}" lines are frames).
func (s *rtSSE) next() (rtFrame, error) {
	for {
		line, err := s.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return rtFrame{}, err
		}
		if d, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			var f rtFrame
			if json.Unmarshal(bytes.TrimSpace(d), &f) == nil {
				return f, nil
			}
		}
	}
}

// rtSlowSSE is attack r: RTSSEConns SSE sessions subscribe to chat:x and
// never read while RTSSEPublishers connections publish RTSSESize bytes to
// it as fast as the rate limit allows, for RTSSEFor, beside a tenth as
// many WebSocket subscribers that do not read either; each should be cut
// as a slow consumer, and as many long-polling sessions that never poll
// (a late poll reads 3001), with the server's memory bounded. Their last frames are then read to see how
// each ended.
func rtSlowSSE(e *attackEnv) error {
	streams := make([]*rtSSE, e.o.RTSSEConns)
	var failed atomic.Int64
	each(len(streams), func(i int) {
		s, err := openRTSSE(e.host, e.rtToken(i))
		if err != nil {
			failed.Add(1)
			return
		}
		// Subscribe, then read nothing more.
		resp, err := http.Post("http://"+e.host+"/connection/command?session="+url.QueryEscape(s.session), "application/json",
			strings.NewReader(`{"id":2,"subscribe":{"topic":"chat:x"}}`))
		if err != nil {
			s.Close()
			failed.Add(1)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		streams[i] = s
	})
	e.set("sse_open_failed", failed.Load())
	// Beside them, WebSocket subscribers that never read either: their
	// close frame (3001) goes past the bound, so they learn why.
	wss := make([]*rawWS, max(1, e.o.RTSSEConns/10))
	each(len(wss), func(i int) {
		w, err := dialRT(e.host, e.rtToken(2000000+i))
		if err != nil {
			failed.Add(1)
			return
		}
		if w.sendText([]byte(`{"id":2,"subscribe":{"topic":"chat:x"}}`)) != nil {
			w.Close()
			return
		}
		wss[i] = w
	})
	// And long-polling sessions that never poll: their frames wait in
	// the server up to the unsent bound, then the session ends with 3001,
	// which a late poll still reads.
	polls := make([]string, len(wss))
	hc := &http.Client{Timeout: e.o.Drain + 5*time.Second}
	each(len(polls), func(i int) {
		sess, err := openRTPoll(hc, e.host, e.rtToken(3000000+i))
		if err != nil {
			failed.Add(1)
			return
		}
		resp, err := hc.Post("http://"+e.host+"/connection/command?session="+url.QueryEscape(sess), "application/json",
			strings.NewReader(`{"id":2,"subscribe":{"topic":"chat:x"}}`))
		if err != nil {
			failed.Add(1)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		polls[i] = sess
	})
	var published, pubErrs codeCounter
	var sent atomic.Int64
	data, _ := json.Marshal(strings.Repeat("s", e.o.RTSSESize))
	each(e.o.RTSSEPublishers, func(i int) {
		w, err := dialRT(e.host, e.rtToken(1000000+i))
		if err != nil {
			pubErrs.add(0, err)
			return
		}
		defer w.Close()
		go w.rtRead(time.Now().Add(e.o.RTSSEFor+5*time.Second), func(f rtFrame) {
			published.count(f)
		})
		end := time.Now().Add(e.o.RTSSEFor)
		id := 1
		for time.Now().Before(end) {
			// 45 a second, in 5 writes: under the limit.
			for range 9 {
				id++
				if w.sendText(fmt.Appendf(nil, `{"id":%d,"publish":{"topic":"chat:x","data":%s}}`, id, data)) != nil {
					return
				}
				sent.Add(1)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	e.endMeasure()
	e.set("published", sent.Load())
	e.set("publish_errors", published.String())
	if s := pubErrs.String(); s != "n/a" {
		e.set("publisher_connect_errors", s)
	}
	// Drain: how did each stream end? A stream cut as a slow consumer's
	// ends (eof) without its disconnect event when the client reads
	// too late: only a client reading within the server's linger sees it.
	each(len(streams), func(i int) {
		s := streams[i]
		if s == nil {
			return
		}
		defer s.Close()
		s.c.SetReadDeadline(time.Now().Add(e.o.Drain))
		for {
			f, err := s.next()
			if err != nil {
				e.closed("sse-" + closeKind(err))
				return
			}
			if f.Disconnect != nil {
				e.closed("sse-" + strconv.Itoa(f.Disconnect.Code))
				return
			}
		}
	})
	pc := &http.Client{Timeout: e.o.Drain}
	each(len(polls), func(i int) {
		if polls[i] != "" {
			e.closed("poll-" + drainPoll(pc, e.host, polls[i]))
		}
	})
	each(len(wss), func(i int) {
		if w := wss[i]; w != nil {
			defer w.Close()
			e.closed("ws-" + w.rtRead(time.Now().Add(e.o.Drain), nil))
		}
	})
	return nil
}

// rtPollAnswer is a long poll's answer.
type rtPollAnswer struct {
	Frames []rtFrame `json:"frames"`
	Next   uint64    `json:"next"`
}

// openRTPoll connects a long-polling session and returns its id.
func openRTPoll(hc *http.Client, host, token string) (string, error) {
	resp, err := hc.Post("http://"+host+"/connection/poll", "application/json", bytes.NewReader(rtConnectCmd(token)))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var a rtPollAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || len(a.Frames) == 0 {
		return "", fmt.Errorf("poll connect: status %d: %v", resp.StatusCode, err)
	}
	var res struct{ Session string }
	json.Unmarshal(a.Frames[0].Result, &res)
	if res.Session == "" {
		return "", fmt.Errorf("poll connect refused")
	}
	return res.Session, nil
}

// drainPoll polls session from frame 1 until its disconnect frame (its
// code), a status other than 200 ("404", ...) or a poll that times out
// ("open": the session lives).
func drainPoll(hc *http.Client, host, session string) string {
	next := uint64(1)
	for range 1000 {
		resp, err := hc.Get("http://" + host + "/connection/poll?session=" + url.QueryEscape(session) + "&next=" + strconv.FormatUint(next, 10))
		if err != nil {
			return closeKind(err)
		}
		var a rtPollAnswer
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return strconv.Itoa(resp.StatusCode)
		}
		if err != nil {
			return "error"
		}
		for _, f := range a.Frames {
			if f.Disconnect != nil {
				return strconv.Itoa(f.Disconnect.Code)
			}
		}
		next = a.Next
	}
	return "open"
}
