package extauthz_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
	"github.com/stepup-authz/stepup-authz/internal/dpopproof"
)

// CONTRACT.md, "Protected resource metadata (RFC 9728) and scope step-up":
// every rule over real gRPC against tokens of a real dev IdP.

// resourceConfig is a server with protected_resource; base is its base_url
// line ("" derives the base per request) and more is appended.
func resourceConfig(idp *devidp.IdP, base, more string) string {
	return fmt.Sprintf(`
issuers:
  - issuer: %[1]q
    jwks_uri: "%[1]s/jwks.json"
    audiences: [%[2]q]
protected_resource:
  %[3]s
  scopes_supported: ["mcp:tools", "mcp:resources"]
  resource_name: "Example MCP server"
policy:
  routes:
    - { name: mcp, match: { path_prefix: /mcp }, resource_path: /mcp, required_scopes: "mcp:tools" }
    - { name: payouts, match: { path_prefix: /api/payouts }, resource_path: /api, required_acr: aal2, max_age: 300, machine_scopes: "payouts:write", required_scopes: "payouts:read" }
    - { name: dpop-only, match: { path: /dpop-only }, sender_constraint: dpop }
    - { name: public, match: { path_prefix: /public }, mode: "off" }
    - { name: broken, match: { path_prefix: /broken }, required_acr: aal2 }
`, idp.Issuer, audience, base) + more
}

// served checks a metadata document response and returns the document.
func served(t *testing.T, resp *authv3.CheckResponse) map[string]any {
	t.Helper()
	if got := resp.GetStatus().GetCode(); got != int32(codes.PermissionDenied) {
		t.Fatalf("status %v, want PERMISSION_DENIED with a 200 denied_response (the document)", codes.Code(got))
	}
	dr := resp.GetDeniedResponse()
	if dr.GetStatus().GetCode() != 200 {
		t.Fatalf("HTTP %d %s, want 200 and the document", dr.GetStatus().GetCode(), dr.GetBody())
	}
	headers := map[string]string{}
	for _, h := range dr.GetHeaders() {
		headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	want := map[string]string{"content-type": "application/json", "cache-control": "public, max-age=300", "access-control-allow-origin": "*"}
	if !reflect.DeepEqual(headers, want) {
		t.Errorf("headers %v, want %v", headers, want)
	}
	expectReason(t, resp, "allow", "metadata_served")
	var doc map[string]any
	if err := json.Unmarshal([]byte(dr.GetBody()), &doc); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, dr.GetBody())
	}
	return doc
}

