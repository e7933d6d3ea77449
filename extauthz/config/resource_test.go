package config

import (
	"reflect"
	"testing"
)

const twoIssuers = `
issuers:
  - issuer: "https://a.example.com"
    audiences: ["https://api.example.com"]
  - issuer: "https://b.example.com"
    audiences: ["https://api.example.com"]
`

func TestProtectedResourceDefaults(t *testing.T) {
	cfg, err := Parse([]byte(twoIssuers), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProtectedResource != nil {
		t.Fatalf("a config without protected_resource has one: %+v", cfg.ProtectedResource)
	}

	cfg, err = Parse([]byte(twoIssuers+"protected_resource: {}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pr := cfg.ProtectedResource
	if pr == nil || pr.BaseURL != "" || !reflect.DeepEqual(pr.AuthorizationServers, []string{"https://a.example.com", "https://b.example.com"}) {
		t.Fatalf("authorization_servers should default to every issuer: %+v", pr)
	}
	if pr.DPoPAlgorithms != nil {
		t.Errorf("without a dpop: block the document names no DPoP algorithms: %v", pr.DPoPAlgorithms)
	}

	cfg, err = Parse([]byte(twoIssuers+"protected_resource: { base_url: \"https://api.example.com/\", authorization_servers: [] }\ndpop: { algorithms: [EdDSA, ES256] }\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pr = cfg.ProtectedResource
	if pr.BaseURL != "https://api.example.com" {
		t.Errorf("base_url = %q, want the trailing slash dropped", pr.BaseURL)
	}
	if len(pr.AuthorizationServers) != 2 {
		t.Errorf("authorization_servers: [] should default to every issuer: %v", pr.AuthorizationServers)
	}
	if !reflect.DeepEqual(pr.DPoPAlgorithms, []string{"EdDSA", "ES256"}) {
		t.Errorf("dpop_signing_alg_values_supported should be dpop.algorithms: %v", pr.DPoPAlgorithms)
	}

	// Loopback may use http, as for jwks_uri.
	if _, err := Parse([]byte(twoIssuers+"protected_resource: { base_url: \"http://127.0.0.1:8000\" }\n"), nil); err != nil {
		t.Errorf("a loopback base_url: %v", err)
	}
}

func TestProtectedResourceFromEnvironment(t *testing.T) {
	t.Setenv("STEPUP_PROTECTED_RESOURCE_BASE_URL", "https://mcp.example.com")
	t.Setenv("STEPUP_PROTECTED_RESOURCE_SCOPES_SUPPORTED", "[mcp:tools]")
	cfg, err := Parse([]byte(twoIssuers), NewViper())
	if err != nil {
		t.Fatal(err)
	}
	pr := cfg.ProtectedResource
	if pr == nil || pr.BaseURL != "https://mcp.example.com" || !reflect.DeepEqual(pr.ScopesSupported, []string{"mcp:tools"}) {
		t.Fatalf("%+v", pr)
	}
	t.Setenv("STEPUP_PROTECTED_RESOURCE_BASE_URL", "ftp://x")
	_, err = Parse([]byte(twoIssuers), NewViper())
	if err == nil || err.Error() != `environment variable STEPUP_PROTECTED_RESOURCE_BASE_URL: protected_resource.base_url: "ftp://x" must use https (`+loopbackRule+`)` {
		t.Errorf("%v", err)
	}
}

func TestResourcePathWithoutProtectedResourceWarns(t *testing.T) {
	cfg, err := Parse([]byte(twoIssuers+"policy:\n  routes:\n    - { name: mcp, match: { path_prefix: /mcp }, resource_path: /mcp }\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"policy.routes[0].resource_path (mcp) has no effect without a protected_resource block: no challenge carries resource_metadata and the metadata document is not served; add protected_resource: {} (see README, MCP servers behind Envoy)"}
	if got := cfg.Warnings(); !reflect.DeepEqual(got, want) {
		t.Errorf("Warnings() = %q, want %q", got, want)
	}
	cfg, err = Parse([]byte(twoIssuers+"protected_resource: {}\npolicy:\n  default: { resource_path: /mcp }\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Warnings(); len(got) != 0 {
		t.Errorf("with protected_resource: %q", got)
	}
}
