package envoy

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// shipped are the bootstraps users copy; each must validate with no problem.
var shipped = []string{"envoy.yaml", "envoy-context-extensions.yaml", "envoy-jwt-authn.yaml", "envoy-mtls.yaml"}

// edit is one exact-once string replacement in a shipped file.
type edit struct{ old, new string }

// broken cases are copies of a shipped file with a deliberate mistake. Each
// edit must match exactly once, so a change to the shipped file cannot quietly
// turn a case into a no-op.
var broken = []struct {
	name  string
	base  string
	edits []edit
}{
	// Decoding: protojson stops at the first error; the path names the key.
	{"misspelled-field", "envoy.yaml", []edit{{"route_metadata_context_namespaces: [stepup]", "route_metadata_context_namespace: [stepup]"}}},
	{"wrong-type-bool", "envoy.yaml", []edit{{"failure_mode_allow: false", "failure_mode_allow: maybe"}}},
	{"bad-port", "envoy.yaml", []edit{{"port_value: 9191", `port_value: "91x1"`}}},
	{"bad-duration", "envoy.yaml", []edit{{"timeout: 0.5s", "timeout: half-a-second"}}},
	{"bad-enum", "envoy.yaml", []edit{{"code: ServiceUnavailable", "code: NotAStatus"}}},
	{"missing-type", "envoy.yaml", []edit{{"              \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz\n", ""}}},
	{"unresolvable-extension", "envoy.yaml", []edit{{"type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors\n", "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n"}}},
	{"duplicate-yaml-key", "envoy.yaml", []edit{{"stat_prefix: ingress_http\n", "stat_prefix: ingress_http\n          stat_prefix: again\n"}}},

	// PGV constraints, inside and outside Anys.
	{"missing-cluster-name-in-any", "envoy.yaml", []edit{{"envoy_grpc:\n                  cluster_name: stepup_authz", "envoy_grpc:\n                  cluster_name: \"\""}}},
	{"missing-stat-prefix", "envoy.yaml", []edit{{"          stat_prefix: ingress_http\n", ""}}},
	{"empty-ext-authz-per-route", "envoy.yaml", []edit{{"ExtAuthzPerRoute\n                    disabled: true", "ExtAuthzPerRoute"}}},
	{"per-route-disabled-and-check-settings", "envoy.yaml", []edit{{"ExtAuthzPerRoute\n                    disabled: true", "ExtAuthzPerRoute\n                    disabled: true\n                    check_settings: {}"}}},
	{"missing-listener-port", "envoy.yaml", []edit{{"socket_address: { address: 0.0.0.0, port_value: 8000 }", "socket_address: { address: 0.0.0.0 }"}}},
	{"missing-health-check-interval", "envoy.yaml", []edit{{"      interval: 5s\n", ""}}},

	// Cross checks PGV cannot see.
	{"transport-api-version-auto", "envoy.yaml", []edit{{"transport_api_version: V3", "transport_api_version: AUTO"}}},
	{"authz-cluster-without-http2", "envoy.yaml", []edit{{`    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
`, ""}}},
	{"authz-cluster-unknown", "envoy.yaml", []edit{{"envoy_grpc:\n                  cluster_name: stepup_authz", "envoy_grpc:\n                  cluster_name: stepup-authz"}}},
	{"route-to-unknown-cluster", "envoy.yaml", []edit{{"match: { prefix: /api/marketing-preferences }\n                route: { cluster: app }", "match: { prefix: /api/marketing-preferences }\n                route: { cluster: ap }"}}},
	{"duplicate-cluster", "envoy.yaml", []edit{{"port_value: 8081 }\n", `port_value: 8081 }
  - name: app
    type: STATIC
    connect_timeout: 1s
`}}},
	{"router-not-last", "envoy.yaml", []edit{{"\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n", `"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          - name: envoy.filters.http.buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 1024
`}}},
	{"per-filter-key-not-a-filter-name", "envoy.yaml", []edit{{"envoy.filters.http.ext_authz:   # must equal", "ext_authz:   # must equal"}}},
	{"missing-route-metadata-namespaces", "envoy.yaml", []edit{{"              route_metadata_context_namespaces: [stepup]\n", ""}}},
	{"route-metadata-namespaces-other-namespace", "envoy.yaml", []edit{{"route_metadata_context_namespaces: [stepup]", "route_metadata_context_namespaces: [step-up]"}}},
	{"stepup-metadata-unknown-acr", "envoy.yaml", []edit{{"required_acr: aal2\n                      max_age: 300", "required_acr: aal9\n                      max_age: 300"}}},
	{"stepup-metadata-misspelled-key", "envoy.yaml", []edit{{"required_acr: aal2\n                      max_age: 60", "requried_acr: aal2\n                      max_age: 60"}}},
	{"stepup-metadata-bad-max-age", "envoy.yaml", []edit{{"max_age: 60\n", "max_age: soon\n"}}},
	{"stepup-metadata-on-virtual-host", "envoy.yaml", []edit{{"              domains: [\"*\"]\n", "              domains: [\"*\"]\n              metadata:\n                filter_metadata:\n                  stepup: { required_acr: aal2 }\n"}}},
	{"failure-mode-allow-true", "envoy.yaml", []edit{{"failure_mode_allow: false", "failure_mode_allow: true"}}},
	{"disabled-route-without-header-stripping", "envoy.yaml", []edit{{`                request_headers_to_remove:
                - x-stepup-sub
                - x-stepup-acr
                - x-stepup-auth-time
                - x-stepup-dry-run
`, ""}}},
	{"disabled-route-strips-some-headers", "envoy.yaml", []edit{{"                - x-stepup-acr\n", ""}}},
	{"stepup-metadata-on-disabled-route", "envoy.yaml", []edit{{"match: { path: /healthz }\n", "match: { path: /healthz }\n                metadata: { filter_metadata: { stepup: { required_acr: aal2 } } }\n"}}},
	{"request-body-and-disable-buffering", "envoy.yaml", []edit{{"ExtAuthzPerRoute\n                    disabled: true", "ExtAuthzPerRoute\n                    check_settings:\n                      with_request_body: { max_request_bytes: 1024 }\n                      disable_request_body_buffering: true"}}},
	{"ext-authz-disabled-by-default", "envoy.yaml", []edit{{"          - name: envoy.filters.http.ext_authz\n", "          - name: envoy.filters.http.ext_authz\n            disabled: true\n"}}},
	{"normalize-path-missing", "envoy.yaml", []edit{{"          normalize_path: true ", "         "}}},
	{"merge-slashes-false", "envoy.yaml", []edit{{"merge_slashes: true", "merge_slashes: false"}}},
	{"context-extensions-unknown-acr", "envoy-context-extensions.yaml", []edit{{"required_acr: aal2\n                        max_age: \"300\"", "required_acr: aal9\n                        max_age: \"300\""}}},
	{"context-extensions-key-not-a-filter-name", "envoy-context-extensions.yaml", []edit{{"envoy.filters.http.ext_authz:\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                    check_settings:\n                      context_extensions:\n                        name: delete-account", "envoy.filters.http.ext_authz.v3:\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                    check_settings:\n                      context_extensions:\n                        name: delete-account"}}},
	{"jwt-authn-forward-false", "envoy-jwt-authn.yaml", []edit{{"forward: true   ", "forward: false  "}}},
	{"jwt-authn-unknown-jwks-cluster", "envoy-jwt-authn.yaml", []edit{{"cluster: idp_jwks", "cluster: idp"}}},

	// Certificate-bound tokens need the client's certificate at stepup-authz.
	{"mtls-without-peer-certificate", "envoy-mtls.yaml", []edit{{"              include_peer_certificate: true\n", ""}}},
	{"mtls-peer-certificate-on-plaintext-listener", "envoy-mtls.yaml", []edit{{`    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          # Ask every client for a certificate, but do not require one: a
          # browser or a DPoP client without a certificate still gets an answer
          # from stepup-authz (a 401 with its challenge on a route that needs a
          # certificate-bound token) instead of a failed handshake.
          require_client_certificate: false
          common_tls_context:
            alpn_protocols: ["h2", "http/1.1"]
            tls_certificates:
            - certificate_chain: { filename: /etc/envoy/tls/server.crt }
              private_key: { filename: /etc/envoy/tls/server.key }
            # A certificate that is presented must chain to this CA. Clients
            # with self-signed certificates (RFC 8705 §2.2, the token's
            # thumbprint is what binds them) need
            # trust_chain_verification: ACCEPT_UNTRUSTED instead.
            validation_context:
              trusted_ca: { filename: /etc/envoy/tls/client-ca.crt }
      filters:
`, "    - filters:\n"}}},
	{"mtls-misspelled-tls-field", "envoy-mtls.yaml", []edit{{"require_client_certificate: false", "require_client_certificates: false"}}},
	{"mtls-unknown-sender-constraint", "envoy-mtls.yaml", []edit{{"sender_constraint: mtls", "sender_constraint: tls"}}},
	{"mtls-xfcc-without-cert", "envoy-mtls.yaml", []edit{
		{"              include_peer_certificate: true\n", ""},
		{"forward_client_cert_details: SANITIZE\n", "forward_client_cert_details: SANITIZE_SET\n"},
	}},
}

