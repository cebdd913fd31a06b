package realtime

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tornago/tornago/loop"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// wsConn is a Client's WebSocket: one command per text frame, one reply
// or push per text frame.
type wsConn struct {
	loop.WebSocketBase
	c *Client // registered at Open
	w *loop.WebSocket
}

func remoteIP(r *loop.Request) netip.Addr {
	ip, _ := netip.ParseAddr(r.RemoteIP())
	return ip
}

func (s *Server) newWebSocket(r *loop.Request) loop.WebSocketHandler {
	return &wsConn{c: &Client{s: s, x: requestExtra(r)}}
}

// Loop-only. Open implements loop.WebSocketHandler.
func (h *wsConn) Open(w *loop.WebSocket) {
	h.w = w
	h.c.s.register(h.c, h)
}

// Loop-only. OnMessage implements loop.WebSocketHandler.
func (h *wsConn) OnMessage(w *loop.WebSocket, typ loop.MessageType, data []byte) {
	switch {
	case typ != loop.Text:
		h.c.Disconnect(cp.DisconnectBadRequest, "binary frame")
	case len(data) > h.c.s.lim.CommandBytes:
		h.c.Disconnect(cp.DisconnectTooLarge, "command too large")
	default:
		h.c.onFrame(data)
	}
}

// Loop-only. OnClose implements loop.WebSocketHandler.
func (h *wsConn) OnClose(*loop.WebSocket) {
	if h.w != nil { // opened: registered
		h.c.gone()
	}
}

func (h *wsConn) write(frame []byte) error { return h.w.WriteText(frame) }

func (h *wsConn) writeBcast(b *bcast) error {
	if b.ws == nil {
		b.ws, _ = loop.PrepareMessage(loop.Text, b.frame)
	}
	return h.w.WritePrepared(b.ws)
}

func (h *wsConn) end(code cp.DisconnectCode, reason string, frame []byte) {
	_ = h.w.WriteText(frame)
	_ = h.w.Close(loop.StatusCode(code), reason)
}

func (h *wsConn) kind() string { return TransportWebSocket }

// session is an emulated transport's connection (SSE or long polling):
// its id, bound to the Client's identity, names it in the commands POSTed.
type session struct {
	s    *Server
	c    *Client
	id   string
	typ  string
	auth string // the Authorization header at connect: a POST with another is refused
	// SSE: the stream the frames go to.
	es *loop.EventStream
	// Long polling: the unacknowledged frames, numbered from base, and
	// the poll waiting for the next one.
	out    [][]byte
	base   uint64
	bytes  int
	parked *poller
	wait   *loop.Timeout
	// closed: the connection ended; the frames left (the disconnect) go
	// to the next poll, then the session is forgotten.
	closed   bool
	lastSeen time.Time
	// drained runs once the unacknowledged frames fall to drainAt bytes
	// (latest.go's wait for a lagging session).
	drained   func()
	drainAt   int
	idle      *loop.Timeout
	forgotten bool
}

// newSessionID is the server's node, a dot, and 256 random bits
// (base64url): the node routes a poll or command that reaches another
// process to the session's (relay.go); the random part makes it
// unguessable.
func (s *Server) newSessionID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return s.node + "." + base64.RawURLEncoding.EncodeToString(b[:])
}

// sessionNode returns the node part of a session id.
func sessionNode(id string) string {
	node, _, _ := strings.Cut(id, ".")
	return node
}

// maxAnswer bounds the frames of one poll answer.
const maxAnswer = 512 << 10

func (s *Server) newSession(typ string, r *loop.Request) *session {
	ss := &session{s: s, id: s.newSessionID(), typ: typ, auth: r.Header("Authorization"), lastSeen: time.Now()}
	ss.c = s.newClient(ss, requestExtra(r))
	if typ == TransportPoll {
		s.pollSessions++ // until forget: a closed session lingers for its last frames
	}
	return ss
}

func (ss *session) kind() string { return ss.typ }

func (ss *session) forget() {
	if !ss.forgotten && ss.typ == TransportPoll {
		ss.s.pollSessions--
	}
	ss.forgotten = true
	if ss.s.sessions[ss.id] == ss {
		delete(ss.s.sessions, ss.id)
		registry.Delete(ss.id)
	}
	ss.s.l.RemoveTimeout(ss.idle)
	ss.s.l.RemoveTimeout(ss.wait)
}