func TestMetadataDocument(t *testing.T) {
	idp := newDevIdP(t)
	h := startIntrospected(t, resourceConfig(idp, "", "")).harness
	based := startIntrospected(t, resourceConfig(idp, `base_url: "https://api.example.com"`, "dpop: { algorithms: [EdDSA, ES256] }\n")).harness

	t.Run("the bare well-known path names the origin, as for htu", func(t *testing.T) {
		doc := served(t, h.check(t, req{path: "/.well-known/oauth-protected-resource", host: "MCP.Example.com:443", headers: map[string]string{"x-forwarded-proto": "https"}}))
		want := map[string]any{
			"resource":                 "https://mcp.example.com",
			"authorization_servers":    []any{idp.Issuer},
			"bearer_methods_supported": []any{"header"},
			"scopes_supported":         []any{"mcp:tools", "mcp:resources"},
			"resource_name":            "Example MCP server",
		}
		if !reflect.DeepEqual(doc, want) {
			t.Errorf("document\n %v\nwant\n %v", doc, want)
		}
	})
	t.Run("the suffixed form names the resource at the suffix (RFC 9728 §3.1)", func(t *testing.T) {
		doc := served(t, h.check(t, req{path: "/.well-known/oauth-protected-resource/mcp", host: "127.0.0.1:8000", scheme: "http"}))
		if doc["resource"] != "http://127.0.0.1:8000/mcp" {
			t.Errorf("resource %v", doc["resource"])
		}
	})
	t.Run("base_url replaces the request's origin, and dpop algorithms are listed when dpop is configured", func(t *testing.T) {
		doc := served(t, based.check(t, req{path: "/.well-known/oauth-protected-resource/mcp", host: "internal:8080", scheme: "http"}))
		if doc["resource"] != "https://api.example.com/mcp" {
			t.Errorf("resource %v", doc["resource"])
		}
		if !reflect.DeepEqual(doc["dpop_signing_alg_values_supported"], []any{"EdDSA", "ES256"}) {
			t.Errorf("dpop_signing_alg_values_supported %v", doc["dpop_signing_alg_values_supported"])
		}
	})
	t.Run("HEAD gets the GET's answer, body included (Envoy drops it and keeps Content-Type)", func(t *testing.T) {
		get := h.check(t, req{method: "GET", path: "/.well-known/oauth-protected-resource/mcp", scheme: "https"})
		head := h.check(t, req{method: "HEAD", path: "/.well-known/oauth-protected-resource/mcp", scheme: "https"})
		served(t, head)
		if get.GetDeniedResponse().GetBody() != head.GetDeniedResponse().GetBody() {
			t.Errorf("HEAD body %s, GET body %s", head.GetDeniedResponse().GetBody(), get.GetDeniedResponse().GetBody())
		}
	})
	t.Run("served whatever the route's policy: mode off, step-up, and a policy Envoy sent that cannot be understood", func(t *testing.T) {
		served(t, h.check(t, req{path: "/.well-known/oauth-protected-resource/public", scheme: "https"}))
		served(t, h.check(t, req{path: "/.well-known/oauth-protected-resource/api/payouts", scheme: "https", metadata: map[string]any{"required_acr": "aal2"}}))
		served(t, h.check(t, req{path: "/.well-known/oauth-protected-resource", scheme: "https", metadata: map[string]any{"required_acr": "aal9"}}))
	})
	t.Run("a query is not part of the path: the document for the path", func(t *testing.T) {
		doc := served(t, h.check(t, req{path: "/.well-known/oauth-protected-resource/mcp?x=1", scheme: "https"}))
		if doc["resource"] != "https://app.example.com/mcp" {
			t.Errorf("resource %v", doc["resource"])
		}
	})
	t.Run("judged on the normalised path: dot segments and repeated slashes resolve to the well-known path", func(t *testing.T) {
		doc := served(t, h.check(t, req{path: "//.well-known/./oauth-protected-resource//mcp", scheme: "https"}))
		if doc["resource"] != "https://app.example.com/mcp" {
			t.Errorf("resource %v", doc["resource"])
		}
	})

	// What is not the document goes through the route's policy.
	notServed := []struct {
		name   string
		r      req
		reason string
	}{
		{"POST to the well-known path", req{method: "POST", path: "/.well-known/oauth-protected-resource"}, "token_missing"},
		{"PUT to the suffixed form", req{method: "PUT", path: "/.well-known/oauth-protected-resource/mcp"}, "token_missing"},
		{"the well-known path with a character appended (no slash)", req{path: "/.well-known/oauth-protected-resourceX"}, "token_missing"},
		{"a path that leaves the well-known path with ..", req{path: "/.well-known/oauth-protected-resource/../../mcp"}, "token_missing"},
		// An encoded slash is a policy error for config route matching (CONTRACT.md, "Policy").
		{"an encoded slash", req{path: "/.well-known%2Foauth-protected-resource"}, "policy_error"},
		{"an encoded slash inside the suffix", req{path: "/.well-known/oauth-protected-resource/a%2Fb"}, "policy_error"},
		{"another well-known document", req{path: "/.well-known/openid-configuration"}, "token_missing"},
	}
	for _, tt := range notServed {
		t.Run(tt.name+" is judged by policy, not served", func(t *testing.T) {
			resp := h.check(t, tt.r)
			if resp.GetDeniedResponse().GetStatus().GetCode() == 200 {
				t.Fatalf("served the document: %s", resp.GetDeniedResponse().GetBody())
			}
			expectReason(t, resp, "deny", tt.reason)
		})
	}

	t.Run("without protected_resource the well-known path is an ordinary request", func(t *testing.T) {
		plain := startIntrospected(t, fmt.Sprintf(`
issuers:
  - issuer: %[1]q
    jwks_uri: "%[1]s/jwks.json"
    audiences: [%[2]q]
`, idp.Issuer, audience)).harness
		expectDenied(t, plain.check(t, req{path: "/.well-known/oauth-protected-resource"}), denial{401, `{"error":"unauthorized"}`, "Bearer"})
	})
}

