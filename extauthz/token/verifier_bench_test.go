package token

import (
	"context"
	"crypto/elliptic"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// benchClaims are the claims of a typical human access token; with an RS256
// signature the token is about 800 bytes, like the ones BENCHMARKS.md uses.
func benchClaims(f *fixture) map[string]any {
	now := f.clock.Now()
	return f.claims(map[string]any{
		"sub":       "00u1a2b3c4d5e6f7g8h9",
		"client_id": "web-frontend",
		"acr":       "aal2",
		"amr":       []string{"pwd", "otp"},
		"auth_time": now.Add(-time.Minute).Unix(),
		"scope":     "openid profile email payouts:read payouts:write",
		"sid":       "f3c5b2a1-8d7e-4c6b-9a5f-1e2d3c4b5a69",
		"email":     "jane.doe@example.com",
		"name":      "Jane Doe",
	})
}

// BenchmarkVerify measures token verification: cache=cold verifies every time
// (the JWT verifier alone, so the full parse, signature and claims path runs),
// cache=hit answers a token verified before from the verified-token cache,
// and cache=miss verifies a token new to a full cache and stores it (evicting
// one entry), as a stream of distinct tokens does.
//
//	go test -run='^$' -bench=Verify -benchmem ./extauthz/token
func BenchmarkVerify(b *testing.B) {
	keys := []testKey{
		newRSA(b, "rs-bench", "RS256"),
		newEC(b, "es-bench", elliptic.P256(), "ES256"),
		newEd(b, "ed-bench"),
	}
	for _, k := range keys {
		for _, mode := range []string{"cold", "hit", "miss"} {
			b.Run(fmt.Sprintf("alg=%s/cache=%s", k.alg, mode), func(b *testing.B) {
				f := newFixture(b, keys, func(_ *IssuerConfig, o *Options) {
					switch mode {
					case "miss":
						// One entry and two tokens taken in turn: every lookup
						// misses and every store evicts.
						o.CacheSize = 1
					}
				})
				toks := []string{
					mint(b, k, nil, benchClaims(f)),
					mint(b, k, nil, benchClaims(f)),
				}
				ctx := context.Background()
				verify := f.v.Verify
				if mode == "cold" {
					verify = f.v.verifyUncached
				}
				for _, tok := range toks {
					if _, err := verify(ctx, tok); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(toks[0])), "token-bytes")
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					c, err := verify(ctx, toks[i&1])
					if err != nil || c.ACR != "aal2" {
						b.Fatal(err)
					}
					if mode == "miss" {
						i++
					}
				}
				hits, misses := f.v.CacheStats()
				switch {
				case mode == "hit" && misses > 2:
					b.Fatalf("hit benchmark missed the cache %d times", misses)
				case mode == "miss" && hits > 0:
					b.Fatalf("miss benchmark hit the cache %d times", hits)
				}
			})
		}
	}
}

// BenchmarkBearer reads the credential from an Authorization value.
func BenchmarkBearer(b *testing.B) {
	k := newRSA(b, "rs-bench", "RS256")
	f := newFixture(b, []testKey{k}, nil)
	values := []string{"Bearer " + mint(b, k, nil, benchClaims(f))}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadCredential(values); err != nil {
			b.Fatal(err)
		}
	}
}

// TestB64CharTable pins the lookup table to RFC 6750's b64token characters.
func TestB64CharTable(t *testing.T) {
	for c := range 256 {
		want := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
		if got := isB64Char(byte(c)); got != want {
			t.Errorf("isB64Char(%q) = %v, want %v", byte(c), got, want)
		}
	}
}

// TestIsB64TokenUnrolled holds the eight-bytes-a-step scan to the plain
// definition, with the first bad byte and the padding at every position.
func TestIsB64TokenUnrolled(t *testing.T) {
	plain := func(s string) bool {
		i := 0
		for i < len(s) && isB64Char(s[i]) {
			i++
		}
		if i == 0 {
			return false
		}
		for ; i < len(s); i++ {
			if s[i] != '=' {
				return false
			}
		}
		return true
	}
	base := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-._~+/"
	for n := 0; n <= len(base); n++ {
		for _, tail := range []string{"", "=", "==", " ", "=a", "\x00", "\xff", ",", "a=b"} {
			for p := 0; p <= n; p++ {
				s := base[:p] + tail + base[p:n]
				if got, want := isB64Token(s), plain(s); got != want {
					t.Fatalf("isB64Token(%q) = %v, want %v", s, got, want)
				}
			}
		}
	}
}

// BenchmarkVerifyReference is the same RS256 token parsed and verified by
// golang-jwt/v5 alone (MapClaims, iss, aud, exp, iat), the reference of the
// unique-token target in BENCHMARKS.md, next to BenchmarkVerify's cold path
// and its parts.
func BenchmarkVerifyReference(b *testing.B) {
	k := newRSA(b, "rs-bench", "RS256")
	f := newFixture(b, []testKey{k}, nil)
	tok := mint(b, k, nil, benchClaims(f))
	b.Run("impl=golang-jwt", func(b *testing.B) {
		p := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(f.cfg.Issuer),
			jwt.WithAudience(testAudience), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
			jwt.WithTimeFunc(f.clock.Now), jwt.WithLeeway(30*time.Second))
		pub := k.pub()
		b.ReportAllocs()
		for b.Loop() {
			c := jwt.MapClaims{}
			if _, err := p.ParseWithClaims(tok, c, func(*jwt.Token) (any, error) { return pub, nil }); err != nil || c["acr"] != "aal2" {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=stepup-authz", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if c, err := f.v.verifyUncached(context.Background(), tok); err != nil || c.ACR != "aal2" {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=stepup-authz/part=parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := splitCompact(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=stepup-authz/part=signature", func(b *testing.B) {
		t, err := splitCompact(tok)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := jwt.SigningMethodRS256.Verify(t.signed, t.signature, k.pub()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
