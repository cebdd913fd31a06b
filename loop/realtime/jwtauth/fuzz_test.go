package jwtauth

import (
	"context"
	"crypto/elliptic"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzConnect: whatever the token, Connect neither panics nor accepts a
// token it was not given a key for, and its error is exactly one kind.
func FuzzConnect(f *testing.F) {
	k := genKeys(f)
	live := time.Now().Add(time.Hour)
	f.Add(mint(f, jwt.SigningMethodHS256, k.secret, "", claimsFor("42", live)))
	f.Add(mint(f, jwt.SigningMethodES256, k.ec, "kid", claimsFor("42", live)))
	f.Add(mint(f, jwt.SigningMethodEdDSA, k.ed, "", jwt.MapClaims{"sub": "42", "exp": live.Unix(), "info": []int{1}}))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiI0MiJ9.")
	f.Add("a.b.c")
	v := allKeysVerifier(f, Options{Logger: discard()})
	f.Fuzz(func(t *testing.T, tok string) {
		user, _, _, err := v.Connect(context.Background(), tok)
		if err == nil {
			if user == "" {
				t.Fatalf("accepted without a user: %q", tok)
			}
			return
		}
		n := 0
		for _, e := range []error{ErrInvalid, ErrExpired, ErrUnavailable} {
			if errors.Is(err, e) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error of %d kinds: %v", n, err)
		}
	})
}

// TestConcurrentConnectDuringRotation: the server's off-loop workers call
// one Verifier at once while its JWKS changes (run with -race).
func TestConcurrentConnectDuringRotation(t *testing.T) {
	srv := newJWKSServer(t)
	ec1, ec2 := mustEC(t, elliptic.P256()), mustEC(t, elliptic.P256())
	srv.setKeys(t, map[string]any{"k1": &ec1.PublicKey})
	v := jwksVerifier(t, Options{JWKSURL: srv.URL, JWKSRefresh: 5 * time.Millisecond, JWKSUnknownKIDGap: time.Millisecond})
	live := time.Now().Add(time.Hour)
	tok1 := mint(t, jwt.SigningMethodES256, ec1, "k1", claimsFor("42", live))
	tok2 := mint(t, jwt.SigningMethodES256, ec2, "k2", claimsFor("43", live))
	done := make(chan error, 8)
	for i := range 8 {
		go func() {
			for j := range 50 {
				tok := tok1
				if (i+j)%2 == 0 {
					tok = tok2
				}
				_, _, _, err := v.Connect(context.Background(), tok)
				if err != nil && !errors.Is(err, ErrInvalid) {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 20 {
		srv.setKeys(t, map[string]any{"k1": &ec1.PublicKey, "k2": &ec2.PublicKey})
		time.Sleep(time.Millisecond)
		srv.setKeys(t, map[string]any{"k2": &ec2.PublicKey})
		time.Sleep(time.Millisecond)
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
