package token

import (
	"context"
	"crypto/elliptic"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/policy"
)

func TestCacheServesVerifiedTokens(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	raw := f.token(t, k1, nil)
	for i := range 3 {
		c, err := f.v.Verify(context.Background(), raw)
		if err != nil || c.Subject != "user-1" {
			t.Fatalf("verify %d: %v %+v", i, err, c)
		}
	}
	if hits, misses := f.v.CacheStats(); hits != 2 || misses != 1 {
		t.Fatalf("hits %d misses %d, want 2 and 1", hits, misses)
	}
}

func TestCacheExpiry(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	tests := []struct {
		name    string
		skew    time.Duration
		advance time.Duration
		detail  string
		hit     bool
	}{
		{"a cached token is served just before its exp", 30 * time.Second, 10*time.Second - time.Nanosecond, "", true},
		{"a cached token is not served at its exp even though the skew still accepts it", 30 * time.Second, 10 * time.Second, "", false},
		{"a cached token is not served at its exp and without skew it is expired", 0, 10 * time.Second, DetailExpired, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, []testKey{k1}, func(_ *IssuerConfig, o *Options) { o.ClockSkew = tt.skew })
			raw := f.token(t, k1, map[string]any{"exp": f.clock.Now().Add(10 * time.Second).Unix()})
			if _, err := f.v.Verify(context.Background(), raw); err != nil {
				t.Fatal(err)
			}
			f.clock.Advance(tt.advance)
			_, err := f.v.Verify(context.Background(), raw)
			wantDetail(t, err, tt.detail)
			if hits, _ := f.v.CacheStats(); (hits == 1) != tt.hit {
				t.Fatalf("%d hits, want hit=%v", hits, tt.hit)
			}
		})
	}
}

func TestCacheNotYetValidTokenIsNotCached(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	raw := f.token(t, k1, map[string]any{"nbf": f.clock.Now().Add(time.Minute).Unix()})
	for range 2 {
		_, err := f.v.Verify(context.Background(), raw)
		wantDetail(t, err, DetailNotYetValid)
	}
	if n := f.v.cache.len(); n != 0 {
		t.Fatalf("%d cached entries", n)
	}
	f.clock.Advance(time.Minute)
	if _, err := f.v.Verify(context.Background(), raw); err != nil {
		t.Fatalf("once valid: %v", err)
	}
}

func TestCacheIsPerVerifier(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	raw := f.token(t, k1, nil)
	f.v.Verify(context.Background(), raw)
	f.v.Verify(context.Background(), raw)
	v2 := f.newVerifier(t)
	if _, err := v2.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if hits, misses := v2.CacheStats(); hits != 0 || misses != 1 {
		t.Fatalf("a reloaded Verifier served from the old cache: %d hits %d misses", hits, misses)
	}
}

func TestCacheIsBounded(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	tests := []struct {
		name string
		size int
		max  int
	}{
		{"a cache of 10 holds at most 10 tokens", 10, 10},
		{"a cache of 100 holds at most 100 tokens", 100, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, []testKey{k1}, func(_ *IssuerConfig, o *Options) { o.CacheSize = tt.size })
			for range 3 * tt.max {
				if _, err := f.v.Verify(context.Background(), f.token(t, k1, nil)); err != nil {
					t.Fatal(err)
				}
			}
			if n := f.v.cache.len(); n > tt.max || n == 0 {
				t.Fatalf("%d entries, want 1..%d", n, tt.max)
			}
		})
	}
}

func TestCacheReturnsIndependentClaims(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	raw := f.token(t, k1, map[string]any{"acr": "urn:idp:mfa"})
	c, err := f.v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	c.ACR = "aal3" // e.g. a caller applying acr_aliases in place
	c.Expiry = c.Expiry.Add(time.Hour)
	again, err := f.v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if again.ACR != "urn:idp:mfa" || again == c {
		t.Fatalf("a caller's change leaked into the cache: %+v", again)
	}
}

func TestCacheHitAllocations(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, nil)
	raw := f.token(t, k1, nil)
	if _, err := f.v.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := f.v.Verify(context.Background(), raw); err != nil {
			t.Fatal(err)
		}
	})
	// The caller's copy of the claims is the only allocation.
	if allocs > 1 {
		t.Fatalf("a cache hit allocates %v times", allocs)
	}
	if n := f.idp.jwksHits.Load(); n != 1 {
		t.Fatalf("cache hits did I/O: %d fetches", n)
	}
}

func TestTokenCacheEviction(t *testing.T) {
	now := t0
	later := now.Add(2 * time.Second)
	sum := func(i int) *[sha256.Size]byte {
		s := sha256.Sum256(fmt.Appendf(nil, "%d", i))
		return &s
	}
	tests := []struct {
		name string
		// stale inserts entry 2 and makes it unusable by later.
		stale func(c *principalCache)
	}{
		{"a full shard evicts an expired entry before a live one", func(c *principalCache) {
			c.put(sum(2), principalOf(now.Add(time.Second), &key{}), now)
		}},
		{"a full shard evicts an entry of a revoked key before a live one", func(c *principalCache) {
			k := &key{}
			c.put(sum(2), principalOf(now.Add(time.Hour), k), now)
			k.revoked.Store(true)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newPrincipalCache(1) // one shard
			c.shards[0].max = 2
			c.put(sum(1), principalOf(now.Add(time.Hour), &key{}), now)
			tt.stale(c)
			if c.len() != 2 {
				t.Fatalf("%d entries before eviction, want 2", c.len())
			}
			c.put(sum(3), principalOf(now.Add(time.Hour), &key{}), later)
			if c.len() != 2 || got(c, sum(1), later) == nil || got(c, sum(3), later) == nil {
				t.Fatal("a live entry was evicted while a stale one was there")
			}
		})
	}
	t.Run("an entry that is no longer usable is removed when looked up", func(t *testing.T) {
		c := newPrincipalCache(4)
		c.put(sum(1), principalOf(now.Add(time.Second), &key{}), now)
		if got(c, sum(1), now.Add(time.Second)) != nil || c.len() != 0 {
			t.Fatal("expired entry kept")
		}
	})
	t.Run("an already expired token is not stored", func(t *testing.T) {
		c := newPrincipalCache(4)
		c.put(sum(1), principalOf(now, &key{}), now)
		if c.len() != 0 {
			t.Fatal("expired token stored")
		}
	})
}

func BenchmarkVerifyCacheHit(b *testing.B) {
	k1 := newEC(b, "k1", elliptic.P256(), "ES256")
	f := newFixture(b, []testKey{k1}, nil)
	raw := f.token(b, k1, nil)
	if _, err := f.v.Verify(context.Background(), raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.v.Verify(context.Background(), raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerifyUncached(b *testing.B) {
	k1 := newEC(b, "k1", elliptic.P256(), "ES256")
	f := newFixture(b, []testKey{k1}, nil)
	raw := f.token(b, k1, map[string]any{"acr": "aal2", "amr": []string{"pwd", "otp"}, "scope": "a b c"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.verifyUncached(context.Background(), raw); err != nil {
			b.Fatal(err)
		}
	}
}

// principalOf is a principal valid until until and held by k.
func principalOf(until time.Time, k *key) *Principal {
	return &Principal{Claims: policy.Claims{Expiry: until}, Until: until, Hold: k}
}

// got is the principal c serves for sum at now to any request.
func got(c *principalCache, sum *[sha256.Size]byte, now time.Time) *Principal {
	p, _ := c.get(sum, now, &Credential{})
	return p
}
