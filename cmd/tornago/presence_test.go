package main

import (
	"strings"
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
