package extauthz_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/bench"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// BenchmarkCheckProtectedResource is what protected_resource costs a Check:
// BENCHMARKS.md's request (cached token) on a server without and with the
// block, allowed, stepped up (the step-up then carries resource_metadata, a
// copy of the remembered denial with the header rewritten) and without a token
// (that denial with resource_metadata is remembered per origin), and the
// metadata document itself (built per request).
//
//	go test -run='^$' -bench=ProtectedResource -benchmem ./extauthz
func BenchmarkCheckProtectedResource(b *testing.B) {
	for _, pr := range []string{"", "protected_resource: {}\n"} {
		name := "protected_resource=off"
		if pr != "" {
			name = "protected_resource=on"
		}
		f := newResourceFixture(b, pr)
		doc := bench.Request("")
		doc = proto.Clone(doc).(*authv3.CheckRequest)
		doc.Attributes.Request.Http.Method = "GET"
		doc.Attributes.Request.Http.Path = "/.well-known/oauth-protected-resource/api"
		doc.Attributes.Request.Http.Headers[":method"] = "GET"
		doc.Attributes.Request.Http.Headers[":path"] = doc.Attributes.Request.Http.Path
		cases := []struct {
			name string
			req  *authv3.CheckRequest
			want codes.Code
		}{
			{"decision=allow", bench.Request(f.token(b, "aal2", 1)), codes.OK},
			{"decision=step_up", bench.Request(f.token(b, "aal1", 1)), codes.PermissionDenied},
			{"decision=deny/token=missing", bench.Request(""), codes.PermissionDenied},
		}
		if pr != "" {
			cases = append(cases, struct {
				name string
				req  *authv3.CheckRequest
				want codes.Code
			}{"decision=metadata_served", doc, codes.PermissionDenied})
		}
		for _, tc := range cases {
			b.Run(name+"/"+tc.name, func(b *testing.B) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
				defer cancel()
				check := func() {
					resp, err := f.srv.Check(ctx, tc.req)
					if err != nil || resp.GetStatus().GetCode() != int32(tc.want) {
						b.Fatalf("Check: %v, %v", resp, err)
					}
				}
				check()
				b.ReportAllocs()
				for b.Loop() {
					check()
				}
			})
		}
	}
}

// newResourceFixture is newCheckFixture's server with more config appended.
func newResourceFixture(b *testing.B, more string) *checkFixture {
	b.Helper()
	idp, err := devidp.New(bench.Audience)
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	b.Cleanup(hs.Close)
	idp.Issuer = hs.URL
	yaml := "issuers:\n  - issuer: " + strconv.Quote(hs.URL) + "\n    jwks_uri: " + strconv.Quote(hs.URL+"/jwks.json") +
		"\n    audiences: [" + strconv.Quote(bench.Audience) + "]\n" + more
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
