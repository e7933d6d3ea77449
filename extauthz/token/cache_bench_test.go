package token

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/policy"
)

// BenchmarkTokenCacheMillion puts a million distinct verified tokens into a cache and
// reports the heap the cache holds afterwards: once with room for all of them, and
// once at the default token_cache_size (100000), where memory must stay flat however
// many distinct tokens arrive. Entries are filled directly (a million signatures
// would take minutes); each gets its own claims with freshly allocated strings, as
// decoding a real token's payload gives.
//
//	go test -run='^$' -bench=TokenCacheMillion -benchtime=1x ./extauthz/token
func BenchmarkTokenCacheMillion(b *testing.B) {
	const tokens = 1_000_000
	for _, size := range []int{tokens, DefaultCacheSize} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			k := &key{kid: "k1", alg: "ES256"}
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			var held uint64
			var n int
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				c := newPrincipalCache(size)
				for i := range tokens {
					var raw [8]byte
					binary.BigEndian.PutUint64(raw[:], uint64(i))
					sum := sha256.Sum256(raw[:])
					c.put(&sum, realisticPrincipal(i, now, k), now)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				held = after.HeapAlloc - before.HeapAlloc
				n = c.len()
				runtime.KeepAlive(c)
			}
			if n > size {
				b.Fatalf("cache holds %d entries, bound %d", n, size)
			}
			b.ReportMetric(float64(n), "entries")
			b.ReportMetric(float64(held)/(1<<20), "MiB")
			b.ReportMetric(float64(held)/float64(n), "B/entry")
		})
	}
}

// realisticPrincipal is what the pipeline caches for a typical human access token.
func realisticPrincipal(i int, now time.Time, k *key) *Principal {
	fresh := func(s string) string { return string([]byte(s)) }
	return &Principal{Until: now.Add(time.Hour), Hold: k, Claims: policy.Claims{
		Issuer:   fresh("https://login.example.com/tenant-1234/v2.0"),
		Subject:  fmt.Sprintf("00u1a2b3c4d5e6f7g8h9-%07d", i),
		ClientID: fresh("web-frontend"),
		ACR:      fresh("urn:example:loa:aal2"),
		HasACR:   true,
		AMR:      []string{fresh("pwd"), fresh("otp")},
		AuthTime: now.Add(-time.Minute),
		IssuedAt: now.Add(-time.Minute),
		Expiry:   now.Add(time.Hour),
		Scopes:   []string{fresh("openid"), fresh("profile"), fresh("payouts:read")},
	}}
}
