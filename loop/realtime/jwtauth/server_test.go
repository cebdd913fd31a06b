package jwtauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/tornago/tornago/loop"
	"github.com/tornago/tornago/loop/realtime"
	"github.com/tornago/tornago/loop/realtime/jwtauth"
)

var secret = []byte("an e2e secret of at least 32 bytes!!")

// wire is the package doc's wiring.
func wire(v *jwtauth.Verifier, o *realtime.Options) {
	mapErr := func(err error) error {
		switch {
		case errors.Is(err, jwtauth.ErrExpired):
			return fmt.Errorf("%w: %v", realtime.ErrTokenExpired, err)
		case errors.Is(err, jwtauth.ErrInvalid):
			return fmt.Errorf("%w: %v", realtime.ErrUnauthorized, err)
		}
		return err
	}
	o.Authenticate = func(ctx context.Context, c realtime.Credentials) (realtime.Identity, error) {
		tok := c.Token
		if tok == "" {
			tok = jwtauth.FromHeader(c.Header, "tornago_token")
		}
		user, exp, info, err := v.Connect(ctx, tok)
		if err != nil {
			return realtime.Identity{}, mapErr(err)
		}
		return realtime.Identity{User: user, ExpiresAt: exp, Info: info}, nil
	}
	o.VerifySubscribeToken = func(ctx context.Context, token, user, topic string) (time.Time, error) {
		exp, err := v.Subscribe(ctx, token, user, topic)
		return exp, mapErr(err)
	}
}

func startServer(t *testing.T, v *jwtauth.Verifier) string {
	o := realtime.Options{Namespaces: []realtime.Namespace{{Name: "chat"}, {Name: "secret", SubscribeToken: true}}}
	wire(v, &o)
	l := loop.New(loop.Options{})
	hub := loop.NewHub(l, loop.Text, nil)
	s, err := realtime.New(l, hub, o)
	if err != nil {
		t.Fatal(err)
	}
	app := loop.NewApplication(loop.AppOptions{})
	s.Routes(app)
	if err := l.Listen("127.0.0.1:0", app); err != nil {
		t.Fatal(err)
	}
	go l.Start()
	<-l.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Stop(ctx)
	})
	return l.Addr().String()
}

type client struct {
	t    *testing.T
	c    *websocket.Conn
	next int
}

func dial(t *testing.T, addr string, h http.Header) *client {
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/connection/websocket", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c}
}