func (ss *session) write(frame []byte) error {
	if ss.es != nil {
		if err := ss.es.Send("", "", frame); err != nil {
			ss.streamGone()
			return err
		}
		return nil
	}
	return ss.push(append([]byte(nil), frame...))
}

func (ss *session) writeBcast(b *bcast) error {
	if ss.es != nil {
		if b.ev == nil {
			b.ev, _ = loop.PrepareEvent("", "", b.frame)
		}
		if err := ss.es.WritePrepared(b.ev); err != nil {
			ss.streamGone()
			return err
		}
		return nil
	}
	return ss.push(b.frame) // shared, never modified
}

func (ss *session) end(code cp.DisconnectCode, reason string, frame []byte) {
	if ss.es != nil {
		_ = ss.es.Send("", "", frame)
		_ = ss.es.Close()
		ss.forget()
		return
	}
	ss.out = append(ss.out, frame)
	ss.closed = true
	if ss.parked != nil {
		ss.answer()
	}
}

// streamGone is the SSE stream's end: the session ends with it.
func (ss *session) streamGone() {
	ss.c.gone()
	ss.forget()
}

// push queues a frame for the polls; past the unsent bound the session
// ends as a slow one's (3001).
func (ss *session) push(frame []byte) error {
	if ss.closed {
		return loop.ErrStreamClosed
	}
	ss.out = append(ss.out, frame)
	ss.bytes += len(frame)
	if ss.bytes > ss.s.lim.MaxUnsent {
		ss.c.Disconnect(cp.DisconnectSlow, "slow")
		return loop.ErrSlowConsumer
	}
	if ss.parked != nil {
		ss.answer()
	}
	return nil
}

// ack drops the frames before next.
func (ss *session) ack(next uint64) {
	for ss.base < next && len(ss.out) > 0 {
		ss.bytes -= len(ss.out[0])
		ss.out[0] = nil
		ss.out = ss.out[1:]
		ss.base++
	}
	if len(ss.out) == 0 {
		ss.out = nil
	}
	if ss.drained != nil && ss.bytes <= ss.drainAt {
		fn := ss.drained
		ss.drained = nil
		fn()
	}
}

// poller is a poll waiting for a session's frames: its request is on
// the session's loop or on another loop of the process (the kernel spreads
// a client's connections over the loops), which answer reaches through
// that loop's queue.
type poller struct {
	// answer finishes the poll with status and body (a JSON object); it
	// runs on the session's loop and copies body when it must.
	answer func(status int, body []byte)
	// relayNode and relayQ name a poll relayed from another process
	// (relay.go), for its unpark.
	relayNode string
	relayQ    uint64
}

// localPoller answers r, on the session's own loop.
func localPoller(r *loop.Request) *poller {
	return &poller{answer: func(status int, body []byte) {
		if r.Finished() || r.Gone() {
			return
		}
		r.SetStatus(status)
		r.SetHeader("Content-Type", "application/json")
		r.SetHeader("Cache-Control", "no-store")
		_ = r.Write(body)
		_ = r.Finish()
	}}
}

// remotePoller answers r, a request of loop rl, from the session's loop.
func remotePoller(r *loop.Request, rl *loop.Loop) *poller {
	local := localPoller(r)
	return &poller{answer: func(status int, body []byte) {
		cp := append([]byte(nil), body...)
		if rl.AddDataCallback(len(cp), func() { local.answer(status, cp) }) != nil {
			rl.AddCallback(func() { _ = r.SendError(503) })
		}
	}}
}

// answer answers the parked poll with every unacknowledged frame.
func (ss *session) answer() {
	p := ss.parked
	ss.parked = nil
	ss.s.l.RemoveTimeout(ss.wait)
	ss.wait = nil
	ss.lastSeen = time.Now()
	// At most maxAnswer bytes of frames (one at least): the client polls
	// again from next for the rest.
	n, k := 32, 0
	for _, f := range ss.out {
		if k > 0 && n+len(f) > maxAnswer {
			break
		}
		n += len(f) + 1
		k++
	}
	body := make([]byte, 0, n)
	body = append(body, `{"frames":[`...)
	for i, f := range ss.out[:k] {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, f...)
	}
	body = append(body, `],"next":`...)
	body = strconv.AppendUint(body, ss.base+uint64(k), 10)
	body = append(body, '}')
	p.answer(200, body)
	if ss.closed && k == len(ss.out) {
		ss.forget()
	}
}

