package main

// -token-hmac-secret: the protocol's connect tokens are HS256 JWTs signed
// with the secret (claim sub: the user id; exp enforced), checked by
// loop/realtime/jwtauth off the loops; POST /demo/token gives the demo
// page one. -token-public-key: tokens signed with the private half of its
// keys (ES256, RS256, EdDSA) by another service; no demo tokens then
// unless a secret is given too.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/realtime"
	"github.com/tornago/tornago/loop/realtime/jwtauth"
)

// Demo tokens.
const (
	// demoTokenTTL is a demo token's life: short, so that the page's
	// refresh (its getToken) is exercised; the cookie keeps the user id.
	demoTokenTTL = 10 * time.Minute
	// demoUserCookie holds the browser's demo user id, signed: a refresh
	// or a reload gets a token for the same user.
	demoUserCookie = "tornago_demo_user"
	// tokenCookie is where an EventSource's token may come from, as the
	// jwtauth package doc suggests.
	tokenCookie = "tornago_token"
	// maxDemoName bounds a demo name, in characters.
	maxDemoName = 32
)

// tokenAuth is -token-hmac-secret's and -token-public-key's: the
// verifier every loop's Authenticate uses, and the secret that signs demo
// tokens (nil: none, no demo tokens).
type tokenAuth struct {
	secret []byte
	v      *jwtauth.Verifier
	// cookieKey signs the demo user cookie (derived from the secret, so
	// that a cookie is never a token).
	cookieKey []byte
}

// newTokenAuth is the process's token auth, nil without a secret or a
// public key file.
func newTokenAuth(secret, publicKeyFile string) (*tokenAuth, error) {
	if secret == "" && publicKeyFile == "" {
		return nil, nil
	}
	var o jwtauth.Options
	if secret != "" {
		o.HMACSecrets = [][]byte{[]byte(secret)}
	}
	if publicKeyFile != "" {
		pem, err := os.ReadFile(publicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("-token-public-key: %w", err)
		}
		o.PublicKeysPEM = [][]byte{pem}
	}
	v, err := jwtauth.New(o)
	if err != nil {
		if publicKeyFile != "" {
			return nil, fmt.Errorf("-token-public-key %s: %w", publicKeyFile, err)
		}
		return nil, fmt.Errorf("-token-hmac-secret: %w", err)
	}
	a := &tokenAuth{v: v}
	if secret != "" {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte("tornago demo user cookie v1"))
		a.secret, a.cookieKey = []byte(secret), m.Sum(nil)
	}
	return a, nil
}

// Close stops the verifier.
func (a *tokenAuth) Close() { a.v.Close() }

// authError maps jwtauth's errors to the server's.
func authError(err error) error {
	switch {
	case errors.Is(err, jwtauth.ErrExpired):
		return fmt.Errorf("%w: %v", realtime.ErrTokenExpired, err)
	case errors.Is(err, jwtauth.ErrInvalid):
		return fmt.Errorf("%w: %v", realtime.ErrUnauthorized, err)
	}
	return err // ErrUnavailable: temporary
}

// Goroutine-safe. Authenticate is the protocol server's hook: the connect
// command's token, else (EventSource) the tornago_token cookie or an
// Authorization: Bearer header. No token: unauthorized (every user of a
// server with a secret has one).
func (a *tokenAuth) Authenticate(ctx context.Context, c realtime.Credentials) (realtime.Identity, error) {
	tok := c.Token
	if tok == "" {
		tok = jwtauth.FromHeader(c.Header, tokenCookie)
	}
	if tok == "" {
		return realtime.Identity{}, fmt.Errorf("%w: a token is required (POST /demo/token gives one)", realtime.ErrUnauthorized)
	}
	user, exp, info, err := a.v.Connect(ctx, tok)
	if err != nil {
		return realtime.Identity{}, authError(err)
	}
	return realtime.Identity{User: user, ExpiresAt: exp, Info: info}, nil
}

// Goroutine-safe. VerifySubscribeToken is the server's hook for
// namespaces with subscribe_token.
func (a *tokenAuth) VerifySubscribeToken(ctx context.Context, token, user, topic string) (time.Time, error) {
	exp, err := a.v.Subscribe(ctx, token, user, topic)
	return exp, authError(err)
}

// signUser is the demo user cookie's value for id.
func (a *tokenAuth) signUser(id string) string {
	m := hmac.New(sha256.New, a.cookieKey)
	m.Write([]byte(id))
	return id + "." + hex.EncodeToString(m.Sum(nil))
}

// userOf returns the id a demo user cookie holds, "" when it is absent or
// not ours.
func (a *tokenAuth) userOf(cookie string) string {
	id, _, ok := strings.Cut(cookie, ".")
	if !ok || len(id) > 64 || !hmac.Equal([]byte(a.signUser(id)), []byte(cookie)) {
		return ""
	}
	return id
}

// newDemoUser is a fresh demo user id: "u" and 16 hex digits, fit for a
// personal topic (user:#u0123...).
func newDemoUser() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "u" + hex.EncodeToString(b[:])
}

// checkDemoName validates a demo display name.
func checkDemoName(name string) error {
	n := utf8.RuneCountInString(name)
	switch {
	case !utf8.ValidString(name):
		return errors.New("name must be UTF-8")
	case n == 0 || strings.TrimSpace(name) == "":
		return errors.New("name is required")
	case n > maxDemoName:
		return fmt.Errorf("name has %d characters, over %d", n, maxDemoName)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return errors.New("name must be printable")
		}
	}
	return nil
}

// serveDemoToken is POST /demo/token {"name": N}: a connect token for the
// browser's demo user (a signed cookie keeps its id across reloads and
// refreshes), with info {"name": N}, valid demoTokenTTL. Loop-only.
func (a *tokenAuth) serveDemoToken(r *loop.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := r.DecodeJSON(&req); err != nil {
		httpError(r, 400, `the body must be {"name": "..."}`)
		return
	}
	if err := checkDemoName(req.Name); err != nil {
		httpError(r, 400, err.Error())
		return
	}
	user := a.userOf(r.Cookie(demoUserCookie))
	if user == "" {
		user = newDemoUser()
	}
	tok, err := jwtauth.SignHS256(a.secret, user, time.Now().Add(demoTokenTTL), map[string]string{"name": req.Name})
	if err != nil {
		httpError(r, 500, "signing failed")
		return
	}
	r.SetCookie(demoUserCookie, a.signUser(user), "Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=2592000")
	r.SetHeader("Cache-Control", "no-store")
	r.Write(map[string]any{"token": tok, "user": user, "name": req.Name, "ttl": int(demoTokenTTL / time.Second)})
}
