package extauthz_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/bench"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// newIntrospectionServer is a Server as `serve` wires it, whose one issuer
// (a dev IdP on loopback HTTP) verifies JWTs locally and introspects opaque
// tokens with the given cache TTLs. It returns the IdP too.
func newIntrospectionServer(tb testing.TB, cacheTTL string) (*extauthz.Server, *devidp.IdP) {
	tb.Helper()
	idp, err := devidp.New(bench.Audience)
	if err != nil {
		tb.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	tb.Cleanup(hs.Close)
	idp.Issuer = hs.URL
	secret := filepath.Join(tb.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(idp.IntrospectionSecret()), 0o600); err != nil {
		tb.Fatal(err)
	}
	yaml := fmt.Sprintf(`
issuers:
  - issuer: %[1]q
    jwks_uri: "%[1]s/jwks.json"
    audiences: [%[2]q]
    introspection:
      endpoint: "%[1]s/introspect"
      client_id: %[3]q
      client_secret_file: %[4]q
      opaque_tokens: true
      cache_ttl: %[5]s
      negative_cache_ttl: %[5]s
`, hs.URL, bench.Audience, devidp.IntrospectionClientID, secret, cacheTTL)
	cfg, err := config.Parse([]byte(yaml), nil)
	if err != nil {
		tb.Fatal(err)
	}
	ks := token.NewKeySets(token.KeySetOptions{})
	tb.Cleanup(ks.Close)
	engine, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	engine.WaitFirstFetch(ctx)
	return extauthz.NewServer(engine, extauthz.Options{
		Metrics: extauthz.NewMetrics(prometheus.NewRegistry()),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}), idp
}

// BenchmarkCheckIntrospection compares, in one run, a Check whose opaque
// token's introspection answer is cached with a Check whose JWT is cached
// (BENCHMARKS.md: the cached introspection path must cost at most 1.05x), and
// the cold path, where every Check introspects over loopback HTTP
// (cache_ttl 0), with the bare HTTP round trip to the same endpoint. Each
// reports its p50 and p99 per operation.
//
//	go test -run='^$' -bench=CheckIntrospection -benchmem ./extauthz
func BenchmarkCheckIntrospection(b *testing.B) {
	for _, tc := range []struct {
		name, ttl string
		opaque    bool
	}{
		{"token=jwt/cached", "60s", false},
		{"token=opaque/cached", "60s", true},
		{"token=opaque/cold", "0s", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv, idp := newIntrospectionServer(b, tc.ttl)
			var tok string
			var err error
			if tc.opaque {
				tok, err = idp.MintOpaque(bench.Claims("aal2", time.Now(), 1))
			} else {
				tok, err = idp.Mint(bench.Claims("aal2", time.Now(), 1))
			}
			if err != nil {
				b.Fatal(err)
			}
			req := bench.Request(tok)
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			check := func() {
				resp, err := srv.Check(ctx, req)
				if err != nil || resp.GetStatus().GetCode() != int32(codes.OK) {
					b.Fatalf("Check: %v, %v", resp, err)
				}
			}
			check()
			measure(b, check)
		})
	}
	b.Run("roundtrip=bare", func(b *testing.B) {
		_, idp := newIntrospectionServer(b, "60s")
		tok, err := idp.MintOpaque(bench.Claims("aal2", time.Now(), 1))
		if err != nil {
			b.Fatal(err)
		}
		body := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}.Encode()
		client := &http.Client{}
		post := func() {
			req, _ := http.NewRequest(http.MethodPost, idp.Issuer+"/introspect", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(devidp.IntrospectionClientID, idp.IntrospectionSecret())
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("POST: %v %v", resp, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		post()
		measure(b, post)
	})
}

// measure runs op in the benchmark loop and reports its p50 and p99.
func measure(b *testing.B, op func()) {
	b.ReportAllocs()
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		op()
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	}
}

// A flood of distinct garbage opaque tokens, all at once, must not turn into a
// flood of calls to the identity provider: at most max_in_flight run at once,
// every Check is denied, and memory stays bounded. The endpoint takes a few
// milliseconds per answer so that callers really do queue; the numbers are
// logged for BENCHMARKS.md (go test -run GarbageFlood -v ./extauthz).
func TestIntrospectionGarbageFloodIsBounded(t *testing.T) {
	const maxInFlight = 64 // the default
	tokens := 10000
	if raceDetector {
		tokens = 1000 // each waiting Check is a goroutine, and another per distinct token
	}
	var inFlight, peak, calls atomic.Int64
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
		}
		calls.Add(1)
		time.Sleep(2 * time.Millisecond) // an IdP that takes a moment; not an assertion
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active":false}`))
	}))
	defer ep.Close()

	idp := newDevIdP(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
issuers:
  - issuer: %[1]q
    jwks_uri: "%[1]s/jwks.json"
    audiences: [%[2]q]
    introspection:
      endpoint: "%[3]s/introspect"
      client_id: stepup-authz
      client_secret_file: %[4]q
      opaque_tokens: true
      max_in_flight: %[5]d
`, idp.Issuer, bench.Audience, ep.URL, secret, maxInFlight)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ks := token.NewKeySets(token.KeySetOptions{})
	defer ks.Close()
	engine, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	engine.WaitFirstFetch(wctx)
	cancel()
	srv := extauthz.NewServer(engine, extauthz.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})

	reqs := make([]*authv3.CheckRequest, tokens)
	for i := range reqs {
		reqs[i] = bench.Request("garbage-" + strconv.Itoa(i) + "-" + strings.Repeat("x", 32))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var peakHeap atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peakHeap.Load() {
				peakHeap.Store(m.HeapInuse)
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	var denied, unavailable atomic.Int64
	for _, r := range reqs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			resp, err := srv.Check(ctx, r)
			if err != nil {
				t.Error(err)
				return
			}
			switch resp.GetDeniedResponse().GetStatus().GetCode() {
			case 401:
				denied.Add(1)
			case 503:
				unavailable.Add(1)
			default:
				t.Errorf("a garbage token got %v", resp)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	runtime.GC()
	runtime.ReadMemStats(&after)

	if p := peak.Load(); p > maxInFlight {
		t.Fatalf("%d concurrent calls reached the endpoint, max_in_flight is %d", p, maxInFlight)
	}
	if denied.Load() != int64(tokens) {
		t.Fatalf("%d of %d garbage tokens denied as invalid (%d unavailable)", denied.Load(), tokens, unavailable.Load())
	}
	t.Logf("%d distinct garbage tokens at once: %d calls, peak %d concurrent (max_in_flight %d), %v wall; heap in use %.1f MiB before, peak %.1f MiB, %.1f MiB after GC (%d negative cache entries retained)",
		tokens, calls.Load(), peak.Load(), maxInFlight, elapsed.Round(time.Millisecond),
		float64(before.HeapInuse)/(1<<20), float64(peakHeap.Load())/(1<<20), float64(after.HeapInuse)/(1<<20), tokens)
}
