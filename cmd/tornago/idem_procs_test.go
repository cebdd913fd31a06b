package main

import (
	"encoding/json"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tornago/tornago/loop/pubsub"
	"github.com/tornago/tornago/loop/realtime/rtclient"
)

// holdProxy is a TCP proxy to addr whose server-to-client bytes are
// dropped while hold is set (a reply that never arrives); a connection
// whose upstream ends is closed.
type holdProxy struct {
	ln   net.Listener
	hold atomic.Bool
	mu   sync.Mutex
	up   net.Conn   // the newest upstream connection
	ups  []net.Conn // every upstream connection
}

func startHoldProxy(t *testing.T, addr string) *holdProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				down.Close()
				continue
			}
			p.mu.Lock()
			p.up = up
			p.ups = append(p.ups, up)
			p.mu.Unlock()
			go func() { io.Copy(up, down); up.Close() }()
			go func() {
				defer down.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := up.Read(buf)
					if n > 0 && !p.hold.Load() {
						if _, werr := down.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *holdProxy) upstream() net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up
}

// first returns the first upstream connection, or nil.
func (p *holdProxy) first() net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ups) == 0 {
		return nil
	}
	return p.ups[0]
}

// cut closes every connection so far (each client side follows).
func (p *holdProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, up := range p.ups {
		up.Close()
	}
	p.ups = nil
}

// TestProcsPublishOnceAfterKill: tornago -procs 2 (embedded NATS, chat
// history in JetStream). A Go client publishes through a proxy that holds
// back the reply; once the publication reached a subscriber, the child
// that took the publish is killed (SIGKILL) before its reply. The client
// reconnects (to another process: that one is dead) and sends the publish
// again with the same idempotency key: JetStream drops the duplicate, the
// client gets its ack, and the subscriber sees the publication once.
func TestProcsPublishOnceAfterKill(t *testing.T) {
	addr, cmd, _, stderr := startBinary(t, "-procs", "2")
	port := portOf(addr)
	kids := waitChildren(t, cmd.Process.Pid, 2, port)
	l := startClientLoop(t)
	const topic = "chat:idem"
	var mu sync.Mutex
	var got []string
	at := map[string]pubsub.Position{} // where the subscriber saw each
	subscribed := make(chan error, 4)
	sub, err := rtclient.Dial(l, "ws://"+addr+"/connection/websocket", rtclient.Options{Reconnect: true, MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		OnSubscribe: func(_ *rtclient.Client, _ string, _ rtclient.SubscribeResult, err error) { subscribed <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	sub.Subscribe(topic, pubsub.Position{}, func(p rtclient.Publication) {
		var s string
		json.Unmarshal(p.Data, &s)
		mu.Lock()
		got = append(got, s)
		at[s] = p.Pos
		mu.Unlock()
	}, nil)
	if err := recv(t, subscribed, "subscribe"); err != nil {
		t.Fatal(err)
	}
	count := func(s string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, g := range got {
			if g == s {
				n++
			}
		}
		return n
	}
	waitGot := func(s string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); count(s) == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the subscriber did not get %q\n%s", s, stderr)
			}
		}
	}

	proxy := startHoldProxy(t, addr)
	pub, err := rtclient.Dial(l, "ws://"+proxy.ln.Addr().String()+"/connection/websocket",
		rtclient.Options{Reconnect: true, MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	acked := map[string]pubsub.Position{} // each publish's reply
	publish := func(s string) <-chan error {
		errc := make(chan error, 1)
		data, _ := json.Marshal(s)
		pub.Publish(topic, data, func(p pubsub.Position, err error) {
			mu.Lock()
			acked[s] = p
			mu.Unlock()
			errc <- err
		})
		return errc
	}
	if err := recv(t, publish("warm"), "publish ack"); err != nil {
		t.Fatal(err)
	}
	waitGot("warm")

	proxy.hold.Store(true)
	once := publish("once")
	waitGot("once") // published; its reply held back
	owner := serverOf(t, kids, port, proxy.upstream())
	if owner == 0 {
		t.Fatal("no child holds the publisher's connection")
	}
	proxy.hold.Store(false)
	if err := syscall.Kill(owner, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, once, "the retried publish's ack"); err != nil {
		t.Fatalf("retried publish: %v\n%s", err, stderr)
	}
	if err := recv(t, publish("end"), "publish ack"); err != nil {
		t.Fatal(err)
	}
	waitGot("end")
	if n := count("once"); n != 1 {
		mu.Lock()
		t.Fatalf("the subscriber got %q %d times: %v", "once", n, got)
	}
	// Through NATS the reply carries the publication's position; the
	// retry's, from the other process, the first's (JetStream's dedup).
	mu.Lock()
	defer mu.Unlock()
	for _, s := range []string{"warm", "once", "end"} {
		if acked[s] == (pubsub.Position{}) || acked[s] != at[s] {
			t.Errorf("the publish of %q was acknowledged with pos %q; the subscriber saw it at %q", s, acked[s], at[s])
		}
	}
	t.Logf("child %d killed before its reply; the retry on another process was acknowledged and not published again", owner)
}
