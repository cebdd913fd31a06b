package jwtauth

import (
	"context"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// jwksServer is a real HTTP JWKS endpoint on 127.0.0.1 whose keys the test
// changes, counting the fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	block   chan struct{} // non-nil: requests wait for it to close
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{status: http.StatusOK, body: []byte(`{"keys":[]}`)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		body, status, block := s.body, s.status, s.block
		s.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

// setKeys publishes public keys under their kids.
func (s *jwksServer) setKeys(t *testing.T, keys map[string]any) {
	t.Helper()
	var set jwkset.JWKSMarshal
	for kid, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	s.set(b, http.StatusOK)
}

func (s *jwksServer) set(body []byte, status int) {
	s.mu.Lock()
	s.body, s.status = body, status
	s.mu.Unlock()
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func jwksVerifier(t *testing.T, o Options) *Verifier {
	t.Helper()
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestJWKSRotation(t *testing.T) {
	srv := newJWKSServer(t)
	ec1, ec2 := mustEC(t, elliptic.P256()), mustEC(t, elliptic.P256())
	k := genKeys(t)
	srv.setKeys(t, map[string]any{"k1": &ec1.PublicKey, "r1": &k.rsa.PublicKey, "e1": k.ed.Public()})
	v := jwksVerifier(t, Options{JWKSURL: srv.URL, JWKSUnknownKIDGap: time.Millisecond})
	live := time.Now().Add(time.Hour)
	ctx := context.Background()
	for name, tok := range map[string]string{
		"ES256 k1": mint(t, jwt.SigningMethodES256, ec1, "k1", claimsFor("42", live)),
		"RS256 r1": mint(t, jwt.SigningMethodRS256, k.rsa, "r1", claimsFor("42", live)),
		"EdDSA e1": mint(t, jwt.SigningMethodEdDSA, k.ed, "e1", claimsFor("42", live)),
		"no kid":   mint(t, jwt.SigningMethodES256, ec1, "", claimsFor("42", live)),
	} {
		if user, _, _, err := v.Connect(ctx, tok); err != nil || user != "42" {
			t.Fatalf("%s: %q %v", name, user, err)
		}
	}
	// A kid's key is used for its own algorithm only.
	if _, _, _, err := v.Connect(ctx, mint(t, jwt.SigningMethodEdDSA, k.ed, "k1", claimsFor("42", live))); !errors.Is(err, ErrInvalid) {
		t.Fatalf("EdDSA token naming an EC key: %v", err)
	}
	// No HMAC through a JWKS, whatever it holds.
	if _, _, _, err := v.Connect(ctx, mint(t, jwt.SigningMethodHS256, []byte("k1"), "k1", claimsFor("42", live))); !errors.Is(err, ErrInvalid) {
		t.Fatalf("HS256 token with a JWKS: %v", err)
	}

	// Rotation: k2 replaces k1. A token with kid k2 verifies at once (its
	// unknown kid triggers a refresh), k1 is refused after it.
	time.Sleep(5 * time.Millisecond) // past the gap
	srv.setKeys(t, map[string]any{"k2": &ec2.PublicKey})
	before := srv.fetches.Load()
	tok2 := mint(t, jwt.SigningMethodES256, ec2, "k2", claimsFor("43", live))
	if user, _, _, err := v.Connect(ctx, tok2); err != nil || user != "43" {
		t.Fatalf("k2 after rotation: %q %v", user, err)
	}
	if got := srv.fetches.Load() - before; got != 1 {
		t.Fatalf("%d fetches for the new kid, want 1", got)
	}
	tok1 := mint(t, jwt.SigningMethodES256, ec1, "k1", claimsFor("42", live))
	if _, _, _, err := v.Connect(ctx, tok1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("k1 after its removal: %v", err)
	}
}

// TestJWKSUnknownKIDRateLimited: made-up kids cost the JWKS server at most
// one fetch per gap, and are refused at once within it.
func TestJWKSUnknownKIDRateLimited(t *testing.T) {
	srv := newJWKSServer(t)
	ec := mustEC(t, elliptic.P256())
	srv.setKeys(t, map[string]any{"k1": &ec.PublicKey})
	v := jwksVerifier(t, Options{JWKSURL: srv.URL, JWKSUnknownKIDGap: time.Hour})
	live := time.Now().Add(time.Hour)
	ctx := context.Background()
	if _, _, _, err := v.Connect(ctx, mint(t, jwt.SigningMethodES256, ec, "k1", claimsFor("42", live))); err != nil {
		t.Fatal(err)
	}
	before := srv.fetches.Load()
	start := time.Now()
	for i := range 200 {
		tok := mint(t, jwt.SigningMethodES256, ec, "forged-"+string(rune('a'+i%26)), claimsFor("42", live))
		if _, _, _, err := v.Connect(ctx, tok); !errors.Is(err, ErrInvalid) {
			t.Fatalf("made-up kid: %v", err)
		}
	}
	if got := srv.fetches.Load() - before; got != 0 {
		t.Fatalf("%d fetches within the gap, want 0", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("200 refusals took %v", d)
	}
}

// TestJWKSBackgroundRefresh: without unknown-kid refreshes, the interval
// alone brings new keys.
func TestJWKSBackgroundRefresh(t *testing.T) {
	srv := newJWKSServer(t)
	ec1, ec2 := mustEC(t, elliptic.P256()), mustEC(t, elliptic.P256())
	srv.setKeys(t, map[string]any{"k1": &ec1.PublicKey})
	v := jwksVerifier(t, Options{JWKSURL: srv.URL, JWKSRefresh: 20 * time.Millisecond, JWKSUnknownKIDGap: -1})
	ctx := context.Background()
	live := time.Now().Add(time.Hour)
	if _, _, _, err := v.Connect(ctx, mint(t, jwt.SigningMethodES256, ec1, "k1", claimsFor("42", live))); err != nil {
		t.Fatal(err)
	}
	srv.setKeys(t, map[string]any{"k2": &ec2.PublicKey})
	tok2 := mint(t, jwt.SigningMethodES256, ec2, "k2", claimsFor("42", live))
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, _, err := v.Connect(ctx, tok2)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("k2 never verified: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Close stops the goroutine: no fetch after it.
	v.Close()
	n := srv.fetches.Load()
	time.Sleep(100 * time.Millisecond)
	if got := srv.fetches.Load(); got != n {
		t.Fatalf("%d fetches after Close", got-n)
	}
	// The keys fetched so far still verify.
	if _, _, _, err := v.Connect(ctx, tok2); err != nil {
		t.Fatalf("after Close: %v", err)
	}
}

// TestJWKSUnavailable: a JWKS that cannot be fetched makes the tokens that
// need it a temporary failure, not an invalid token; a hostile JWKS (too
// long, not JSON) leaves the keys fetched before in place.
func TestJWKSUnavailable(t *testing.T) {
	srv := newJWKSServer(t)
	ec1, ec2 := mustEC(t, elliptic.P256()), mustEC(t, elliptic.P256())
	srv.set([]byte("oops"), http.StatusInternalServerError)
	v := jwksVerifier(t, Options{JWKSURL: srv.URL, JWKSUnknownKIDGap: time.Millisecond, Logger: discard()})
	ctx := context.Background()
	live := time.Now().Add(time.Hour)
	tok1 := mint(t, jwt.SigningMethodES256, ec1, "k1", claimsFor("42", live))
	if _, _, _, err := v.Connect(ctx, tok1); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalid) {
		t.Fatalf("JWKS down, never fetched: %v", err)
	}
	srv.setKeys(t, map[string]any{"k1": &ec1.PublicKey})
	time.Sleep(5 * time.Millisecond)
	if _, _, _, err := v.Connect(ctx, tok1); err != nil {
		t.Fatalf("JWKS back: %v", err)
	}
	tok2 := mint(t, jwt.SigningMethodES256, ec2, "k2", claimsFor("42", live))
	for name, body := range map[string][]byte{
		"too long": []byte(`{"keys":[` + strings.Repeat(" ", MaxJWKSBytes) + `]}`),
		"not JSON": []byte(`<html>`),
	} {
		srv.set(body, http.StatusOK)
		time.Sleep(5 * time.Millisecond)
		// k2 is unknown and the refresh fails: temporary.
		if _, _, _, err := v.Connect(ctx, tok2); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s: new kid: %v", name, err)
		}
		// The canary: k1 still verifies.
		if _, _, _, err := v.Connect(ctx, tok1); err != nil {
			t.Fatalf("%s: k1 lost: %v", name, err)
		}
	}
}

// TestJWKSWaitBoundedByContext: a JWKS that hangs holds a token no longer
// than its context, and Close does not wait for the hanging fetch's
// timeout.
func TestJWKSWaitBoundedByContext(t *testing.T) {
	srv := newJWKSServer(t)
	block := make(chan struct{})
	defer close(block)
	srv.mu.Lock()
	srv.block = block
	srv.mu.Unlock()
	v, err := New(Options{JWKSURL: srv.URL, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	ec := mustEC(t, elliptic.P256())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, _, err = v.Connect(ctx, mint(t, jwt.SigningMethodES256, ec, "k1", claimsFor("42", time.Now().Add(time.Hour))))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("waited %v", d)
	}
	start = time.Now()
	v.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
}

// TestJWKSSkipsUnusableKeys: symmetric, encryption and unsupported keys in
// the set are ignored; the rest of the set works.
func TestJWKSSkipsUnusableKeys(t *testing.T) {
	srv := newJWKSServer(t)
	ec := mustEC(t, elliptic.P256())
	p384 := mustEC(t, elliptic.P384())
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	good, _ := jwkset.NewJWKFromKey(&ec.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "good"}})
	big, _ := jwkset.NewJWKFromKey(&p384.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "p384"}})
	enc, _ := jwkset.NewJWKFromKey(ed.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "enc", USE: jwkset.UseEnc}})
	set := map[string]any{"keys": []any{
		map[string]string{"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
		big.Marshal(), enc.Marshal(),
		map[string]string{"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
		good.Marshal(),
	}}
	b, _ := json.Marshal(set)
	srv.set(b, http.StatusOK)
	v := jwksVerifier(t, Options{JWKSURL: srv.URL, JWKSUnknownKIDGap: -1, Logger: discard()})
	ctx := context.Background()
	live := time.Now().Add(time.Hour)
	if _, _, _, err := v.Connect(ctx, mint(t, jwt.SigningMethodES256, ec, "good", claimsFor("42", live))); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"oct as HS256":    mint(t, jwt.SigningMethodHS256, []byte("secret"), "secret", claimsFor("42", live)),
		"P-384 as ES384":  mint(t, jwt.SigningMethodES384, p384, "p384", claimsFor("42", live)),
		"encryption key":  mint(t, jwt.SigningMethodEdDSA, ed, "enc", claimsFor("42", live)),
		"other ES256 key": mint(t, jwt.SigningMethodES256, mustEC(t, elliptic.P256()), "good", claimsFor("42", live)),
	} {
		if _, _, _, err := v.Connect(ctx, tok); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
}
