package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testKeys are generated once per test binary: RSA generation is slow.
type testKeys struct {
	secret []byte
	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func genKeys(t testing.TB) testKeys {
	t.Helper()
	keysOnce.Do(func() {
		keys.secret = []byte("0123456789abcdef0123456789abcdef")
		var err error
		if keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keys.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, keys.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
	return keys
}

// pemOf encodes a public key as a PKIX "PUBLIC KEY" block.
func pemOf(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// mint signs claims with method and key, with a kid header when kid != "".
func mint(t testing.TB, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsFor(user string, exp time.Time) jwt.MapClaims {
	return jwt.MapClaims{"sub": user, "exp": exp.Unix()}
}

// allKeysVerifier verifies every supported algorithm.
func allKeysVerifier(t testing.TB, o Options) *Verifier {
	t.Helper()
	k := genKeys(t)
	o.HMACSecrets = append(o.HMACSecrets, k.secret)
	o.PublicKeysPEM = append(o.PublicKeysPEM, pemOf(t, &k.rsa.PublicKey), pemOf(t, &k.ec.PublicKey), pemOf(t, k.ed.Public()))
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestConnectAlgorithms(t *testing.T) {
	k := genKeys(t)
	v := allKeysVerifier(t, Options{})
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	cases := []struct {
		m   jwt.SigningMethod
		key any
	}{
		{jwt.SigningMethodHS256, k.secret},
		{jwt.SigningMethodHS384, k.secret},
		{jwt.SigningMethodHS512, k.secret},
		{jwt.SigningMethodRS256, k.rsa},
		{jwt.SigningMethodES256, k.ec},
		{jwt.SigningMethodEdDSA, k.ed},
	}
	for _, c := range cases {
		t.Run(c.m.Alg(), func(t *testing.T) {
			cl := claimsFor("42", exp)
			cl["info"] = map[string]any{"name": "Ada"}
			user, gotExp, info, err := v.Connect(context.Background(), mint(t, c.m, c.key, "", cl))
			if err != nil {
				t.Fatal(err)
			}
			if user != "42" || !gotExp.Equal(exp) || string(info) != `{"name":"Ada"}` {
				t.Fatalf("got %q %v %s", user, gotExp, info)
			}
		})
	}
}

func TestConnectBadSignature(t *testing.T) {
	v := allKeysVerifier(t, Options{})
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	live := time.Now().Add(time.Hour)
	past := time.Now().Add(-time.Hour)
	good := mint(t, jwt.SigningMethodHS256, genKeys(t).secret, "", claimsFor("42", live))
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + mint(t, jwt.SigningMethodHS256, genKeys(t).secret, "", claimsFor("admin", live))[len(parts[0])+1:]
	tampered = tampered[:strings.LastIndex(tampered, ".")] + "." + parts[2]
	for name, tok := range map[string]string{
		"HS256 other secret":   mint(t, jwt.SigningMethodHS256, []byte("another secret, 32 bytes long..."), "", claimsFor("42", live)),
		"RS256 other key":      mint(t, jwt.SigningMethodRS256, otherRSA, "", claimsFor("42", live)),
		"ES256 other key":      mint(t, jwt.SigningMethodES256, otherEC, "", claimsFor("42", live)),
		"EdDSA other key":      mint(t, jwt.SigningMethodEdDSA, otherEd, "", claimsFor("42", live)),
		"payload swapped":      tampered,
		"expired and forged":   mint(t, jwt.SigningMethodHS256, []byte("another secret, 32 bytes long..."), "", claimsFor("42", past)),
		"not a JWT":            "hello",
		"empty":                "",
		"three empty segments": "..",
		"huge":                 strings.Repeat("a", MaxTokenBytes+1),
	} {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := v.Connect(context.Background(), tok)
			if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrExpired) {
				t.Fatalf("want ErrInvalid only, got %v", err)
			}
		})
	}
}

func TestConnectExpired(t *testing.T) {
	k := genKeys(t)
	v := allKeysVerifier(t, Options{})
	tok := mint(t, jwt.SigningMethodES256, k.ec, "", claimsFor("42", time.Now().Add(-time.Second)))
	_, _, _, err := v.Connect(context.Background(), tok)
	if !errors.Is(err, ErrExpired) || errors.Is(err, ErrInvalid) {
		t.Fatalf("want ErrExpired, got %v", err)
	}
	// Leeway tolerates a little skew.
	lv := allKeysVerifier(t, Options{Leeway: time.Minute})
	if _, _, _, err := lv.Connect(context.Background(), tok); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	// Not yet valid is invalid, not expired.
	nbf := claimsFor("42", time.Now().Add(time.Hour))
	nbf["nbf"] = time.Now().Add(time.Hour / 2).Unix()
	_, _, _, err = v.Connect(context.Background(), mint(t, jwt.SigningMethodHS256, k.secret, "", nbf))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("nbf in the future: want ErrInvalid, got %v", err)
	}
}

// TestAlgorithmConfusion: the classic attack signs an HS256 token with a
// public key's bytes as the HMAC secret, hoping the verifier uses its
// public key as the secret. And "none".
func TestAlgorithmConfusion(t *testing.T) {
	k := genKeys(t)
	pubPEM := pemOf(t, &k.rsa.PublicKey)
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	live := time.Now().Add(time.Hour)
	onlyRSA, err := New(Options{PublicKeysPEM: [][]byte{pubPEM}})
	if err != nil {
		t.Fatal(err)
	}
	defer onlyRSA.Close()
	both := allKeysVerifier(t, Options{})
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claimsFor("42", live)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	edPEM := pemOf(t, k.ed.Public())
	for name, tok := range map[string]string{
		"HS256 with the RSA PEM as secret":   mint(t, jwt.SigningMethodHS256, pubPEM, "", claimsFor("42", live)),
		"HS256 with the RSA DER as secret":   mint(t, jwt.SigningMethodHS256, pubDER, "", claimsFor("42", live)),
		"HS512 with the Ed25519 PEM":         mint(t, jwt.SigningMethodHS512, edPEM, "", claimsFor("42", live)),
		"HS256 with the raw Ed25519 pub key": mint(t, jwt.SigningMethodHS256, []byte(k.ed.Public().(ed25519.PublicKey)), "", claimsFor("42", live)),
		"none":                               none,
		"ES384 (not supported)":              mint(t, jwt.SigningMethodES384, mustEC(t, elliptic.P384()), "", claimsFor("42", live)),
		"PS256 (not supported)":              mint(t, jwt.SigningMethodPS256, k.rsa, "", claimsFor("42", live)),
	} {
		for vname, v := range map[string]*Verifier{"only RSA": onlyRSA, "all kinds": both} {
			_, _, _, err := v.Connect(context.Background(), tok)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s, verifier with %s: want ErrInvalid, got %v", name, vname, err)
			}
		}
	}
	// An ES256 token to a verifier with HMAC secrets only.
	hmacOnly, _ := New(Options{HMACSecrets: [][]byte{k.secret}})
	if _, _, _, err := hmacOnly.Connect(context.Background(), mint(t, jwt.SigningMethodES256, k.ec, "", claimsFor("42", live))); !errors.Is(err, ErrInvalid) {
		t.Errorf("ES256 to an HMAC-only verifier: %v", err)
	}
}

func mustEC(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestConnectClaims(t *testing.T) {
	k := genKeys(t)
	v := allKeysVerifier(t, Options{})
	live := time.Now().Add(time.Hour).Unix()
	for name, c := range map[string]jwt.MapClaims{
		"no sub":             {"exp": live},
		"empty sub":          {"sub": "", "exp": live},
		"no exp":             {"sub": "42"},
		"sub not a string":   {"sub": 42, "exp": live},
		"a subscription one": {"sub": "42", "exp": live, "topic": "chat:lobby"},
	} {
		_, _, _, err := v.Connect(context.Background(), mint(t, jwt.SigningMethodHS256, k.secret, "", c))
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
	// AllowNoExpiry: a token without exp never expires.
	nv := allKeysVerifier(t, Options{AllowNoExpiry: true})
	user, exp, info, err := nv.Connect(context.Background(), mint(t, jwt.SigningMethodHS256, k.secret, "", jwt.MapClaims{"sub": "42", "info": nil}))
	if err != nil || user != "42" || !exp.IsZero() || info != nil {
		t.Fatalf("AllowNoExpiry: %q %v %s %v", user, exp, info, err)
	}
}

func TestAudienceIssuer(t *testing.T) {
	k := genKeys(t)
	v := allKeysVerifier(t, Options{Audience: "tornago", Issuer: "https://auth.example"})
	live := time.Now().Add(time.Hour).Unix()
	ok := jwt.MapClaims{"sub": "42", "exp": live, "aud": []string{"other", "tornago"}, "iss": "https://auth.example"}
	if _, _, _, err := v.Connect(context.Background(), mint(t, jwt.SigningMethodHS256, k.secret, "", ok)); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]jwt.MapClaims{
		"no aud":    {"sub": "42", "exp": live, "iss": "https://auth.example"},
		"wrong aud": {"sub": "42", "exp": live, "aud": "other", "iss": "https://auth.example"},
		"no iss":    {"sub": "42", "exp": live, "aud": "tornago"},
		"wrong iss": {"sub": "42", "exp": live, "aud": "tornago", "iss": "https://evil.example"},
	} {
		_, _, _, err := v.Connect(context.Background(), mint(t, jwt.SigningMethodHS256, k.secret, "", c))
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
}

func TestSubscribe(t *testing.T) {
	k := genKeys(t)
	v := allKeysVerifier(t, Options{})
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok, err := SignSubscriptionHS256(k.secret, "42", "chat:secret", exp)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Subscribe(context.Background(), tok, "42", "chat:secret")
	if err != nil || !got.Equal(exp) {
		t.Fatalf("got %v %v", got, err)
	}
	if _, err := v.Subscribe(context.Background(), tok, "43", "chat:secret"); !errors.Is(err, ErrInvalid) {
		t.Errorf("another user: %v", err)
	}
	if _, err := v.Subscribe(context.Background(), tok, "42", "chat:other"); !errors.Is(err, ErrInvalid) {
		t.Errorf("another topic: %v", err)
	}
	conn, _ := SignHS256(k.secret, "42", exp, nil)
	if _, err := v.Subscribe(context.Background(), conn, "42", "chat:secret"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a connect token as subscription token: %v", err)
	}
	// An anonymous user's token has no sub.
	anon := mint(t, jwt.SigningMethodES256, k.ec, "", jwt.MapClaims{"topic": "news", "exp": exp.Unix()})
	if _, err := v.Subscribe(context.Background(), anon, "", "news"); err != nil {
		t.Errorf("anonymous: %v", err)
	}
	old, _ := SignSubscriptionHS256(k.secret, "42", "chat:secret", time.Now().Add(-time.Minute))
	if _, err := v.Subscribe(context.Background(), old, "42", "chat:secret"); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}
}

func TestSignHS256(t *testing.T) {
	k := genKeys(t)
	v := allKeysVerifier(t, Options{})
	exp := time.Now().Add(time.Minute).Truncate(time.Second)
	tok, err := SignHS256(k.secret, "ada", exp, map[string]string{"name": "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	user, gotExp, info, err := v.Connect(context.Background(), tok)
	if err != nil || user != "ada" || !gotExp.Equal(exp) || string(info) != `{"name":"Ada"}` {
		t.Fatalf("%q %v %s %v", user, gotExp, info, err)
	}
	if _, err := SignHS256(nil, "ada", exp, nil); err == nil {
		t.Fatal("an empty secret signed")
	}
	if _, err := SignHS256(k.secret, "ada", exp, func() {}); err == nil {
		t.Fatal("unencodable info signed")
	}
}

func TestNewRefuses(t *testing.T) {
	k := genKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	privDER, _ := x509.MarshalPKCS8PrivateKey(k.ec)
	for name, o := range map[string]Options{
		"nothing":        {},
		"empty secret":   {HMACSecrets: [][]byte{{}}},
		"private PEM":    {PublicKeysPEM: [][]byte{pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})}},
		"not PEM":        {PublicKeysPEM: [][]byte{[]byte("hello")}},
		"RSA 1024":       {PublicKeysPEM: [][]byte{pemOf(t, &small.PublicKey)}},
		"P-384":          {PublicKeysPEM: [][]byte{pemOf(t, &mustEC(t, elliptic.P384()).PublicKey)}},
		"private key":    {PublicKeys: []any{k.rsa}},
		"JWKS not http":  {JWKSURL: "file:///etc/passwd"},
		"JWKS no host":   {JWKSURL: "http:///keys"},
		"unknown key ty": {PublicKeys: []any{"hello"}},
	} {
		if v, err := New(o); err == nil {
			v.Close()
			t.Errorf("%s: accepted", name)
		} else if !strings.HasPrefix(err.Error(), "jwtauth: ") {
			t.Errorf("%s: error without context: %v", name, err)
		}
	}
}

func TestFromHeader(t *testing.T) {
	for _, c := range []struct {
		h    http.Header
		want string
	}{
		{http.Header{"Authorization": {"Bearer abc.def.ghi"}}, "abc.def.ghi"},
		{http.Header{"Authorization": {"bearer  abc"}}, "abc"},
		{http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}, "Cookie": {"other=1; tornago_token=xyz"}}, "xyz"},
		{http.Header{"Cookie": {"tornago_token=xyz"}}, "xyz"},
		{http.Header{"Authorization": {"Bearer "}}, ""},
		{http.Header{}, ""},
	} {
		if got := FromHeader(c.h, "tornago_token"); got != c.want {
			t.Errorf("%v: got %q, want %q", c.h, got, c.want)
		}
	}
	if got := FromHeader(http.Header{"Cookie": {"tornago_token=xyz"}}, ""); got != "" {
		t.Errorf("no cookie name: got %q", got)
	}
}
