package rtclient

import (
	"encoding/json"
	"fmt"

	"github.com/tornago/tornago/proto/clientproto"
)

// Goroutine-safe.
// Presence asks who is subscribed to topic (which the client subscribed
// to, in a namespace with presence); done (may be nil) gets, on the loop,
// the members (at most the server's bound; truncated says some were left
// out) or the error, as Publish's.
func (c *Client) Presence(topic string, done func(members []clientproto.ClientInfo, truncated bool, err error)) {
	cmd := &command{frame: clientproto.Command{Presence: &clientproto.PresenceRequest{Topic: topic}}}
	if done != nil {
		cmd.done = func(res json.RawMessage, err error) {
			var r clientproto.PresenceResult
			if err == nil {
				if err = json.Unmarshal(res, &r); err != nil {
					err = fmt.Errorf("rtclient: presence result: %w", err)
				}
			}
			done(r.Members, r.Truncated, err)
		}
	}
	c.onLoop(func() { c.do(cmd) })
}

// Goroutine-safe.
// PresenceStats asks how many connections and distinct users are
// subscribed to topic; done as Presence's.
func (c *Client) PresenceStats(topic string, done func(clientproto.PresenceStatsResult, error)) {
	cmd := &command{frame: clientproto.Command{PresenceStats: &clientproto.PresenceRequest{Topic: topic}}}
	if done != nil {
		cmd.done = func(res json.RawMessage, err error) {
			var r clientproto.PresenceStatsResult
			if err == nil {
				if err = json.Unmarshal(res, &r); err != nil {
					err = fmt.Errorf("rtclient: presence_stats result: %w", err)
				}
			}
			done(r, err)
		}
	}
	c.onLoop(func() { c.do(cmd) })
}
