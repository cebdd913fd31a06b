package jwtauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
)

// errUnavailable marks a keyfunc failure that is the JWKS's, not the
// token's; parse turns it into ErrUnavailable.
var errUnavailable = errors.New("JWKS unavailable")

// jwksKeys is one fetched key set, replaced whole by the next fetch (so a
// key removed from the JWKS is refused after the refresh).
type jwksKeys struct {
	byKID map[string]jwksKey
	all   []jwksKey
}

// jwksKey is a usable signature key: its algorithm (from its type, or its
// alg parameter when the JWK names one) and the public key.
type jwksKey struct {
	alg string
	key any
}

// jwks fetches a JWK Set: at once, every refresh interval, and when a
// token names an unknown kid (at most once per gap). One goroutine does
// every fetch; callers waiting for one wait on done.
type jwks struct {
	url      string
	logURL   string // without query: it may carry a credential
	client   *http.Client
	interval time.Duration
	gap      time.Duration
	timeout  time.Duration
	log      *slog.Logger
	now      func() time.Time

	keys atomic.Pointer[jwksKeys] // nil until the first successful fetch

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // buffered 1: a fetch is asked for

	mu        sync.Mutex
	pending   bool          // a fetch is asked for or running
	done      chan struct{} // closed when the pending fetch ends
	lastStart time.Time     // start of the last fetch
	lastErr   error         // of the last fetch
}

func newJWKS(o Options) (*jwks, error) {
	u, err := url.Parse(o.JWKSURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("jwtauth: JWKS URL %q: want an http or https URL", o.JWKSURL)
	}
	j := &jwks{
		url:      o.JWKSURL,
		logURL:   u.Scheme + "://" + u.Host + u.EscapedPath(),
		client:   o.HTTPClient,
		interval: o.JWKSRefresh,
		gap:      o.JWKSUnknownKIDGap,
		timeout:  o.JWKSTimeout,
		log:      o.Logger,
		now:      o.Now,
		kick:     make(chan struct{}, 1),
		pending:  true, // the first fetch: tokens needing the JWKS wait for it
		done:     make(chan struct{}),
	}
	if j.client == nil {
		j.client = &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Scheme != "http" && r.URL.Scheme != "https" || len(via) >= 5 {
				return errors.New("jwtauth: refused JWKS redirect")
			}
			return nil
		}}
	}
	if j.interval <= 0 {
		j.interval = DefaultJWKSRefresh
	}
	if j.gap == 0 {
		j.gap = DefaultJWKSUnknownKIDGap
	}
	if j.timeout <= 0 {
		j.timeout = DefaultJWKSTimeout
	}
	if j.log == nil {
		j.log = slog.Default()
	}
	if j.now == nil {
		j.now = time.Now
	}
	j.ctx, j.cancel = context.WithCancel(context.Background())
	return j, nil
}

func (j *jwks) start() {
	j.wg.Add(1)
	go j.run()
}

func (j *jwks) close() {
	j.cancel()
	j.wg.Wait()
}

// run is the Verifier's goroutine: the first fetch, then one per interval
// or per kick.
func (j *jwks) run() {
	defer j.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-j.ctx.Done():
			j.finish(j.ctx.Err())
			return
		case <-t.C:
		case <-j.kick:
		}
		j.mu.Lock()
		j.pending = true
		j.lastStart = j.now()
		j.mu.Unlock()
		err := j.fetch()
		if err != nil && j.ctx.Err() == nil {
			j.log.Warn("jwtauth: JWKS refresh failed; keeping the keys fetched before", "url", j.logURL, "err", err)
		}
		j.finish(err)
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(j.interval)
	}
}

// finish ends the pending fetch and wakes its waiters.
func (j *jwks) finish(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lastErr = err
	if j.pending {
		j.pending = false
		close(j.done)
		j.done = make(chan struct{})
	}
}

