package extauthz_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
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

// checkFixture is a Server as `serve` wires it (metrics, a text logger whose
// output is discarded) trusting a development IdP over loopback HTTP.
type checkFixture struct {
	srv *extauthz.Server
	idp *devidp.IdP
}

func newCheckFixture(b *testing.B, cacheSize int) *checkFixture {
	b.Helper()
	idp, err := devidp.New(bench.Audience)
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	b.Cleanup(hs.Close)
	idp.Issuer = hs.URL
	yaml := "issuers:\n  - issuer: " + strconv.Quote(hs.URL) + "\n    jwks_uri: " + strconv.Quote(hs.URL+"/jwks.json") +
		"\n    audiences: [" + strconv.Quote(bench.Audience) + "]\ntoken_cache_size: " + strconv.Itoa(cacheSize) + "\n"
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	engine.WaitFirstFetch(ctx)
	srv := extauthz.NewServer(engine, extauthz.Options{
		Metrics: extauthz.NewMetrics(prometheus.NewRegistry()),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	return &checkFixture{srv: srv, idp: idp}
}

func (f *checkFixture) token(b *testing.B, acr string, n int) string {
	b.Helper()
	tok, err := f.idp.Mint(bench.Claims(acr, time.Now(), n))
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// BenchmarkCheck is the whole in-process Check, CheckRequest to CheckResponse,
// for the request of BENCHMARKS.md (12 headers, an ~800-byte RS256 token,
// route metadata {required_acr: aal2, max_age: 300}), with a caller deadline
// as Envoy's grpc-timeout gives. token=cached answers from the verified-token
// cache; token=unique misses it every time (two tokens taken in turn through
// a one-entry cache: each Check verifies the RS256 signature and evicts), as a
// stream of distinct tokens does.
//
//	go test -run='^$' -bench=Check -benchmem ./extauthz
func BenchmarkCheck(b *testing.B) {
	cases := []struct {
		name  string
		acr   string // "" sends no token; "forged" an invalid one
		cache int
		want  codes.Code
	}{
		{"decision=allow/token=cached", "aal2", 100000, codes.OK},
		{"decision=allow/token=unique", "aal2", 1, codes.OK},
		{"decision=step_up/token=cached", "aal1", 100000, codes.PermissionDenied},
		{"decision=step_up/token=unique", "aal1", 1, codes.PermissionDenied},
		{"decision=deny/token=invalid", "forged", 100000, codes.PermissionDenied},
		{"decision=deny/token=missing", "", 100000, codes.PermissionDenied},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			f := newCheckFixture(b, tc.cache)
			var reqs []*authv3.CheckRequest
			switch tc.acr {
			case "":
				reqs = append(reqs, bench.Request(""))
			case "forged":
				a, c := f.token(b, "aal2", 1), f.token(b, "aal3", 2)
				reqs = append(reqs, bench.Request(splice(a, c)))
			default:
				reqs = append(reqs, bench.Request(f.token(b, tc.acr, 1)), bench.Request(f.token(b, tc.acr, 2)))
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			check := func(i int) {
				resp, err := f.srv.Check(ctx, reqs[i%len(reqs)])
				if err != nil || resp.GetStatus().GetCode() != int32(tc.want) {
					b.Fatalf("Check: %v, %v", resp, err)
				}
			}
			for i := range reqs {
				check(i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				check(i)
				i++
			}
		})
	}
}

// splice is the payload of token b under the header and signature of a: well
// formed, but its signature does not verify.
func splice(a, b string) string {
	var pa, pb [3]string
	split3(a, &pa)
	split3(b, &pb)
	return pa[0] + "." + pb[1] + "." + pa[2]
}

func split3(s string, out *[3]string) {
	n := 0
	start := 0
	for i := 0; i < len(s) && n < 2; i++ {
		if s[i] == '.' {
			out[n] = s[start:i]
			n++
			start = i + 1
		}
	}
	out[2] = s[start:]
}