// park holds p until a frame comes or PollWait passes; the poll's
// connection closing calls unpark.
func (ss *session) park(p *poller) {
	if ss.parked != nil {
		ss.answer() // the older poll gets what there is; this one waits
	}
	ss.parked = p
	ss.wait = ss.s.l.CallLater(ss.s.lim.PollWait, func() {
		if ss.parked == p {
			ss.answer()
		}
	})
}

// unpark forgets p, whose client left.
func (ss *session) unpark(p *poller) {
	if ss.parked == p {
		ss.parked = nil
		ss.s.l.RemoveTimeout(ss.wait)
		ss.wait = nil
		ss.lastSeen = time.Now()
	}
}

// poll serves a poll of the session: acknowledge before next, answer at
// once when frames wait, else park. On the session's loop.
func (ss *session) poll(next uint64, p *poller) {
	if next > ss.base+uint64(len(ss.out)) {
		p.answer(400, errorBody(cp.ErrBadRequest, "next is not a frame number of this session"))
		return
	}
	ss.lastSeen = time.Now()
	ss.ack(next)
	ss.park(p)
	if len(ss.out) > 0 || ss.closed {
		ss.answer()
	}
}

// armIdle ends the session when no poll comes for SessionIdle: one timer
// entry per session, pushed back lazily when it fires.
func (ss *session) armIdle(after time.Duration) {
	ss.idle = ss.s.l.CallLater(after, func() {
		ss.idle = nil
		if ss.forgotten {
			return
		}
		left := ss.s.lim.SessionIdle - time.Since(ss.lastSeen)
		if ss.parked != nil || left > 0 {
			ss.armIdle(max(left, 10*time.Millisecond))
			return
		}
		ss.c.Disconnect(cp.DisconnectSessionExpired, "session expired")
		ss.forget()
	})
}

// registry maps the session ids of every Server of the process to their
// sessionRef, so that a poll or command POST that the kernel gave to
// another loop than its session's reaches it.
var registry sync.Map // string -> *sessionRef

// sessionRef is what another loop may read of a session: immutable.
type sessionRef struct {
	s    *Server
	typ  string
	auth string
}

// register makes ss reachable from every loop once its connect
// succeeded. Loop-only.
func (ss *session) register() {
	ss.s.sessions[ss.id] = ss
	registry.Store(ss.id, &sessionRef{s: ss.s, typ: ss.typ, auth: ss.auth})
}

func (s *Server) lookup(id string) *sessionRef {
	if s.localOnly { // tests of the relay: as if each server were a process of its own
		if ss := s.sessions[id]; ss != nil {
			return &sessionRef{s: s, typ: ss.typ, auth: ss.auth}
		}
		return nil
	}
	if v, ok := registry.Load(id); ok {
		return v.(*sessionRef)
	}
	return nil
}

// errorBody is a protocol error object for an HTTP answer:
// {"error": {...}}, no command to answer.
func errorBody(code cp.ErrorCode, msg string) []byte {
	b := cp.AppendError(nil, 0, cp.NewError(code, msg))
	return append([]byte{'{'}, b[len(`{"id":0,`):]...)
}

// commandError answers an emulated transport's request with status and a
// protocol error object.
func commandError(r *loop.Request, status int, code cp.ErrorCode, msg string) {
	r.SetStatus(status)
	r.SetHeader("Content-Type", "application/json")
	_ = r.Write(errorBody(code, msg))
	_ = r.Finish()
}

func (s *Server) serveSSE(r *loop.Request) {
	if r.Method != "GET" {
		r.SetHeader("Allow", "GET")
		_ = r.SendError(405)
		return
	}
	raw := r.GetArgument("connect", "")
	if len(raw) > s.lim.CommandBytes {
		commandError(r, 413, cp.ErrTooLarge, "command too large")
		return
	}
	es, err := r.EventStream(s.o.EventStream)
	if err != nil {
		return
	}
	ss := s.newSession(TransportSSE, r)
	ss.es = es
	r.OnConnectionClose(func() {
		if ss.c.state != stClosed {
			ss.streamGone()
		}
	})
	ss.c.onFrame([]byte(raw))
}