// checkPolicy stands in for the lead's policy.ParseMetadata with acr_levels
// aal1..aal3: route metadata is stepup-authz's own namespace, so unknown keys
// are errors.
func checkPolicy(m map[string]any) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := checkPolicyField(k, m[k]); err != nil {
			return err
		}
	}
	return nil
}

// checkExtensions is checkPolicy for context_extensions, which other filters
// share: unknown keys are ignored.
func checkExtensions(m map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := checkPolicyField(k, m[k]); err != nil && !errors.Is(err, errUnknownKey) {
			return err
		}
	}
	return nil
}

var (
	errUnknownKey = errors.New("unknown key")
	digitsOnly    = regexp.MustCompile(`^[0-9]+$`)
)

func checkPolicyField(k string, v any) error {
	switch k {
	case "required_acr":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("required_acr: %v is not a string", v)
		}
		if s != "" && !slices.Contains([]string{"aal1", "aal2", "aal3"}, s) {
			return fmt.Errorf("required_acr: %q is not one of acr_levels [aal1 aal2 aal3]", s)
		}
	case "max_age":
		switch v := v.(type) {
		case float64:
			if v < 0 {
				return fmt.Errorf("max_age: %v is negative", v)
			}
		case string:
			if v == "" || digitsOnly.MatchString(v) {
				return nil
			}
			if d, err := time.ParseDuration(v); err != nil || d < 0 {
				return fmt.Errorf("max_age: %q is neither seconds nor a duration", v)
			}
		default:
			return fmt.Errorf("max_age: %v is neither seconds nor a duration", v)
		}
	case "sender_constraint":
		if s, _ := v.(string); !slices.Contains([]string{"", "dpop", "mtls", "any"}, s) {
			return fmt.Errorf("sender_constraint: %v is not one of dpop, mtls, any", v)
		}
	case "mode", "name", "machine_scopes", "resource_path", "required_scopes":
	default:
		return fmt.Errorf("%w %q (known: required_acr, max_age, machine_scopes, mode, name)", errUnknownKey, k)
	}
	return nil
}