type reply struct {
	ID     int             `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code int `json:"code"`
	} `json:"error"`
}

// do sends a command and returns its reply (skipping pushes).
func (c *client) do(field string, v any) reply {
	c.t.Helper()
	c.next++
	b, _ := json.Marshal(map[string]any{"id": c.next, field: v})
	if err := c.c.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatal(err)
	}
	for {
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, msg, err := c.c.ReadMessage()
		if err != nil {
			c.t.Fatalf("reading the reply to %s: %v", field, err)
		}
		var r reply
		json.Unmarshal(msg, &r)
		if r.ID == c.next {
			return r
		}
	}
}

// closeCode reads until the connection closes and returns its close code.
func (c *client) closeCode(within time.Duration) int {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(within))
	for {
		_, _, err := c.c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			c.t.Fatalf("want a close, got %v", err)
		}
	}
}

// TestServerWithVerifier drives the protocol server (loop/realtime) with a
// Verifier on real sockets: demo and JWKS tokens, expiry, bad signature,
// refresh, subscription tokens, a cookie.
func TestServerWithVerifier(t *testing.T) {
	ec1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var mu sync.Mutex
	jwks := map[string]any{"k1": &ec1.PublicKey}
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var set jwkset.JWKSMarshal
		for kid, k := range jwks {
			j, _ := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
			set.Keys = append(set.Keys, j.Marshal())
		}
		json.NewEncoder(w).Encode(set)
	}))
	defer keys.Close()
	v, err := jwtauth.New(jwtauth.Options{HMACSecrets: [][]byte{secret}, JWKSURL: keys.URL, JWKSUnknownKIDGap: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	addr := startServer(t, v)
	hour := time.Now().Add(time.Hour)

	t.Run("demo token", func(t *testing.T) {
		tok, _ := jwtauth.SignHS256(secret, "ada", hour, map[string]string{"name": "Ada"})
		r := dial(t, addr, nil).do("connect", map[string]any{"token": tok})
		var res struct {
			Expires bool  `json:"expires"`
			TTL     int64 `json:"ttl"`
		}
		json.Unmarshal(r.Result, &res)
		if r.Error != nil || !res.Expires || res.TTL < 3500 {
			t.Fatalf("%+v %s", r.Error, r.Result)
		}
	})
	t.Run("expired", func(t *testing.T) {
		tok, _ := jwtauth.SignHS256(secret, "ada", time.Now().Add(-time.Minute), nil)
		c := dial(t, addr, nil)
		c.do("connect", map[string]any{"token": tok})
		if code := c.closeCode(5 * time.Second); code != 3005 {
			t.Fatalf("close %d, want 3005", code)
		}
	})
	t.Run("bad signature", func(t *testing.T) {
		tok, _ := jwtauth.SignHS256([]byte("not the server's secret, 32 bytes"), "ada", hour, nil)
		c := dial(t, addr, nil)
		c.do("connect", map[string]any{"token": tok})
		if code := c.closeCode(5 * time.Second); code != 3500 {
			t.Fatalf("close %d, want 3500", code)
		}
	})
	t.Run("JWKS rotation", func(t *testing.T) {
		sign := func(k *ecdsa.PrivateKey, kid string) string {
			tk := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "bob", "exp": hour.Unix()})
			tk.Header["kid"] = kid
			s, _ := tk.SignedString(k)
			return s
		}
		if r := dial(t, addr, nil).do("connect", map[string]any{"token": sign(ec1, "k1")}); r.Error != nil {
			t.Fatalf("k1: %+v", r.Error)
		}
		mu.Lock()
		jwks = map[string]any{"k2": &ec2.PublicKey}
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		if r := dial(t, addr, nil).do("connect", map[string]any{"token": sign(ec2, "k2")}); r.Error != nil {
			t.Fatalf("k2 after rotation: %+v", r.Error)
		}
		c := dial(t, addr, nil)
		c.do("connect", map[string]any{"token": sign(ec1, "k1")})
		if code := c.closeCode(5 * time.Second); code != 3500 {
			t.Fatalf("k1 after its removal: close %d, want 3500", code)
		}
	})
	t.Run("expiry and refresh", func(t *testing.T) {
		soon := time.Now().Add(2 * time.Second)
		tok, _ := jwtauth.SignHS256(secret, "ada", soon, nil)
		lapsing := dial(t, addr, nil)
		refreshed := dial(t, addr, nil)
		for _, c := range []*client{lapsing, refreshed} {
			if r := c.do("connect", map[string]any{"token": tok}); r.Error != nil {
				t.Fatalf("%+v", r.Error)
			}
		}
		other, _ := jwtauth.SignHS256(secret, "eve", hour, nil)
		if r := refreshed.do("refresh", map[string]any{"token": other}); r.Error == nil || r.Error.Code != 101 {
			t.Fatalf("refresh as another user: %+v", r.Error)
		}
		fresh, _ := jwtauth.SignHS256(secret, "ada", hour, nil)
		if r := refreshed.do("refresh", map[string]any{"token": fresh}); r.Error != nil {
			t.Fatalf("refresh: %+v", r.Error)
		}
		if code := lapsing.closeCode(5 * time.Second); code != 3005 {
			t.Fatalf("not refreshed: close %d, want 3005", code)
		}
		time.Sleep(time.Until(soon) + 500*time.Millisecond)
		if r := refreshed.do("ping", map[string]any{}); r.Error != nil {
			t.Fatalf("refreshed connection: %+v", r.Error)
		}
	})
	t.Run("subscription token", func(t *testing.T) {
		tok, _ := jwtauth.SignHS256(secret, "ada", hour, nil)
		c := dial(t, addr, nil)
		c.do("connect", map[string]any{"token": tok})
		bobs, _ := jwtauth.SignSubscriptionHS256(secret, "bob", "secret:plans", hour)
		if r := c.do("subscribe", map[string]any{"topic": "secret:plans", "token": bobs}); r.Error == nil || r.Error.Code != 103 {
			t.Fatalf("another user's token: %+v", r.Error)
		}
		old, _ := jwtauth.SignSubscriptionHS256(secret, "ada", "secret:plans", time.Now().Add(-time.Minute))
		if r := c.do("subscribe", map[string]any{"topic": "secret:plans", "token": old}); r.Error == nil || r.Error.Code != 109 {
			t.Fatalf("expired subscription token: %+v", r.Error)
		}
		adas, _ := jwtauth.SignSubscriptionHS256(secret, "ada", "secret:plans", hour)
		if r := c.do("subscribe", map[string]any{"topic": "secret:plans", "token": adas}); r.Error != nil {
			t.Fatalf("own token: %+v", r.Error)
		}
	})
	t.Run("cookie", func(t *testing.T) {
		tok, _ := jwtauth.SignHS256(secret, "ada", hour, nil)
		h := http.Header{"Cookie": {"tornago_token=" + tok}}
		if r := dial(t, addr, h).do("connect", map[string]any{}); r.Error != nil {
			t.Fatalf("%+v", r.Error)
		}
	})
}
