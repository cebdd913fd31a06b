package rtclient_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime"
	"github.com/tornago/tornago/loop/realtime/rtclient"
	"github.com/tornago/tornago/proto/clientproto"
)

// subUntil is a test subscription token of user for topic valid for d
// (read by subTokenVerify).
func subUntil(user, topic string, d time.Duration) string {
	return user + ";" + topic + ";" + strconv.FormatInt(time.Now().Add(d).UnixMilli(), 10)
}

// subTokenVerify checks subUntil's tokens and counts the checks.
func subTokenVerify(checks *atomic.Int32) func(context.Context, string, string, string) (time.Time, error) {
	return func(_ context.Context, token, user, topic string) (time.Time, error) {
		checks.Add(1)
		parts := strings.Split(token, ";")
		if len(parts) != 3 || parts[0] != user || parts[1] != topic {
			return time.Time{}, errors.New("bad token")
		}
		ms, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil {
			return time.Time{}, err
		}
		return time.UnixMilli(ms), nil
	}
}

// TestRealServerSubscriptionExpiry: with SubscribeOptions.GetToken a
// subscription whose 1.5 s token expires lives on (sub_refresh at four
// fifths of the ttl); without it, it ends at the expiry (109); when a
// refresh was refused and the server ended it, the client gets a new
// token and subscribes again from its position, missing nothing.
func TestRealServerSubscriptionExpiry(t *testing.T) {
	var checks atomic.Int32
	srv := startRT(t, freeAddr(t), nil, realtime.Options{
		Namespaces: append([]realtime.Namespace{{Name: "private", SubscribeToken: true,
			History: pubsub.HistoryOptions{MaxMessages: 100}}}, rtNamespaces...),
		Authenticate: func(_ context.Context, cr realtime.Credentials) (realtime.Identity, error) {
			return realtime.Identity{User: cr.Token}, nil
		},
		VerifySubscribeToken: subTokenVerify(&checks),
	})
	l := clientLoop(t)
	ev := make(events, 100)
	errs := make(chan error, 10)
	o := ev.options(rtclient.Options{Token: "ann"})
	o.OnError = func(_ *rtclient.Client, err error) { errs <- err }
	c, _ := rtclient.Dial(l, srv.url, o)
	defer c.Close()

	// Refreshed: lives on past several expiries.
	pubsA := make(chan rtclient.Publication, 10)
	subbed := make(chan rtclient.SubscribeResult, 10)
	c.SubscribeWith("private:a", rtclient.SubscribeOptions{GetToken: func(_ context.Context, topic string) (string, error) {
		return subUntil("ann", topic, 1500*time.Millisecond), nil
	}}, func(p rtclient.Publication) { pubsA <- p }, func(r rtclient.SubscribeResult, err error) {
		if err != nil {
			t.Error(err)
		}
		subbed <- r
	})
	if r := recv(t, subbed, "subscribe private:a"); r.TTL != time.Second {
		t.Errorf("subscribe result %+v, want a ttl of 1 s", r)
	}
	ev.expect(t, "subscribe private:a head")

	// Not refreshed (a token, no GetToken): ends at its expiry.
	pubsB := make(chan rtclient.Publication, 10)
	c.SubscribeWith("private:b", rtclient.SubscribeOptions{Token: subUntil("ann", "private:b", time.Second)},
		func(p rtclient.Publication) { pubsB <- p }, nil)
	ev.expect(t, "subscribe private:b head")
	ev.expect(t, "subscribe private:b error "+realtime.SubscriptionExpiredReason)

	time.Sleep(3500 * time.Millisecond)
	srv.publish(t, "private:a", `"a"`)
	srv.publish(t, "private:b", `"b"`)
	if p := recv(t, pubsA, "private:a's publication"); string(p.Data) != `"a"` {
		t.Errorf("private:a: %s", p.Data)
	}
	select {
	case p := <-pubsB:
		t.Errorf("private:b after its expiry: %s", p.Data)
	case e := <-ev:
		t.Errorf("event while refreshing: %s", e)
	case err := <-errs:
		t.Errorf("error while refreshing: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if n := checks.Load(); n < 5 {
		t.Errorf("%d token checks (2 subscribes and the refreshes), want at least 5", n)
	}

	// A refresh refused (GetToken gives a token for another topic): the
	// server ends the subscription at its expiry; the client gets a new
	// token and subscribes again from its position.
	var calls atomic.Int32
	pubsC := make(chan rtclient.Publication, 10)
	c.SubscribeWith("private:c", rtclient.SubscribeOptions{GetToken: func(_ context.Context, topic string) (string, error) {
		switch calls.Add(1) {
		case 1:
			return subUntil("ann", topic, 1500*time.Millisecond), nil
		case 2:
			return subUntil("ann", "private:other", time.Hour), nil
		}
		time.Sleep(300 * time.Millisecond) // a publication comes meanwhile
		return subUntil("ann", topic, time.Hour), nil
	}}, func(p rtclient.Publication) { pubsC <- p }, nil)
	ev.expect(t, "subscribe private:c head")
	srv.publish(t, "private:c", `1`)
	var pe *clientproto.Error
	if err := recv(t, errs, "the refused sub_refresh"); !errors.As(err, &pe) || pe.Code != clientproto.ErrPermissionDenied {
		t.Errorf("refresh error %v, want 103", err)
	}
	ev.expect(t, "subscribe private:c error "+realtime.SubscriptionExpiredReason)
	srv.publish(t, "private:c", `2`)
	ev.expect(t, "subscribe private:c head")
	srv.publish(t, "private:c", `3`)
	for i, want := range []string{"1", "2", "3"} {
		p := recv(t, pubsC, "private:c's publication")
		if string(p.Data) != want || p.Pos.Offset != int64(i+1) {
			t.Errorf("publication %d: %s at %v, want %s at offset %d", i, p.Data, p.Pos, want, i+1)
		}
	}
	select {
	case p := <-pubsC:
		t.Errorf("more publications: %s", p.Data)
	case <-time.After(100 * time.Millisecond):
	}
}