var testOptions = Options{CheckPolicy: checkPolicy, CheckExtensions: checkExtensions}

// TestGolden validates the shipped bootstraps, broken copies of them, and the
// files in testdata/ (with ValidateFile; ok-*.yaml must have no problem), comparing the problems with testdata/<case>.golden (one
// problem per line, or "ok"). Regenerate with: go test ./envoy -update
func TestGolden(t *testing.T) {
	type goldenCase struct {
		name     string
		mustPass bool
		run      func(t *testing.T) []string
	}
	var cases []goldenCase
	for _, f := range shipped {
		cases = append(cases, goldenCase{"shipped-" + strings.TrimSuffix(f, ".yaml"), true, func(t *testing.T) []string {
			_, ps := ValidateBootstrap(readFile(t, f), testOptions)
			return lines(ps)
		}})
	}
	for _, bc := range broken {
		cases = append(cases, goldenCase{bc.name, false, func(t *testing.T) []string {
			src := string(readFile(t, bc.base))
			for _, e := range bc.edits {
				if n := strings.Count(src, e.old); n != 1 {
					t.Fatalf("edit %q matches %d times in %s, want exactly once", e.old, n, bc.base)
				}
				src = strings.Replace(src, e.old, e.new, 1)
			}
			_, ps := ValidateBootstrap([]byte(src), testOptions)
			for _, p := range ps {
				if p.Path == "" {
					t.Errorf("problem without a path: %s", p)
				}
			}
			return lines(ps)
		}})
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		cases = append(cases, goldenCase{name, strings.HasPrefix(name, "ok-"), func(t *testing.T) []string {
			ps, err := ValidateFile(f, testOptions)
			if err != nil {
				return []string{"error: " + strings.ReplaceAll(err.Error(), filepath.ToSlash(f), "<file>")}
			}
			return lines(ps)
		}})
	}

	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			got := tc.run(t)
			if tc.mustPass && !slices.Equal(got, []string{"ok"}) {
				t.Errorf("shipped config has problems:\n%s", strings.Join(got, "\n"))
			}
			if !tc.mustPass && slices.Equal(got, []string{"ok"}) {
				t.Errorf("broken case found no problem")
			}
			golden := filepath.Join("testdata", tc.name+".golden")
			text := strings.Join(got, "\n") + "\n"
			if *update {
				if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./envoy -update)", err)
			}
			if text != string(want) {
				t.Errorf("problems differ from %s\n--- got\n%s--- want\n%s", golden, text, want)
			}
		})
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func lines(ps []Problem) []string {
	if len(ps) == 0 {
		return []string{"ok"}
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// Truncated shipped files are broken in every way at once (half a mapping, a
// filter without its router, an Any without its fields); none may panic.
func TestValidateBootstrapSurvivesTruncation(t *testing.T) {
	for _, f := range shipped {
		src := readFile(t, f)
		for n := 0; n < len(src); n += 101 {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("%s truncated at byte %d: panic: %v", f, n, r)
					}
				}()
				ValidateBootstrap(src[:n], testOptions)
			}()
		}
	}
}

