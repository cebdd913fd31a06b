package jwtauth

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// benchConnect measures Connect for one token, in parallel as the server's
// off-loop workers would call it.
func benchConnect(b *testing.B, m jwt.SigningMethod, key func(testKeys) any) {
	k := genKeys(b)
	v := allKeysVerifier(b, Options{})
	tok := mint(b, m, key(k), "", claimsFor("42", time.Now().Add(time.Hour)))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, _, err := v.Connect(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkConnectHS256(b *testing.B) {
	benchConnect(b, jwt.SigningMethodHS256, func(k testKeys) any { return k.secret })
}

func BenchmarkConnectES256(b *testing.B) {
	benchConnect(b, jwt.SigningMethodES256, func(k testKeys) any { return k.ec })
}

func BenchmarkConnectRS256(b *testing.B) {
	benchConnect(b, jwt.SigningMethodRS256, func(k testKeys) any { return k.rsa })
}

func BenchmarkConnectEdDSA(b *testing.B) {
	benchConnect(b, jwt.SigningMethodEdDSA, func(k testKeys) any { return k.ed })
}
