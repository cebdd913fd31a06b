package realtime

// Relaying the emulated transports across processes. Several processes
// share a port (SO_REUSEPORT: tornago -procs), and the kernel gives each
// new connection to any of them, so a poll or a command POST may reach
// another process than its session's. The session id starts with its
// server's node; a process that does not hold the session sends the
// request over Options.Relay (the broker) to the topic of that node, whose
// server answers a poll over the asker's own node topic.

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/tornago/tornago/loop"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// relayMsg is one message between servers over the relay.
type relayMsg struct {
	T string            `json:"t"`           // "cmd", "poll", "unpark", "ans"
	S string            `json:"s,omitempty"` // session id
	A string            `json:"a,omitempty"` // the POST's Authorization header
	L []json.RawMessage `json:"l,omitempty"` // commands
	N uint64            `json:"n,omitempty"` // a poll's next
	R string            `json:"r,omitempty"` // the asking node
	Q uint64            `json:"q,omitempty"` // the asking node's poll number
	C int               `json:"c,omitempty"` // an answer's HTTP status
	B json.RawMessage   `json:"b,omitempty"` // an answer's body
}

// relayReq is a poll of this loop waiting for another process's answer.
type relayReq struct {
	r     *loop.Request
	timer *loop.Timeout
}

func relayTopic(node string) string { return HubTopicPrefix + "relay." + node }

// startRelay subscribes the server to its node's relay topic, off the
// loop (a broker may block).
func (s *Server) startRelay() {
	b := s.o.Relay
	if b == nil {
		return
	}
	go func() {
		if _, err := b.Subscribe(relayTopic(s.node), func(data []byte) {
			_ = s.l.AddDataCallback(len(data), func() { s.onRelay(data) })
		}); err != nil {
			s.log.Error("realtime: relay subscribe: sessions of this process are not reachable from others", "err", err)
		}
	}()
}

// relays reports whether a request for session id goes to another process.
func (s *Server) relays(id string) bool {
	node := sessionNode(id)
	if s.o.Relay == nil || len(node) != len(s.node) || node == s.node {
		return false
	}
	for i := 0; i < len(node); i++ { // hex: a forged id names no other subject
		if c := node[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (s *Server) relaySend(node string, m relayMsg) {
	b, err := json.Marshal(m)
	if err == nil {
		err = s.o.Relay.Publish(relayTopic(node), b)
	}
	if err != nil {
		s.log.Debug("realtime: relay", "node", node, "err", err) // a forged id can cause it: no warning per request
	}
}

// relayCommands sends command lines to session id's process.
func (s *Server) relayCommands(id, auth string, lines [][]byte) {
	m := relayMsg{T: "cmd", S: id, A: auth, L: make([]json.RawMessage, len(lines))}
	for i, l := range lines {
		m.L[i] = l
	}
	s.relaySend(sessionNode(id), m)
}

// relayPoll parks r and asks session id's process for its frames; false
// when id is not another process's.
func (s *Server) relayPoll(r *loop.Request, id string, next uint64) bool {
	if !s.relays(id) {
		return false
	}
	r.Async()
	s.relaySeq++
	q := s.relaySeq
	node := sessionNode(id)
	rq := &relayReq{r: r}
	s.relayReqs[q] = rq
	// Nothing came back (the process is gone, or the answer was lost):
	// an empty answer, and the client polls again.
	rq.timer = s.l.CallLater(s.lim.PollWait+5*time.Second, func() {
		if s.relayReqs[q] == rq {
			delete(s.relayReqs, q)
			answerRelayed(r, 200, []byte(`{"frames":[],"next":`+strconv.FormatUint(next, 10)+`}`))
		}
	})
	r.OnConnectionClose(func() {
		if s.relayReqs[q] == rq {
			delete(s.relayReqs, q)
			s.l.RemoveTimeout(rq.timer)
			s.relaySend(node, relayMsg{T: "unpark", S: id, R: s.node, Q: q})
		}
	})
	s.relaySend(node, relayMsg{T: "poll", S: id, N: next, R: s.node, Q: q})
	return true
}

func answerRelayed(r *loop.Request, status int, body []byte) {
	if r.Finished() || r.Gone() {
		return
	}
	r.SetStatus(status)
	r.SetHeader("Content-Type", "application/json")
	r.SetHeader("Cache-Control", "no-store")
	_ = r.Write(body)
	_ = r.Finish()
}

// onRelay handles a relay message on the loop.
func (s *Server) onRelay(data []byte) {
	var m relayMsg
	if err := json.Unmarshal(data, &m); err != nil {
		s.log.Warn("realtime: relay message that is not one", "err", err)
		return
	}
	switch m.T {
	case "cmd":
		ss := s.sessions[m.S]
		if ss == nil || ss.closed || ss.c.state == stClosed || m.A != "" && m.A != ss.auth {
			return
		}
		ss.lastSeen = time.Now()
		for _, l := range m.L {
			if len(l) > s.lim.CommandBytes {
				ss.c.Disconnect(cp.DisconnectTooLarge, "command too large")
				return
			}
			ss.c.onFrame(l)
		}
	case "poll":
		node, q := m.R, m.Q
		p := &poller{relayNode: node, relayQ: q, answer: func(status int, body []byte) {
			s.relaySend(node, relayMsg{T: "ans", Q: q, C: status, B: body})
		}}
		ss := s.sessions[m.S]
		if ss == nil || ss.typ != TransportPoll {
			p.answer(404, errorBody(cp.ErrSessionExpired, "session expired"))
			return
		}
		ss.poll(m.N, p)
	case "unpark":
		if ss := s.sessions[m.S]; ss != nil && ss.parked != nil && ss.parked.relayNode == m.R && ss.parked.relayQ == m.Q {
			ss.unpark(ss.parked)
		}
	case "ans":
		rq := s.relayReqs[m.Q]
		if rq == nil {
			return
		}
		delete(s.relayReqs, m.Q)
		s.l.RemoveTimeout(rq.timer)
		status := m.C
		if status == 0 {
			status = 200
		}
		answerRelayed(rq.r, status, m.B)
	}
}
