package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// unknownKid returns a token naming a kid the IdP does not publish, to provoke a refetch.
func (f *fixture) unknownKid(t testing.TB, k testKey) string {
	t.Helper()
	return mint(t, k, map[string]any{"kid": fmt.Sprintf("unknown-%d", rand.Int())}, f.claims(nil))
}

func TestKeySetKeepsKeysWhenFetchFails(t *testing.T) {
	k1 := newRSA(t, "k1", "RS256")
	oct := map[string]any{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}
	tests := []struct {
		name    string
		breakIt func(t testing.TB, p *idp)
		result  string
	}{
		{"a JWKS endpoint answering 500 keeps cached keys working", func(_ testing.TB, p *idp) { p.setStatus(500) }, FetchError},
		{"a JWKS endpoint answering 404 keeps cached keys working", func(_ testing.TB, p *idp) { p.setStatus(404) }, FetchError},
		{"a JWKS endpoint that went away keeps cached keys working", func(_ testing.TB, p *idp) { p.srv.Close() }, FetchError},
		{"a non-JSON answer keeps cached keys working", func(_ testing.TB, p *idp) { p.serveRaw([]byte("<html>maintenance</html>")) }, FetchInvalid},
		{"a JSON answer that is not a key set keeps cached keys working", func(_ testing.TB, p *idp) { p.serveRaw([]byte(`["k1"]`)) }, FetchInvalid},
		{"an empty keys array keeps cached keys working", func(_ testing.TB, p *idp) { p.serveRaw([]byte(`{"keys":[]}`)) }, FetchEmpty},
		{"a set without keys member keeps cached keys working", func(_ testing.TB, p *idp) { p.serveRaw([]byte(`{}`)) }, FetchEmpty},
		{"a set of only unusable keys keeps cached keys working", func(t testing.TB, p *idp) {
			p.publishJWKs(t, oct, k1.jwk(t, map[string]any{"use": "enc"}))
		}, FetchInvalid},
		{"an answer larger than 1 MiB keeps cached keys working", func(_ testing.TB, p *idp) {
			p.serveRaw([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", maxBodyBytes) + `"}`))
		}, FetchInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, []testKey{k1}, nil)
			if _, err := f.v.Verify(context.Background(), f.token(t, k1, nil)); err != nil {
				t.Fatal(err)
			}
			tt.breakIt(t, f.idp)
			f.clock.Advance(defaultMinRefetch)
			_, err := f.v.Verify(context.Background(), f.unknownKid(t, k1))
			wantDetail(t, err, DetailUnknownKid)
			if got := f.fetchResults(); len(got) != 2 || got[1] != tt.result {
				t.Fatalf("fetch results %v, want [ok %s]", got, tt.result)
			}
			// A token not seen before goes the uncached path and still verifies.
			if _, err := f.v.Verify(context.Background(), f.token(t, k1, nil)); err != nil {
				t.Fatalf("cached key stopped working: %v", err)
			}
			st := f.v.Status()[0]
			if st.Keys != 1 || st.LastError == "" || !st.LastSuccess.Equal(t0) {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

func TestKeySetUnavailableAtStart(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixtureWith(t, []testKey{k1}, func(p *idp) { p.setStatus(503) }, nil, nil)
	tok := f.token(t, k1, nil)

	_, err := f.v.Verify(context.Background(), tok)
	if !errors.Is(err, ErrKeysUnavailable) || InvalidDetail(err) != "" {
		t.Fatalf("JWKS down at start: want ErrKeysUnavailable and not invalid, got %v", err)
	}
	if st := f.v.Status()[0]; !st.Fetched || st.Keys != 0 || !strings.Contains(st.LastError, "503") {
		t.Fatalf("status %+v", st)
	}

	f.idp.setStatus(0)
	_, err = f.v.Verify(context.Background(), tok)
	if !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("within MinRefetch no refetch may run, got %v", err)
	}
	if n := f.idp.jwksHits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times within MinRefetch, want 1", n)
	}

	f.clock.Advance(defaultMinRefetch)
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("server back: %v", err)
	}
	if st := f.v.Status()[0]; st.Keys != 1 || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
}

func TestKeySetBackgroundRetryWhileNoKeys(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixtureWith(t, []testKey{k1}, func(p *idp) { p.setStatus(503) },
		func(o *KeySetOptions) { o.RefreshInterval = time.Hour }, nil)
	f.idp.setStatus(0)
	eventually(t, "a background retry to load the keys", func() bool { return f.v.Status()[0].Keys == 1 })
	if _, err := f.v.Verify(context.Background(), f.token(t, k1, nil)); err != nil {
		t.Fatal(err)
	}
}

func TestKeySetBackgroundRefresh(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	k2 := newEC(t, "k2", elliptic.P256(), "ES256")
	f := newFixtureWith(t, []testKey{k1}, nil, func(o *KeySetOptions) { o.RefreshInterval = 5 * time.Millisecond }, nil)
	f.idp.publish(t, k2)
	// The clock never moves, so no on-demand refetch may run: only the refresher can
	// bring k2 in and revoke k1.
	eventually(t, "the background refresh to install k2", func() bool {
		_, err := f.v.Verify(context.Background(), f.token(t, k2, nil))
		return err == nil
	})
	_, err := f.v.Verify(context.Background(), f.token(t, k1, nil))
	wantDetail(t, err, DetailUnknownKid)
}

func TestKeySetRotation(t *testing.T) {
	k1 := newRSA(t, "k1", "RS256")
	k2 := newEC(t, "k2", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	f.idp.publish(t, k1, k2)
	tok2 := f.token(t, k2, nil)

	_, err := f.v.Verify(context.Background(), tok2)
	wantDetail(t, err, DetailUnknownKid)
	if n := f.idp.jwksHits.Load(); n != 1 {
		t.Fatalf("an unknown kid within MinRefetch of the last fetch fetched: %d fetches", n)
	}

	f.clock.Advance(defaultMinRefetch)
	if _, err := f.v.Verify(context.Background(), tok2); err != nil {
		t.Fatalf("the new kid does not verify after the refetch: %v", err)
	}
	if _, err := f.v.Verify(context.Background(), f.token(t, k1, nil)); err != nil {
		t.Fatalf("the old key that stayed in the set stopped verifying: %v", err)
	}
	if n := f.idp.jwksHits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestKeySetRevocation(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	k2 := newEC(t, "k2", elliptic.P256(), "ES256")
	tests := []struct {
		name   string
		token  func(f *fixture) string
		detail string
	}{
		{"a token signed by a key that left the set is refused even when cached",
			func(f *fixture) string { return f.token(t, k1, nil) }, DetailUnknownKid},
		{"a token without kid signed by a key that left the set is refused even when cached",
			func(f *fixture) string { return mint(t, k1, map[string]any{"kid": absent}, f.claims(nil)) }, DetailBadSignature},
		{"a cached token of a key that stayed in the set is still served from the cache",
			func(f *fixture) string { return f.token(t, k2, nil) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, []testKey{k1, k2}, nil)
			raw := tt.token(f)
			for range 2 {
				if _, err := f.v.Verify(context.Background(), raw); err != nil {
					t.Fatal(err)
				}
			}
			if hits, _ := f.v.CacheStats(); hits != 1 {
				t.Fatalf("token not cached: %d hits", hits)
			}
			f.idp.publish(t, k2)
			f.clock.Advance(defaultMinRefetch)
			_, err := f.v.Verify(context.Background(), f.unknownKid(t, k2))
			wantDetail(t, err, DetailUnknownKid)
			if f.lastResult() != FetchOK {
				t.Fatalf("refetch result %q", f.lastResult())
			}
			_, err = f.v.Verify(context.Background(), raw)
			wantDetail(t, err, tt.detail)
			wantHits := uint64(1)
			if tt.detail == "" {
				wantHits = 2
			}
			if hits, _ := f.v.CacheStats(); hits != wantHits {
				t.Fatalf("%d cache hits, want %d", hits, wantHits)
			}
		})
	}
}

func TestKeySetUnchangedRefreshKeepsCachedTokens(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	raw := f.token(t, k1, nil)
	if _, err := f.v.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(defaultMinRefetch)
	f.v.Verify(context.Background(), f.unknownKid(t, k1))
	if f.idp.jwksHits.Load() != 2 {
		t.Fatal("no refetch happened")
	}
	if _, err := f.v.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if hits, _ := f.v.CacheStats(); hits != 1 {
		t.Fatalf("a refresh returning the same keys emptied the cache: %d hits", hits)
	}
}

func TestKeySetRefetchIsRateLimitedAndSingleFlight(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	flood := func(t *testing.T) {
		tokens := make([]string, 1000)
		for i := range tokens {
			tokens[i] = f.unknownKid(t, k1)
		}
		var wg sync.WaitGroup
		for _, raw := range tokens {
			wg.Go(func() {
				_, err := f.v.Verify(context.Background(), raw)
				if InvalidDetail(err) != DetailUnknownKid {
					t.Errorf("want unknown_kid, got %v", err)
				}
			})
		}
		wg.Wait()
	}
	tests := []struct {
		name    string
		advance time.Duration
		maxNew  int64
		minNew  int64
	}{
		{"1000 unknown kids right after a fetch cause no fetch", 0, 0, 0},
		{"1000 unknown kids just under MinRefetch later cause no fetch", defaultMinRefetch - time.Millisecond, 0, 0},
		{"1000 unknown kids once MinRefetch passed cause one shared fetch", time.Millisecond, 1, 1},
		{"1000 more unknown kids in the same window cause no fetch", time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Advance(tt.advance)
			before := f.idp.jwksHits.Load()
			flood(t)
			if n := f.idp.jwksHits.Load() - before; n < tt.minNew || n > tt.maxNew {
				t.Fatalf("%d fetches, want %d..%d", n, tt.minNew, tt.maxNew)
			}
		})
	}
}

func TestKeySetRefetchIsBoundedByContext(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	block := make(chan struct{})
	defer close(block)
	f.idp.setBlock(block)
	f.clock.Advance(defaultMinRefetch)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := f.v.Verify(ctx, f.unknownKid(t, k1))
	// The key may be in the set still being fetched: the token cannot be judged (503),
	// which is not the same as invalid (401).
	if !errors.Is(err, ErrKeysUnavailable) || InvalidDetail(err) != "" {
		t.Fatalf("Verify with an unfinished refetch = %v, want ErrKeysUnavailable", err)
	}
	if ctx.Err() == nil {
		t.Fatal("Verify returned before its context ended, so it did not wait for the refetch")
	}
	// The hanging fetch does not hold up tokens whose keys are known.
	if _, err := f.v.Verify(context.Background(), f.token(t, k1, nil)); err != nil {
		t.Fatal(err)
	}
}

func TestKeySetFirstFetch(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	p := newIDP(t, k1)
	block := make(chan struct{})
	p.setBlock(block)
	clk := newClock()
	ks := NewKeySets(KeySetOptions{Now: clk.Now})
	t.Cleanup(ks.Close)
	v, err := NewVerifier(ks, []IssuerConfig{{Issuer: p.issuer(), JWKSURI: p.jwksURI(), Audiences: []string{testAudience}}}, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("WaitFirstFetch returns when its context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		v.WaitFirstFetch(ctx)
		if st := v.Status()[0]; st.Fetched {
			t.Fatalf("status %+v before the first fetch finished", st)
		}
	})
	t.Run("a request arriving during the first fetch waits for it rather than failing", func(t *testing.T) {
		raw := mint(t, k1, nil, map[string]any{"iss": p.issuer(), "aud": testAudience, "exp": clk.Now().Add(time.Hour).Unix()})
		done := make(chan error)
		go func() {
			_, err := v.Verify(context.Background(), raw)
			done <- err
		}()
		eventually(t, "the first fetch to reach the server", func() bool { return p.jwksHits.Load() == 1 })
		close(block)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		v.WaitFirstFetch(context.Background())
		if st := v.Status()[0]; !st.Fetched || st.Keys != 1 || st.JWKSURI != p.jwksURI() || !st.LastSuccess.Equal(t0) {
			t.Fatalf("status %+v", st)
		}
		if n := p.jwksHits.Load(); n != 1 {
			t.Fatalf("%d fetches, want the request to share the first one", n)
		}
	})
}

func TestKeySetNotModified(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixtureWith(t, []testKey{k1}, func(p *idp) { p.setETag(`"v1"`) }, nil, nil)
	f.clock.Advance(defaultMinRefetch)
	f.v.Verify(context.Background(), f.unknownKid(t, k1))
	if got := f.fetchResults(); len(got) != 2 || got[1] != FetchNotModified {
		t.Fatalf("fetch results %v", got)
	}
	if _, err := f.v.Verify(context.Background(), f.token(t, k1, nil)); err != nil {
		t.Fatal(err)
	}
	if st := f.v.Status()[0]; st.LastError != "" || !st.LastSuccess.Equal(t0.Add(defaultMinRefetch)) {
		t.Fatalf("status %+v", st)
	}
}

func TestKeySetRedirects(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	p := newIDP(t, k1)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-loopback":
			http.Redirect(w, r, p.jwksURI(), http.StatusFound)
		case "/to-plain-http":
			http.Redirect(w, r, "http://idp.example.com/jwks", http.StatusFound)
		}
	}))
	t.Cleanup(redirector.Close)
	tests := []struct {
		name string
		path string
		keys int
	}{
		{"a redirect to another loopback URL is followed", "/to-loopback", 1},
		{"a redirect to plain http on a public host is refused", "/to-plain-http", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks := NewKeySets(KeySetOptions{})
			defer ks.Close()
			v, err := NewVerifier(ks, []IssuerConfig{{Issuer: "https://idp.example.com", JWKSURI: redirector.URL + tt.path, Audiences: []string{"a"}}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			v.WaitFirstFetch(context.Background())
			if st := v.Status()[0]; st.Keys != tt.keys {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

func TestKeySetsReuseAcrossReloads(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	tests := []struct {
		name      string
		change    func(c *IssuerConfig, p *idp)
		reused    bool
		wantFetch int64
	}{
		{"an unchanged issuer keeps its keys and does not fetch again", func(*IssuerConfig, *idp) {}, true, 1},
		{"a changed audience keeps the keys", func(c *IssuerConfig, _ *idp) { c.Audiences = []string{"other"} }, true, 1},
		{"a changed jwks_uri starts a new key set", func(c *IssuerConfig, p *idp) { c.JWKSURI = p.srv.URL + "/jwks-b" }, false, 2},
		{"a new HTTP client without key starts a new key set", func(c *IssuerConfig, _ *idp) { c.HTTPClient = &http.Client{} }, false, 2},
		{"a new HTTP client with the same HTTPClientKey keeps the keys", func(c *IssuerConfig, _ *idp) {
			c.HTTPClient, c.HTTPClientKey = &http.Client{}, "ca-v1"
		}, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, []testKey{k1}, func(c *IssuerConfig, _ *Options) {
				if strings.Contains(tt.name, "HTTPClientKey") {
					c.HTTPClient, c.HTTPClientKey = &http.Client{}, "ca-v1"
				}
			})
			if _, err := f.v.Verify(context.Background(), f.token(t, k1, nil)); err != nil {
				t.Fatal(err)
			}
			tt.change(&f.cfg, f.idp)
			v2 := f.newVerifier(t)
			if n := f.idp.jwksHits.Load(); n != tt.wantFetch {
				t.Fatalf("%d fetches, want %d", n, tt.wantFetch)
			}
			if reused := v2.order[0].keys == f.v.order[0].keys; reused != tt.reused {
				t.Fatalf("key set reused = %v, want %v", reused, tt.reused)
			}
			if _, err := v2.Verify(context.Background(), f.token(t, k1, map[string]any{"aud": f.cfg.Audiences[0]})); err != nil {
				t.Fatal(err)
			}
			if hits, misses := v2.CacheStats(); hits != 0 || misses != 1 {
				t.Fatalf("a new Verifier must start with an empty cache: %d hits %d misses", hits, misses)
			}
			wantSets := 1
			if !tt.reused {
				wantSets = 2
			}
			if n := len(f.ks.Status()); n != wantSets {
				t.Fatalf("%d key sets before Retain, want %d", n, wantSets)
			}
			f.ks.Retain(v2)
			if st := f.ks.Status(); len(st) != 1 || st[0].JWKSURI != v2.Status()[0].JWKSURI {
				t.Fatalf("after Retain: %+v", st)
			}
		})
	}
}

func TestKeySetsRetainAndClose(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	a, b := newIDP(t, k1), newIDP(t, k1)
	ks := NewKeySets(KeySetOptions{})
	t.Cleanup(ks.Close)
	cfgA := IssuerConfig{Issuer: a.issuer(), JWKSURI: a.jwksURI(), Audiences: []string{testAudience}}
	cfgB := IssuerConfig{Issuer: b.issuer(), JWKSURI: b.jwksURI(), Audiences: []string{testAudience}}
	both, err := NewVerifier(ks, []IssuerConfig{cfgA, cfgB}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	both.WaitFirstFetch(context.Background())
	onlyB, err := NewVerifier(ks, []IssuerConfig{cfgB}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ks.Status()); n != 2 {
		t.Fatalf("%d key sets, want 2", n)
	}

	t.Run("Retain drops the key sets of issuers that left the configuration", func(t *testing.T) {
		ks.Retain(onlyB)
		st := ks.Status()
		if len(st) != 1 || st[0].Issuer != b.issuer() {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("a verifier whose key set was dropped keeps its last keys", func(t *testing.T) {
		raw := mint(t, k1, nil, map[string]any{"iss": a.issuer(), "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()})
		if _, err := both.Verify(context.Background(), raw); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Close stops key sets and refuses new verifiers", func(t *testing.T) {
		ks.Close()
		ks.Close() // idempotent
		if _, err := NewVerifier(ks, []IssuerConfig{cfgA}, Options{}); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Fatalf("NewVerifier after Close: %v", err)
		}
		raw := mint(t, k1, nil, map[string]any{"iss": b.issuer(), "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()})
		if _, err := onlyB.Verify(context.Background(), raw); err != nil {
			t.Fatalf("held keys stopped working after Close: %v", err)
		}
		// An unknown kid after Close does not start a fetch (goleak in TestMain would see it).
		hits := b.jwksHits.Load()
		_, err := onlyB.Verify(context.Background(), mint(t, k1, map[string]any{"kid": "x"}, map[string]any{"iss": b.issuer(), "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()}))
		wantDetail(t, err, DetailUnknownKid)
		if b.jwksHits.Load() != hits {
			t.Fatal("a closed key set fetched")
		}
	})
}

func TestParseJWKS(t *testing.T) {
	rsaK := newRSA(t, "rsa", "RS256")
	small := testKey{kid: "small", alg: "RS256", priv: rsaKey(t, "small", 1024)}
	ec := newEC(t, "ec", elliptic.P256(), "ES256")
	ed := newEd(t, "ed")
	jwkText := func(m map[string]any) string { b, _ := json.Marshal(m); return string(b) }
	// A private RSA JWK as some IdPs wrongly publish it.
	priv := rsaK.jwk(t, nil)
	pk := rsaK.priv.(*rsa.PrivateKey)
	priv["d"] = b64.EncodeToString(pk.D.Bytes())
	offCurve := ec.jwk(t, nil)
	offCurve["y"] = offCurve["x"]
	tests := []struct {
		name   string
		jwks   string
		keys   int
		result string // "" when the set is usable
	}{
		{"RSA, EC and Ed25519 keys are all usable", `{"keys":[` + jwkText(rsaK.jwk(t, nil)) + `,` + jwkText(ec.jwk(t, nil)) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 3, ""},
		{"a symmetric oct key is never loaded", `{"keys":[{"kty":"oct","k":"c2VjcmV0"},` + jwkText(ec.jwk(t, nil)) + `]}`, 1, ""},
		{"a key with use enc is skipped", `{"keys":[` + jwkText(ec.jwk(t, map[string]any{"use": "enc"})) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 1, ""},
		{"a key with use sig is used", `{"keys":[` + jwkText(ec.jwk(t, map[string]any{"use": "sig"})) + `]}`, 1, ""},
		{"a key whose key_ops lack verify is skipped", `{"keys":[` + jwkText(ec.jwk(t, map[string]any{"key_ops": []string{"encrypt"}})) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 1, ""},
		{"a key whose key_ops include verify is used", `{"keys":[` + jwkText(ec.jwk(t, map[string]any{"key_ops": []string{"verify"}})) + `]}`, 1, ""},
		{"an RSA key under 2048 bits is skipped", `{"keys":[` + jwkText(small.jwk(t, nil)) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 1, ""},
		{"a key whose alg does not fit its type is skipped", `{"keys":[` + jwkText(ec.jwk(t, map[string]any{"alg": "RS256"})) + `,` + jwkText(rsaK.jwk(t, map[string]any{"alg": "HS256"})) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 1, ""},
		{"an EC point off its curve is skipped", `{"keys":[` + jwkText(offCurve) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 1, ""},
		{"an X25519 key is skipped", `{"keys":[{"kty":"OKP","crv":"X25519","x":"` + b64.EncodeToString(make([]byte, 32)) + `"},` + jwkText(ed.jwk(t, nil)) + `]}`, 1, ""},
		{"an unparseable key is skipped", `{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"},` + jwkText(ed.jwk(t, nil)) + `]}`, 1, ""},
		{"a private RSA JWK contributes only its public key", `{"keys":[` + jwkText(priv) + `]}`, 1, ""},
		{"a set of only unusable keys is invalid", `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, 0, FetchInvalid},
		{"an empty keys array is empty", `{"keys":[]}`, 0, FetchEmpty},
		{"a null keys member is empty", `{"keys":null}`, 0, FetchEmpty},
		{"a document that is not JSON is invalid", `<html>`, 0, FetchInvalid},
		{"a keys member that is not an array is invalid", `{"keys":{}}`, 0, FetchInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, _, err := parseJWKS([]byte(tt.jwks))
			if tt.result != "" {
				if err == nil || fetchResult(err) != tt.result {
					t.Fatalf("err %v (result %q), want result %q", err, fetchResult(err), tt.result)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != tt.keys {
				t.Fatalf("%d keys, want %d", len(keys), tt.keys)
			}
			for _, k := range keys {
				switch k.pub.(type) {
				case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
				default:
					t.Fatalf("key %q is a %T, want a public key", k.kid, k.pub)
				}
			}
		})
	}
}