func (s *Server) servePoll(r *loop.Request) {
	switch r.Method {
	case "POST":
		if len(r.Body) > s.lim.CommandBytes {
			commandError(r, 413, cp.ErrTooLarge, "command too large")
			return
		}
		if s.pollSessions >= s.lim.MaxPollSessions {
			r.SetHeader("Retry-After", "1")
			commandError(r, 503, cp.ErrInternal, "server busy")
			return
		}
		ss := s.newSession(TransportPoll, r)
		ss.armIdle(s.lim.SessionIdle)
		r.Async()
		p := localPoller(r)
		r.OnConnectionClose(func() { ss.unpark(p) })
		ss.park(p)
		ss.c.onFrame(bytes.TrimSpace(r.Body))
	case "GET":
		id := r.GetArgument("session", "")
		ref := s.lookup(id)
		next, err := strconv.ParseUint(r.GetArgument("next", ""), 10, 64)
		if ref == nil && err == nil && s.relayPoll(r, id, next) {
			return
		}
		if ref == nil || ref.typ != TransportPoll {
			commandError(r, 404, cp.ErrSessionExpired, "session expired")
			return
		}
		if err != nil {
			commandError(r, 400, cp.ErrBadRequest, "next is not a frame number")
			return
		}
		r.Async()
		if ref.s == s {
			p := localPoller(r)
			ss := s.sessions[id]
			if ss == nil {
				commandError(r, 404, cp.ErrSessionExpired, "session expired")
				return
			}
			r.OnConnectionClose(func() { ss.unpark(p) })
			ss.poll(next, p)
			return
		}
		// The session lives on another loop: it answers through ours.
		p := remotePoller(r, s.l)
		owner := ref.s
		r.OnConnectionClose(func() {
			owner.l.AddCallback(func() {
				if ss := owner.sessions[id]; ss != nil {
					ss.unpark(p)
				}
			})
		})
		owner.l.AddCallback(func() {
			ss := owner.sessions[id]
			if ss == nil {
				p.answer(404, errorBody(cp.ErrSessionExpired, "session expired"))
				return
			}
			ss.poll(next, p)
		})
	default:
		r.SetHeader("Allow", "GET, POST")
		_ = r.SendError(405)
	}
}

func (s *Server) serveCommand(r *loop.Request) {
	if r.Method != "POST" {
		r.SetHeader("Allow", "POST")
		_ = r.SendError(405)
		return
	}
	id := r.GetArgument("session", "")
	ref := s.lookup(id)
	if ref == nil && !s.relays(id) {
		commandError(r, 404, cp.ErrSessionExpired, "session expired")
		return
	}
	if ref != nil && r.Header("Authorization") != "" && r.Header("Authorization") != ref.auth {
		commandError(r, 403, cp.ErrPermissionDenied, "the request's credentials name another identity")
		return
	}
	if len(r.Body) > 16*s.lim.CommandBytes {
		commandError(r, 413, cp.ErrTooLarge, "commands too large")
		return
	}
	var lines [][]byte
	size := 0
	for rest := r.Body; len(rest) > 0; {
		line, tail, _ := bytes.Cut(rest, []byte{'\n'})
		rest = tail
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(line) > s.lim.CommandBytes {
			commandError(r, 413, cp.ErrTooLarge, "command too large")
			return
		}
		if !json.Valid(line) {
			commandError(r, 400, cp.ErrBadRequest, "not one JSON command per line")
			return
		}
		lines = append(lines, line)
		size += len(line)
	}
	if ref == nil {
		// Another process's session: relayed, checked there.
		if size > maxAnswer {
			commandError(r, 413, cp.ErrTooLarge, "commands too large")
			return
		}
		s.relayCommands(id, r.Header("Authorization"), lines)
		r.SetStatus(202)
		_ = r.Finish()
		return
	}
	owner := ref.s
	run := func() {
		ss := owner.sessions[id]
		if ss == nil || ss.closed || ss.c.state == stClosed {
			return // the next poll or the stream tells the client
		}
		ss.lastSeen = time.Now()
		for _, line := range lines {
			ss.c.onFrame(line)
		}
	}
	if owner == s {
		if ss := s.sessions[id]; ss == nil || ss.closed || ss.c.state == stClosed {
			commandError(r, 404, cp.ErrSessionExpired, "session expired")
			return
		}
		r.SetStatus(202)
		_ = r.Finish()
		run()
		return
	}
	// Another loop's session: the lines are copied to it, in order with
	// this client's other POSTs that reach that loop's queue.
	for i, l := range lines {
		lines[i] = append([]byte(nil), l...)
	}
	if err := owner.l.AddDataCallback(size, run); err != nil {
		commandError(r, 503, cp.ErrInternal, "server busy")
		return
	}
	r.SetStatus(202)
	_ = r.Finish()
}
