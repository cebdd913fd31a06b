package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	gws "github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop/realtime/jwtauth"
	cp "github.com/tornago/tornago/proto/clientproto"
)

// protoConn is a protocol client over gorilla on /connection/websocket.
type protoConn struct {
	t    *testing.T
	c    *gws.Conn
	next uint32
}

func dialProto(t *testing.T, addr string) *protoConn {
	t.Helper()
	return &protoConn{t: t, c: dial(t, addr, "/connection/websocket")}
}

// do sends a command and returns the frames up to its reply, the reply
// last; a closed connection ends the list with a frame whose Disconnect
// is the close code.
func (p *protoConn) do(field string, v any) []map[string]json.RawMessage {
	p.t.Helper()
	p.next++
	b, _ := json.Marshal(map[string]any{"id": p.next, field: v})
	if err := p.c.WriteMessage(gws.TextMessage, b); err != nil {
		p.t.Fatal(err)
	}
	var out []map[string]json.RawMessage
	for {
		p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, msg, err := p.c.ReadMessage()
		if err != nil {
			var ce *gws.CloseError
			if !errors.As(err, &ce) {
				p.t.Fatalf("read: %v", err)
			}
			code, _ := json.Marshal(ce.Code)
			return append(out, map[string]json.RawMessage{"closed": code})
		}
		var f map[string]json.RawMessage
		if err := json.Unmarshal(msg, &f); err != nil {
			p.t.Fatalf("frame %s: %v", msg, err)
		}
		out = append(out, f)
		if id, ok := f["id"]; ok && string(id) == jsonNumber(p.next) {
			return out
		}
	}
}

func jsonNumber(n uint32) string { b, _ := json.Marshal(n); return string(b) }

// closedWith reads until the connection closes and returns the close code.
func (p *protoConn) closedWith() int {
	p.t.Helper()
	for {
		p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := p.c.ReadMessage(); err != nil {
			var ce *gws.CloseError
			if !errors.As(err, &ce) {
				p.t.Fatalf("read: %v", err)
			}
			return ce.Code
		}
	}
}

