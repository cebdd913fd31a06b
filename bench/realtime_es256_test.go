package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRealtimeConnectES256: rt-connect with a P-256 private key (the
// harness reads it from a PEM file, ParseTokenKey) signs each client's
// own ES256 token, and tornago with -token-public-key (the public half)
// accepts them all; tokens of another key are refused (the canary, 3500).
func TestRealtimeConnectES256(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pub := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	privDER, _ := x509.MarshalECPrivateKey(key)
	signer, err := ParseTokenKey(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: privDER}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseTokenKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})); err == nil {
		t.Error("ParseTokenKey took a public key")
	}
	t.Setenv("TORNAGO_TOKEN_PUBLIC_KEY", pub) // the server's (started below)
	s := startTornago(t, 18836)
	o := RealtimeOptions{URL: s.URL(""), Conns: 40, PID: s.PID, TokenKey: signer}

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bad := o
	bad.TokenKey = other
	if _, err := RealtimeConnect(bad); err == nil || !strings.Contains(err.Error(), "3500") {
		t.Errorf("rt-connect with tokens of another key: %v, want the canary refused with 3500", err)
	}
	r, err := RealtimeConnect(o)
	if err != nil || r.Conns != 40 || r.Extra["tokens"] != "ES256" {
		t.Fatalf("rt-connect: %v (%+v)", err, r)
	}
}