func TestResourceMetadataOnEveryChallenge(t *testing.T) {
	idp := newDevIdP(t)
	h := startIntrospected(t, resourceConfig(idp, "", "")).harness
	based := startIntrospected(t, resourceConfig(idp, `base_url: "https://api.example.com"`, "")).harness
	mint := func(c devidp.Claims) string {
		tok, err := idp.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now().Unix()
	user := func(acr string, age int64, scope string) string {
		return mint(devidp.Claims{"sub": "user-1", "acr": acr, "auth_time": now - age, "scope": scope})
	}
	machine := func(scope string) string {
		return mint(devidp.Claims{"sub": "svc", "client_id": "svc", "scope": scope})
	}
	const (
		mcpRM    = `resource_metadata="https://app.example.com/.well-known/oauth-protected-resource/mcp"`
		apiRM    = `resource_metadata="https://app.example.com/.well-known/oauth-protected-resource/api"`
		bareRM   = `resource_metadata="https://app.example.com/.well-known/oauth-protected-resource"`
		scopeMCP = `Bearer error="insufficient_scope", scope="mcp:tools", ` + mcpRM
	)
	https := map[string]string{"x-forwarded-proto": "https"}
	with := func(tok string) map[string]string {
		return map[string]string{"x-forwarded-proto": "https", "authorization": "Bearer " + tok}
	}
	key, err := dpopproof.NewKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	bound := mint(devidp.Claims{"sub": "user-1", "acr": "aal1", "auth_time": now, "cnf": map[string]any{"jkt": key.Thumbprint()}})
	proof, err := key.Proof("POST", "https://app.example.com/api/payouts", bound, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	const stepUpBody = `{"error":"step_up_required","required_acr":"aal2","max_age":300}`
	tests := []struct {
		name string
		r    req
		want denial
	}{
		{"no token on /mcp: Bearer with resource_metadata (RFC 9728 §5.1)", req{path: "/mcp", headers: https},
			denial{401, `{"error":"unauthorized"}`, `Bearer ` + mcpRM}},
		{"an invalid token", req{path: "/mcp", headers: with("not-a-jwt")},
			denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token", ` + mcpRM}},
		{"a user token without the required scope: 403 insufficient_scope naming it", req{path: "/mcp", headers: with(user("aal1", 0, "openid"))},
			denial{403, `{"error":"insufficient_scope"}`, scopeMCP}},
		{"a machine token without the required scope", req{path: "/mcp", headers: with(machine("other"))},
			denial{403, `{"error":"insufficient_scope"}`, scopeMCP}},
		{"step-up comes before scopes: a weak user token without the scope is asked to step up", req{method: "POST", path: "/api/payouts", headers: with(user("aal1", 0, ""))},
			denial{401, stepUpBody, `Bearer error="insufficient_user_authentication", error_description="A stronger authentication is required", acr_values="aal2", max_age="300", ` + apiRM}},
		{"freshness comes before scopes", req{method: "POST", path: "/api/payouts", headers: with(user("aal2", 3600, ""))},
			denial{401, stepUpBody, `Bearer error="insufficient_user_authentication", error_description="A more recent authentication is required", acr_values="aal2", max_age="300", ` + apiRM}},
		{"a stepped-up user token without the scope is then 403 with required_scopes only", req{method: "POST", path: "/api/payouts", headers: with(user("aal2", 0, "payouts:write"))},
			denial{403, `{"error":"insufficient_scope"}`, `Bearer error="insufficient_scope", scope="payouts:read", ` + apiRM}},
		{"a machine token is told required_scopes then the machine_scopes not listed", req{method: "POST", path: "/api/payouts", headers: with(machine("payouts:read"))},
			denial{403, `{"error":"insufficient_scope"}`, `Bearer error="insufficient_scope", scope="payouts:read payouts:write", ` + apiRM}},
		{"no token on a dpop route: both challenges carry it (RFC 9449 §7.2)", req{path: "/dpop-only", headers: https},
			denial{401, `{"error":"unauthorized"}`, `Bearer ` + bareRM + `, DPoP algs="ES256 ES384 EdDSA PS256 RS256", ` + bareRM}},
		{"an unbound token on a dpop route: the DPoP challenge of sender_constraint_missing carries it", req{path: "/dpop-only", headers: with(user("aal1", 0, ""))},
			denial{401, `{"error":"unauthorized"}`, `DPoP algs="ES256 ES384 EdDSA PS256 RS256", ` + bareRM}},
		{"a step-up under the DPoP scheme: the DPoP challenge carries it", req{method: "POST", path: "/api/payouts", headers: map[string]string{"x-forwarded-proto": "https", "authorization": "DPoP " + bound, "dpop": proof}},
			denial{401, stepUpBody, `DPoP error="insufficient_user_authentication", error_description="A stronger authentication is required", acr_values="aal2", max_age="300", algs="ES256 ES384 EdDSA PS256 RS256", ` + apiRM}},
		{"an invalid DPoP proof, whose description holds commas", req{path: "/mcp", headers: map[string]string{"x-forwarded-proto": "https", "authorization": "DPoP " + bound, "dpop": "x.y.z"}},
			denial{401, `{"error":"invalid_dpop_proof"}`, `DPoP error="invalid_dpop_proof", error_description="the DPoP proof is not a compact JWS of JSON objects", algs="ES256 ES384 EdDSA PS256 RS256", ` + mcpRM}},
		{"a policy error has no challenge, so no resource_metadata", req{path: "/mcp", headers: https, metadata: map[string]any{"required_acr": "aal9"}},
			denial{500, `{"error":"policy_error"}`, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { expectDenied(t, h.check(t, tt.r), tt.want) })
	}
	t.Run("the token with the scope is allowed", func(t *testing.T) {
		okHeaders(t, h.check(t, req{path: "/mcp", headers: with(user("aal1", 0, "openid mcp:tools"))}))
		okHeaders(t, h.check(t, req{path: "/mcp", headers: with(machine("mcp:tools"))}))
	})
	t.Run("base_url is the base of resource_metadata", func(t *testing.T) {
		expectDenied(t, based.check(t, req{path: "/mcp", host: "10.0.0.7:8080", scheme: "http"}),
			denial{401, `{"error":"unauthorized"}`, `Bearer resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp"`})
	})
	t.Run("without x-forwarded-proto the request's scheme, default port dropped", func(t *testing.T) {
		expectDenied(t, h.check(t, req{path: "/mcp", host: "App.Example.com:80", scheme: "http"}),
			denial{401, `{"error":"unauthorized"}`, `Bearer resource_metadata="http://app.example.com/.well-known/oauth-protected-resource/mcp"`})
	})
	t.Run("an authority that cannot be written into the parameter: the challenge goes without it", func(t *testing.T) {
		expectDenied(t, h.check(t, req{path: "/mcp", host: `evil.com" error="x`, scheme: "https"}),
			denial{401, `{"error":"unauthorized"}`, `Bearer`})
	})
	t.Run("route metadata and context extensions set resource_path and required_scopes too", func(t *testing.T) {
		expectDenied(t, h.check(t, req{path: "/other", headers: with(user("aal1", 0, "")), metadata: map[string]any{"resource_path": "/other", "required_scopes": []any{"x:y"}}}),
			denial{403, `{"error":"insufficient_scope"}`, `Bearer error="insufficient_scope", scope="x:y", resource_metadata="https://app.example.com/.well-known/oauth-protected-resource/other"`})
		expectDenied(t, h.check(t, req{path: "/other", headers: with(user("aal1", 0, "")), extensions: map[string]string{"resource_path": "/ext", "required_scopes": "a:b c:d"}}),
			denial{403, `{"error":"insufficient_scope"}`, `Bearer error="insufficient_scope", scope="a:b c:d", resource_metadata="https://app.example.com/.well-known/oauth-protected-resource/ext"`})
	})
}

// CONTRACT.md, "Identity-provider dialects": the Entra claims challenge has
// exactly its parameters, plus resource_metadata when protected_resource is
// configured; and the RFC 9470 challenge of the other issuer gets it too.
func TestEntraChallengeCarriesResourceMetadata(t *testing.T) {
	e, r, c := newDevIdP(t), newDevIdP(t), newDevIdP(t)
	cfg := strings.NewReplacer("{{E}}", e.Issuer, "{{R}}", r.Issuer, "{{C}}", c.Issuer).Replace(entraConfig) +
		"protected_resource: { base_url: \"https://api.example.com\" }\n"
	h := startIntrospected(t, cfg).harness
	mint := func(idp *devidp.IdP, c devidp.Claims) string {
		c["sub"] = "user-1"
		tok, err := idp.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	const rm = `, resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/api"`
	md := map[string]any{"required_acr": "aal2", "resource_path": "/api"}
	post := func(tok string) req {
		return req{method: "POST", path: "/api/payout-destination", headers: map[string]string{"authorization": "Bearer " + tok}, metadata: md}
	}
	expectDenied(t, h.check(t, post(mint(e, devidp.Claims{"acrs": []string{"c7"}}))),
		denial{401, `{"error":"step_up_required","required_acr":"aal2"}`, entraClaimsChallenge("A stronger authentication is required", "c1") + rm})
	expectDenied(t, h.check(t, post(mint(r, devidp.Claims{"acr": "aal1"}))),
		denial{401, `{"error":"step_up_required","required_acr":"aal2"}`,
			`Bearer error="insufficient_user_authentication", error_description="A stronger authentication is required", acr_values="aal2"` + rm})
}

// A served document counts as decision allow, reason metadata_served, in the
// metrics and the log (at debug: it is no denial).
func TestMetadataServedIsCounted(t *testing.T) {
	idp := newDevIdP(t)
	cfg, err := config.Parse([]byte(resourceConfig(idp, "", "")), nil)
	if err != nil {
		t.Fatal(err)
	}
	ks := token.NewKeySets(token.KeySetOptions{})
	t.Cleanup(ks.Close)
	engine, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := extauthz.NewMetrics(prometheus.NewRegistry())
	logs := &lockedBuffer{}
	h := &harness{client: serveEngine(t, engine, extauthz.Options{Metrics: m, Logger: slog.New(slog.NewJSONHandler(logs, nil))})}
	served(t, h.check(t, req{path: "/.well-known/oauth-protected-resource/mcp", scheme: "https"}))
	served(t, h.check(t, req{method: "HEAD", path: "/.well-known/oauth-protected-resource", scheme: "https"}))
	if got := testutil.ToFloat64(m.Decisions.WithLabelValues("allow", "metadata_served", "")); got != 2 {
		t.Errorf("stepup_decisions_total{decision=allow,reason=metadata_served} = %v, want 2", got)
	}
	if strings.Contains(logs.String(), "denied") {
		t.Errorf("a served document was logged as a denial:\n%s", logs.String())
	}
}
