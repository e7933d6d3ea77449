// Package tracing sets up OpenTelemetry tracing for the server: an OTLP
// exporter (gRPC or HTTP), a parent-based ratio sampler, and the propagators
// that continue the trace Envoy started (W3C Trace Context and B3).
//
// Nothing here runs unless tracing is enabled: with tracing off, New returns
// a nil *Provider, no exporter is built and no goroutine is started.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
)

// ServiceName is service.name unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise.
const ServiceName = "stepup-authz"

// InstrumentationName names the tracer, as OpenTelemetry asks: the package
// that produces the spans' module.
const InstrumentationName = "github.com/stepup-authz/stepup-authz"

// Provider is running tracing: hand Tracer and Propagator to the server, and
// call Shutdown on exit so buffered spans are sent.
type Provider struct {
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// Settings are what was applied after the OTEL_* environment was consulted.
	Settings Applied

	tp *sdktrace.TracerProvider
}

// Applied is the effective setup, for the start-up log line.
type Applied struct {
	Protocol    string
	Endpoint    string // "" when left to the exporter's default
	SampleRatio float64
}

// Propagator reads (and would write) W3C traceparent/tracestate and B3, in
// single- or multi-header form. B3 is extracted first and Trace Context last,
// so when a request carries both, traceparent wins (a composite propagator's
// later members override earlier ones).
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(
		b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader)),
		propagation.TraceContext{},
	)
}

// New starts tracing as cfg says, consulting the OTEL_* environment (through
// getenv) for what cfg leaves out. It returns nil, nil when tracing is off
// (cfg.Enabled false, or OTEL_SDK_DISABLED=true).
func New(ctx context.Context, cfg config.Tracing, version string, getenv func(string) string) (*Provider, error) {
	if !cfg.Enabled || strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	applied, err := resolve(cfg, getenv)
	if err != nil {
		return nil, err
	}
	exp, err := exporter(ctx, applied)
	if err != nil {
		return nil, fmt.Errorf("tracing: %s exporter: %w", applied.Protocol, err)
	}
	return NewWithExporter(ctx, exp, applied, version)
}

// NewWithExporter is New with the exporter given (tests use an in-memory or
// a loopback one).
func NewWithExporter(ctx context.Context, exp sdktrace.SpanExporter, applied Applied, version string) (*Provider, error) {
	res, err := resource.New(ctx,
		// Later options override earlier ones: the environment wins over our name.
		resource.WithAttributes(
			attribute.String("service.name", ServiceName),
			attribute.String("service.version", version),
		),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		// Envoy's sampling decision is followed; the ratio applies only to
		// traces that start here.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(applied.SampleRatio))),
	)
	return &Provider{
		Tracer:     tp.Tracer(InstrumentationName, trace.WithInstrumentationVersion(version)),
		Propagator: Propagator(),
		Settings:   applied,
		tp:         tp,
	}, nil
}

// KeyFetchTracer is the tracer for key fetches (token.KeySetOptions.Tracer):
// nil, tracing nothing, when p is nil (tracing off).
func (p *Provider) KeyFetchTracer() trace.Tracer {
	if p == nil {
		return nil
	}
	return p.Tracer
}

// ForceFlush sends every span ended so far.
func (p *Provider) ForceFlush(ctx context.Context) error { return p.tp.ForceFlush(ctx) }

// Shutdown flushes and stops the exporter. A nil Provider (tracing off) is fine.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.tp.Shutdown(ctx)
}

// resolve fills what cfg leaves out from the OTEL_* environment, as the
// OpenTelemetry SDK specification names it, then from the defaults.
func resolve(cfg config.Tracing, getenv func(string) string) (Applied, error) {
	a := Applied{Protocol: cfg.Protocol, Endpoint: cfg.Endpoint, SampleRatio: 1}
	if a.Protocol == "" {
		for _, env := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
			v := strings.TrimSpace(getenv(env))
			if v == "" {
				continue
			}
			if v != config.ProtocolGRPC && v != config.ProtocolHTTP {
				return a, fmt.Errorf("tracing: %s=%q is not one of %s, %s (or set tracing.protocol)", env, v, config.ProtocolGRPC, config.ProtocolHTTP)
			}
			a.Protocol = v
			break
		}
		if a.Protocol == "" {
			a.Protocol = config.ProtocolGRPC
		}
	}
	switch {
	case cfg.HasSampleRatio:
		a.SampleRatio = cfg.SampleRatio
	default:
		switch s := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")); s {
		case "traceidratio", "parentbased_traceidratio":
			arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
			if arg == "" {
				break
			}
			f, err := strconv.ParseFloat(arg, 64)
			if err != nil || f < 0 || f > 1 {
				return a, fmt.Errorf("tracing: OTEL_TRACES_SAMPLER_ARG=%q is not a ratio from 0 to 1 (or set tracing.sample_ratio)", arg)
			}
			a.SampleRatio = f
		case "", "parentbased_always_on", "always_on":
		default:
			// Any other sampler would replace parent-based sampling, which
			// keeps our spans in the traces Envoy samples.
			return a, fmt.Errorf("tracing: OTEL_TRACES_SAMPLER=%q is not supported: stepup-authz samples parent-based; use parentbased_traceidratio with OTEL_TRACES_SAMPLER_ARG, or tracing.sample_ratio", s)
		}
	}
	return a, nil
}

func exporter(ctx context.Context, a Applied) (sdktrace.SpanExporter, error) {
	switch a.Protocol {
	case config.ProtocolHTTP:
		var opts []otlptracehttp.Option
		if a.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(httpTracesURL(a.Endpoint)))
		}
		return otlptracehttp.New(ctx, opts...)
	case config.ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if a.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(a.Endpoint))
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	return nil, errors.New("unknown protocol")
}

// httpTracesURL treats tracing.endpoint as OTEL_EXPORTER_OTLP_ENDPOINT is
// treated: a base URL to which the traces path /v1/traces is added, unless
// it names a path of its own.
func httpTracesURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return endpoint
	}
	u.Path = "/v1/traces"
	return u.String()
}
