package jwtauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The three kinds of failure; every error of Connect and Subscribe matches
// one of them with errors.Is, and its text says why.
var (
	// ErrInvalid: the token is malformed, badly signed, signed with an
	// algorithm or key that is not configured, lacks a required claim, or
	// names another user or topic. Retrying with the same token is useless.
	ErrInvalid = errors.New("jwtauth: invalid token")
	// ErrExpired: the token is well signed but its exp has passed. The
	// client gets a new token (its getToken) and connects again.
	ErrExpired = errors.New("jwtauth: token expired")
	// ErrUnavailable: judging the token needs the JWKS, which could not be
	// fetched (or its first fetch has not finished before the caller's
	// context ended). Temporary: retry later.
	ErrUnavailable = errors.New("jwtauth: keys unavailable")
)

// Defaults of Options.
const (
	// DefaultJWKSRefresh is how often the JWKS is fetched again.
	DefaultJWKSRefresh = time.Hour
	// DefaultJWKSUnknownKIDGap is the least time between two fetches that
	// a token with an unknown kid triggers: it bounds the load a client
	// sending made-up kids puts on the JWKS server to one fetch per gap.
	DefaultJWKSUnknownKIDGap = 10 * time.Second
	// DefaultJWKSTimeout bounds one fetch of the JWKS.
	DefaultJWKSTimeout = 10 * time.Second
	// MaxJWKSBytes bounds the JWKS document: a longer one is refused
	// (the keys kept so far stay).
	MaxJWKSBytes = 1 << 20
	// MaxTokenBytes bounds a token: a longer one is invalid before any
	// parsing (the command size limit bounds it anyway; this keeps the
	// work per token small whatever that limit is).
	MaxTokenBytes = 16 << 10
)

// Options configure a Verifier. At least one key source (HMACSecrets,
// PublicKeysPEM, PublicKeys, JWKSURL) is required.
type Options struct {
	// HMACSecrets verify HS256, HS384 and HS512 tokens; any of them may
	// have signed a token (several allow a rotation). Use at least 32
	// random bytes. Without them, HS* tokens are refused.
	HMACSecrets [][]byte
	// PublicKeysPEM are PEM documents of public keys ("PUBLIC KEY",
	// "RSA PUBLIC KEY" or "CERTIFICATE" blocks; several blocks per
	// document are fine): RSA of at least 2048 bits for RS256, ECDSA P-256
	// for ES256, Ed25519 for EdDSA. Private keys are refused: configure
	// the public half.
	PublicKeysPEM [][]byte
	// PublicKeys are the same, already parsed: *rsa.PublicKey,
	// *ecdsa.PublicKey (P-256), ed25519.PublicKey.
	PublicKeys []any
	// JWKSURL is an http(s) URL of a JSON Web Key Set whose RSA, EC P-256
	// and Ed25519 signature keys verify RS256, ES256 and EdDSA tokens
	// (symmetric and encryption keys in it are ignored). A goroutine of
	// the Verifier fetches it at once and every JWKSRefresh; Close stops
	// it.
	JWKSURL string
	// JWKSRefresh is the refresh interval (default DefaultJWKSRefresh).
	JWKSRefresh time.Duration
	// JWKSUnknownKIDGap is the least time between two refreshes triggered
	// by unknown kids (default DefaultJWKSUnknownKIDGap; negative: such a
	// token never triggers a refresh). Within the gap, an unknown kid is
	// invalid at once.
	JWKSUnknownKIDGap time.Duration
	// JWKSTimeout bounds one fetch (default DefaultJWKSTimeout).
	JWKSTimeout time.Duration
	// HTTPClient fetches the JWKS (default: a client of its own, without
	// redirects to other schemes than http and https).
	HTTPClient *http.Client

	// Audience, when set, must be one of the token's aud values.
	Audience string
	// Issuer, when set, must be the token's iss.
	Issuer string
	// AllowNoExpiry accepts connect tokens without exp (they never expire;
	// the connection then never needs a refresh). Subscription tokens
	// without exp too.
	AllowNoExpiry bool
	// Leeway is the clock skew tolerated on exp and nbf (default 0).
	Leeway time.Duration

	// Logger receives JWKS refresh failures (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// Verifier checks tokens against the configured keys. Create it with New;
// Close it to stop its JWKS goroutine.
type Verifier struct {
	parser  *jwt.Parser
	static  keySet
	byAlg   map[string][]jwt.VerificationKey // static keys per algorithm
	jwks    *jwks                            // nil without a JWKS URL
	now     func() time.Time
	closing sync.Once
}

// claims are the protocol's claims (PROTOCOL.md, "Tokens").
type claims struct {
	jwt.RegisteredClaims
	Info  json.RawMessage `json:"info,omitempty"`
	Topic *string         `json:"topic,omitempty"`
}

// Goroutine-safe.
// New checks the options, parses the keys and, with a JWKS URL, starts the
// goroutine that fetches it (New does not wait for the first fetch: a
// token that needs the JWKS waits for it, within its context).
func New(o Options) (*Verifier, error) {
	v := &Verifier{now: o.Now}
	if v.now == nil {
		v.now = time.Now
	}
	for i, s := range o.HMACSecrets {
		if len(s) == 0 {
			return nil, fmt.Errorf("jwtauth: HMAC secret %d is empty", i)
		}
		v.static.hmac = append(v.static.hmac, append([]byte(nil), s...))
	}
	for i, doc := range o.PublicKeysPEM {
		keys, err := parsePEM(doc)
		if err != nil {
			return nil, fmt.Errorf("jwtauth: public key PEM %d: %w", i, err)
		}
		for _, k := range keys {
			if err := v.static.add(k); err != nil {
				return nil, fmt.Errorf("jwtauth: public key PEM %d: %w", i, err)
			}
		}
	}
	for i, k := range o.PublicKeys {
		if err := v.static.add(k); err != nil {
			return nil, fmt.Errorf("jwtauth: public key %d: %w", i, err)
		}
	}
	if o.JWKSURL != "" {
		j, err := newJWKS(o)
		if err != nil {
			return nil, err
		}
		v.jwks = j
	}
	methods := v.static.methods(v.jwks != nil)
	if len(methods) == 0 {
		return nil, errors.New("jwtauth: no key configured (HMAC secrets, public keys or a JWKS URL)")
	}
	popts := []jwt.ParserOption{
		// The algorithms of the configured key kinds only; the keyfunc
		// below also gives each algorithm keys of its own kind only.
		jwt.WithValidMethods(methods),
		jwt.WithLeeway(o.Leeway),
		jwt.WithTimeFunc(v.now),
	}
	if !o.AllowNoExpiry {
		popts = append(popts, jwt.WithExpirationRequired())
	}
	if o.Audience != "" {
		popts = append(popts, jwt.WithAudience(o.Audience))
	}
	if o.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(o.Issuer))
	}
	v.parser = jwt.NewParser(popts...)
	v.byAlg = map[string][]jwt.VerificationKey{}
	for _, alg := range methods {
		for _, k := range v.static.forAlg(alg) {
			v.byAlg[alg] = append(v.byAlg[alg], k)
		}
	}
	if v.jwks != nil {
		v.jwks.start()
	}
	return v, nil
}

