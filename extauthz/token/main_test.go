package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"go.uber.org/goleak"

	"github.com/stepup-authz/stepup-authz/policy"
)

// TestMain fails the package when a test leaves goroutines behind, so a KeySets that
// Close does not fully stop is caught.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testAudience is the audience every test issuer is configured with.
const testAudience = "https://api.example.com"

// t0 is the fixed start of every test clock.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// clock is a settable time source, so no test sleeps. By default a timer set with
// AfterFunc lets its time pass at once (the clock jumps to it and f runs), as if the
// test had waited; in manual mode timers fire only when Advance reaches them.
type clock struct {
	mu     sync.Mutex
	t      time.Time
	manual bool
	timers []*fakeTimer
}

type fakeTimer struct {
	at   time.Time
	f    func()
	done bool // fired or stopped
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Manual makes timers wait for Advance.
func (c *clock) Manual() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.manual = true
}

// Advance moves the clock and runs, in order, the timers it reaches.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	var due []*fakeTimer
	for _, tm := range c.timers {
		if !tm.done && !tm.at.After(c.t) {
			tm.done = true
			due = append(due, tm)
		}
	}
	c.mu.Unlock()
	for _, tm := range due {
		tm.f()
	}
}

// AfterFunc is KeySetOptions.AfterFunc on this clock.
func (c *clock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := &fakeTimer{at: c.t.Add(d), f: f}
	if !c.manual {
		if tm.at.After(c.t) {
			c.t = tm.at
		}
		tm.done = true
		go f()
	} else {
		c.timers = append(c.timers, tm)
	}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		stopped := !tm.done
		tm.done = true
		return stopped
	}
}

// pending is the number of timers waiting for Advance.
func (c *clock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, tm := range c.timers {
		if !tm.done {
			n++
		}
	}
	return n
}

// testKey is a signing key of a test IdP.
type testKey struct {
	kid  string
	alg  string
	priv crypto.Signer
	// jwkExtra is merged into the published JWK (nil values remove members).
	jwkExtra map[string]any
}

func (k testKey) pub() crypto.PublicKey { return k.priv.Public() }

// jwk is the public JWK of k as a JSON-ready map; extra members are merged in.
func (k testKey) jwk(t testing.TB, extra map[string]any) map[string]any {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(k.pub(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.kid}})
	if err != nil {
		t.Fatalf("jwk of %s: %v", k.kid, err)
	}
	b, err := json.Marshal(j.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for name, v := range extra {
		if v == nil {
			delete(m, name)
			continue
		}
		m[name] = v
	}
	return m
}

// rsaKeys caches generated RSA keys by bit size and index: 2048-bit generation is slow
// under the race detector.
var rsaKeys = struct {
	sync.Mutex
	m map[string]*rsa.PrivateKey
}{m: map[string]*rsa.PrivateKey{}}

func rsaKey(t testing.TB, name string, bits int) *rsa.PrivateKey {
	t.Helper()
	rsaKeys.Lock()
	defer rsaKeys.Unlock()
	id := fmt.Sprintf("%s/%d", name, bits)
	if k, ok := rsaKeys.m[id]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	rsaKeys.m[id] = k
	return k
}

// newRSA returns an RSA key named kid, reused across tests; alg is the alg tokens use.
func newRSA(t testing.TB, kid, alg string) testKey {
	return testKey{kid: kid, alg: alg, priv: rsaKey(t, kid, 2048)}
}

func newEC(t testing.TB, kid string, curve elliptic.Curve, alg string) testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: alg, priv: k}
}

func newEd(t testing.TB, kid string) testKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: "EdDSA", priv: k}
}

// idp is a test identity provider on 127.0.0.1 serving discovery and a JWKS.
type idp struct {
	srv *httptest.Server

	mu        sync.Mutex
	jwks      []byte // served at /jwks
	status    int    // when not 0 and not 200, /jwks answers this status
	etag      string // when set, /jwks sends it and honours If-None-Match
	discovery []byte // served at /.well-known/openid-configuration; nil => default doc
	block     chan struct{}

	jwksHits      atomic.Int64
	discoveryHits atomic.Int64
}

