package config

import (
	"slices"
	"testing"
)

func TestTracingOffByDefault(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, minimal))
	if cfg.Tracing != (Tracing{}) {
		t.Fatalf("tracing = %+v, want the zero value (off, everything from OTEL_* or defaults)", cfg.Tracing)
	}
}

func TestTracingFromFile(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, minimal+`
tracing:
  enabled: true
  protocol: grpc
  endpoint: "http://127.0.0.1:4317"
  sample_ratio: 0
  include_subject: true
`))
	want := Tracing{Enabled: true, Protocol: ProtocolGRPC, Endpoint: "http://127.0.0.1:4317", HasSampleRatio: true, IncludeSubject: true}
	if cfg.Tracing != want {
		t.Fatalf("tracing = %+v, want %+v", cfg.Tracing, want)
	}
}

// STEPUP_TRACING_* overrides are text; booleans and the ratio are converted,
// and the file's values lose to them.
func TestTracingEnvOverrides(t *testing.T) {
	path := writeConfig(t, minimal+`
tracing: { enabled: false, sample_ratio: 1, protocol: grpc }
`)
	t.Setenv("STEPUP_TRACING_ENABLED", "true")
	t.Setenv("STEPUP_TRACING_PROTOCOL", "http/protobuf")
	t.Setenv("STEPUP_TRACING_ENDPOINT", "https://collector.example:4318")
	t.Setenv("STEPUP_TRACING_SAMPLE_RATIO", "0.1")
	t.Setenv("STEPUP_TRACING_INCLUDE_SUBJECT", "1")
	cfg, err := Load(path, NewViper())
	if err != nil {
		t.Fatal(err)
	}
	want := Tracing{Enabled: true, Protocol: ProtocolHTTP, Endpoint: "https://collector.example:4318",
		SampleRatio: 0.1, HasSampleRatio: true, IncludeSubject: true}
	if cfg.Tracing != want {
		t.Fatalf("tracing = %+v, want %+v", cfg.Tracing, want)
	}
}

func TestTracingEnvOverrideProblems(t *testing.T) {
	path := writeConfig(t, minimal)
	t.Setenv("STEPUP_TRACING_ENABLED", "maybe")
	t.Setenv("STEPUP_TRACING_SAMPLE_RATIO", "2")
	_, err := Load(path, NewViper())
	got := problemsOf(t, err)
	want := Problems{
		`environment variable STEPUP_TRACING_ENABLED: tracing.enabled: must be true or false, got string "maybe"`,
		`environment variable STEPUP_TRACING_SAMPLE_RATIO: tracing.sample_ratio: 2 is not between 0 (none) and 1 (every trace started here)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
}
