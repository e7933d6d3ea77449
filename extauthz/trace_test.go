package extauthz_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/metadata"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/bench"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
	"github.com/stepup-authz/stepup-authz/internal/tracing"
	"github.com/stepup-authz/stepup-authz/internal/tracing/otlptest"
)

// Trace contexts as a client (or Envoy's gRPC client) would send them.
const (
	headerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	headerSpan  = "00f067aa0ba902b7"
	envoyTrace  = "0af7651916cd43dd8448eb211c80319c"
	envoySpan   = "b7ad6b7169203331"
	b3Trace     = "80f198ee56343ba864fe8b2a57d3eff7"
	b3Span      = "e457b5a2e4d86bd1"
)

func traceparent(traceID, spanID string, sampled bool) string {
	flags := "00"
	if sampled {
		flags = "01"
	}
	return "00-" + traceID + "-" + spanID + "-" + flags
}

// tracedHarness is the gRPC harness with tracing exported over OTLP/gRPC to
// a real receiver on loopback.
func tracedHarness(t *testing.T, includeSubject bool) (*harness, *tracing.Provider, *otlptest.Receiver, *lockedBuffer) {
	t.Helper()
	rcv := otlptest.Start(t)
	p, err := tracing.New(context.Background(), config.Tracing{Enabled: true, Protocol: config.ProtocolGRPC, Endpoint: rcv.GRPCEndpoint},
		"test", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	logs := &lockedBuffer{}
	h := newHarnessWith(t, extauthz.Options{
		Logger:  slog.New(slog.NewTextHandler(logs, nil)),
		Tracing: extauthz.Tracing{Tracer: p.Tracer, Propagator: p.Propagator, IncludeSubject: includeSubject},
	})
	return h, p, rcv, logs
}

// checkWithMetadata is harness.check with gRPC metadata on the call, as
// Envoy's gRPC client sends its trace context when tracing is on in Envoy.
func (h *harness) checkWithMetadata(t *testing.T, md metadata.MD, headers map[string]string) {
	t.Helper()
	headers[":method"], headers[":path"], headers[":authority"] = "POST", "/api/payout-destination", "app.example.com"
	ctx := metadata.NewOutgoingContext(context.Background(), md)
	_, err := h.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/api/payout-destination", Host: "app.example.com", Headers: headers}}}})
	if err != nil {
		t.Fatal(err)
	}
}

func flush(t *testing.T, p *tracing.Provider) {
	t.Helper()
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func spanWithParent(t *testing.T, rcv *otlptest.Receiver, traceID string) otlptest.Span {
	t.Helper()
	var found []otlptest.Span
	for _, s := range rcv.Named(extauthz.SpanCheck) {
		if s.TraceID == traceID {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d Check spans in trace %s, want 1 (received: %+v)", len(found), traceID, rcv.Spans())
	}
	return found[0]
}

// A Check's span continues the caller's trace and says what was decided
// and why, and never carries the token.
func TestCheckSpanContinuesTheTraceWithTheDecision(t *testing.T) {
	h, p, rcv, logs := tracedHarness(t, false)
	tok := h.user(t, "aal1", time.Minute)
	hdrs := bearer(tok)
	hdrs["traceparent"] = traceparent(headerTrace, headerSpan, true)
	h.check(t, req{method: "POST", path: "/api/payout-destination?q=secret", headers: hdrs})
	flush(t, p)

	s := spanWithParent(t, rcv, headerTrace)
	if s.ParentSpanID != headerSpan {
		t.Errorf("parent %q, want the traceparent's span %q", s.ParentSpanID, headerSpan)
	}
	want := map[string]any{
		extauthz.AttrDecision: "deny", extauthz.AttrReason: "acr_too_low", extauthz.AttrPolicy: "payout-destination",
		extauthz.AttrIssuer: h.idp.Issuer, extauthz.AttrCache: "miss",
		"rpc.system": "grpc", "rpc.method": "Check", "http.request.method": "POST", "url.path": "/api/payout-destination",
	}
	for k, v := range want {
		if s.Attributes[k] != v {
			t.Errorf("attribute %s = %v, want %v", k, s.Attributes[k], v)
		}
	}
	if _, ok := s.Attributes[extauthz.AttrSubject]; ok {
		t.Errorf("enduser.id recorded without tracing.include_subject")
	}
	for k, v := range s.Attributes {
		if str, ok := v.(string); ok && (strings.Contains(str, tok[:20]) || strings.Contains(str, "user-1") || strings.Contains(str, "secret")) {
			t.Errorf("attribute %s carries the token, the subject or the query: %q", k, str)
		}
	}
	if s.Resource["service.name"] != tracing.ServiceName {
		t.Errorf("resource %v", s.Resource)
	}
	// The denial's log line carries the ids of the span that decided it.
	if out := logs.String(); !strings.Contains(out, "trace_id="+headerTrace) || !strings.Contains(out, "span_id="+s.SpanID) {
		t.Errorf("denial log line lacks trace_id=%s span_id=%s:\n%s", headerTrace, s.SpanID, out)
	}

	// The same token again comes from the cache; the trace started here is a root.
	h.check(t, req{method: "POST", path: "/api/payout-destination", headers: bearer(tok)})
	flush(t, p)
	var root *otlptest.Span
	for _, s := range rcv.Named(extauthz.SpanCheck) {
		if s.TraceID != headerTrace {
			root = &s
		}
	}
	if root == nil || root.ParentSpanID != "" || root.Attributes[extauthz.AttrCache] != "hit" {
		t.Errorf("second Check: %+v, want a root span with cache=hit", root)
	}
}

// Envoy's own span (gRPC metadata) is the closest parent and wins over the
// HTTP request's traceparent; B3 is read from raw header_map too.
func TestCheckSpanParents(t *testing.T) {
	h, p, rcv, _ := tracedHarness(t, false)
	tok := h.user(t, "aal2", time.Minute)

	h.checkWithMetadata(t, metadata.Pairs("traceparent", traceparent(envoyTrace, envoySpan, true)),
		map[string]string{"authorization": "Bearer " + tok, "traceparent": traceparent(headerTrace, headerSpan, true)})
	h.check(t, req{method: "POST", path: "/api/payout-destination", rawHeaders: [][2]string{
		{":authority", "app.example.com"}, {":path", "/api/payout-destination"}, {":method", "POST"},
		{"Authorization", "Bearer " + tok}, {"B3", b3Trace + "-" + b3Span + "-1"},
	}})
	// A parent that was not sampled is followed: no span.
	unsampled := bearer(tok)
	unsampled["traceparent"] = traceparent("11111111111111111111111111111111", "2222222222222222", false)
	h.check(t, req{method: "POST", path: "/api/payout-destination", headers: unsampled})
	flush(t, p)

	if s := spanWithParent(t, rcv, envoyTrace); s.ParentSpanID != envoySpan || s.Attributes[extauthz.AttrDecision] != "allow" {
		t.Errorf("with Envoy's metadata: parent %s decision %v; want Envoy's span %s, allow", s.ParentSpanID, s.Attributes[extauthz.AttrDecision], envoySpan)
	}
	for _, s := range rcv.Spans() {
		if s.TraceID == headerTrace {
			t.Errorf("the request's traceparent was used although Envoy's metadata carried a trace")
		}
		if s.TraceID == "11111111111111111111111111111111" {
			t.Errorf("a span was recorded under a parent that was not sampled")
		}
	}
	if s := spanWithParent(t, rcv, b3Trace); s.ParentSpanID != b3Span {
		t.Errorf("B3 in header_map: parent %s, want %s", s.ParentSpanID, b3Span)
	}
}

func TestCheckSpanSubjectOnlyWhenAsked(t *testing.T) {
	h, p, rcv, _ := tracedHarness(t, true)
	hdrs := bearer(h.user(t, "aal2", time.Minute))
	hdrs["traceparent"] = traceparent(headerTrace, headerSpan, true)
	h.check(t, req{method: "POST", path: "/api/payout-destination", headers: hdrs})
	flush(t, p)
	if s := spanWithParent(t, rcv, headerTrace); s.Attributes[extauthz.AttrSubject] != "user-1" {
		t.Errorf("enduser.id = %v with include_subject, want user-1", s.Attributes[extauthz.AttrSubject])
	}
}

// A 503 is the server's failure, so its span is an error; a denial is not.
func TestCheckSpanStatus(t *testing.T) {
	h, p, rcv, _ := tracedHarness(t, false)
	down, err := devidp.New(audience)
	if err != nil {
		t.Fatal(err)
	}
	down.Issuer = "http://127.0.0.1:1/down" // configured in the harness; its keys never load
	tok, err := down.UserToken("u", "aal2", 0)
	if err != nil {
		t.Fatal(err)
	}
	hdrs := bearer(tok)
	hdrs["traceparent"] = traceparent(headerTrace, headerSpan, true)
	h.check(t, req{method: "POST", path: "/api/payout-destination", headers: hdrs})
	flush(t, p)
	s := spanWithParent(t, rcv, headerTrace)
	if s.Attributes[extauthz.AttrReason] != "keys_unavailable" || s.Status.String() != "STATUS_CODE_ERROR" {
		t.Errorf("reason %v status %v; want keys_unavailable, error", s.Attributes[extauthz.AttrReason], s.Status)
	}
}

// allocFixture is an in-process Server as serve wires it, for counting
// allocations of one Check.
func allocFixture(t testing.TB, tr extauthz.Tracing) (*extauthz.Server, *authv3.CheckRequest) {
	t.Helper()
	idp, err := devidp.New(bench.Audience)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	t.Cleanup(hs.Close)
	idp.Issuer = hs.URL
	cfg, err := config.Parse([]byte("issuers:\n  - issuer: "+strconv.Quote(hs.URL)+"\n    jwks_uri: "+strconv.Quote(hs.URL+"/jwks.json")+
		"\n    audiences: ["+strconv.Quote(bench.Audience)+"]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ks := token.NewKeySets(token.KeySetOptions{})
	t.Cleanup(ks.Close)
	engine, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	engine.WaitFirstFetch(ctx)
	srv := extauthz.NewServer(engine, extauthz.Options{
		Metrics: extauthz.NewMetrics(prometheus.NewRegistry()),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Tracing: tr,
	})
	tok, err := idp.Mint(bench.Claims("aal2", time.Now(), 1))
	if err != nil {
		t.Fatal(err)
	}
	return srv, bench.Request(tok)
}

// cachedAllowAllocs is what an allowed Check with a cached token allocates
// (BENCHMARKS.md): the response block and the claims copy.
const cachedAllowAllocs = 2

// Tracing off adds nothing to the cached allow path: not one allocation.
func TestTracingOffCostsNoAllocation(t *testing.T) {
	srv, req := allocFixture(t, extauthz.Tracing{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	check := func() {
		if r, err := srv.Check(ctx, req); err != nil || r.GetStatus().GetCode() != 0 {
			t.Fatalf("Check: %v, %v", r, err)
		}
	}
	check() // verify once: later Checks are cache hits
	if allocs := testing.AllocsPerRun(200, check); allocs > cachedAllowAllocs {
		t.Fatalf("allowed Check with a cached token, tracing off: %v allocations, want at most %d", allocs, cachedAllowAllocs)
	}
}

// discardExporter drops spans: the benchmark counts what tracing costs the
// Check, not a collector's network.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkCheckTracing is the cached allow Check with tracing off, on with
// the caller's trace sampled (a span recorded and exported), and on with it
// not sampled. Run with -cpu 1 so the batch exporter's goroutine counts:
//
//	go test -run='^$' -bench=CheckTracing -benchmem -cpu 1 ./extauthz
func BenchmarkCheckTracing(b *testing.B) {
	p, err := tracing.NewWithExporter(context.Background(), discardExporter{}, tracing.Applied{SampleRatio: 1}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	on := extauthz.Tracing{Tracer: p.Tracer, Propagator: p.Propagator}
	for _, tc := range []struct {
		name        string
		tr          extauthz.Tracing
		traceparent string
	}{
		{"tracing=off", extauthz.Tracing{}, traceparent(headerTrace, headerSpan, true)},
		{"tracing=on/parent=sampled", on, traceparent(headerTrace, headerSpan, true)},
		{"tracing=on/parent=not_sampled", on, traceparent(headerTrace, headerSpan, false)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv, req := allocFixture(b, tc.tr)
			req.GetAttributes().GetRequest().GetHttp().GetHeaders()["traceparent"] = tc.traceparent
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			if _, err := srv.Check(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu0 := bench.SelfCPU()
			for b.Loop() {
				if _, err := srv.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			// CPU of the whole process (exporter and GC included) per Check: on a
			// shared machine, wall time per op also counts waiting for a CPU.
			b.ReportMetric(float64(bench.SelfCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// Key fetches are traced: a background fetch is a trace of its own (with
// discovery inside it), and a fetch a Check waits for, for an unknown kid
// after the IdP rotated keys, is a child of that Check's span.
func TestKeyFetchSpans(t *testing.T) {
	rcv := otlptest.Start(t)
	p, err := tracing.New(context.Background(), config.Tracing{Enabled: true, Protocol: config.ProtocolHTTP, Endpoint: rcv.HTTPEndpoint},
		"test", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	idp, err := devidp.New(audience)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	defer hs.Close()
	idp.Issuer = hs.URL
	cfg, err := config.Parse([]byte("issuers:\n  - issuer: "+strconv.Quote(hs.URL)+"\n    audiences: ["+strconv.Quote(audience)+"]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ks := token.NewKeySets(token.KeySetOptions{Tracer: p.Tracer, MinRefetch: time.Nanosecond})
	defer ks.Close()
	engine, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	engine.WaitFirstFetch(ctx)
	srv := extauthz.NewServer(engine, extauthz.Options{Tracing: extauthz.Tracing{Tracer: p.Tracer, Propagator: p.Propagator}})

	rotated, err := devidp.NewKey("rs-2", "RS256")
	if err != nil {
		t.Fatal(err)
	}
	idp.SetKeys(append([]*devidp.Key{rotated}, idp.Keys()...)...)
	tok, err := idp.UserToken("u", "aal2", 0)
	if err != nil {
		t.Fatal(err)
	}
	req := bench.Request(tok)
	req.GetAttributes().GetRequest().GetHttp().GetHeaders()["traceparent"] = traceparent(headerTrace, headerSpan, true)
	if r, err := srv.Check(ctx, req); err != nil || r.GetStatus().GetCode() != 0 {
		t.Fatalf("a token signed with the rotated key: %v, %v; want allowed after the refetch", r, err)
	}
	flush(t, p)

	check := spanWithParent(t, rcv, headerTrace)
	var first, onDemand []otlptest.Span
	for _, s := range rcv.Named(token.SpanJWKSFetch) {
		if s.Attributes[token.AttrIssuer] != hs.URL || s.Attributes[token.AttrFetchResult] != "ok" {
			t.Errorf("fetch span attributes %v", s.Attributes)
		}
		switch {
		case s.ParentSpanID == "":
			first = append(first, s)
		case s.TraceID == headerTrace && s.ParentSpanID == check.SpanID:
			onDemand = append(onDemand, s)
		}
	}
	if len(first) != 1 || len(onDemand) != 1 {
		t.Fatalf("fetch spans: %d roots, %d children of the Check; want 1 and 1 (all: %+v)", len(first), len(onDemand), rcv.Spans())
	}
	var discoveries int
	for _, d := range rcv.Named(token.SpanDiscovery) {
		if d.ParentSpanID == first[0].SpanID || d.ParentSpanID == onDemand[0].SpanID {
			discoveries++
		}
	}
	if discoveries != 2 {
		t.Errorf("%d discovery spans inside the two fetches, want 2", discoveries)
	}
}