func newIDP(t testing.TB, keys ...testKey) *idp {
	t.Helper()
	p := &idp{}
	p.publish(t, keys...)
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	jwks, status, etag, disc, block := p.jwks, p.status, p.etag, p.discovery, p.block
	p.mu.Unlock()
	switch r.URL.Path {
	case "/jwks", "/jwks-b":
		p.jwksHits.Add(1)
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		if status != 0 && status != http.StatusOK {
			http.Error(w, "down", status)
			return
		}
		if etag != "" {
			w.Header().Set("ETag", etag)
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	case wellKnownPath:
		p.discoveryHits.Add(1)
		if disc == nil {
			disc, _ = json.Marshal(map[string]any{"issuer": p.issuer(), "jwks_uri": p.jwksURI()})
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(disc)
	default:
		http.NotFound(w, r)
	}
}

func (p *idp) issuer() string  { return p.srv.URL }
func (p *idp) jwksURI() string { return p.srv.URL + "/jwks" }

// publish serves the public JWKs of keys.
func (p *idp) publish(t testing.TB, keys ...testKey) {
	t.Helper()
	jwks := make([]any, 0, len(keys))
	for _, k := range keys {
		jwks = append(jwks, k.jwk(t, k.jwkExtra))
	}
	p.publishJWKs(t, jwks...)
}

// publishJWKs serves the given JWK maps as a JWKS.
func (p *idp) publishJWKs(t testing.TB, jwks ...any) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": jwks})
	if err != nil {
		t.Fatal(err)
	}
	p.serveRaw(b)
}

func (p *idp) serveRaw(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jwks, p.status = b, 0
}

func (p *idp) setStatus(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = status
}

// setBlock makes /jwks wait until block is closed (or the request is cancelled).
func (p *idp) setBlock(block chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.block = block
}

func (p *idp) setETag(etag string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.etag = etag
}

func (p *idp) setDiscovery(doc any) {
	b, _ := json.Marshal(doc)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.discovery = b
}

// testVerifier is how the tests verify raw bearer tokens: a Pipeline, cache included,
// with its JWT verifier embedded for key status and key set identity.
type testVerifier struct {
	*JWTVerifier
	p     *Pipeline
	cache *principalCache
}

// newTestVerifier builds a Pipeline for issuers.
func newTestVerifier(ks *KeySets, issuers []IssuerConfig, opts Options) (*testVerifier, error) {
	p, err := NewPipeline(ks, issuers, opts)
	if err != nil {
		return nil, err
	}
	return &testVerifier{JWTVerifier: p.jwt, p: p, cache: p.cache}, nil
}

// Verify runs raw through the pipeline as a Bearer credential and returns the claims
// of its principal.
func (v *testVerifier) Verify(ctx context.Context, raw string) (*policy.Claims, error) {
	pr, _, err := v.p.Principal(ctx, &Credential{Scheme: SchemeBearer, Token: raw}, time.Time{})
	if err != nil {
		return nil, err
	}
	return &pr.Claims, nil
}

// verifyUncached verifies raw with the JWT verifier alone, without the cache.
func (v *testVerifier) verifyUncached(ctx context.Context, raw string) (*policy.Claims, error) {
	pr, err := v.JWTVerifier.Verify(ctx, Credential{Scheme: SchemeBearer, Token: raw})
	if err != nil {
		return nil, err
	}
	return &pr.Claims, nil
}

// CacheStats are the pipeline cache's hits and misses.
func (v *testVerifier) CacheStats() (hits, misses uint64) { return v.p.CacheStats() }

// fixture is an IdP, a clock, a KeySets and a pipeline wired together.
type fixture struct {
	idp   *idp
	clock *clock
	ks    *KeySets
	v     *testVerifier
	cfg   IssuerConfig
	opts  Options

	mu      sync.Mutex
	results []string // OnFetch results, in order
}

// newFixture starts an IdP publishing keys and a Verifier for it, and waits for the
// first fetch. mod may change the issuer config and options before the Verifier is built.
func newFixture(t testing.TB, keys []testKey, mod func(*IssuerConfig, *Options)) *fixture {
	t.Helper()
	return newFixtureWith(t, keys, nil, nil, mod)
}

// newFixtureWith is newFixture with hooks: before runs on the IdP before the Verifier
// starts fetching, ksMod on the KeySets options and the KeySets itself.
func newFixtureWith(t testing.TB, keys []testKey, before func(*idp), ksMod func(*KeySetOptions), mod func(*IssuerConfig, *Options)) *fixture {
	t.Helper()
	f := &fixture{idp: newIDP(t, keys...), clock: newClock()}
	if before != nil {
		before(f.idp)
	}
	ko := KeySetOptions{
		Now:       f.clock.Now,
		AfterFunc: f.clock.AfterFunc,
		OnFetch: func(_, result string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.results = append(f.results, result)
		},
	}
	retry := time.Hour // no background retries unless a test asks for them
	if ksMod != nil {
		ksMod(&ko)
		if ko.RefreshInterval > 0 {
			retry = time.Millisecond
		}
	}
	f.ks = NewKeySets(ko)
	f.ks.retryBase = retry
	t.Cleanup(f.ks.Close)
	f.cfg = IssuerConfig{Issuer: f.idp.issuer(), JWKSURI: f.idp.jwksURI(), Audiences: []string{testAudience}}
	f.opts = Options{ClockSkew: 30 * time.Second, Now: f.clock.Now}
	if mod != nil {
		mod(&f.cfg, &f.opts)
	}
	f.v = f.newVerifier(t)
	return f
}

// newVerifier builds another Verifier from the fixture's config on the same KeySets.
func (f *fixture) newVerifier(t testing.TB) *testVerifier {
	t.Helper()
	v, err := newTestVerifier(f.ks, []IssuerConfig{f.cfg}, f.opts)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v.WaitFirstFetch(ctx)
	return v
}

// lastResult is the latest OnFetch result, "" when none.
func (f *fixture) lastResult() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.results) == 0 {
		return ""
	}
	return f.results[len(f.results)-1]
}