// refresh asks for a fetch (unless one is pending, or the last one started
// less than a gap ago) and waits for it within ctx. It reports whether a
// fetch ended and its error.
func (j *jwks) refresh(ctx context.Context) (bool, error) {
	j.mu.Lock()
	if !j.pending {
		if j.gap < 0 || j.ctx.Err() != nil || j.now().Sub(j.lastStart) < j.gap {
			j.mu.Unlock()
			return false, nil
		}
		j.pending = true
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
	done := j.done
	j.mu.Unlock()
	select {
	case <-done:
		j.mu.Lock()
		defer j.mu.Unlock()
		return true, j.lastErr
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// forAlg returns the JWKS keys for a token of alg: the kid's key, or all
// keys of alg's kind for a token without kid. An unknown kid, or no key set
// yet, waits for a refresh (rate-limited by the gap); an error wrapping
// errUnavailable says the JWKS could not tell.
func (j *jwks) forAlg(ctx context.Context, alg, kid string) ([]any, error) {
	if keys, ok, err := lookup(j.keys.Load(), alg, kid); ok || err != nil {
		return keys, err
	}
	fetched, err := j.refresh(ctx)
	ks := j.keys.Load()
	keys, ok, kerr := lookup(ks, alg, kid)
	switch {
	case ok || kerr != nil:
		return keys, kerr
	case ks == nil:
		return nil, fmt.Errorf("%w: no key set fetched yet (%v)", errUnavailable, err)
	case err != nil:
		// The kid may be a new key the JWKS could not be asked about.
		return nil, fmt.Errorf("%w: key id %q unknown and the refresh failed (%v)", errUnavailable, kid, err)
	case !fetched:
		return nil, fmt.Errorf("unknown key id %q (no JWKS refresh allowed yet: JWKSUnknownKIDGap)", kid)
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

// lookup finds the keys for alg and kid in ks: ok when ks answers (a token
// without kid always gets an answer, possibly no key); an error when the
// kid's key is of another algorithm.
func lookup(ks *jwksKeys, alg, kid string) ([]any, bool, error) {
	if ks == nil {
		return nil, false, nil
	}
	if kid == "" {
		var out []any
		for _, k := range ks.all {
			if k.alg == alg {
				out = append(out, k.key)
			}
		}
		return out, true, nil
	}
	k, ok := ks.byKID[kid]
	if !ok {
		return nil, false, nil
	}
	if k.alg != alg {
		return nil, false, fmt.Errorf("key %q is for %s, not %s", kid, k.alg, alg)
	}
	return []any{k.key}, true, nil
}

// fetch gets and parses the JWKS and, when it parses, replaces the keys.
func (j *jwks) fetch() error {
	ctx, cancel := context.WithTimeout(j.ctx, j.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("reading: %w", err)
	}
	if len(body) > MaxJWKSBytes {
		return fmt.Errorf("longer than %d bytes", MaxJWKSBytes)
	}
	ks, err := parseJWKS(body, j.log)
	if err != nil {
		return err
	}
	j.keys.Store(ks)
	return nil
}

// parseJWKS keeps the set's usable signature keys; a key that does not
// parse, or is of another use or kind, is skipped (and logged) rather than
// failing the whole set.
func parseJWKS(body []byte, log *slog.Logger) (*jwksKeys, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	ks := &jwksKeys{byKID: map[string]jwksKey{}}
	for i, m := range set.Keys {
		if m.USE != "" && m.USE != jwkset.UseSig {
			continue
		}
		if m.KTY == jwkset.KtyOct {
			continue // shared secrets do not belong in a published set
		}
		// Public halves only: private parameters, if a set carries
		// them, are not read.
		m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.OTH = "", "", "", "", "", "", nil
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			log.Warn("jwtauth: JWKS key skipped", "index", i, "kid", m.KID, "err", err)
			continue
		}
		var s keySet
		if err := s.add(jwk.Key()); err != nil {
			log.Warn("jwtauth: JWKS key skipped", "index", i, "kid", m.KID, "err", err)
			continue
		}
		k := jwksKey{key: jwk.Key()}
		switch {
		case len(s.rsa) > 0:
			k.alg = "RS256"
		case len(s.p256) > 0:
			k.alg = "ES256"
		default:
			k.alg = "EdDSA"
			k.key = s.ed[0] // ed25519.PublicKey, not a pointer
		}
		if m.ALG != "" && string(m.ALG) != k.alg {
			continue // a key for an algorithm not supported here (PS256, ...)
		}
		ks.all = append(ks.all, k)
		if m.KID != "" {
			ks.byKID[m.KID] = k
		}
	}
	return ks, nil
}