func TestProblemString(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Problem
		want string
	}{
		{"a problem with a path reads path: message", Problem{Path: "a.b[0]", Message: "bad"}, "a.b[0]: bad"},
		{"a problem without a path is just the message", Problem{Message: "yaml: line 3: bad"}, "yaml: line 3: bad"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestForgeableClientCertHeader: when stepup-authz reads client certificates
// from x-forwarded-client-cert, an HCM that passes a client's own copy on
// (FORWARD_ONLY, ALWAYS_FORWARD_ONLY) lets a client name any certificate.
func TestForgeableClientCertHeader(t *testing.T) {
	const problem = "passes on an x-forwarded-client-cert the client wrote itself"
	for _, tc := range []struct {
		name      string
		mode      string
		readsXFCC bool
		want      bool
	}{
		{"ALWAYS_FORWARD_ONLY while the server reads xfcc is a problem", "ALWAYS_FORWARD_ONLY", true, true},
		{"FORWARD_ONLY while the server reads xfcc is a problem", "FORWARD_ONLY", true, true},
		{"SANITIZE_SET while the server reads xfcc is fine", "SANITIZE_SET", true, false},
		{"ALWAYS_FORWARD_ONLY while the server reads the peer certificate is no concern of the server's", "ALWAYS_FORWARD_ONLY", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(string(readFile(t, "envoy-mtls.yaml")), "forward_client_cert_details: SANITIZE\n", "forward_client_cert_details: "+tc.mode+"\n", 1)
			opts := testOptions
			opts.ReadsXFCC = tc.readsXFCC
			_, ps := ValidateBootstrap([]byte(src), opts)
			got := slices.ContainsFunc(ps, func(p Problem) bool {
				return strings.HasSuffix(p.Path, "forward_client_cert_details") && strings.Contains(p.Message, problem)
			})
			if got != tc.want {
				t.Errorf("problem reported = %v, want %v; problems: %v", got, tc.want, lines(ps))
			}
		})
	}
}

// WarnPolicy's findings come back as warnings on the route's metadata path,
// and only for metadata that CheckPolicy accepted.
func TestWarnPolicy(t *testing.T) {
	warnMaxAge := func(m map[string]any) []string {
		if _, ok := m["max_age"]; ok {
			return []string{"max_age: never met"}
		}
		return nil
	}
	problems, err := ValidateFile("envoy.yaml", Options{WarnPolicy: warnMaxAge})
	if err != nil {
		t.Fatal(err)
	}
	var warnings []Problem
	for _, p := range problems {
		if !p.Warning {
			t.Errorf("a problem in the shipped bootstrap: %s", p)
			continue
		}
		warnings = append(warnings, p)
	}
	if len(warnings) == 0 || !strings.HasSuffix(warnings[0].Path, ".metadata.filter_metadata.stepup") ||
		warnings[0].Message != `route "payout-destination": max_age: never met` {
		t.Fatalf("warnings %v", warnings)
	}
	refused, err := ValidateFile("envoy.yaml", Options{WarnPolicy: warnMaxAge, CheckPolicy: func(map[string]any) error { return errors.New("refused") }})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range refused {
		if p.Warning {
			t.Errorf("a warning about metadata CheckPolicy refused: %s", p)
		}
	}
}

// WarnExtensions is WarnPolicy for context extensions.
func TestWarnExtensions(t *testing.T) {
	problems, err := ValidateFile("envoy-context-extensions.yaml", Options{WarnExtensions: func(m map[string]string) []string {
		if m["max_age"] != "" {
			return []string{"max_age: never met"}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range problems {
		if !p.Warning || !strings.HasSuffix(p.Path, ".check_settings.context_extensions") || p.Message != "max_age: never met" {
			t.Errorf("%s (warning %v)", p, p.Warning)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no warning for the context extensions that set max_age")
	}
}
