package jwtauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Goroutine-safe.
// SignHS256 makes a connect token for user (claim sub), expiring at exp
// (no exp claim when exp is zero) and carrying info (claim info, any value
// encoding/json encodes; none when nil), signed with secret: demo tokens
// (the binary's -token-hmac-secret) and tests. Production tokens are the
// application's backend's business.
func SignHS256(secret []byte, user string, exp time.Time, info any) (string, error) {
	c := signClaims{RegisteredClaims: jwt.RegisteredClaims{Subject: user}}
	if !exp.IsZero() {
		c.ExpiresAt = jwt.NewNumericDate(exp)
	}
	if info != nil {
		b, err := json.Marshal(info)
		if err != nil {
			return "", fmt.Errorf("jwtauth: encoding info: %w", err)
		}
		c.Info = b
	}
	return sign(secret, c)
}

// Goroutine-safe.
// SignSubscriptionHS256 makes a subscription token for user's subscription
// to topic (claims sub, topic, exp; no exp when exp is zero), signed with
// secret, for namespaces that require one (subscribe_token).
func SignSubscriptionHS256(secret []byte, user, topic string, exp time.Time) (string, error) {
	c := signClaims{RegisteredClaims: jwt.RegisteredClaims{Subject: user}, Topic: topic}
	if !exp.IsZero() {
		c.ExpiresAt = jwt.NewNumericDate(exp)
	}
	return sign(secret, c)
}

// signClaims are claims as written (claims, as read, tells an absent topic
// from an empty one).
type signClaims struct {
	jwt.RegisteredClaims
	Info  json.RawMessage `json:"info,omitempty"`
	Topic string          `json:"topic,omitempty"`
}

func sign(secret []byte, c signClaims) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("jwtauth: empty HMAC secret")
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("jwtauth: signing: %w", err)
	}
	return s, nil
}
