package main

// The server API (-api-key): POST /api/<method> (loop/realtime's API) on
// every loop. Topic "chat" is the seeds' chat: a publish reaches the /ws
// clients (and the long-poll and SSE chat) exactly as /receive does; every
// other topic is the protocol server's.

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"unicode/utf8"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
	"github.com/tornago/tornago/proto/clientproto"
)

// newDemoAPI is the process's server API, nil without -api-key. Through
// broker (the NATS broker of -nats or -procs; nil: none) disconnect and
// subscribe reach every process.
func newDemoAPI(cfg serverConfig, broker pubsub.Broker, log *slog.Logger) (*realtime.API, error) {
	if cfg.apiKey == "" {
		return nil, nil
	}
	api, err := realtime.NewAPI(realtime.APIOptions{Key: cfg.apiKey, Broker: broker, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("server api: %w", err)
	}
	return api, nil
}

// demoBackend is one loop's realtime.APIBackend in the demo binary.
type demoBackend struct {
	l *loop.Loop
	// chat is the seeds' hub of topic "chat".
	chat *loop.Hub
	// positioned says chat has no broker, so that right after a publish
	// its head is the message's position (through a broker the position
	// comes later, with the delivery).
	positioned bool
	// rt is the loop's protocol server; nil: none (every other topic is
	// then unknown).
	rt realtime.APIBackend
}

// newDemoBackend is loop l's backend, from its demos (node).
func newDemoBackend(l *loop.Loop, node *demoNode, env *demoEnv) *demoBackend {
	b := &demoBackend{l: l, chat: node.chat, positioned: env.broker == nil}
	if node.rt != nil {
		b.rt = node.rt.APIBackend()
	}
	return b
}

// errUnknownTopic answers a topic no one serves.
func errUnknownTopic(topic string) error {
	return &clientproto.Error{Code: clientproto.ErrUnknownTopic, Message: "unknown topic " + strconv.Quote(topic)}
}

// chatText is what data, a publish's JSON value, is as a chat message: a
// JSON string its text, any other value its JSON encoding; with /receive's
// checks (not empty, UTF-8, at most -receive-bytes).
func chatText(data json.RawMessage) ([]byte, error) {
	text := []byte(data)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, &clientproto.Error{Code: clientproto.ErrBadRequest, Message: "data: " + err.Error()}
		}
		text = []byte(s)
	}
	switch {
	case len(text) == 0:
		return nil, &clientproto.Error{Code: clientproto.ErrBadRequest, Message: "a chat message must not be empty"}
	case !utf8.Valid(text):
		return nil, &clientproto.Error{Code: clientproto.ErrBadRequest, Message: "a chat message must be valid UTF-8"}
	case len(text) > receiveMax:
		return nil, &clientproto.Error{Code: clientproto.ErrTooLarge,
			Message: fmt.Sprintf("a chat message is %d bytes, over the limit of %d bytes", len(text), receiveMax)}
	}
	return text, nil
}

// Goroutine-safe. PublishAsync implements realtime.APIBackend.
func (b *demoBackend) PublishAsync(topic string, data json.RawMessage, done func(pubsub.Position, error)) {
	if topic != chatTopic {
		if b.rt == nil {
			done(pubsub.Position{}, errUnknownTopic(topic))
			return
		}
		b.rt.PublishAsync(topic, data, done)
		return
	}
	text, err := chatText(data)
	if err != nil {
		done(pubsub.Position{}, err)
		return
	}
	b.l.AddCallback(func() {
		// As /receive does (demos.go).
		if err := b.chat.Publish(chatTopic, text); err != nil {
			done(pubsub.Position{}, err)
			return
		}
		var pos pubsub.Position
		if b.positioned {
			pos, _ = b.chat.Head(chatTopic)
		}
		done(pos, nil)
	})
}

// Goroutine-safe. DisconnectUser implements realtime.APIBackend: the
// seeds' routes know no users.
func (b *demoBackend) DisconnectUser(user string, code clientproto.DisconnectCode, reason string) {
	if b.rt != nil {
		b.rt.DisconnectUser(user, code, reason)
	}
}

// Goroutine-safe. SubscribeUser implements realtime.APIBackend.
func (b *demoBackend) SubscribeUser(user, topic string) {
	if b.rt != nil {
		b.rt.SubscribeUser(user, topic)
	}
}

// Loop-only. History implements realtime.APIBackend: the chat's kept
// messages as JSON strings.
func (b *demoBackend) History(topic string, since pubsub.Position, done func([]pubsub.Message, pubsub.Position, error)) {
	if topic != chatTopic {
		if b.rt == nil {
			done(nil, pubsub.Position{}, errUnknownTopic(topic))
			return
		}
		b.rt.History(topic, since, done)
		return
	}
	msgs, head, err := b.chat.History(chatTopic, since, nil)
	for i := range msgs {
		js, _ := json.Marshal(string(msgs[i].Data)) // UTF-8: checked on the way in
		msgs[i].Data = js
	}
	done(msgs, head, err)
}

// Presence answers the server API's presence from the loop's protocol
// server (a realtime.PresenceBackend).
func (b *demoBackend) Presence(topic string) ([]clientproto.ClientInfo, bool, error) {
	pb, ok := b.rt.(realtime.PresenceBackend)
	if !ok {
		return nil, false, errUnknownTopic(topic)
	}
	return pb.Presence(topic)
}

// PresenceStats is Presence's counts.
func (b *demoBackend) PresenceStats(topic string) (clientproto.PresenceStatsResult, error) {
	pb, ok := b.rt.(realtime.PresenceBackend)
	if !ok {
		return clientproto.PresenceStatsResult{}, errUnknownTopic(topic)
	}
	return pb.PresenceStats(topic)
}
