package extauthz_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
	"github.com/stepup-authz/stepup-authz/internal/dpopproof"
)

// entraConfig has an Entra ID issuer ({{E}}: level_claim acrs, challenge
// entra), an issuer of the default dialect ({{R}}), and one that reads aud
// and amr under other names ({{C}}, claim_names), on one server.
const entraConfig = `
issuers:
  - issuer: "{{E}}"
    jwks_uri: "{{E}}/jwks.json"
    audiences: ["https://api.example.com"]
    level_claim: acrs
    challenge: entra
    acr_aliases: { c1: aal2, c2: aal3 }
    challenge_acr_values: { aal2: c1 }
  - issuer: "{{R}}"
    jwks_uri: "{{R}}/jwks.json"
    audiences: ["https://api.example.com"]
  - issuer: "{{C}}"
    jwks_uri: "{{C}}/jwks.json"
    audiences: ["app-client-1"]
    claim_names: { aud: client_id, amr: "https://ns.example/amr" }
    amr_levels: { mfa: aal2 }
policy:
  default: {}
`

// entraClaimsChallenge is the contract's claims challenge for context v:
// exactly these bytes, standard padded base64 (RFC 4648 §4).
func entraClaimsChallenge(desc, v string) string {
	claims := `{"access_token":{"acrs":{"essential":true,"value":"` + v + `"}}}`
	return `Bearer error="insufficient_claims", error_description="` + desc + `", claims="` + base64.StdEncoding.EncodeToString([]byte(claims)) + `"`
}

func startEntra(t *testing.T) (h *introspected, e, r *devidp.IdP) {
	t.Helper()
	h, e, r, _ = startDialects(t)
	return h, e, r
}

func startDialects(t *testing.T) (h *introspected, e, r, c *devidp.IdP) {
	t.Helper()
	e, r, c = newDevIdP(t), newDevIdP(t), newDevIdP(t)
	h = startIntrospected(t, strings.NewReplacer("{{E}}", e.Issuer, "{{R}}", r.Issuer, "{{C}}", c.Issuer).Replace(entraConfig))
	return h, e, r, c
}

