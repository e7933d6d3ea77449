package token

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// TestCached: Cached answers exactly what Verify answers for a token the
// cache may serve, nothing for any other, counts hits once and misses never
// (Verify counts the miss).
func TestCached(t *testing.T) {
	k := newRSA(t, "rs-cached", "RS256")
	f := newFixture(t, []testKey{k}, nil)
	tok := f.token(t, k, map[string]any{"acr": "aal2", "exp": f.clock.Now().Add(time.Minute).Unix()})
	if _, ok := f.v.Cached(tok); ok {
		t.Fatal("a token never verified is cached")
	}
	want, err := f.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := f.v.Cached(tok)
	if !ok || !reflect.DeepEqual(got, want) || got == want {
		t.Fatalf("Cached: %+v %v; want a copy of %+v", got, ok, want)
	}
	if hits, misses := f.v.CacheStats(); hits != 1 || misses != 1 {
		t.Fatalf("hits %d misses %d, want 1 and 1", hits, misses)
	}
	f.clock.Advance(2 * time.Minute)
	if _, ok := f.v.Cached(tok); ok {
		t.Fatal("an expired token is served from the cache")
	}
	if hits, misses := f.v.CacheStats(); hits != 1 || misses != 1 {
		t.Fatalf("after a miss: hits %d misses %d, want 1 and 1", hits, misses)
	}
	if _, ok := f.v.Cached(string(make([]byte, MaxTokenBytes+1))); ok {
		t.Fatal("a token over the size limit is cached")
	}
}

// TestCachedRevoked: a token whose key left the key set is not served.
func TestCachedRevoked(t *testing.T) {
	k1, k2 := newRSA(t, "rs-c1", "RS256"), newRSA(t, "rs-c2", "RS256")
	f := newFixture(t, []testKey{k1, k2}, nil)
	tok := f.token(t, k1, nil)
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.v.Cached(tok); !ok {
		t.Fatal("not cached")
	}
	f.idp.publish(t, k2)
	f.clock.Advance(defaultMinRefetch)
	// An unknown kid makes the key set refetch, which revokes k1.
	_, err := f.v.Verify(context.Background(), f.unknownKid(t, k2))
	wantDetail(t, err, DetailUnknownKid)
	if _, ok := f.v.Cached(tok); ok {
		t.Fatal("a token of a revoked key is served from the cache")
	}
}