// Goroutine-safe.
// Close stops the JWKS goroutine and waits for it; tokens that need the
// JWKS keep being judged with the keys fetched so far. Closing twice is
// harmless.
func (v *Verifier) Close() {
	v.closing.Do(func() {
		if v.jwks != nil {
			v.jwks.close()
		}
	})
}

// Goroutine-safe; it may block (JWKS) and an asymmetric signature costs
// tens of microseconds: the server calls it off the loop.
// Connect verifies a connect token and returns its user (claim sub,
// required, non-empty), its expiry (claim exp; zero when absent and
// Options.AllowNoExpiry) and its info claim (any JSON, nil when absent). A
// token with a topic claim is a subscription token and is refused here.
// ctx bounds the wait for a JWKS fetch.
func (v *Verifier) Connect(ctx context.Context, token string) (user string, exp time.Time, info json.RawMessage, err error) {
	c, err := v.parse(ctx, token)
	if err != nil {
		return "", time.Time{}, nil, err
	}
	if c.Subject == "" {
		return "", time.Time{}, nil, fmt.Errorf("%w: no sub claim (the user id)", ErrInvalid)
	}
	if c.Topic != nil {
		return "", time.Time{}, nil, fmt.Errorf("%w: a subscription token (topic claim) is not a connect token", ErrInvalid)
	}
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.Time
	}
	if len(c.Info) == 0 || string(c.Info) == "null" {
		c.Info = nil
	}
	return c.Subject, exp, c.Info, nil
}

// Goroutine-safe; called off the loop, as Connect.
// Subscribe verifies a subscription token for user's subscription to
// topic: its sub must be user (an anonymous user, "", matches a token
// without sub) and its topic claim must be topic. It returns the token's
// expiry (zero when absent and Options.AllowNoExpiry).
func (v *Verifier) Subscribe(ctx context.Context, token, user, topic string) (exp time.Time, err error) {
	c, err := v.parse(ctx, token)
	if err != nil {
		return time.Time{}, err
	}
	if c.Subject != user {
		return time.Time{}, fmt.Errorf("%w: the token is for another user", ErrInvalid)
	}
	if c.Topic == nil || *c.Topic != topic {
		return time.Time{}, fmt.Errorf("%w: the token is for another topic", ErrInvalid)
	}
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.Time
	}
	return exp, nil
}

// parse verifies the signature, then the time claims, aud and iss, and
// sorts the failure into ErrExpired, ErrUnavailable or ErrInvalid.
func (v *Verifier) parse(ctx context.Context, token string) (*claims, error) {
	if len(token) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxTokenBytes)
	}
	if token == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalid)
	}
	var c claims
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		return v.keysFor(ctx, t)
	})
	switch {
	case err == nil:
		return &c, nil
	case errors.Is(err, errUnavailable):
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	case errors.Is(err, jwt.ErrTokenExpired) && !errors.Is(err, jwt.ErrTokenSignatureInvalid):
		// golang-jwt checks claims only after the signature: an expired
		// token here is a genuine one.
		return nil, fmt.Errorf("%w: %v", ErrExpired, err)
	default:
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
}

// keysFor is the keyfunc: the keys of the token's algorithm's kind only,
// the configured ones and the JWKS's (by kid when the token has one).
func (v *Verifier) keysFor(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	set := jwt.VerificationKeySet{Keys: v.byAlg[alg]}
	if v.jwks != nil && alg != "HS256" && alg != "HS384" && alg != "HS512" {
		kid, _ := t.Header["kid"].(string)
		keys, err := v.jwks.forAlg(ctx, alg, kid)
		if err != nil && len(set.Keys) == 0 {
			return nil, err
		}
		if len(keys) > 0 {
			// A fresh slice: byAlg's is shared by every caller.
			set.Keys = append(append([]jwt.VerificationKey(nil), set.Keys...), toKeys(keys)...)
		}
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no %s key", alg)
	}
	return set, nil
}

func toKeys(keys []any) []jwt.VerificationKey {
	out := make([]jwt.VerificationKey, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out
}