// TestEntraDialect holds every rule of CONTRACT.md's "Identity-provider
// dialects" over real gRPC: the level from acrs, the claims challenge, and
// what each leaves alone.
func TestEntraDialect(t *testing.T) {
	h, e, r := startEntra(t)
	mint := func(idp *devidp.IdP, c devidp.Claims) string {
		c["sub"] = "user-1"
		tok, err := idp.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	post := func(tok string, md map[string]any) req {
		return req{method: "POST", path: "/api/payout-destination", headers: map[string]string{"authorization": "Bearer " + tok}, metadata: md}
	}
	aal2 := map[string]any{"required_acr": "aal2"}
	aal3 := map[string]any{"required_acr": "aal3"}
	const (
		stronger = "A stronger authentication is required"
		recent   = "A more recent authentication is required"
	)
	for _, tc := range []struct {
		name    string
		req     req
		wantACR string
		denied  *denial
		reason  string
	}{
		{name: "acrs [c1] satisfies an aal2 route, and x-stepup-acr is the level", req: post(mint(e, devidp.Claims{"acrs": []string{"c1"}}), aal2), wantACR: "aal2", reason: "allowed"},
		{name: "the highest context counts", req: post(mint(e, devidp.Claims{"acrs": []string{"c1", "c2"}}), aal3), wantACR: "aal3", reason: "allowed"},
		{name: "a context value that is a level name counts as that level", req: post(mint(e, devidp.Claims{"acrs": []string{"aal2"}}), aal2), wantACR: "aal2", reason: "allowed"},
		{name: "no acrs: the claims challenge asks for challenge_acr_values[aal2]", req: post(mint(e, devidp.Claims{}), aal2),
			denied: &denial{401, `{"error":"step_up_required","required_acr":"aal2"}`, entraClaimsChallenge(stronger, "c1")}, reason: "acr_missing"},
		{name: "an unmapped context is acr_too_low, with the claims challenge", req: post(mint(e, devidp.Claims{"acrs": []string{"c7"}}), aal2),
			denied: &denial{401, `{"error":"step_up_required","required_acr":"aal2"}`, entraClaimsChallenge(stronger, "c1")}, reason: "acr_too_low"},
		{name: "the acr claim is ignored under level_claim acrs", req: post(mint(e, devidp.Claims{"acr": "aal3"}), aal2),
			denied: &denial{401, `{"error":"step_up_required","required_acr":"aal2"}`, entraClaimsChallenge(stronger, "c1")}, reason: "acr_missing"},
		{name: "a level without challenge_acr_values sends its own name (padded base64)", req: post(mint(e, devidp.Claims{"acrs": []string{"c1"}}), aal3),
			denied: &denial{401, `{"error":"step_up_required","required_acr":"aal3"}`, entraClaimsChallenge(stronger, "aal3")}, reason: "acr_too_low"},
		{name: "no acr_values and no max_age in the challenge; max_age stays in the body", req: post(mint(e, devidp.Claims{"acrs": []string{"c1"}}), map[string]any{"required_acr": "aal2", "max_age": 300}),
			denied: &denial{401, `{"error":"step_up_required","required_acr":"aal2","max_age":300}`, entraClaimsChallenge(recent, "c1")}, reason: "auth_time_missing"},
		{name: "a freshness-only route has no context to ask for: the RFC 9470 challenge", req: post(mint(e, devidp.Claims{"acrs": []string{"c1"}}), map[string]any{"max_age": 300}),
			denied: &denial{401, `{"error":"step_up_required","max_age":300}`, `Bearer error="insufficient_user_authentication", error_description="` + recent + `", max_age="300"`}, reason: "auth_time_missing"},
		{name: "acrs that is not an array of strings is an invalid token", req: post(mint(e, devidp.Claims{"acrs": "c1"}), aal2),
			denied: &denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`}, reason: "token_invalid"},
		{name: "the default dialect ignores acrs and keeps RFC 9470 on the same route", req: post(mint(r, devidp.Claims{"acrs": []string{"aal3"}}), aal2),
			denied: &denial{401, `{"error":"step_up_required","required_acr":"aal2"}`, `Bearer error="insufficient_user_authentication", error_description="` + stronger + `", acr_values="aal2"`}, reason: "acr_missing"},
		{name: "the entra challenge again after an RFC 9470 one for the same policy", req: post(mint(e, devidp.Claims{}), aal2),
			denied: &denial{401, `{"error":"step_up_required","required_acr":"aal2"}`, entraClaimsChallenge(stronger, "c1")}, reason: "acr_missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.check(t, tc.req)
			if tc.denied != nil {
				expectDenied(t, resp, *tc.denied)
				expectReason(t, resp, "deny", tc.reason)
				return
			}
			set, _ := okHeaders(t, resp)
			if set["x-stepup-acr"] != tc.wantACR {
				t.Errorf("x-stepup-acr %q, want %q", set["x-stepup-acr"], tc.wantACR)
			}
			expectReason(t, resp, "allow", tc.reason)
		})
	}
	t.Run("the claims value is exactly the contract's bytes", func(t *testing.T) {
		c := entraClaimsChallenge(stronger, "c1")
		want := `claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"`
		if !strings.HasSuffix(c, want) {
			t.Fatalf("%s does not end with %s", c, want)
		}
		if !strings.HasSuffix(entraClaimsChallenge(stronger, "aal3"), `=="`) && !strings.HasSuffix(entraClaimsChallenge(stronger, "aal3"), `="`) {
			t.Fatal("the aal3 claims value is not padded")
		}
	})
}

// Under the DPoP scheme every challenge uses the DPoP scheme and carries algs
// (CONTRACT.md, sender-constrained tokens): the entra claims challenge too,
// with its parameters unchanged and algs last.
func TestEntraChallengeUnderDPoP(t *testing.T) {
	h, e, _ := startEntra(t)
	key, err := dpopproof.NewKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.Mint(devidp.Claims{"sub": "user-1", "cnf": map[string]any{"jkt": key.Thumbprint()}})
	if err != nil {
		t.Fatal(err)
	}
	proof, err := key.Proof("POST", "https://app.example.com/api/payout-destination", tok, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	resp := h.check(t, req{method: "POST", path: "/api/payout-destination", metadata: map[string]any{"required_acr": "aal2"},
		headers: map[string]string{"authorization": "DPoP " + tok, "dpop": proof, "x-forwarded-proto": "https"}})
	bearer := entraClaimsChallenge("A stronger authentication is required", "c1")
	want := "DPoP " + strings.TrimPrefix(bearer, "Bearer ") + `, ` + dpopAlgs
	expectDenied(t, resp, denial{401, `{"error":"step_up_required","required_acr":"aal2"}`, want})
	expectReason(t, resp, "deny", "acr_missing")
}

// entraAttackRows are SECURITY.md's rows for the dialects: a wrongly typed
// acrs, a context that maps to nothing, an acr slipped past level_claim acrs,
// an acrs slipped past the default dialect.
func entraAttackRows(t *testing.T) []attack {
	t.Helper()
	h, e, r, c := startDialects(t)
	on := &attackHarness{harness: h.harness, logs: h.logs}
	mint := func(idp *devidp.IdP, c devidp.Claims) req {
		c["sub"] = "user-1"
		tok, err := idp.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return req{path: "/home", metadata: map[string]any{"required_acr": "aal2"}, headers: map[string]string{"authorization": "Bearer " + tok}}
	}
	stepUp := func(label, challenge, reason string) expectation {
		return expectation{kind: wireRow, denial: &wireDenial{label: label, status: 401,
			body: `{"error":"step_up_required","required_acr":"aal2"}`, challenge: challenge, reason: reason}}
	}
	claims := entraClaimsChallenge("A stronger authentication is required", "c1")
	const rfc9470 = `Bearer error="insufficient_user_authentication", error_description="A stronger authentication is required", acr_values="aal2"`
	const g = "Identity-provider dialects (an aal2 route)"
	return []attack{
		{group: g, name: "`acrs` that is a string, not an array", req: mint(e, devidp.Claims{"acrs": "c1"}), want: deny("claim_type"), on: on},
		{group: g, name: "`acrs` holding a number", req: mint(e, devidp.Claims{"acrs": []any{"c1", 1}}), want: deny("claim_type"), on: on},
		{group: g, name: "`acrs` to an issuer that reads `acr`: a wrong type is still refused", req: mint(r, devidp.Claims{"acrs": map[string]any{"c1": true}}), want: deny("claim_type"), on: on},
		{group: g, name: "an `acrs` context that maps to no level (`level_claim: acrs`)", req: mint(e, devidp.Claims{"acrs": []string{"c7"}}),
			want: stepUp("401 `insufficient_claims` (`acr_too_low`)", claims, "acr_too_low"), on: on},
		{group: g, name: "an `acr` of aal3 without `acrs` (`acr` is ignored under `level_claim: acrs`)", req: mint(e, devidp.Claims{"acr": "aal3"}),
			want: stepUp("401 `insufficient_claims` (`acr_missing`)", claims, "acr_missing"), on: on},
		{group: g, name: "an `acrs` of aal3 to an issuer that reads `acr`", req: mint(r, devidp.Claims{"acrs": []string{"aal3"}}),
			want: stepUp("401 `insufficient_user_authentication` (`acr_missing`)", rfc9470, "acr_missing"), on: on},
		{group: g, name: "`claim_names: {aud: client_id}`: `aud` names the client, `client_id` another one", req: mint(c, devidp.Claims{"aud": "app-client-1", "client_id": "other-client"}),
			want: deny("bad_audience"), on: on},
		{group: g, name: "`claim_names: {aud: client_id}`: no `client_id` (an ID token's shape)", req: mint(c, devidp.Claims{"aud": "app-client-1"}),
			want: deny("bad_audience"), on: on},
		{group: g, name: "`claim_names: {amr: ...}`: `amr: [mfa]` under its own name is not read", req: mint(c, devidp.Claims{"client_id": "app-client-1", "amr": []string{"mfa"}}),
			want: stepUp("401 `insufficient_user_authentication` (`acr_missing`)", rfc9470, "acr_missing"), on: on},
		{group: g, name: "`claim_names: {amr: ...}`: `mfa` in the renamed claim", req: mint(c, devidp.Claims{"client_id": "app-client-1", "https://ns.example/amr": []string{"mfa"}}),
			want: accept(), on: on},
	}
}

// A suspected step-up loop of an entra issuer says what to check in Entra
// terms: the claims challenge was answered with a token that still fails.
func TestEntraStepUpLoopHint(t *testing.T) {
	h, e, _ := startEntra(t)
	for i, iat := range []time.Time{time.Now().Add(-time.Minute), time.Now().Add(time.Second)} {
		tok, err := e.Mint(devidp.Claims{"sub": "user-1", "iat": iat.Unix(), "jti": i})
		if err != nil {
			t.Fatal(err)
		}
		expectDenied(t, h.check(t, req{path: "/x", metadata: map[string]any{"required_acr": "aal2"}, headers: bearer(tok)}),
			denial{401, `{"error":"step_up_required","required_acr":"aal2"}`, entraClaimsChallenge("A stronger authentication is required", "c1")})
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "step-up loop suspected") || !strings.Contains(logs, "the authentication context Entra ID puts in acrs") {
		t.Fatalf("no loop warning in Entra terms:\n%s", logs)
	}
}

// resource_metadata (RFC 9728 §5.1) joins the claims challenge as one more
// parameter, after a padded claims value (its "=" are inside the quotes) and,
// under the DPoP scheme, after algs.
func TestEntraChallengeWithResourceMetadata(t *testing.T) {
	e, r, c := newDevIdP(t), newDevIdP(t), newDevIdP(t)
	h := startIntrospected(t, strings.NewReplacer("{{E}}", e.Issuer, "{{R}}", r.Issuer, "{{C}}", c.Issuer).Replace(entraConfig)+
		"protected_resource: { base_url: \"https://api.example.com\" }\n")
	const rm = `, resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"`
	aal3 := map[string]any{"required_acr": "aal3"}
	padded := entraClaimsChallenge("A stronger authentication is required", "aal3")
	if !strings.HasSuffix(padded, `="`) {
		t.Fatalf("%s: want a padded claims value", padded)
	}
	tok, err := e.Mint(devidp.Claims{"sub": "user-1", "acrs": []string{"c1"}})
	if err != nil {
		t.Fatal(err)
	}
	expectDenied(t, h.check(t, req{path: "/x", metadata: aal3, headers: bearer(tok)}),
		denial{401, `{"error":"step_up_required","required_acr":"aal3"}`, padded + rm})

	key, err := dpopproof.NewKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	bound, err := e.Mint(devidp.Claims{"sub": "user-1", "acrs": []string{"c1"}, "cnf": map[string]any{"jkt": key.Thumbprint()}})
	if err != nil {
		t.Fatal(err)
	}
	proof, err := key.Proof("GET", "https://app.example.com/x", bound, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	expectDenied(t, h.check(t, req{path: "/x", metadata: aal3, headers: map[string]string{"authorization": "DPoP " + bound, "dpop": proof, "x-forwarded-proto": "https"}}),
		denial{401, `{"error":"step_up_required","required_acr":"aal3"}`, "DPoP " + strings.TrimPrefix(padded, "Bearer ") + ", " + dpopAlgs + rm})
}
