package config

import (
	"net/url"
)

// Tracing is the OpenTelemetry tracing setup (tracing:). Off by default.
//
// Rules this file decides:
//   - tracing is read at start only: a reload that changes it is accepted
//     (the rest of the new config applies) and logged as needing a restart,
//     because the exporter's connection and the sampler belong to the process,
//     not to one config generation.
//   - A field left out defers to the standard OpenTelemetry environment
//     variable (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / _PROTOCOL,
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _ENDPOINT, OTEL_TRACES_SAMPLER_ARG
//     when OTEL_TRACES_SAMPLER is a traceidratio sampler), then to the
//     default. A field set in the file or by STEPUP_TRACING_* wins over OTEL_*.
type Tracing struct {
	// Enabled turns tracing on (tracing.enabled).
	Enabled bool
	// Protocol is the OTLP transport: ProtocolGRPC, ProtocolHTTP or "" (not
	// set: the OTEL_* environment, else gRPC).
	Protocol string
	// Endpoint is the collector's URL ("http://otel-collector:4317"); http
	// means plaintext, https TLS. "" leaves it to OTEL_* or the exporter's
	// default (localhost:4317 for gRPC, localhost:4318 for HTTP).
	Endpoint string
	// SampleRatio is the share of traces started here (no sampled parent from
	// Envoy) that are recorded; a parent's decision is always followed.
	// Meaningful only when HasSampleRatio.
	SampleRatio    float64
	HasSampleRatio bool
	// IncludeSubject puts the token's sub on spans (tracing.include_subject).
	// Off by default: a trace backend is often readable by more people than
	// the logs, and sub identifies a person.
	IncludeSubject bool
}

// OTLP protocols, named as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

var tracingKeys = []string{"enabled", "protocol", "endpoint", "sample_ratio", "include_subject"}

func (b *builder) tracing(v any) Tracing {
	var t Tracing
	m := b.object("tracing", v, tracingKeys)
	if m == nil {
		return t
	}
	t.Enabled = b.boolean("tracing.enabled", m["enabled"])
	t.IncludeSubject = b.boolean("tracing.include_subject", m["include_subject"])
	if x := m["protocol"]; x != nil {
		if s, ok := b.str("tracing.protocol", x); ok {
			switch s {
			case ProtocolGRPC, ProtocolHTTP:
				t.Protocol = s
			case "":
			default:
				b.add("tracing.protocol", "%q is not one of %s, %s (http/json is not supported by the Go exporter)", s, ProtocolGRPC, ProtocolHTTP)
			}
		}
	}
	if x := m["endpoint"]; x != nil {
		if s, ok := b.str("tracing.endpoint", x); ok && s != "" {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				b.add("tracing.endpoint", "%q is not a collector URL like \"http://otel-collector:4317\" (http: plaintext, https: TLS)", s)
			} else {
				t.Endpoint = s
			}
		}
	}
	if x := m["sample_ratio"]; x != nil {
		f, ok := x.(float64)
		switch {
		case !ok:
			b.typeErr("tracing.sample_ratio", "a number from 0 to 1", x)
		case f < 0 || f > 1:
			b.add("tracing.sample_ratio", "%s is not between 0 (none) and 1 (every trace started here)", formatNumber(f))
		default:
			t.SampleRatio, t.HasSampleRatio = f, true
		}
	}
	return t
}

// boolean reads an optional true/false; absent is false.
func (b *builder) boolean(path string, v any) bool {
	if v == nil {
		return false
	}
	x, ok := v.(bool)
	if !ok {
		b.typeErr(path, "true or false", v)
	}
	return x
}