// demoToken is POST /demo/token {"name": name} with c's cookies.
func demoToken(t *testing.T, c *http.Client, addr, name string) (tok, user string) {
	t.Helper()
	resp, err := c.Post("http://"+addr+"/demo/token", "application/json", strings.NewReader(`{"name":`+jsonString(name)+`}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Token, User, Name string
		TTL               int
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 || r.Token == "" || r.Name != name || r.TTL <= 0 {
		t.Fatalf("/demo/token: %d %+v %v", resp.StatusCode, r, err)
	}
	return r.Token, r.User
}

func jsonString(s string) string { b, _ := json.Marshal(s); return string(b) }

// TestBinaryTokenSecret: with TORNAGO_TOKEN_HMAC_SECRET, /demo/token gives
// a browser (its cookie jar) a token whose user stays across calls; the
// protocol connects with it as that user; no token, a bad signature and an
// expired token are refused with 3500, 3500 and 3005; the server API
// disconnects the user's connections (3503) and leaves another user's
// (the canary). Without the secret /demo/token is 404.
func TestBinaryTokenSecret(t *testing.T) {
	bin := buildTornago(t)
	addr, _, _, _ := startBuilt(t, bin)
	resp, err := http.Post("http://"+addr+"/demo/token", "application/json", strings.NewReader(`{"name":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("/demo/token without a secret: %d, want 404", resp.StatusCode)
	}

	const secret = "0123456789abcdef0123456789abcdef-test"
	addr, _, _, stderr := startBuiltEnv(t, bin, freeAddr(t), []string{"TORNAGO_TOKEN_HMAC_SECRET=" + secret, "TORNAGO_API_KEY=k"})
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	tok, user := demoToken(t, browser, addr, "Ada Lovelace")
	tok2, user2 := demoToken(t, browser, addr, "Ada")
	if user2 != user || tok2 == "" {
		t.Errorf("a second token for the same browser: user %q, want %q", user2, user)
	}
	_, other := demoToken(t, &http.Client{Timeout: 5 * time.Second}, addr, "Bob")
	if other == user {
		t.Error("two browsers got the same user")
	}
	for _, bad := range []string{`{}`, `{"name":""}`, `{"name":"` + strings.Repeat("n", 33) + `"}`, `nope`} {
		resp, err := browser.Post("http://"+addr+"/demo/token", "application/json", strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("/demo/token %s: %d, want 400", bad, resp.StatusCode)
		}
	}

	a := dialProto(t, addr)
	fs := a.do("connect", map[string]any{"token": tok})
	var res cp.ConnectResult
	if err := json.Unmarshal(fs[len(fs)-1]["result"], &res); err != nil || !res.Expires || res.TTL <= 0 || res.TTL > 600 {
		t.Fatalf("connect: %s", fs[len(fs)-1])
	}
	// The personal topic of the token's user is the user's.
	if fs := a.do("subscribe", map[string]any{"topic": "user:#" + user}); fs[len(fs)-1]["error"] != nil {
		t.Fatalf("subscribe to the own personal topic: %s", fs[len(fs)-1]["error"])
	}
	if fs := a.do("subscribe", map[string]any{"topic": "user:#" + other}); fs[len(fs)-1]["error"] == nil {
		t.Fatal("subscribed to another user's personal topic")
	}

	expired, _ := jwtauth.SignHS256([]byte(secret), "u1", time.Now().Add(-time.Minute), nil)
	forged, _ := jwtauth.SignHS256([]byte("another secret of 32 bytes or more!"), "u1", time.Now().Add(time.Minute), nil)
	for _, c := range []struct {
		token string
		code  int
	}{{"", 3500}, {forged, 3500}, {expired, 3005}, {"not.a.jwt", 3500}} {
		p := dialProto(t, addr)
		p.do("connect", map[string]any{"token": c.token})
		// The last frame is the close (or the reply, then the close).
		if got := p.closedWithAfter(); got != c.code {
			t.Errorf("token %.20q: closed with %d, want %d", c.token, got, c.code)
		}
	}

	canary := dialProto(t, addr)
	ctok, _ := jwtauth.SignHS256([]byte(secret), "canary", time.Now().Add(time.Minute), nil)
	canary.do("connect", map[string]any{"token": ctok})
	b := dialProto(t, addr) // the same user's second connection
	b.do("connect", map[string]any{"token": tok2})
	if code, body := apiPost(t, addr, "disconnect", "k", `{"user":"`+user+`"}`); code != 200 {
		t.Fatalf("disconnect: %d %s", code, body)
	}
	for i, p := range []*protoConn{a, b} {
		if got := p.closedWith(); got != int(cp.DisconnectForced) {
			t.Errorf("connection %d of the user: closed with %d, want 3503", i, got)
		}
	}
	if fs := canary.do("ping", map[string]any{}); fs[len(fs)-1]["error"] != nil || fs[len(fs)-1]["closed"] != nil {
		t.Errorf("the canary: %s", fs[len(fs)-1])
	}
	if strings.Contains(stderr.String(), secret) {
		t.Errorf("the log shows the secret:\n%s", stderr)
	}
}

// closedWithAfter is closedWith for a connection whose last do may already
// have seen the close.
func (p *protoConn) closedWithAfter() int {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := p.c.ReadMessage(); err != nil {
			var ce *gws.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return -1
		}
	}
}

// TestBinaryTokenPublicKey: with TORNAGO_TOKEN_PUBLIC_KEY (a PEM file of
// an ECDSA P-256 public key), ES256 tokens signed by its private half
// connect as their sub; one signed by another key, an HS256 one (no
// secret configured) and none are refused with 3500, an expired one with
// 3005, beside a canary that stays. No secret: no /demo/token (404). A
// file that is not a public key stops the server with a clear error.
func TestBinaryTokenPublicKey(t *testing.T) {
	bin := buildTornago(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	dir := t.TempDir()
	pubFile := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	es256 := func(k *ecdsa.PrivateKey, user string, exp time.Time) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{Subject: user, ExpiresAt: jwt.NewNumericDate(exp)}).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	addr, _, _, _ := startBuiltEnv(t, bin, freeAddr(t), []string{"TORNAGO_TOKEN_PUBLIC_KEY=" + pubFile})

	canary := dialProto(t, addr)
	fs := canary.do("connect", map[string]any{"token": es256(key, "canary", time.Now().Add(time.Minute))})
	if fs[len(fs)-1]["result"] == nil {
		t.Fatalf("connect with an ES256 token: %s", fs[len(fs)-1])
	}
	a := dialProto(t, addr)
	a.do("connect", map[string]any{"token": es256(key, "u42", time.Now().Add(time.Minute))})
	if fs := a.do("subscribe", map[string]any{"topic": "user:#u42"}); fs[len(fs)-1]["error"] != nil {
		t.Fatalf("subscribe to the token's user's personal topic: %s", fs[len(fs)-1]["error"])
	}
	hs, _ := jwtauth.SignHS256([]byte("0123456789abcdef0123456789abcdef-test"), "u1", time.Now().Add(time.Minute), nil)
	for _, c := range []struct {
		name, token string
		code        int
	}{
		{"another key", es256(other, "u1", time.Now().Add(time.Minute)), 3500},
		{"HS256 without a secret", hs, 3500},
		{"none", "", 3500},
		{"expired", es256(key, "u1", time.Now().Add(-time.Minute)), 3005},
	} {
		p := dialProto(t, addr)
		p.do("connect", map[string]any{"token": c.token})
		if got := p.closedWithAfter(); got != c.code {
			t.Errorf("%s: closed with %d, want %d", c.name, got, c.code)
		}
	}
	if fs := canary.do("ping", map[string]any{}); fs[len(fs)-1]["error"] != nil || fs[len(fs)-1]["closed"] != nil {
		t.Errorf("the canary: %s", fs[len(fs)-1])
	}
	resp, err := http.Post("http://"+addr+"/demo/token", "application/json", strings.NewReader(`{"name":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("/demo/token with a public key only: %d, want 404", resp.StatusCode)
	}

	// A private key where the public one belongs: refused at start.
	privDER, _ := x509.MarshalPKCS8PrivateKey(key)
	privFile := filepath.Join(dir, "priv.pem")
	if err := os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{privFile, filepath.Join(dir, "missing.pem")} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, bin, "-host", "127.0.0.1", "-port", "0", "-token-public-key", f).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "-token-public-key") {
			t.Errorf("-token-public-key %s: %v, want an exit naming the flag:\n%s", filepath.Base(f), err, out)
		}
	}
}
