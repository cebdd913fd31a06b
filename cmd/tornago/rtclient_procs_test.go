package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime/rtclient"
	"github.com/tornago/tornago/proto/clientproto"
)

// startClientLoop starts a loop for the test's Go clients (rtclient), its
// logs discarded (the clients' reconnects are expected), and stops it
// when the test ends.
func startClientLoop(t *testing.T) *loop.Loop {
	t.Helper()
	l := loop.New(loop.Options{TimeoutResolution: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	go l.Start()
	<-l.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
	})
	return l
}

// TestProcsRTClientResumesOnTheOtherProcess: tornago -procs 2 (embedded
// NATS, chat history in JetStream); Go clients (rtclient) subscribed to
// chat:kill, spread over both children by SO_REUSEPORT; a publisher
// publishes 40 messages while one child is killed with SIGKILL. The
// clients of the dead child reconnect (to the survivor or the
// replacement), resubscribe from their positions, and every client gets
// every acknowledged publication exactly once, in order.
func TestProcsRTClientResumesOnTheOtherProcess(t *testing.T) {
	addr, cmd, _, stderr := startBinary(t, "-procs", "2")
	port := portOf(addr)
	kids := waitChildren(t, cmd.Process.Pid, 2, port)

	l := startClientLoop(t)
	url := "ws://" + addr + "/connection/websocket"
	const n = 12
	const topic = "chat:kill"
	var mu sync.Mutex
	got := make([][]string, n)
	var dropped [n]bool
	subscribed := make(chan error, 4*n)
	var clients []*rtclient.Client
	for i := range n {
		o := rtclient.Options{Reconnect: true, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
		o.OnDisconnect = func(_ *rtclient.Client, d clientproto.Disconnect) {
			mu.Lock()
			dropped[i] = true
			mu.Unlock()
		}
		o.OnSubscribe = func(_ *rtclient.Client, _ string, r rtclient.SubscribeResult, err error) {
			if r.Gone {
				err = fmt.Errorf("client %d: resubscription gone", i)
			}
			subscribed <- err
		}
		c, err := rtclient.Dial(l, url, o)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
		c.Subscribe(topic, pubsub.Position{}, func(p rtclient.Publication) {
			var s string
			json.Unmarshal(p.Data, &s)
			mu.Lock()
			got[i] = append(got[i], s)
			mu.Unlock()
		}, nil)
	}
	for range n {
		if err := recv(t, subscribed, "subscribe"); err != nil {
			t.Fatal(err)
		}
	}
	pub, _ := rtclient.Dial(l, url, rtclient.Options{Reconnect: true, MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, Timeout: 10 * time.Second})
	defer pub.Close()

	var acked []string
	killed := false
	for i := 0; i < 40; i++ {
		if i == 10 {
			if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
		msg := "m" + strconv.Itoa(i)
		data, _ := json.Marshal(msg)
		errc := make(chan error, 1)
		pub.Publish(topic, data, func(_ pubsub.Position, err error) { errc <- err })
		if err := recv(t, errc, "publish ack"); err == nil {
			acked = append(acked, msg)
		} else {
			t.Logf("publish %s: %v (not acknowledged: may or may not be delivered)", msg, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !killed || len(acked) < 30 {
		t.Fatalf("only %d of 40 publications acknowledged\n%s", len(acked), stderr)
	}
	// Every client gets every acknowledged message, once, in order.
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		done := true
		for i := range n {
			done = done && containsInOrder(got[i], acked)
		}
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			for i := range n {
				t.Errorf("client %d (dropped %v) got %v", i, dropped[i], got[i])
			}
			mu.Unlock()
			t.Fatalf("want every client to get %v", acked)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for len(subscribed) > 0 {
		if err := <-subscribed; err != nil {
			t.Errorf("resubscription: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	drops := 0
	for i := range n {
		if dropped[i] {
			drops++
		}
		seen := map[string]bool{}
		for _, s := range got[i] {
			if seen[s] {
				t.Errorf("client %d got %s twice: %v", i, s, got[i])
			}
			seen[s] = true
		}
	}
	if drops == 0 {
		t.Fatalf("no client was on the killed child %d (SO_REUSEPORT put all %d on the other): nothing tested", kids[0], n)
	}
	t.Logf("%d of %d clients reconnected after the kill; %d publications acknowledged", drops, n, len(acked))
}

// containsInOrder reports whether got holds every element of want, in
// want's order (got may hold unacknowledged ones in between).
func containsInOrder(got, want []string) bool {
	j := 0
	for _, s := range got {
		if j < len(want) && s == want[j] {
			j++
		}
	}
	return j == len(want)
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
