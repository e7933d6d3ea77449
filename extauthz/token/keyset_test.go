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
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
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

// An IdP that publishes a new key and signs with it at once, less than MinRefetch after
// the last fetch (any client can cause that with a random kid): the new kid is never
// answered 401 because the refetch is rate limited. The refetch is scheduled for the end
// of the window; a request that can wait for it verifies, one that cannot is answered
// "keys unavailable" (503) at once.
func TestKeySetRotationInsideTheRefetchWindow(t *testing.T) {
	k1 := newRSA(t, "k1", "RS256")
	k2 := newEC(t, "k2", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	f.clock.Manual()
	f.idp.publish(t, k1, k2)
	tok2 := f.token(t, k2, nil)
	keys := f.v.order[0].keys

	t.Run("a new kid whose deadline comes before the window ends is answered keys-unavailable at once", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second) // the window ends in 5s
		defer cancel()
		_, err := f.v.Verify(ctx, tok2)
		if !errors.Is(err, ErrKeysUnavailable) || InvalidDetail(err) != "" {
			t.Fatalf("new kid inside the window = %v, want ErrKeysUnavailable (503), never invalid (401)", err)
		}
		if ctx.Err() != nil {
			t.Fatal("Verify waited until its deadline for a fetch it knew would start after it")
		}
		if n := f.idp.jwksHits.Load(); n != 1 {
			t.Fatalf("%d fetches inside the window, want 1 (the first)", n)
		}
		if f.clock.pending() != 1 {
			t.Fatal("no refetch was scheduled for the end of the window")
		}
	})
	t.Run("a token issued before the latest fetch started is judged by that fetch at once", func(t *testing.T) {
		// The IdP published its key before signing with it, so the key was in that
		// fetch if it still is published: a revoked key's tokens are refused, not held.
		old := mint(t, k2, map[string]any{"kid": "revoked"}, f.claims(map[string]any{"iat": t0.Add(-f.opts.ClockSkew - time.Second).Unix()}))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := f.v.Verify(ctx, old)
		wantDetail(t, err, DetailUnknownKid)
		if ctx.Err() != nil {
			t.Fatal("Verify waited")
		}
	})
	t.Run("a token issued within clock_skew of the latest fetch, or without iat, waits like a new one", func(t *testing.T) {
		for _, iat := range []any{t0.Add(-f.opts.ClockSkew + time.Second).Unix(), absent} {
			raw := mint(t, k2, map[string]any{"kid": "revoked"}, f.claims(map[string]any{"iat": iat}))
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := f.v.Verify(ctx, raw)
			cancel()
			if !errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("iat %v: %v, want ErrKeysUnavailable", iat, err)
			}
		}
		if n := f.idp.jwksHits.Load(); n != 1 {
			t.Fatalf("%d fetches inside the window, want 1", n)
		}
	})
	t.Run("requests that can wait share the one fetch at the end of the window", func(t *testing.T) {
		f.clock.Advance(defaultMinRefetch - time.Second)
		gone := f.unknownKid(t, k1)
		results := make(chan error, 3)
		for _, raw := range []string{tok2, tok2, gone} {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, err := f.v.Verify(ctx, raw)
				results <- err
			}()
		}
		eventually(t, "three requests waiting for the scheduled fetch", func() bool { return keys.waiting.Load() == 3 })
		if n := f.idp.jwksHits.Load(); n != 1 {
			t.Fatalf("%d fetches before the window ended, want 1", n)
		}
		f.clock.Advance(time.Second)
		got := map[string]int{}
		for range 3 {
			err := <-results
			switch {
			case err == nil:
				got["verified"]++
			case InvalidDetail(err) == DetailUnknownKid:
				got["unknown_kid"]++
			default:
				t.Errorf("unexpected answer: %v", err)
			}
		}
		if got["verified"] != 2 || got["unknown_kid"] != 1 {
			t.Fatalf("answers %v, want the new kid verified twice and the absent kid unknown once", got)
		}
		if n := f.idp.jwksHits.Load(); n != 2 {
			t.Fatalf("%d fetches, want 2: the waiters share one", n)
		}
	})
	t.Run("the old key that stayed in the set keeps verifying", func(t *testing.T) {
		if _, err := f.v.Verify(context.Background(), f.token(t, k1, nil)); err != nil {
			t.Fatal(err)
		}
	})
}

