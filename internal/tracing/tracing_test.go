package tracing

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/internal/tracing/otlptest"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// Tracing off costs nothing at start: no provider, no exporter goroutine.
func TestOffStartsNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, tc := range []struct {
		name string
		cfg  config.Tracing
		env  map[string]string
	}{
		{"tracing left out of the config", config.Tracing{}, nil},
		{"endpoint set but enabled false", config.Tracing{Endpoint: "http://127.0.0.1:1"}, nil},
		{"enabled, but OTEL_SDK_DISABLED=true", config.Tracing{Enabled: true}, map[string]string{"OTEL_SDK_DISABLED": "true"}},
	} {
		p, err := New(context.Background(), tc.cfg, "test", env(tc.env))
		if err != nil || p != nil {
			t.Errorf("%s: New = %v, %v; want nil, nil", tc.name, p, err)
		}
	}
	var p *Provider
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of a nil provider: %v", err)
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     config.Tracing
		env     map[string]string
		want    Applied
		wantErr string
	}{
		{"nothing set is gRPC, every root trace", config.Tracing{}, nil, Applied{Protocol: "grpc", SampleRatio: 1}, ""},
		{"the traces protocol variable wins over the general one", config.Tracing{},
			map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			Applied{Protocol: "http/protobuf", SampleRatio: 1}, ""},
		{"the config's protocol wins over OTEL_*", config.Tracing{Protocol: "grpc"},
			map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, Applied{Protocol: "grpc", SampleRatio: 1}, ""},
		{"an unsupported OTEL protocol is an error naming the variable", config.Tracing{},
			map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, Applied{}, "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\""},
		{"a ratio sampler's argument is the ratio", config.Tracing{},
			map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.05"},
			Applied{Protocol: "grpc", SampleRatio: 0.05}, ""},
		{"the config's ratio wins, zero included", config.Tracing{HasSampleRatio: true},
			map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
			Applied{Protocol: "grpc", SampleRatio: 0}, ""},
		{"a sampler that is not parent-based is refused", config.Tracing{},
			map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, Applied{}, "OTEL_TRACES_SAMPLER=\"always_off\" is not supported"},
		{"a ratio out of range is refused", config.Tracing{},
			map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "7"}, Applied{}, "OTEL_TRACES_SAMPLER_ARG=\"7\""},
	} {
		got, err := resolve(tc.cfg, env(tc.env))
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.wantErr)
			}
		case err != nil || got != tc.want:
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestHTTPTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://collector:4318":             "http://collector:4318/v1/traces",
		"https://collector:4318/":           "https://collector:4318/v1/traces",
		"http://collector:4318/custom/path": "http://collector:4318/custom/path",
	} {
		if got := httpTracesURL(in); got != want {
			t.Errorf("httpTracesURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Spans reach a real OTLP receiver over both transports, continuing the
// caller's W3C trace, with the resource naming the service.
func TestExportsToOTLPReceiver(t *testing.T) {
	rcv := otlptest.Start(t)
	for _, tc := range []struct{ protocol, endpoint string }{
		{config.ProtocolGRPC, rcv.GRPCEndpoint},
		{config.ProtocolHTTP, rcv.HTTPEndpoint},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			ctx := context.Background()
			p, err := New(ctx, config.Tracing{Enabled: true, Protocol: tc.protocol, Endpoint: tc.endpoint}, "v-test", env(nil))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Shutdown(ctx)
			parent := propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
			sctx := p.Propagator.Extract(ctx, parent)
			_, span := p.Tracer.Start(sctx, "span-"+tc.protocol, trace.WithSpanKind(trace.SpanKindServer))
			span.End()
			if err := p.ForceFlush(ctx); err != nil {
				t.Fatal(err)
			}
			got := rcv.Named("span-" + tc.protocol)
			if len(got) != 1 {
				t.Fatalf("received %d spans named span-%s, want 1 (all: %+v)", len(got), tc.protocol, rcv.Spans())
			}
			s := got[0]
			if s.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || s.ParentSpanID != "00f067aa0ba902b7" {
				t.Errorf("trace %s parent %s; want the caller's trace and span", s.TraceID, s.ParentSpanID)
			}
			if s.Resource["service.name"] != ServiceName || s.Resource["service.version"] != "v-test" || s.Scope != InstrumentationName {
				t.Errorf("resource %v scope %q", s.Resource, s.Scope)
			}
		})
	}
}

// B3 (single and multi header) is read too; when a request carries both
// B3 and traceparent, traceparent wins.
func TestPropagatorReadsB3AndPrefersTraceContext(t *testing.T) {
	prop := Propagator()
	for _, tc := range []struct {
		name      string
		carrier   propagation.MapCarrier
		wantTrace string
		wantSpan  string
		sampled   bool
	}{
		{"B3 single header", propagation.MapCarrier{"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
			"80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1", true},
		{"B3 multiple headers", propagation.MapCarrier{"x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7", "x-b3-spanid": "e457b5a2e4d86bd1", "x-b3-sampled": "0"},
			"80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1", false},
		{"traceparent beats B3", propagation.MapCarrier{
			"b3":          "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
			"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true},
	} {
		sc := trace.SpanContextFromContext(prop.Extract(context.Background(), tc.carrier))
		if sc.TraceID().String() != tc.wantTrace || sc.SpanID().String() != tc.wantSpan || sc.IsSampled() != tc.sampled || !sc.IsRemote() {
			t.Errorf("%s: %s/%s sampled %v remote %v", tc.name, sc.TraceID(), sc.SpanID(), sc.IsSampled(), sc.IsRemote())
		}
	}
}
