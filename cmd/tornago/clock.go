package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
)

// clockClaimTopic is the broker topic on which a /clock?Id=X connection
// claims its Id, so that a second connection with the same Id replaces the
// first on whichever loop or process the first one lives.
const clockClaimTopic = "clock-claims"

// clockTopic is the ticks' history topic on each loop's clock hub. A tick's
// position is Position{clockEpoch, its Unix second}: every loop and
// process names a tick alike without sharing anything, so a client
// resumes on any of them; a gap in the seconds (a restart) is a gap in the
// history, which the client is told of.
const (
	clockTopic = "clock"
	clockEpoch = 1
)

// clock pushes the time every second to every client, from a
// PeriodicCallback on the loop (the tutorial pushed from a thread). One
// clock runs per loop; every loop ticks on the same whole second, and a
// tick's seq is that second (Unix time), so a tick is the same tick on
// every loop and process.
type clock struct {
	loop.WebSocketBase
	l      *loop.Loop
	log    *slog.Logger
	broker pubsub.Broker // nil: one loop, Ids are replaced locally
	node   string        // this loop's name in claims: pid.loop
	byID   map[string]*clockHolder
	// hub frames each tick once for every client of the loop and keeps
	// the last clockHistory ticks for /clock?since=, /sse and the polls.
	hub     *loop.Hub
	lastSec int64 // the last second published
	claims  int64
}

// clockHolder is the connection holding an Id on this loop. Its claim
// carries nonce; it is confirmed once its own claim came back from the
// broker. A claim for the same Id that arrives after that is newer, and
// replaces it; one that arrives before is older, and is ignored. With one
// order of delivery for every subscriber (one NATS server, MemoryBroker),
// the newest connection wins everywhere.
type clockHolder struct {
	ws        *loop.WebSocket
	id, nonce string
	confirmed bool
}

func newClock(l *loop.Loop, broker pubsub.Broker, node string, log *slog.Logger) *clock {
	c := &clock{l: l, log: log, broker: broker, node: node,
		byID: map[string]*clockHolder{}, hub: loop.NewHub(l, loop.Text, nil)}
	c.hub.KeepHistory(clockTopic, pubsub.HistoryOptions{MaxMessages: clockHistory}, nil) // no broker: cannot fail
	if broker != nil {
		cancel, err := broker.Subscribe(clockClaimTopic, func(data []byte) {
			l.AddCallback(func() { c.onClaim(string(data)) })
		})
		if err != nil {
			log.Warn("clock: Ids are replaced on this loop only", "err", err)
			c.broker = nil
		} else {
			l.AddOnStop(cancel)
		}
	}
	// Tick on whole seconds, on every loop alike.
	next := time.Now().Truncate(time.Second).Add(time.Second)
	pc := l.NewPeriodicCallback(c.tick, time.Second, 0)
	l.CallAt(next, func() { c.tick(); pc.Start() })
	return c
}

func (c *clock) Open(ws *loop.WebSocket) {
	if since, ok := sinceArgument(ws.Request()); ok {
		if !subscribeSince(c.hub, clockTopic, ws, since) {
			return
		}
	} else if err := c.hub.Subscribe(clockTopic, ws); err != nil {
		return // closing already
	}
	id := ws.Request().GetArgument("Id", "")
	if id == "" {
		return
	}
	c.replace(id)
	c.claims++
	h := &clockHolder{ws: ws, id: id, nonce: fmt.Sprintf("%s.%d", c.node, c.claims)}
	c.byID[id] = h
	ws.SetContext(h)
	if c.broker == nil {
		h.confirmed = true
		return
	}
	if err := c.broker.Publish(clockClaimTopic, []byte(id+"\n"+h.nonce)); err != nil {
		// The broker is down: the Id is replaced on this loop only.
		c.log.Warn("clock: claim not published", "id", id, "err", err)
		h.confirmed = true
	}
}

// replace closes this loop's holder of id, if any.
func (c *clock) replace(id string) {
	if old := c.byID[id]; old != nil {
		delete(c.byID, id)
		old.ws.SetContext(nil)
		old.ws.Close(4000, "replaced by a new connection with the same Id")
	}
}

// onClaim handles a claim from any loop, this one included. Loop-only.
func (c *clock) onClaim(claim string) {
	id, nonce, ok := strings.Cut(claim, "\n")
	h := c.byID[id]
	if !ok || h == nil {
		return
	}
	if h.nonce == nonce {
		h.confirmed = true
		return
	}
	if h.confirmed {
		c.replace(id)
	}
}

func (c *clock) OnClose(ws *loop.WebSocket) {
	if h, ok := ws.Context().(*clockHolder); ok && c.byID[h.id] == h {
		delete(c.byID, h.id)
	}
}

func (c *clock) tick() {
	now := time.Now()
	sec := now.Round(time.Second).Unix()
	if c.lastSec != 0 && sec > c.lastSec+1 && sec-c.lastSec <= clockHistory {
		// Seconds the loop was too busy to tick (a PeriodicCallback skips
		// them): publish them now, marked late, so that the history stays
		// contiguous and clients resuming across them are not told it is
		// gone.
		for s := c.lastSec + 1; s < sec; s++ {
			c.publish(now, s, true)
		}
	}
	c.publish(now, sec, false)
}

func (c *clock) publish(now time.Time, sec int64, late bool) {
	if sec <= c.lastSec {
		return
	}
	c.lastSec = sec
	m := map[string]any{"time": now.Format(time.RFC3339Nano), "ts": now.UnixNano(), "seq": sec}
	if late {
		m["late"] = true
	}
	msg, _ := json.Marshal(m)
	c.hub.PublishAt(clockTopic, pubsub.Position{Epoch: clockEpoch, Offset: sec}, msg)
}