// A fetch that starts for another reason while one is scheduled (the background
// refresh) takes its place: the waiters get its keys and no second fetch runs.
func TestKeySetScheduledRefetchJoinsTheBackgroundRefresh(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	k2 := newEC(t, "k2", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	f.clock.Manual()
	f.idp.publish(t, k1, k2)
	keys := f.v.order[0].keys
	done := make(chan error, 1)
	go func() {
		_, err := f.v.Verify(context.Background(), f.token(t, k2, nil))
		done <- err
	}()
	eventually(t, "the request to wait for the scheduled fetch", func() bool { return keys.waiting.Load() == 1 })
	<-keys.startFetch(true, trace.SpanContext{}) // what the background refresher does
	if err := <-done; err != nil {
		t.Fatalf("the waiter did not get the refreshed keys: %v", err)
	}
	if f.clock.pending() != 0 {
		t.Fatal("the scheduled fetch is still pending after the refresh took its place")
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

// However many distinct unknown kids arrive, an issuer's JWKS is fetched at most once
// per MinRefetch: inside the window they wait for (or, when their deadline comes first,
// are answered 503 instead of waiting for) the one fetch scheduled for its end.
func TestKeySetRefetchIsRateLimitedAndSingleFlight(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	f.clock.Manual()
	keys := f.v.order[0].keys
	// flood sends 1000 unknown kids with the given deadline and counts the answers; it
	// returns once every request has been answered or is waiting (wantWaiting of them).
	flood := func(t *testing.T, deadline time.Duration, wantWaiting int32) (answers func() map[string]int) {
		tokens := make([]string, 1000)
		for i := range tokens {
			tokens[i] = f.unknownKid(t, k1)
		}
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		for _, raw := range tokens {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				_, err := f.v.Verify(ctx, raw)
				word := InvalidDetail(err)
				if errors.Is(err, ErrKeysUnavailable) {
					word = "keys_unavailable"
				}
				mu.Lock()
				got[word]++
				mu.Unlock()
			})
		}
		if wantWaiting > 0 {
			eventually(t, "the flood to wait for the scheduled fetch", func() bool { return keys.waiting.Load() == wantWaiting })
		}
		return func() map[string]int {
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			return got
		}
	}
	fetches := func() int64 { return f.idp.jwksHits.Load() }

	t.Run("1000 unknown kids right after a fetch, with deadlines before the window ends: no fetch, all 503", func(t *testing.T) {
		before := fetches()
		got := flood(t, time.Second, 0)()
		if got["keys_unavailable"] != 1000 {
			t.Fatalf("answers %v, want 1000 keys_unavailable", got)
		}
		if n := fetches() - before; n != 0 {
			t.Fatalf("%d fetches inside the window", n)
		}
	})
	t.Run("1000 unknown kids that can wait until the window ends share one fetch", func(t *testing.T) {
		before := fetches()
		f.clock.Advance(defaultMinRefetch - time.Millisecond)
		answers := flood(t, 30*time.Second, 1000)
		if n := fetches() - before; n != 0 {
			t.Fatalf("%d fetches before the window ended", n)
		}
		f.clock.Advance(time.Millisecond)
		if got := answers(); got[DetailUnknownKid] != 1000 {
			t.Fatalf("answers %v, want 1000 unknown_kid after the shared fetch", got)
		}
		if n := fetches() - before; n != 1 {
			t.Fatalf("%d fetches, want 1", n)
		}
	})
	t.Run("1000 more unknown kids in the next window schedule one more fetch, no more", func(t *testing.T) {
		before := fetches()
		f.clock.Advance(time.Second)
		if got := flood(t, time.Second, 0)(); got["keys_unavailable"] != 1000 {
			t.Fatalf("answers %v, want 1000 keys_unavailable", got)
		}
		if n, p := fetches()-before, f.clock.pending(); n != 0 || p != 1 {
			t.Fatalf("%d fetches and %d scheduled, want 0 and 1", n, p)
		}
		f.clock.Advance(defaultMinRefetch)
		eventually(t, "the scheduled fetch", func() bool { return fetches()-before == 1 })
		if p := f.clock.pending(); p != 0 {
			t.Fatalf("%d fetches still scheduled", p)
		}
	})
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
	v, err := newTestVerifier(ks, []IssuerConfig{{Issuer: p.issuer(), JWKSURI: p.jwksURI(), Audiences: []string{testAudience}}}, Options{Now: clk.Now})
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
			v, err := newTestVerifier(ks, []IssuerConfig{{Issuer: "https://idp.example.com", JWKSURI: redirector.URL + tt.path, Audiences: []string{"a"}}}, Options{})
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
			f.ks.Retain(v2.JWTVerifier)
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
	both, err := newTestVerifier(ks, []IssuerConfig{cfgA, cfgB}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	both.WaitFirstFetch(context.Background())
	onlyB, err := newTestVerifier(ks, []IssuerConfig{cfgB}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ks.Status()); n != 2 {
		t.Fatalf("%d key sets, want 2", n)
	}

	t.Run("Retain drops the key sets of issuers that left the configuration", func(t *testing.T) {
		ks.Retain(onlyB.JWTVerifier)
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
		if _, err := newTestVerifier(ks, []IssuerConfig{cfgA}, Options{}); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Fatalf("NewVerifier after Close: %v", err)
		}
		raw := mint(t, k1, nil, map[string]any{"iss": b.issuer(), "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()})
		if _, err := onlyB.Verify(context.Background(), raw); err != nil {
			t.Fatalf("held keys stopped working after Close: %v", err)
		}
		// An unknown kid after Close does not start a fetch (goleak in TestMain would see
		// it), and cannot be judged without one: keys unavailable (503), not invalid.
		hits := b.jwksHits.Load()
		_, err := onlyB.Verify(context.Background(), mint(t, k1, map[string]any{"kid": "x"}, map[string]any{"iss": b.issuer(), "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()}))
		if !errors.Is(err, ErrKeysUnavailable) || InvalidDetail(err) != "" {
			t.Fatalf("unknown kid after Close = %v, want ErrKeysUnavailable", err)
		}
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
		// refused is the reason given for the first refused key (a substring); "" when
		// no key is refused.
		refused string
	}{
		{"RSA, EC and Ed25519 keys are all usable", `{"keys":[` + jwkText(rsaK.jwk(t, nil)) + `,` + jwkText(ec.jwk(t, nil)) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 3, "", ""},
		{"a symmetric oct key is never loaded", `{"keys":[{"kty":"oct","k":"c2VjcmV0"},` + jwkText(ec.jwk(t, nil)) + `]}`, 1, "", "symmetric (oct) key"},
		{"a key with use enc is skipped", `{"keys":[` + jwkText(ec.jwk(t, map[string]any{"use": "enc"})) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 1, "", `use is "enc": not a signature key`},
		{"a key with use sig is used", `{"keys":[` + jwkText(ec.jwk(t, map[string]any{"use": "sig"})) + `]}`, 1, "", ""},
		{"a key whose key_ops lack verify is skipped", `{"keys":[` + jwkText(ec.jwk(t, map[string]any{"key_ops": []string{"encrypt"}})) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 1, "", `lack "verify"`},
		{"a key whose key_ops include verify is used", `{"keys":[` + jwkText(ec.jwk(t, map[string]any{"key_ops": []string{"verify"}})) + `]}`, 1, "", ""},
		{"an RSA key under 2048 bits is skipped", `{"keys":[` + jwkText(small.jwk(t, nil)) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 1, "", "RSA key of 1024 bits; at least 2048 required"},
		{"a key whose alg does not fit its type is skipped", `{"keys":[` + jwkText(ec.jwk(t, map[string]any{"alg": "RS256"})) + `,` + jwkText(rsaK.jwk(t, map[string]any{"alg": "HS256"})) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 1, "", `alg "RS256" does not fit this EC P-256 key`},
		{"an EC point off its curve is skipped", `{"keys":[` + jwkText(offCurve) + `,` + jwkText(ed.jwk(t, nil)) + `]}`, 1, "", "unreadable key"},
		{"an EC key on an unsupported curve is skipped", `{"keys":[{"kty":"EC","crv":"secp256k1","kid":"k","x":"AA","y":"AA"},` + jwkText(ed.jwk(t, nil)) + `]}`, 1, "", `EC curve "secp256k1" is not supported; use P-256, P-384, P-521`},
		{"an X25519 key is skipped", `{"keys":[{"kty":"OKP","crv":"X25519","x":"` + b64.EncodeToString(make([]byte, 32)) + `"},` + jwkText(ed.jwk(t, nil)) + `]}`, 1, "", "X25519 is for key agreement"},
		{"an Ed448 key is skipped", `{"keys":[{"kty":"OKP","crv":"Ed448","x":"AA"},` + jwkText(ed.jwk(t, nil)) + `]}`, 1, "", `OKP curve "Ed448" is not supported; use Ed25519`},
		{"a key of an unknown type is skipped", `{"keys":[{"kty":"PQ","kid":"k"},` + jwkText(ed.jwk(t, nil)) + `]}`, 1, "", `key type "PQ" is not supported`},
		{"an unparseable key is skipped", `{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"},` + jwkText(ed.jwk(t, nil)) + `]}`, 1, "", "unreadable key"},
		{"a key whose members have the wrong JSON type is skipped", `{"keys":[{"kty":"RSA","kid":"k","n":1},` + jwkText(ed.jwk(t, nil)) + `]}`, 1, "", "not a JWK"},
		{"a private RSA JWK contributes only its public key", `{"keys":[` + jwkText(priv) + `]}`, 1, "", ""},
		{"a set of only unusable keys is invalid", `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, 0, FetchInvalid, "symmetric"},
		{"an empty keys array is empty", `{"keys":[]}`, 0, FetchEmpty, ""},
		{"a null keys member is empty", `{"keys":null}`, 0, FetchEmpty, ""},
		{"a document that is not JSON is invalid", `<html>`, 0, FetchInvalid, ""},
		{"a keys member that is not an array is invalid", `{"keys":{}}`, 0, FetchInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, skipped, err := parseJWKS([]byte(tt.jwks))
			if tt.refused == "" {
				if skipped != nil && skipped.count != 0 {
					t.Fatalf("%d keys refused: %+v", skipped.count, skipped.first)
				}
			} else {
				if skipped == nil || skipped.count == 0 || !strings.Contains(skipped.first[0].Reason, tt.refused) {
					t.Fatalf("refused %+v, want the first key refused because %q", skipped, tt.refused)
				}
			}
			if tt.result != "" {
				if err == nil || fetchResult(err) != tt.result {
					t.Fatalf("err %v (result %q), want result %q", err, fetchResult(err), tt.result)
				}
				if tt.refused != "" && !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("error %q does not say why the keys were refused", err)
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

// logLines is a concurrency-safe buffer of JSON log lines.
type logLines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// records returns the decoded lines whose msg starts with prefix.
func (l *logLines) records(t *testing.T, prefix string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	text := l.b.String()
	l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, rec)
		}
	}
	return out
}

// A JWKS key this server refuses does not vanish silently: each fetch logs it once with
// its kid and why, the status counts it, and a token naming it is told key_refused
// rather than unknown_kid (which would point at the IdP's rotation, not at the key).
func TestKeySetReportsRefusedKeys(t *testing.T) {
	good := newEC(t, "good", elliptic.P256(), "ES256")
	small := testKey{kid: "small", alg: "RS256", priv: rsaKey(t, "small", 1024)}
	enc := newEC(t, "enc", elliptic.P256(), "ES256")
	enc.jwkExtra = map[string]any{"use": "enc"}
	logs := &logLines{}
	f := newFixtureWith(t, []testKey{good, small, enc}, nil, func(o *KeySetOptions) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}, nil)

	t.Run("the status counts the refused keys and says why", func(t *testing.T) {
		st := f.v.Status()[0]
		if st.Keys != 1 || st.Skipped != 2 || len(st.SkippedKeys) != 2 {
			t.Fatalf("status %+v, want 1 key and 2 skipped", st)
		}
		if k := st.SkippedKeys[0]; k.KID != "small" || k.Kty != "RSA" || k.Reason != "RSA key of 1024 bits; at least 2048 required (RFC 7518 §3.3)" {
			t.Fatalf("skipped %+v", k)
		}
		if k := st.SkippedKeys[1]; k.KID != "enc" || k.Crv != "P-256" || !strings.Contains(k.Reason, "not a signature key") {
			t.Fatalf("skipped %+v", k)
		}
	})
	t.Run("each refused key is logged once, a signing key at WARN and an encryption key at INFO", func(t *testing.T) {
		warn, info := logs.records(t, "jwks key refused"), logs.records(t, "jwks key skipped")
		if len(warn) != 1 || warn[0]["level"] != "WARN" || warn[0]["kid"] != "small" || warn[0]["kty"] != "RSA" ||
			!strings.Contains(warn[0]["reason"].(string), "1024 bits") || warn[0]["issuer"] != f.idp.issuer() {
			t.Fatalf("refused-key log lines %v", warn)
		}
		if len(info) != 1 || info[0]["level"] != "INFO" || info[0]["kid"] != "enc" {
			t.Fatalf("skipped-key log lines %v", info)
		}
	})
	t.Run("a token signed by the refused key is key_refused, not unknown_kid", func(t *testing.T) {
		_, err := f.v.Verify(context.Background(), f.token(t, small, nil))
		wantDetail(t, err, DetailKeyRefused)
		if !strings.Contains(err.Error(), "1024 bits") {
			t.Fatalf("error %q does not say why the key is refused", err)
		}
		// Fetching again would refuse it again.
		if n := len(f.fetchResults()); n != 1 {
			t.Fatalf("%d fetches, want no refetch for a kid the latest fetch refused", n)
		}
	})
	t.Run("a token naming a kid the set does not have at all is still unknown_kid", func(t *testing.T) {
		_, err := f.v.Verify(context.Background(), f.unknownKid(t, good))
		wantDetail(t, err, DetailUnknownKid)
		// Its kid made the verifier refetch; that fetch logged the refused key once more.
		if n, fetches := len(logs.records(t, "jwks key refused")), len(f.fetchResults()); n != fetches || fetches != 2 {
			t.Fatalf("%d refused-key lines after %d fetches, want one per fetch", n, fetches)
		}
	})
	t.Run("a set of only refused keys keeps the held keys, and its error says why", func(t *testing.T) {
		f.idp.publish(t, small)
		f.clock.Advance(defaultMinRefetch)
		_, err := f.v.Verify(context.Background(), f.unknownKid(t, good))
		wantDetail(t, err, DetailUnknownKid)
		_, err = f.v.Verify(context.Background(), f.token(t, small, nil))
		wantDetail(t, err, DetailKeyRefused)
		if f.lastResult() != FetchInvalid {
			t.Fatalf("fetch result %q, want %q", f.lastResult(), FetchInvalid)
		}
		st := f.v.Status()[0]
		if st.Keys != 1 || st.Skipped != 1 || !strings.Contains(st.LastError, `key kid "small": RSA key of 1024 bits`) {
			t.Fatalf("status %+v", st)
		}
		if _, err := f.v.Verify(context.Background(), f.token(t, good, nil)); err != nil {
			t.Fatalf("the held key stopped verifying: %v", err)
		}
	})
}

// A failed fetch says what it leaves: no keys (so this issuer's tokens get 503) or the
// keys still held; never "cached keys stay" when there are none.
func TestKeySetFetchFailureMessages(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	logs := &logLines{}
	f := newFixtureWith(t, []testKey{k1}, func(p *idp) { p.setStatus(503) }, func(o *KeySetOptions) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	}, nil)
	failed := func() map[string]any {
		recs := logs.records(t, "jwks fetch failed")
		if len(recs) == 0 {
			t.Fatal("no fetch failure logged")
		}
		return recs[len(recs)-1]
	}
	t.Run("with no keys held, the line says so, at ERROR, and what follows for tokens", func(t *testing.T) {
		rec := failed()
		msg := rec["msg"].(string)
		if rec["level"] != "ERROR" || !strings.Contains(msg, "no keys are held") || !strings.Contains(msg, "503") ||
			strings.Contains(msg, "keys held keep") || !strings.Contains(rec["error"].(string), "503") {
			t.Fatalf("log line %v", rec)
		}
	})
	t.Run("with keys held, the line says they keep verifying, how many, and since when", func(t *testing.T) {
		f.idp.setStatus(0)
		f.clock.Advance(defaultMinRefetch)
		if _, err := f.v.Verify(context.Background(), f.token(t, k1, nil)); err != nil {
			t.Fatal(err)
		}
		f.idp.setStatus(500)
		f.clock.Advance(defaultMinRefetch)
		_, err := f.v.Verify(context.Background(), f.unknownKid(t, k1))
		wantDetail(t, err, DetailUnknownKid)
		rec := failed()
		if rec["level"] != "WARN" || !strings.Contains(rec["msg"].(string), "keys held keep verifying") || rec["keys_held"] != float64(1) || rec["last_success"] == nil {
			t.Fatalf("log line %v", rec)
		}
	})
}

func TestIssuerStatusMessage(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name  string
		st    IssuerStatus
		state string
		says  []string
	}{
		{"before the first fetch finished, tokens wait for it", IssuerStatus{}, StateFetching, []string{"has not finished", "503"}},
		{"a first fetch that failed is no keys, not fetched keys", IssuerStatus{Fetched: true, LastError: "fetch jwks: status 503"}, StateNoKeys,
			[]string{"no keys", "tokens of this issuer get 503", "check that the jwks_uri"}},
		{"keys held with a failed refresh keep verifying, and say since when", IssuerStatus{Fetched: true, Keys: 2, LastError: "x", LastSuccess: at}, StateStale,
			[]string{"2 keys from the fetch at 2030-01-02T03:04:05Z keep verifying", "latest fetch failed"}},
		{"keys held and fetched", IssuerStatus{Fetched: true, Keys: 3, LastSuccess: at}, StateOK, []string{"3 keys, fetched at 2030-01-02T03:04:05Z"}},
		{"refused keys are counted and their consequence named", IssuerStatus{Fetched: true, Keys: 3, LastSuccess: at, Skipped: 1}, StateOK,
			[]string{"1 keys of the latest JWKS were refused", "key_refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.st.State(); got != tt.state {
				t.Errorf("state %q, want %q", got, tt.state)
			}
			msg := tt.st.Message()
			for _, want := range tt.says {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
		})
	}
}
