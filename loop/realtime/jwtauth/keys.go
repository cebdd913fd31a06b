package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// minRSABits is the least RSA modulus accepted: shorter keys are breakable
// or close to it.
const minRSABits = 2048

// keySet holds keys sorted by kind: each algorithm gets keys of its own
// kind only, which is what rules out algorithm confusion (an HS256 token
// is never checked against a public key's bytes).
type keySet struct {
	hmac []any // []byte secrets
	rsa  []any // *rsa.PublicKey
	p256 []any // *ecdsa.PublicKey on P-256
	ed   []any // ed25519.PublicKey
}

// add sorts a parsed public key into its kind, refusing the kinds no
// supported algorithm uses.
func (s *keySet) add(k any) error {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits: at least %d are required", k.N.BitLen(), minRSABits)
		}
		s.rsa = append(s.rsa, k)
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA key on %s: only P-256 (ES256) is supported", k.Curve.Params().Name)
		}
		s.p256 = append(s.p256, k)
	case ed25519.PublicKey:
		s.ed = append(s.ed, k)
	case *ed25519.PublicKey:
		s.ed = append(s.ed, *k)
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return errors.New("a private key: configure its public key")
	default:
		return fmt.Errorf("unsupported key type %T (RSA, ECDSA P-256 or Ed25519 public keys)", k)
	}
	return nil
}

// methods are the algorithms the keys verify (all asymmetric ones when a
// JWKS may bring keys).
func (s *keySet) methods(jwks bool) []string {
	var m []string
	if len(s.hmac) > 0 {
		m = append(m, "HS256", "HS384", "HS512")
	}
	if jwks || len(s.rsa) > 0 {
		m = append(m, "RS256")
	}
	if jwks || len(s.p256) > 0 {
		m = append(m, "ES256")
	}
	if jwks || len(s.ed) > 0 {
		m = append(m, "EdDSA")
	}
	return m
}

// forAlg returns the keys of alg's kind (nil for an unknown alg).
func (s *keySet) forAlg(alg string) []any {
	switch alg {
	case "HS256", "HS384", "HS512":
		return s.hmac
	case "RS256":
		return s.rsa
	case "ES256":
		return s.p256
	case "EdDSA":
		return s.ed
	}
	return nil
}

// parsePEM parses every block of a PEM document into a public key.
func parsePEM(doc []byte) ([]any, error) {
	var keys []any
	for {
		var b *pem.Block
		b, doc = pem.Decode(doc)
		if b == nil {
			break
		}
		var k any
		var err error
		switch b.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(b.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			c, err = x509.ParseCertificate(b.Bytes)
			if err == nil {
				k = c.PublicKey
			}
		default:
			if strings.Contains(b.Type, "PRIVATE") {
				return nil, fmt.Errorf("a %s block: configure the public key", b.Type)
			}
			return nil, fmt.Errorf("a %s block: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", b.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%s block: %w", b.Type, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block")
	}
	return keys, nil
}
