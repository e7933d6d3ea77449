package e2e

import (
	"strings"
	"testing"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// The Entra ID dialect through the binary: validate warns (and still exits 0)
// about max_age when every issuer is challenge: entra, and check shows the
// dialect and the claims challenge Envoy would return.
func TestEntraDialectCommands(t *testing.T) {
	idp := startIdP(t)
	cfg := writeFile(t, "config.yaml", strings.ReplaceAll(`
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "{{ISSUER}}/jwks.json"
    audiences: ["https://api.example.com"]
    level_claim: acrs
    challenge: entra
    acr_aliases: { c1: aal2 }
    challenge_acr_values: { aal2: c1 }
policy:
  routes:
    - name: payout-destination
      match: { path_prefix: /api/payout-destination, methods: [POST] }
      required_acr: aal2
      max_age: 5m
    - name: profile
      match: { path_prefix: /api/profile }
      required_acr: aal2
`, "{{ISSUER}}", idp.Issuer))

	t.Run("validate warns about max_age and exits 0", func(t *testing.T) {
		code, stdout, stderr := run(t, nil, "validate", "--config", cfg)
		if code != 0 || !strings.Contains(stdout, "ok") {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		want := cfg + ": warning: policy.routes[0].max_age (payout-destination): every issuer is challenge: entra, and Microsoft Entra ID access tokens carry no auth_time"
		if !strings.Contains(stderr, want) || !strings.Contains(stderr, "Sign-in frequency: Every time") || strings.Count(stderr, "warning:") != 1 {
			t.Fatalf("stderr lacks the one warning %q:\n%s", want, stderr)
		}
	})
	t.Run("validate --envoy warns about Envoy route metadata with max_age", func(t *testing.T) {
		code, stdout, stderr := run(t, nil, "validate", "--config", cfg, "--envoy", "../envoy/envoy.yaml")
		if code != 0 || !strings.Contains(stdout, "envoy.yaml: ok") {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		want := `../envoy/envoy.yaml: warning: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[1].metadata.filter_metadata.stepup: route "payout-destination": max_age: every issuer is challenge: entra`
		if !strings.Contains(stderr, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, stderr)
		}
		code, stdout, stderr = run(t, nil, "validate", "--config", cfg, "--envoy", "../envoy/envoy-context-extensions.yaml")
		if code != 0 || !strings.Contains(stderr, `.check_settings.context_extensions: max_age: every issuer is challenge: entra`) {
			t.Fatalf("exit %d, no context_extensions warning\n%s%s", code, stdout, stderr)
		}
	})
	t.Run("check shows the dialect and the claims challenge", func(t *testing.T) {
		tok, err := idp.Mint(devidp.Claims{"sub": "user-42", "acr": "aal3"})
		if err != nil {
			t.Fatal(err)
		}
		code, out, stderr := run(t, nil, "check", "--config", cfg, "--token", tok, "--method", "GET", "--path", "/api/profile")
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", code, out, stderr)
		}
		for _, want := range []string{
			"reason:   acr_missing",
			"dialect:  level_claim acrs: the level comes from acrs (none in the token) through acr_aliases (acr is ignored)",
			"dialect:  challenge entra",
			`www-authenticate: Bearer error="insufficient_claims", error_description="A stronger authentication is required", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"`,
			`{"error":"step_up_required","required_acr":"aal2"}`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		tok, err = idp.Mint(devidp.Claims{"sub": "user-42", "acrs": []string{"c1"}})
		if err != nil {
			t.Fatal(err)
		}
		code, out, stderr = run(t, nil, "check", "--config", cfg, "--token", tok, "--method", "GET", "--path", "/api/profile")
		if code != 0 || !strings.Contains(out, `acrs ["c1"]`) || !strings.Contains(out, "set upstream header x-stepup-acr: aal2") {
			t.Fatalf("exit %d, want 0 with acrs [\"c1\"] and x-stepup-acr aal2\n%s%s", code, out, stderr)
		}
	})
}

// serve logs the config's warnings at start and again on a reload that brings
// new ones: the config is served, but likely not as meant.
func TestServeLogsConfigWarnings(t *testing.T) {
	idp := startIdP(t)
	entra := strings.Replace(seedConfig, `audiences: ["https://api.example.com"]`,
		`audiences: ["https://api.example.com"]
    level_claim: acrs
    challenge: entra
    acr_aliases: { c1: aal2 }
    challenge_acr_values: { aal2: c1 }`, 1)
	if entra == seedConfig {
		t.Fatal("seedConfig changed; this test adds the entra keys after its audiences")
	}
	s := startServer(t, idp, entra)
	const maxAgeWarning = "policy.routes[0].max_age (payout-destination): every issuer is challenge: entra"
	waitFor(t, "the max_age warning at start", func() bool {
		return strings.Contains(s.stderr.String(), "config warning") && strings.Contains(s.stderr.String(), maxAgeWarning)
	})
	// Under level_claim acrs an acr of aal2 is ignored: the claims challenge.
	aal2 := userToken(t, idp, "aal2", 0)
	wwwAuthenticate := func() string {
		for _, h := range s.check(t, "POST", "/api/payout-destination", aal2).GetDeniedResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "www-authenticate" {
				return h.GetHeader().GetValue()
			}
		}
		return ""
	}
	if got := wwwAuthenticate(); !strings.HasPrefix(got, `Bearer error="insufficient_claims"`) {
		t.Fatalf("WWW-Authenticate %q, want the claims challenge", got)
	}
	// A reload that reads the level from acr again: the dialect changes with
	// it, and the reload brings a new warning.
	s.writeConfig(t, idp, strings.Replace(entra, "level_claim: acrs", "level_claim: acr", 1))
	waitFor(t, "the level_claim warning after the reload", func() bool {
		out := s.stderr.String()
		return strings.Contains(out, "config reloaded") && strings.Contains(out, "issuers[0].level_claim: challenge: entra asks for an authentication context")
	})
	if resp := s.check(t, "POST", "/api/payout-destination", aal2); resp.GetOkResponse() == nil {
		t.Fatalf("after the reload an acr of aal2 counts: %s", describe(resp))
	}
	s.stop(t)
}