func (f *fixture) fetchResults() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.results...)
}

// absent as a header or claim value in mint removes the member.
var absent = struct{ absent bool }{true}

var jtiCounter atomic.Int64

// claims returns valid claims for f's issuer at the clock's time, with overrides
// applied; every call has a new jti so tokens differ (and miss the cache).
func (f *fixture) claims(overrides map[string]any) map[string]any {
	now := f.clock.Now()
	c := map[string]any{
		"iss": f.idp.issuer(),
		"aud": testAudience,
		"sub": "user-1",
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		"jti": fmt.Sprint(jtiCounter.Add(1)),
	}
	for k, v := range overrides {
		if v == absent {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// token mints a valid token of f's issuer signed by k, with claim overrides.
func (f *fixture) token(t testing.TB, k testKey, overrides map[string]any) string {
	t.Helper()
	return mint(t, k, nil, f.claims(overrides))
}

// mint signs claims with k. The header is {"alg": k.alg, "kid": k.kid, "typ": "JWT"}
// with hdr's overrides (absent removes a member).
func mint(t testing.TB, k testKey, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": k.alg, "kid": k.kid, "typ": "JWT"}
	for name, v := range hdr {
		if v == absent {
			delete(h, name)
			continue
		}
		h[name] = v
	}
	hb, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return mintRaw(t, k, k.alg, string(hb), string(pb))
}

// mintRaw signs the given header and payload JSON text with k using alg.
func mintRaw(t testing.TB, k testKey, alg, header, payload string) string {
	t.Helper()
	signed := seg(header) + "." + seg(payload)
	m := signingMethod(alg)
	if m == nil {
		t.Fatalf("no signing method %q", alg)
	}
	sig, err := m.Sign(signed, k.priv)
	if err != nil {
		t.Fatalf("sign %s with %s: %v", alg, k.kid, err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func seg(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// wantDetail fails unless err is an *InvalidError with the given detail; detail ""
// wants success.
func wantDetail(t testing.TB, err error, detail string) {
	t.Helper()
	if detail == "" {
		if err != nil {
			t.Fatalf("want success, got %v", err)
		}
		return
	}
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("want invalid token (%s), got %v", detail, err)
	}
	if ie.Detail != detail {
		t.Fatalf("want detail %q, got %q (%v)", detail, ie.Detail, err)
	}
}

// eventually polls cond until it holds or 10s pass; it waits on real background work
// (goroutines, HTTP), not on time itself.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
