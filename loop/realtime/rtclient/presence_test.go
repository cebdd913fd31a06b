package rtclient_test

import (
	"context"
	"testing"

	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
	"github.com/tornago/tornago/loop/realtime/rtclient"
	"github.com/tornago/tornago/proto/clientproto"
)

// TestPresenceAndJoinLeave: the Go client's Presence, PresenceStats and
// OnJoinLeave against the real server.
func TestPresenceAndJoinLeave(t *testing.T) {
	srv := startRT(t, freeAddr(t), nil, realtime.Options{
		Namespaces: []realtime.Namespace{{Name: "room", Presence: true, JoinLeave: true}},
		Presence:   realtime.NewPresenceGroup(),
		Authenticate: func(_ context.Context, c realtime.Credentials) (realtime.Identity, error) {
			return realtime.Identity{User: c.Token}, nil
		},
	})
	l := clientLoop(t)
	joins := make(chan *clientproto.TopicPush, 10)
	a, err := rtclient.Dial(l, srv.url, rtclient.Options{Token: "ann",
		OnJoinLeave: func(_ *rtclient.Client, p *clientproto.TopicPush) { joins <- p }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	subbed := make(chan error, 4)
	a.Subscribe("room:1", pubsub.Position{}, nil, func(_ rtclient.SubscribeResult, err error) { subbed <- err })
	if err := recv(t, subbed, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, joins, "own join"); len(p.Join) != 1 || p.Join[0].User != "ann" {
		t.Fatalf("join push %+v", p)
	}
	b, err := rtclient.Dial(l, srv.url, rtclient.Options{Token: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	b.Subscribe("room:1", pubsub.Position{}, nil, func(_ rtclient.SubscribeResult, err error) { subbed <- err })
	if err := recv(t, subbed, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, joins, "bob's join"); len(p.Join) != 1 || p.Join[0].User != "bob" {
		t.Fatalf("join push %+v", p)
	}
	type pres struct {
		ms  []clientproto.ClientInfo
		err error
	}
	got := make(chan pres, 1)
	a.Presence("room:1", func(ms []clientproto.ClientInfo, _ bool, err error) { got <- pres{ms, err} })
	if r := recv(t, got, "presence"); r.err != nil || len(r.ms) != 2 {
		t.Fatalf("presence %+v", r)
	}
	stats := make(chan clientproto.PresenceStatsResult, 1)
	a.PresenceStats("room:1", func(st clientproto.PresenceStatsResult, err error) {
		if err != nil {
			t.Error(err)
		}
		stats <- st
	})
	if st := recv(t, stats, "presence_stats"); st.Clients != 2 || st.Users != 2 {
		t.Fatalf("stats %+v", st)
	}
	b.Close()
	if p := recv(t, joins, "bob's leave"); len(p.Leave) != 1 || p.Leave[0].User != "bob" {
		t.Fatalf("leave push %+v", p)
	}
}
