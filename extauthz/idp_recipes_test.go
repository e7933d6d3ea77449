package extauthz_test

import (
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// recipeBlock finds the issuer configs of docs/idp-recipes.md: a yaml block
// right after a <!-- recipe: NAME --> marker.
var recipeBlock = regexp.MustCompile("(?s)<!-- recipe: ([a-z0-9]+) -->\n```yaml\n(.*?)```")

// readRecipes returns each recipe's issuer list items (the lines after
// "issuers:"), by name.
func readRecipes(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile("../docs/idp-recipes.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range recipeBlock.FindAllStringSubmatch(string(doc), -1) {
		body, ok := strings.CutPrefix(m[2], "issuers:\n")
		if !ok {
			t.Fatalf("recipe %s does not start with issuers:", m[1])
		}
		out[m[1]] = body
	}
	return out
}

// recipeIdP serves one identity provider's JWKS on loopback; its tokens carry
// the real issuer's iss, which the recipe names.
type recipeIdP struct {
	issuer string
	jwks   string
	key    *devidp.Key
}

// mint signs claims under header (alg and kid are the key's; a header
// member set to nil is left out), as the IdP would shape its access token.
func (r *recipeIdP) mint(t *testing.T, header, claims map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(r.key.Alg), jwt.MapClaims(claims))
	tok.Header["kid"] = r.key.ID
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(r.key.Private)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestIdPRecipes runs each recipe of docs/idp-recipes.md through the real
// server over gRPC, with tokens shaped like that IdP's documented access
// tokens, signed by a key the server fetches as a JWKS over HTTP: an allow
// and a step-up denial per IdP where step-up is possible, and what the server
// answers where it is not.
func TestIdPRecipes(t *testing.T) {
	recipes := readRecipes(t)
	issuers := map[string]string{
		"okta":     "https://dev-123456.okta.com/oauth2/default",
		"auth0":    "https://example.eu.auth0.com/",
		"keycloak": "https://sso.example.com/realms/acme",
		"entra":    "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
		"cognito":  "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
		"ping":     "https://auth.pingone.eu/0a7af83d-4ed9-4510-93cd-506fe835f69a/as",
	}
	idps := map[string]*recipeIdP{}
	var yaml strings.Builder
	yaml.WriteString("issuers:\n")
	for _, name := range []string{"okta", "auth0", "keycloak", "entra", "cognito", "ping"} {
		body, ok := recipes[name]
		if !ok {
			t.Fatalf("docs/idp-recipes.md has no recipe %q", name)
		}
		idp, err := devidp.New("unused")
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(idp.Handler())
		t.Cleanup(hs.Close)
		r := &recipeIdP{issuer: issuers[name], jwks: hs.URL + "/jwks.json", key: idp.Key("rs-1")}
		idps[name] = r
		// The recipe finds keys by discovery; here they are on loopback.
		issuerLine := `  - issuer: "` + r.issuer + `"` + "\n"
		if !strings.HasPrefix(body, issuerLine) {
			t.Fatalf("recipe %s does not start with %q", name, issuerLine)
		}
		yaml.WriteString(issuerLine + `    jwks_uri: "` + r.jwks + `"` + "\n" + strings.TrimPrefix(body, issuerLine))
	}
	if _, ok := recipes["google"]; ok {
		t.Fatal("Google has no issuer recipe: its access tokens are opaque")
	}
	yaml.WriteString("policy:\n  default: {}\n")
	cfg, err := config.Parse([]byte(yaml.String()), nil)
	if err != nil {
		t.Fatalf("the recipes do not make a valid config:\n%v\n%s", err, yaml.String())
	}
	ks := token.NewKeySets(token.KeySetOptions{})
	t.Cleanup(ks.Close)
	engine, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{client: serveEngine(t, engine, extauthz.Options{})}

	now := time.Now()
	ago := func(d time.Duration) int64 { return now.Add(-d).Unix() }
	iat, exp := now.Add(-time.Minute).Unix(), now.Add(time.Hour).Unix()
	// Step-up routes, as Envoy route metadata carries them.
	aal2Fresh := map[string]any{"required_acr": "aal2", "max_age": 300}
	aal2 := map[string]any{"required_acr": "aal2"}
	// A step-up route that grants machines the payouts:write scope.
	aal2Machines := map[string]any{"required_acr": "aal2", "max_age": 300, "machine_scopes": "payouts:write"}
	noScope := denial{403, `{"error":"insufficient_scope"}`, `Bearer error="insufficient_scope", scope="payouts:write"`}
	fresh := map[string]any{"max_age": 300}

	okta := func(acr string, authAge time.Duration) string {
		return idps["okta"].mint(t, map[string]any{"typ": nil}, map[string]any{
			"ver": 1, "jti": "AT.p8dJ3Jd0xH2r0", "iss": issuers["okta"], "aud": "api://default",
			"iat": iat, "exp": exp, "cid": "0oa1a2b3c4d5e6f7g8h9", "uid": "00u1a2b3c4d5e6f7g8h9",
			"scp": []string{"openid", "payouts:write"}, "auth_time": ago(authAge), "sub": "alice@example.com",
			"acr": acr, "amr": []string{"pwd", "otp"},
		})
	}
	oktaMachine := func(scp ...string) string {
		return idps["okta"].mint(t, map[string]any{"typ": nil}, map[string]any{
			"ver": 1, "jti": "AT.m2m1", "iss": issuers["okta"], "aud": "api://default", "iat": iat, "exp": exp,
			"cid": "0oa9z8y7x6w5v4u3t2s1", "sub": "0oa9z8y7x6w5v4u3t2s1", "scp": scp,
		})
	}
	auth0Machine := func(scope string) string {
		return idps["auth0"].mint(t, map[string]any{"typ": "JWT"}, map[string]any{
			"iss": issuers["auth0"], "sub": "k9Qz3YtV2pX8wL1mN4bR6cJ7hF5gD0sA@clients", "aud": "https://api.example.com",
			"iat": iat, "exp": exp, "azp": "k9Qz3YtV2pX8wL1mN4bR6cJ7hF5gD0sA", "scope": scope, "gty": "client-credentials",
		})
	}
	auth0 := func(amr []string, authAge time.Duration) string {
		return idps["auth0"].mint(t, map[string]any{"typ": "JWT"}, map[string]any{
			"iss": issuers["auth0"], "sub": "auth0|64f1c2d3e4f5a6b7c8d9e0f1",
			"aud": []string{"https://api.example.com", "https://example.eu.auth0.com/userinfo"},
			"iat": iat, "exp": exp, "azp": "k9Qz3YtV2pX8wL1mN4bR6cJ7hF5gD0sA", "scope": "openid profile payouts:write",
			"https://stepup-authz.example/amr":       amr,
			"https://stepup-authz.example/auth_time": ago(authAge),
		})
	}
	keycloak := func(acr string, authAge time.Duration) string {
		return idps["keycloak"].mint(t, map[string]any{"typ": "JWT"}, map[string]any{
			"exp": exp, "iat": iat, "auth_time": ago(authAge), "jti": "onrtac:6f1c8e2a", "iss": issuers["keycloak"],
			"aud": []string{"payouts-api", "account"}, "sub": "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "typ": "Bearer",
			"azp": "web-app", "sid": "0b3c5c4e-1b62-4d55-9b4c-6c1f2d2e7a10", "acr": acr,
			"realm_access": map[string]any{"roles": []string{"default-roles-acme"}},
			"scope":        "openid profile email", "preferred_username": "alice",
		})
	}
	entra := func(acrs []string) string {
		claims := map[string]any{
			"aud": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "iss": issuers["entra"], "iat": iat, "nbf": iat, "exp": exp,
			"aio": "AWQAm/8TAAAA", "azp": "6731de76-14a6-49ae-97bc-6eba6914391e", "azpacr": "0", "name": "Alice",
			"oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474", "preferred_username": "alice@contoso.com", "rh": "0.ARoA",
			"scp": "Payouts.Write User.Read", "sub": "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
			"tid": "9188040d-6c67-4c5b-b112-36a304b66dad", "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "2.0",
		}
		if acrs != nil {
			claims["acrs"] = acrs
		}
		return idps["entra"].mint(t, map[string]any{"typ": "JWT", "x5t": "nOo3ZDrODXEK1jKWhXslHR_KXEg"}, claims)
	}
	cognito := func(authAge time.Duration) string {
		return idps["cognito"].mint(t, map[string]any{"typ": nil}, map[string]any{
			"sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "cognito:groups": []string{"admin"}, "iss": issuers["cognito"],
			"version": 2, "client_id": "6m8u0b2ipd0qgmadc1v0hm4j4d", "origin_jti": "aaaaaaaa-1111-2222-3333-bbbbbbbbbbbb",
			"event_id": "cccccccc-4444-5555-6666-dddddddddddd", "token_use": "access",
			"scope": "aws.cognito.signin.user.admin openid profile", "auth_time": ago(authAge),
			"exp": exp, "iat": iat, "jti": "eeeeeeee-7777-8888-9999-ffffffffffff", "username": "alice",
		})
	}
	cognitoIDToken := idps["cognito"].mint(t, map[string]any{"typ": nil}, map[string]any{
		"sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "aud": "6m8u0b2ipd0qgmadc1v0hm4j4d", "iss": issuers["cognito"],
		"token_use": "id", "auth_time": ago(time.Minute), "exp": exp, "iat": iat, "email": "alice@example.com",
	})
	ping := func(acr string, authAge time.Duration) string {
		return idps["ping"].mint(t, map[string]any{"typ": "at+jwt", "x5t": "cWmd7nEKG0HyPVoVtpiZ4iCikqA"}, map[string]any{
			"client_id": "3f2c0a6e-9c1b-4f25-8d4e-2b7a1c0d9e8f", "iss": issuers["ping"],
			"jti": "9b1f7c2e-0d3a-4b5c-8e6f-7a8b9c0d1e2f", "iat": iat, "exp": exp, "aud": []string{"https://api.example.com"},
			"scope": "payouts:write", "sub": "5b8c6d2e-3f4a-4b1c-9d8e-7f6a5b4c3d2e", "sid": "7c4d2e1f-0a9b-4c8d-a7e6-f5d4c3b2a190",
			"env": "0a7af83d-4ed9-4510-93cd-506fe835f69a", "org": "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
			"acr": acr, "auth_time": ago(authAge),
		})
	}

	const (
		stronger = `A stronger authentication is required`
		recent   = `A more recent authentication is required`
	)
	rfc9470 := func(desc, acrValues string, maxAge bool) string {
		c := `Bearer error="insufficient_user_authentication", error_description="` + desc + `"`
		if acrValues != "" {
			c += `, acr_values="` + acrValues + `"`
		}
		if maxAge {
			c += `, max_age="300"`
		}
		return c
	}
	const (
		bodyAAL2Fresh = `{"error":"step_up_required","required_acr":"aal2","max_age":300}`
		bodyAAL2      = `{"error":"step_up_required","required_acr":"aal2"}`
		bodyFresh     = `{"error":"step_up_required","max_age":300}`
	)
	invalid := denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`}

	for _, tc := range []struct {
		name     string
		token    string
		metadata map[string]any
		// Either allowed with x-stepup-acr wantACR ("" for none), or denied.
		wantACR string
		denied  *denial
		reason  string
	}{
		{name: "Okta: a 2fa token within max_age is allowed", token: okta("urn:okta:loa:2fa:any", time.Minute), metadata: aal2Fresh, wantACR: "aal2", reason: "allowed"},
		{name: "Okta: a 1fa token steps up to urn:okta:loa:2fa:any", token: okta("urn:okta:loa:1fa:any", time.Minute), metadata: aal2Fresh,
			denied: &denial{401, bodyAAL2Fresh, rfc9470(stronger, "urn:okta:loa:2fa:any", true)}, reason: "acr_too_low"},
		{name: "Okta: a 2fa token older than max_age steps up", token: okta("urn:okta:loa:2fa:any", 10*time.Minute), metadata: aal2Fresh,
			denied: &denial{401, bodyAAL2Fresh, rfc9470(recent, "urn:okta:loa:2fa:any", true)}, reason: "auth_too_old"},

		{name: "Okta: a client-credentials token (sub = cid) is a machine token with its scope", token: oktaMachine("payouts:write"), metadata: aal2Machines, reason: "allowed"},
		{name: "Okta: a client-credentials token without the scope gets 403, not a step-up", token: oktaMachine("reports:read"), metadata: aal2Machines, denied: &noScope, reason: "scope_missing"},

		{name: "Auth0: MFA in the Action's amr is allowed", token: auth0([]string{"pwd", "mfa"}, time.Minute), metadata: aal2Fresh, wantACR: "aal2", reason: "allowed"},
		{name: "Auth0: a password-only sign-in steps up with the multi-factor acr_values", token: auth0([]string{"pwd"}, time.Minute), metadata: aal2Fresh,
			denied: &denial{401, bodyAAL2Fresh, rfc9470(stronger, "http://schemas.openid.net/pape/policies/2007/06/multi-factor", true)}, reason: "acr_missing"},

		{name: "Auth0: a machine-to-machine token (gty client-credentials) with its scope is allowed", token: auth0Machine("payouts:write"), metadata: aal2Machines, reason: "allowed"},
		{name: "Auth0: a machine-to-machine token without the scope gets 403", token: auth0Machine("reports:read"), metadata: aal2Machines, denied: &noScope, reason: "scope_missing"},

		{name: "Keycloak: acr 2 within max_age is allowed", token: keycloak("2", time.Minute), metadata: aal2Fresh, wantACR: "aal2", reason: "allowed"},
		{name: "Keycloak: acr 0 (an SSO-cookie session) steps up to acr 2", token: keycloak("0", time.Minute), metadata: aal2Fresh,
			denied: &denial{401, bodyAAL2Fresh, rfc9470(stronger, "2", true)}, reason: "acr_too_low"},
		{name: "Keycloak: acr 1 steps up to acr 2", token: keycloak("1", time.Minute), metadata: aal2Fresh,
			denied: &denial{401, bodyAAL2Fresh, rfc9470(stronger, "2", true)}, reason: "acr_too_low"},

		{name: "Entra ID: authentication context c1 is allowed", token: entra([]string{"c1"}), metadata: aal2, wantACR: "aal2", reason: "allowed"},
		{name: "Entra ID: no authentication context gets the claims challenge for c1", token: entra(nil), metadata: aal2,
			denied: &denial{401, bodyAAL2, `Bearer error="insufficient_claims", error_description="A stronger authentication is required", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"`}, reason: "acr_missing"},
		{name: "Entra ID: a max_age route can never be met (no auth_time)", token: entra([]string{"c1"}), metadata: aal2Fresh,
			denied: &denial{401, bodyAAL2Fresh, `Bearer error="insufficient_claims", error_description="A more recent authentication is required", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"`}, reason: "auth_time_missing"},

		{name: "Cognito: a fresh sign-in passes max_age", token: cognito(time.Minute), metadata: fresh, reason: "allowed"},
		{name: "Cognito: a sign-in older than max_age steps up", token: cognito(10 * time.Minute), metadata: fresh,
			denied: &denial{401, bodyFresh, rfc9470(recent, "", true)}, reason: "auth_too_old"},
		{name: "Cognito: a level cannot come from the access token (no acr, no amr)", token: cognito(time.Minute), metadata: aal2,
			denied: &denial{401, bodyAAL2, rfc9470(stronger, "aal2", false)}, reason: "acr_missing"},
		{name: "Cognito: an ID token (aud, no client_id) is refused", token: cognitoIDToken, metadata: fresh, denied: &invalid, reason: "token_invalid"},

		{name: "PingOne: the Multi_Factor sign-on policy is allowed", token: ping("Multi_Factor", time.Minute), metadata: aal2Fresh, wantACR: "aal2", reason: "allowed"},
		{name: "PingOne: Single_Factor steps up to the Multi_Factor policy", token: ping("Single_Factor", time.Minute), metadata: aal2Fresh,
			denied: &denial{401, bodyAAL2Fresh, rfc9470(stronger, "Multi_Factor", true)}, reason: "acr_too_low"},

		{name: "Google: an opaque access token is invalid (no introspection exists for it)",
			token: "ya29.a0AfB_byC1xYz-Google-opaque-access-token_0123456789", metadata: aal2, denied: &invalid, reason: "token_invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.check(t, req{method: "POST", path: "/api/payout-destination",
				headers: map[string]string{"authorization": "Bearer " + tc.token}, metadata: tc.metadata})
			if tc.denied != nil {
				expectDenied(t, resp, *tc.denied)
				expectReason(t, resp, "deny", tc.reason)
				return
			}
			set, _ := okHeaders(t, resp)
			if set["x-stepup-acr"] != tc.wantACR || set["x-stepup-sub"] == "" {
				t.Errorf("upstream headers %v, want x-stepup-acr %q and a subject", set, tc.wantACR)
			}
			expectReason(t, resp, "allow", tc.reason)
		})
	}
}
