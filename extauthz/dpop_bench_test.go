package extauthz_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/bench"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
	"github.com/stepup-authz/stepup-authz/internal/dpopproof"
	"github.com/stepup-authz/stepup-authz/internal/redistest"
)

// BenchmarkCheckDPoP is the whole in-process Check of BenchmarkCheck's request
// (cached token, route metadata aal2 / 300 s) for a bearer token and for a
// DPoP-bound token with a fresh proof every Check (ES256 and EdDSA proofs),
// with the memory replay store and with Redis on loopback. Proofs are made
// before the timer starts; each Check pays parsing, the jwk and its
// thumbprint, one signature verification, the binding and one replay insert.
// cpu-ns/op is the process's CPU per Check (GC and the Redis client's
// goroutines included), which a busy machine inflates far less than ns/op.
//
//	go test -run='^$' -bench=CheckDPoP -benchmem ./extauthz
func BenchmarkCheckDPoP(b *testing.B) {
	cases := []struct{ name, alg, store string }{
		{"token=bearer", "", "memory"},
		{"token=dpop/alg=ES256/store=memory", "ES256", "memory"},
		{"token=dpop/alg=EdDSA/store=memory", "EdDSA", "memory"},
		{"token=dpop/alg=ES256/store=redis", "ES256", "redis"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			idp, err := devidp.New(bench.Audience)
			if err != nil {
				b.Fatal(err)
			}
			hs := httptest.NewServer(idp.Handler())
			b.Cleanup(hs.Close)
			idp.Issuer = hs.URL
			yaml := "issuers:\n  - issuer: " + strconv.Quote(hs.URL) + "\n    jwks_uri: " + strconv.Quote(hs.URL+"/jwks.json") +
				"\n    audiences: [" + strconv.Quote(bench.Audience) + "]\n"
			if tc.store == "redis" {
				srv := redistest.Start(b, "")
				yaml += "dpop:\n  replay_store: { type: redis, address: " + strconv.Quote(srv.Addr) + " }\n"
			}
			cfg, err := config.Parse([]byte(yaml), nil)
			if err != nil {
				b.Fatal(err)
			}
			ks := token.NewKeySets(token.KeySetOptions{})
			b.Cleanup(ks.Close)
			engine, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			engine.WaitFirstFetch(ctx)
			srv := extauthz.NewServer(engine, extauthz.Options{
				Metrics: extauthz.NewMetrics(prometheus.NewRegistry()),
				Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			claims := bench.Claims("aal2", time.Now(), 1)
			var key *dpopproof.Key
			if tc.alg != "" {
				if key, err = dpopproof.NewKey(tc.alg); err != nil {
					b.Fatal(err)
				}
				claims["cnf"] = map[string]any{"jkt": key.Thumbprint()}
			}
			tok, err := idp.Mint(claims)
			if err != nil {
				b.Fatal(err)
			}
			base := bench.Request(tok)
			htu := "https://" + bench.Route.Host + bench.Route.Path
			// request returns the i-th request: the bearer one, or the DPoP one
			// with its own proof.
			var reqs []*authv3.CheckRequest
			prepare := func(n int) {
				reqs = reqs[:0]
				for range n {
					if key == nil {
						reqs = append(reqs, base)
						continue
					}
					r := proto.Clone(base).(*authv3.CheckRequest)
					h := r.GetAttributes().GetRequest().GetHttp().GetHeaders()
					h["authorization"] = "DPoP " + tok
					p, err := key.Proof(bench.Route.Method, htu, tok, "", time.Now())
					if err != nil {
						b.Fatal(err)
					}
					h["dpop"] = p
					reqs = append(reqs, r)
				}
			}
			check := func(r *authv3.CheckRequest) {
				resp, err := srv.Check(ctx, r)
				if err != nil || resp.GetOkResponse() == nil {
					b.Fatalf("Check: %v %v", resp.GetDeniedResponse(), err)
				}
			}
			prepare(1)
			check(reqs[0]) // warms the verified-token cache
			prepare(b.N)
			runtime.GC() // the proofs' making leaves garbage this Check should not pay for
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := bench.SelfCPU()
			for i := 0; i < b.N; i++ {
				check(reqs[i])
			}
			b.ReportMetric(float64(bench.SelfCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
