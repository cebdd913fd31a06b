// Package jwtauth verifies the JSON Web Tokens of Tornago's client protocol
// (proto/clientproto/PROTOCOL.md, "Tokens"): connect tokens (claims sub,
// exp, info) and subscription tokens (sub, topic, exp).
//
// A Verifier holds the keys: HMAC secrets (HS256, HS384, HS512), PEM public
// keys (RS256, ES256 on P-256, EdDSA on Ed25519) and/or a JWKS URL that a
// goroutine of the Verifier refreshes in the background (a token whose kid
// is unknown triggers a rate-limited refresh at once, so a key rotation
// works without waiting for the next interval). Only the algorithms of the
// configured key kinds are accepted, and each algorithm only with keys of
// its own kind: no "none", no HS256 token verified with a public key's
// bytes as its secret. The signatures are checked by
// github.com/golang-jwt/jwt/v5, the JWKS keys parsed by
// github.com/MicahParks/jwkset: no cryptography is written here.
//
// # Threading
//
// Every method of a Verifier is goroutine-safe. Verifying an asymmetric
// signature takes tens of microseconds and a JWKS refresh takes a network
// round trip, so the server calls Connect and Subscribe OFF its loops and
// hands the result back through the loop's queue; nothing here may run on a
// loop. The package does not import loop/realtime: the server adapts a
// Verifier through functions.
//
// # Errors
//
// Connect and Subscribe return errors that match (errors.Is) exactly one of
// ErrExpired (the server answers error 109, or disconnects with 3005: get a
// new token and reconnect), ErrInvalid (101, or 3500: do not retry with the
// same token) and ErrUnavailable (the JWKS, needed to judge the token,
// could not be fetched: a temporary failure, error 100).
//
// # Wiring it into the server
//
// The server (loop/realtime) takes hooks; a Verifier fills them, mapping
// its errors to the server's:
//
//	v, err := jwtauth.New(jwtauth.Options{HMACSecrets: [][]byte{secret}})
//	...
//	opts.Authenticate = func(ctx context.Context, c realtime.Credentials) (realtime.Identity, error) {
//		tok := c.Token
//		if tok == "" {
//			tok = jwtauth.FromHeader(c.Header, "tornago_token") // EventSource: a cookie
//		}
//		user, exp, info, err := v.Connect(ctx, tok)
//		switch {
//		case errors.Is(err, jwtauth.ErrExpired):
//			return realtime.Identity{}, fmt.Errorf("%w: %v", realtime.ErrTokenExpired, err)
//		case errors.Is(err, jwtauth.ErrInvalid):
//			return realtime.Identity{}, fmt.Errorf("%w: %v", realtime.ErrUnauthorized, err)
//		case err != nil:
//			return realtime.Identity{}, err // ErrUnavailable: temporary
//		}
//		return realtime.Identity{User: user, ExpiresAt: exp, Info: info}, nil
//	}
//	opts.VerifySubscribeToken = v.Subscribe // with the same error mapping
package jwtauth
