package jwtauth_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tornago/tornago/loop/realtime/jwtauth"
)

// A verifier with an HMAC secret, and a demo token made with SignHS256.
func Example() {
	secret := []byte("a demo secret of at least 32 bytes!")
	v, err := jwtauth.New(jwtauth.Options{HMACSecrets: [][]byte{secret}})
	if err != nil {
		panic(err)
	}
	defer v.Close()

	tok, err := jwtauth.SignHS256(secret, "ada", time.Now().Add(time.Hour), map[string]string{"name": "Ada"})
	if err != nil {
		panic(err)
	}
	// The server calls Connect off its loops.
	user, _, info, err := v.Connect(context.Background(), tok)
	fmt.Println(user, string(info), err)

	old, _ := jwtauth.SignHS256(secret, "ada", time.Now().Add(-time.Minute), nil)
	_, _, _, err = v.Connect(context.Background(), old)
	fmt.Println(errors.Is(err, jwtauth.ErrExpired))
	// Output:
	// ada {"name":"Ada"} <nil>
	// true
}

// Keys from a JWKS URL, refreshed in the background; a token naming a kid
// the verifier does not know yet makes it fetch the set again at once (at
// most once per JWKSUnknownKIDGap).
func ExampleNew_jwks() {
	v, err := jwtauth.New(jwtauth.Options{
		JWKSURL:     "https://auth.example.com/.well-known/jwks.json",
		JWKSRefresh: 10 * time.Minute,
		Audience:    "tornago",
	})
	if err != nil {
		panic(err)
	}
	defer v.Close()
}

// A subscription token for a namespace that requires one.
func ExampleVerifier_Subscribe() {
	secret := []byte("a demo secret of at least 32 bytes!")
	v, _ := jwtauth.New(jwtauth.Options{HMACSecrets: [][]byte{secret}})
	defer v.Close()
	tok, _ := jwtauth.SignSubscriptionHS256(secret, "ada", "chat:board", time.Now().Add(time.Hour))
	_, err := v.Subscribe(context.Background(), tok, "ada", "chat:board")
	fmt.Println(err)
	_, err = v.Subscribe(context.Background(), tok, "bob", "chat:board")
	fmt.Println(errors.Is(err, jwtauth.ErrInvalid))
	// Output:
	// <nil>
	// true
}
