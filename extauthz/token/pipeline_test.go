package token

import (
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPipelineLooksUpOnce: the cache answers exactly what verification answered, as
// the caller's own copy, and each request counts one lookup: a hit or a miss.
func TestPipelineLooksUpOnce(t *testing.T) {
	k := newRSA(t, "rs-cached", "RS256")
	f := newFixture(t, []testKey{k}, nil)
	tok := f.token(t, k, map[string]any{"acr": "aal2", "exp": f.clock.Now().Add(time.Minute).Unix()})
	want, err := f.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if hits, misses := f.v.CacheStats(); hits != 0 || misses != 1 {
		t.Fatalf("first request: hits %d misses %d, want 0 and 1", hits, misses)
	}
	got, err := f.v.Verify(context.Background(), tok)
	if err != nil || !reflect.DeepEqual(got, want) || got == want {
		t.Fatalf("cached: %+v %v; want a copy of %+v", got, err, want)
	}
	if hits, misses := f.v.CacheStats(); hits != 1 || misses != 1 {
		t.Fatalf("second request: hits %d misses %d, want 1 and 1", hits, misses)
	}
	f.clock.Advance(2 * time.Minute)
	_, err = f.v.Verify(context.Background(), tok)
	wantDetail(t, err, DetailExpired)
	if hits, misses := f.v.CacheStats(); hits != 1 || misses != 2 {
		t.Fatalf("after expiry: hits %d misses %d, want 1 and 2", hits, misses)
	}
}

// TestPipelineCacheHitIgnoresTheDeadline: the deadline bounds verification only; a
// cached principal is answered even when the caller's time is already up.
func TestPipelineCacheHitIgnoresTheDeadline(t *testing.T) {
	k := newEC(t, "ec-deadline", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k}, nil)
	tok := f.token(t, k, nil)
	cred := &Credential{Scheme: SchemeBearer, Token: tok}
	if _, _, err := f.v.p.Principal(context.Background(), cred, time.Time{}); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	if _, _, err := f.v.p.Principal(context.Background(), cred, past); err != nil {
		t.Fatalf("a cache hit waited on the deadline: %v", err)
	}
	// A miss that must wait on a key refetch does honour it, and cannot be judged.
	_, _, err := f.v.p.Principal(context.Background(), &Credential{Scheme: SchemeBearer, Token: f.unknownKid(t, k)}, past)
	if !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("a miss past its deadline: %v, want ErrKeysUnavailable", err)
	}
}

// TestCachedRevoked: a token whose key left the key set is not served.
func TestCachedRevoked(t *testing.T) {
	k1, k2 := newRSA(t, "rs-c1", "RS256"), newRSA(t, "rs-c2", "RS256")
	f := newFixture(t, []testKey{k1, k2}, nil)
	tok := f.token(t, k1, nil)
	for range 2 {
		if _, err := f.v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if hits, _ := f.v.CacheStats(); hits != 1 {
		t.Fatal("not cached")
	}
	f.idp.publish(t, k2)
	f.clock.Advance(defaultMinRefetch)
	// An unknown kid makes the key set refetch, which revokes k1.
	_, err := f.v.Verify(context.Background(), f.unknownKid(t, k2))
	wantDetail(t, err, DetailUnknownKid)
	_, err = f.v.Verify(context.Background(), tok)
	wantDetail(t, err, DetailUnknownKid)
	if hits, _ := f.v.CacheStats(); hits != 1 {
		t.Fatal("a token of a revoked key is served from the cache")
	}
}

// payloads are jwt_authn payloads by payload_in_metadata name.
type payloads map[string]map[string]any

func (p payloads) Match(name string, own map[string]any) (present, equal bool) {
	stored, ok := p[name]
	if !ok {
		return false, false
	}
	return true, own != nil && reflect.DeepEqual(stored, own)
}

// tokenPayload is a token's payload as jwt_authn's payload_in_metadata stores it.
func tokenPayload(t *testing.T, raw string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPipelineJWTAuthn: Envoy's verified payloads go through the one cache, and a
// principal is served from it only where the request's jwt_authn payload (or its
// absence) would have let it be verified.
func TestPipelineJWTAuthn(t *testing.T) {
	k := newEC(t, "ec-authn", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k}, func(c *IssuerConfig, _ *Options) { c.EnvoyPayloadKey = "jwt_payload" })
	p := f.v.p
	ctx := context.Background()
	principal := func(raw string, jwtAuthn JWTAuthnPayloads) error {
		_, _, err := p.Principal(ctx, &Credential{Scheme: SchemeBearer, Token: raw, JWTAuthn: jwtAuthn}, time.Time{})
		return err
	}
	// forged has a real payload and a signature that does not verify here: only
	// Envoy's word can carry it.
	good := f.token(t, k, nil)
	forged := good[:strings.LastIndex(good, ".")+1] + "AAAA"
	other := f.token(t, k, map[string]any{"sub": "someone-else"})

	t.Run("a token whose payload jwt_authn verified is accepted, then served from the cache", func(t *testing.T) {
		own := payloads{"jwt_payload": tokenPayload(t, forged)}
		for range 2 {
			if err := principal(forged, own); err != nil {
				t.Fatal(err)
			}
		}
		if hits, misses := p.CacheStats(); hits != 1 || misses != 1 {
			t.Fatalf("hits %d misses %d, want 1 and 1", hits, misses)
		}
	})
	t.Run("without Envoy's word the cached principal is not served, and the token is verified here", func(t *testing.T) {
		wantDetail(t, principal(forged, nil), DetailBadSignature)
		wantDetail(t, principal(forged, payloads{"another_name": tokenPayload(t, forged)}), DetailBadSignature)
	})
	t.Run("someone else's verified payload cannot be paired with a cached token", func(t *testing.T) {
		if err := principal(good, nil); err != nil {
			t.Fatal(err)
		}
		wantDetail(t, principal(good, payloads{"jwt_payload": tokenPayload(t, other)}), DetailPayloadMismatch)
	})
	t.Run("a token verified here is served with its own payload or none", func(t *testing.T) {
		if err := principal(good, nil); err != nil {
			t.Fatal(err)
		}
		if err := principal(good, payloads{"jwt_payload": tokenPayload(t, good)}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("each verifier counts the principals it produced", func(t *testing.T) {
		want := []VerifierCount{{"jwt_authn", 1}, {"jwt", 2}}
		if got := p.Verified(); !reflect.DeepEqual(got, want) {
			t.Fatalf("verified %v, want %v", got, want)
		}
	})
}
