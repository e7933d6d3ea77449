package token

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Spans of key fetches (KeySetOptions.Tracer). A fetch a Check started or
// waits for, as the first to need it (no keys yet, an unknown kid), is a
// child of that Check's span; a background refresh starts a trace of its own.
const (
	SpanJWKSFetch = "stepup.jwks.fetch"     // one fetch: discovery (when no jwks_uri), then the JWKS
	SpanDiscovery = "stepup.oidc.discovery" // the OpenID configuration document, inside a fetch
)

// Span attributes of a fetch.
const (
	AttrIssuer      = "stepup.issuer"
	AttrFetchResult = "stepup.jwks.result" // ok, not_modified, error, invalid, empty
)

// startSpan starts a span of the set's fetch; parent, when valid, is the
// span of the Check that started it. Without a Tracer it returns ctx and nil.
func (s *keySet) startSpan(ctx context.Context, name string, parent trace.SpanContext) (context.Context, trace.Span) {
	if s.opts.Tracer == nil {
		return ctx, nil
	}
	if parent.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, parent)
	}
	return s.opts.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String(AttrIssuer, s.issuer)))
}

// endSpan records a fetch's result (when known) and error, and ends span.
func (s *keySet) endSpan(span trace.Span, result string, err error) {
	if span == nil {
		return
	}
	if result != "" {
		span.SetAttributes(attribute.String(AttrFetchResult, result))
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
