package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tornago/tornago/loop/realtime/jwtauth"
)

// TestProcsPresenceAcrossChildren: with -procs 2, a presence namespace of
// the config file answers for both children (their heartbeats on the
// embedded NATS), whichever child gets the API request; a leave on one
// child is seen on both.
func TestProcsPresenceAcrossChildren(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-presence"
	bin := buildTornago(t)
	conf := writeConfig(t, "[[namespace]]\nname = \"room\"\npresence = true\njoin_leave = true\n")
	addr, cmd, _, stderr := startBuiltEnv(t, bin, freeAddr(t),
		[]string{"TORNAGO_TOKEN_HMAC_SECRET=" + secret, "TORNAGO_API_KEY=k"}, "-procs", "2", "-loops", "2", "-config", conf)
	port := portOf(addr)
	kids := waitChildren(t, cmd.Process.Pid, 2, port)
	tok, _ := jwtauth.SignHS256([]byte(secret), "alice", time.Now().Add(time.Hour), nil)
	byChild := map[int]*protoConn{}
	for n := 0; len(byChild) < 2; n++ {
		if n == 100 {
			t.Fatalf("100 connections, all on one child")
		}
		p := dialProto(t, addr)
		owner := serverOf(t, kids, port, p.c.NetConn())
		if byChild[owner] != nil {
			p.c.Close()
			continue
		}
		p.do("connect", map[string]any{"token": tok})
		if fs := p.do("subscribe", map[string]any{"topic": "room:a"}); fs[len(fs)-1]["error"] != nil {
			t.Fatalf("subscribe: %s", fs[len(fs)-1]["error"])
		}
		byChild[owner] = p
	}
	// Every answer, from either child, agrees (10 in a row).
	agree := func(want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for row := 0; row < 10; {
			code, body := apiPost(t, addr, "presence_stats", "k", `{"topic":"room:a"}`)
			if code == 200 && strings.Contains(body, want) {
				row++
				continue
			}
			row = 0
			if time.Now().After(deadline) {
				t.Fatalf("presence_stats: %d %s, want %s\n%s", code, body, want, stderr)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	agree(`{"clients":2,"users":1}`)
	for _, p := range byChild {
		p.c.Close()
		break
	}
	agree(`{"clients":1,"users":1}`)
}

// TestProcsJoinLeaveAcrossChildren: with -procs 2, a subscriber of a
// join_leave topic on one child gets the join and the leave of a client
// of the other child (presence deltas on the embedded NATS), and the
// leave of a client whose child is killed (SIGKILL: its members expire
// within 4 heartbeats, 8 s).
func TestProcsJoinLeaveAcrossChildren(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-joinleave"
	bin := buildTornago(t)
	conf := writeConfig(t, "[[namespace]]\nname = \"room\"\npresence = true\njoin_leave = true\n")
	addr, cmd, _, stderr := startBuiltEnv(t, bin, freeAddr(t),
		[]string{"TORNAGO_TOKEN_HMAC_SECRET=" + secret}, "-procs", "2", "-config", conf)
	port := portOf(addr)
	kids := waitChildren(t, cmd.Process.Pid, 2, port)
	token := func(user string) string {
		tok, _ := jwtauth.SignHS256([]byte(secret), user, time.Now().Add(time.Hour), nil)
		return tok
	}
	// onChild connects user to a child other than not (0: any), and
	// returns the connection, its child and its client id.
	onChild := func(user string, not int) (*protoConn, int, string) {
		t.Helper()
		for n := 0; n < 100; n++ {
			p := dialProto(t, addr)
			owner := serverOf(t, kids, port, p.c.NetConn())
			if owner == not {
				p.c.Close()
				continue
			}
			fs := p.do("connect", map[string]any{"token": token(user)})
			var r struct {
				Client string `json:"client"`
			}
			if err := json.Unmarshal(fs[len(fs)-1]["result"], &r); err != nil || r.Client == "" {
				t.Fatalf("connect: %v %s", err, fs[len(fs)-1]["result"])
			}
			return p, owner, r.Client
		}
		t.Fatalf("100 connections, all on child %d", not)
		return nil, 0, ""
	}
	subscribe := func(p *protoConn) {
		t.Helper()
		if fs := p.do("subscribe", map[string]any{"topic": "room:j"}); fs[len(fs)-1]["error"] != nil {
			t.Fatalf("subscribe: %s", fs[len(fs)-1]["error"])
		}
	}
	obs, obsChild, _ := onChild("observer", 0)
	subscribe(obs)
	// waitPush reads the observer's pushes until one names client in
	// field ("join" or "leave").
	waitPush := func(field, client string, within time.Duration) time.Duration {
		t.Helper()
		begin := time.Now()
		for {
			obs.c.SetReadDeadline(begin.Add(within))
			_, msg, err := obs.c.ReadMessage()
			if err != nil {
				t.Fatalf("no %s of %s within %v: %v\n%s", field, client, within, err, stderr)
			}
			var f struct {
				Push map[string]json.RawMessage `json:"push"`
			}
			_ = json.Unmarshal(msg, &f)
			var ms []struct {
				Client string `json:"client"`
				User   string `json:"user"`
			}
			_ = json.Unmarshal(f.Push[field], &ms)
			for _, m := range ms {
				if m.Client == client {
					return time.Since(begin)
				}
			}
		}
	}
	// The children may not know each other yet: the first join may
	// wait for their snapshots (a heartbeat).
	bob, bobChild, bobID := onChild("bob", obsChild)
	subscribe(bob)
	d := waitPush("join", bobID, 5*time.Second)
	t.Logf("join on child %d pushed on child %d after %v", bobChild, obsChild, d)
	bob.c.Close()
	d = waitPush("leave", bobID, 5*time.Second)
	t.Logf("leave pushed after %v", d)
	if d > time.Second {
		t.Fatalf("leave across children after %v, want within about an interval (100 ms) and NATS's latency", d)
	}
	carol, carolChild, carolID := onChild("carol", obsChild)
	subscribe(carol)
	d = waitPush("join", carolID, 5*time.Second)
	t.Logf("join of a second client pushed after %v", d)
	if d > time.Second {
		t.Fatalf("join across children after %v, want within about an interval (100 ms) and NATS's latency", d)
	}
	if err := syscall.Kill(carolChild, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d = waitPush("leave", carolID, 15*time.Second)
	t.Logf("the killed child's member pushed as a leave after %v", d)
	if d > 8*time.Second+time.Second {
		t.Fatalf("leave of a killed child's member after %v, want within 8 s (4 heartbeats) and an interval", d)
	}
}
