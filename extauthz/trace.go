package extauthz

import (
	"context"
	"log/slog"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/stepup-authz/stepup-authz/policy"
)

// Tracing is what a Server needs to trace its Checks (OpenTelemetry). The
// zero value is tracing off: no context is extracted, no span started,
// nothing allocated.
type Tracing struct {
	Tracer trace.Tracer
	// Propagator reads the caller's trace context (internal/tracing's reads
	// W3C Trace Context and B3).
	Propagator propagation.TextMapPropagator
	// IncludeSubject puts the token's sub on the span as enduser.id
	// (tracing.include_subject); the token itself is never recorded.
	IncludeSubject bool
}

// SpanCheck names a Check's span as OpenTelemetry's RPC conventions name a
// server span: $package.$service/$method.
const SpanCheck = "envoy.service.auth.v3.Authorization/Check"

// Span attributes of a Check, beyond OpenTelemetry's rpc.* and http.*.
const (
	AttrDecision = "stepup.decision" // allow, deny, dry_run_deny
	AttrReason   = "stepup.reason"   // the closed reason vocabulary
	AttrDetail   = "stepup.detail"   // e.g. which token rule failed
	AttrPolicy   = "stepup.policy"   // the policy's name, when it has one
	AttrIssuer   = "stepup.issuer"   // the verified token's iss
	AttrCache    = "stepup.cache"    // hit, miss, none
	AttrSubject  = "enduser.id"      // only with IncludeSubject
)

var checkSpanStart = []trace.SpanStartOption{
	trace.WithSpanKind(trace.SpanKindServer),
	trace.WithAttributes(
		attribute.String("rpc.system", "grpc"),
		attribute.String("rpc.service", "envoy.service.auth.v3.Authorization"),
		attribute.String("rpc.method", "Check"),
	),
}

// startCheckSpan continues the caller's trace. Envoy's gRPC client, when
// tracing is on in Envoy, sends its ext_authz span's context as gRPC
// metadata: that span is the closest parent and wins. Otherwise the context
// comes from the HTTP request's own headers in the CheckRequest (traceparent,
// b3, x-b3-*), so a client's or an upstream proxy's trace still links up.
func (s *Server) startCheckSpan(ctx context.Context, req *authv3.CheckRequest) (context.Context, trace.Span) {
	prop := s.tracing.Propagator
	parent := ctx
	if prop != nil {
		parent = prop.Extract(ctx, requestHeaders{req.GetAttributes().GetRequest().GetHttp()})
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if fromEnvoy := prop.Extract(ctx, grpcMetadata(md)); trace.SpanContextFromContext(fromEnvoy).IsValid() {
				parent = fromEnvoy
			}
		}
	}
	return s.tracing.Tracer.Start(parent, SpanCheck, checkSpanStart...)
}

// endCheckSpan records the decision on the span and ends it.
func (s *Server) endCheckSpan(span trace.Span, r *Result, req *authv3.CheckRequest) {
	if span.IsRecording() {
		d := &r.Decision
		http := req.GetAttributes().GetRequest().GetHttp()
		attrs := make([]attribute.KeyValue, 0, 10)
		attrs = append(attrs,
			attribute.String(AttrDecision, decisionLabels[r.decisionLabel()]),
			attribute.String(AttrReason, string(d.Reason)),
			attribute.String(AttrCache, r.cache.String()),
			attribute.String("http.request.method", http.GetMethod()),
			attribute.String("url.path", pathOnly(http.GetPath())),
		)
		if d.Detail != "" {
			attrs = append(attrs, attribute.String(AttrDetail, d.Detail))
		}
		if d.Policy.Name != "" {
			attrs = append(attrs, attribute.String(AttrPolicy, d.Policy.Name))
		}
		if c := r.Claims; c != nil {
			attrs = append(attrs, attribute.String(AttrIssuer, c.Issuer))
			if s.tracing.IncludeSubject && c.Subject != "" {
				attrs = append(attrs, attribute.String(AttrSubject, c.Subject))
			}
		}
		span.SetAttributes(attrs...)
		// A denial is the server working; only answers that are the server's
		// (or its dependencies') failure are errors: 503 and 500.
		switch d.Outcome() {
		case policy.Unavailable, policy.PolicyFailure:
			span.SetStatus(codes.Error, string(d.Reason))
		}
	}
	span.End()
}

// traceAttrs appends the trace and span ids of ctx's span, when it has one,
// so a log line can be found from a trace and the other way round.
func traceAttrs(attrs []slog.Attr, ctx context.Context) []slog.Attr {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return attrs
	}
	return append(attrs, slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
}

// requestHeaders reads the HTTP request's headers from a CheckRequest:
// `headers` (names lower-cased by Envoy), or `header_map` when Envoy sends
// raw headers (encode_raw_headers), compared case-insensitively.
type requestHeaders struct {
	http *authv3.AttributeContext_HttpRequest
}

func (h requestHeaders) Get(key string) string {
	if m := h.http.GetHeaders(); len(m) > 0 {
		return m[key]
	}
	for _, hv := range h.http.GetHeaderMap().GetHeaders() {
		if strings.EqualFold(hv.GetKey(), key) {
			return headerValue(hv)
		}
	}
	return ""
}

func headerValue(hv *corev3.HeaderValue) string {
	if raw := hv.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return hv.GetValue()
}

func (requestHeaders) Set(string, string) {}

func (h requestHeaders) Keys() []string {
	if m := h.http.GetHeaders(); len(m) > 0 {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		return keys
	}
	var keys []string
	for _, hv := range h.http.GetHeaderMap().GetHeaders() {
		keys = append(keys, strings.ToLower(hv.GetKey()))
	}
	return keys
}

// grpcMetadata reads the Check call's own gRPC metadata (keys lower-case).
type grpcMetadata metadata.MD

func (m grpcMetadata) Get(key string) string {
	if v := metadata.MD(m).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (grpcMetadata) Set(string, string) {}

func (m grpcMetadata) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
