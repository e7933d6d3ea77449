package extauthz_test

import (
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// resourceAttackRows are the rows of protected resource metadata and scope
// step-up (RFC 9728, CONTRACT.md): what is and is not the metadata document,
// judged on the path as Envoy sends it, and tokens that lack a scope or carry
// one of the wrong type, on the /mcp route of resourceConfig (required_scopes
// mcp:tools) and its /api/payouts route (aal2, machine_scopes payouts:write,
// required_scopes payouts:read).
func resourceAttackRows(t *testing.T) []attack {
	t.Helper()
	idp := newDevIdP(t)
	in := startIntrospected(t, resourceConfig(idp, "", ""))
	h := &attackHarness{harness: in.harness, logs: in.logs}
	mint := func(c devidp.Claims) string {
		tok, err := idp.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now().Unix()
	user := func(over devidp.Claims) string {
		c := devidp.Claims{"sub": "user-1", "acr": "aal2", "auth_time": now}
		for k, v := range over {
			c[k] = v
		}
		return mint(c)
	}
	machine := func(over devidp.Claims) string {
		c := devidp.Claims{"sub": "svc", "client_id": "svc"}
		for k, v := range over {
			c[k] = v
		}
		return mint(c)
	}
	const base = "https://app.example.com"
	rm := func(path string) string {
		return `resource_metadata="` + base + `/.well-known/oauth-protected-resource` + path + `"`
	}
	r := func(method, path, tok string) req {
		headers := map[string]string{"x-forwarded-proto": "https"}
		if tok != "" {
			headers["authorization"] = "Bearer " + tok
		}
		return req{method: method, path: path, headers: headers}
	}
	servedAs := func(resource string) expectation { return expectation{kind: servedRow, resource: resource} }
	noToken := func(path string) expectation {
		return expectation{kind: wireRow, denial: &wireDenial{label: "401 `Bearer resource_metadata=...` (route policy)", status: 401,
			body: `{"error":"unauthorized"}`, challenge: "Bearer " + rm(path), reason: "token_missing"}}
	}
	policyError := expectation{kind: wireRow, denial: &wireDenial{label: "500 `policy_error` (no guess at an encoded slash)", status: 500,
		body: `{"error":"policy_error"}`, reason: "policy_error"}}
	scopeMissing := func(scope, path string) expectation {
		return expectation{kind: wireRow, denial: &wireDenial{label: "403 `insufficient_scope`, `scope=\"" + scope + "\"`", status: 403,
			body: `{"error":"insufficient_scope"}`, challenge: `Bearer error="insufficient_scope", scope="` + scope + `", ` + rm(path), reason: "scope_missing"}}
	}
	invalid := func(path, detail string) expectation {
		return expectation{kind: wireRow, detail: detail, denial: &wireDenial{label: "401 `invalid_token`", status: 401,
			body: `{"error":"unauthorized"}`, challenge: `Bearer error="invalid_token", ` + rm(path), reason: "token_invalid"}}
	}

	var rows []attack
	add := func(name string, q req, want expectation) {
		rows = append(rows, attack{group: "Protected resource metadata and scope step-up (RFC 9728)", name: name, req: q, want: want, on: h})
	}
	add("`GET` of the suffixed well-known path without a token (control row: the document needs none)", r("GET", "/.well-known/oauth-protected-resource/mcp", ""), servedAs(base+"/mcp"))
	add("`GET` of the well-known path with an invalid token (the document is public)", r("GET", "/.well-known/oauth-protected-resource", "not-a-jwt"), servedAs(base))
	add("`POST` to the well-known path goes through the route's policy", r("POST", "/.well-known/oauth-protected-resource", ""), noToken(""))
	add("`DELETE` of the suffixed form goes through the route's policy", r("DELETE", "/.well-known/oauth-protected-resource/mcp", ""), noToken(""))
	add("`/.well-known/oauth-protected-resourceX` (no slash) is not the document", r("GET", "/.well-known/oauth-protected-resourceX", ""), noToken(""))
	add("`/.well-known/oauth-protected-resource/../../mcp` is judged as `/mcp`, the path Envoy's normalize_path sends", r("GET", "/.well-known/oauth-protected-resource/../../mcp", ""), noToken("/mcp"))
	add("`/.well-known%2Foauth-protected-resource` (encoded slash)", r("GET", "/.well-known%2Foauth-protected-resource", ""), policyError)
	add("`/.well-known/oauth-protected-resource/mcp%2F..%2F..%2Fadmin` (encoded slashes in the suffix)", r("GET", "/.well-known/oauth-protected-resource/mcp%2F..%2F..%2Fadmin", ""), policyError)
	add("a query on the well-known path names no other resource (`?resource=/admin`)", r("GET", "/.well-known/oauth-protected-resource?resource=/admin", ""), servedAs(base))
	add("`%2E` dot segments decode and resolve before the well-known path is recognised", r("GET", "/x/%2E%2E/.well-known/oauth-protected-resource/mcp", ""), servedAs(base+"/mcp"))
	add("an `:authority` that would inject a parameter: the challenge goes without `resource_metadata`",
		req{method: "GET", path: "/mcp", host: `evil.example", error="x`, headers: map[string]string{"x-forwarded-proto": "https"}},
		expectation{kind: wireRow, denial: &wireDenial{label: "401 `Bearer` (no `resource_metadata`)", status: 401, body: `{"error":"unauthorized"}`, challenge: "Bearer", reason: "token_missing"}})
	add("a human token without the route's `required_scopes`", r("GET", "/mcp", user(devidp.Claims{"scope": "openid profile"})), scopeMissing("mcp:tools", "/mcp"))
	add("a machine token without the route's `required_scopes`", r("GET", "/mcp", machine(devidp.Claims{"scope": "payouts:write"})), scopeMissing("mcp:tools", "/mcp"))
	add("a scope that only starts with the required one (`mcp:toolsX`)", r("GET", "/mcp", user(devidp.Claims{"scope": "mcp:toolsX"})), scopeMissing("mcp:tools", "/mcp"))
	add("a machine token with `required_scopes` but not `machine_scopes` on a step-up route", r("POST", "/api/payouts", machine(devidp.Claims{"scope": "payouts:read"})), scopeMissing("payouts:read payouts:write", "/api"))
	add("a stepped-up human token without `required_scopes` on a step-up route", r("POST", "/api/payouts", user(devidp.Claims{"scope": "payouts:write"})), scopeMissing("payouts:read", "/api"))
	add("`scope` claim that is a number", r("GET", "/mcp", user(devidp.Claims{"scope": 7})), invalid("/mcp", token.DetailClaimType))
	add("`scope` claim that is an array", r("GET", "/mcp", user(devidp.Claims{"scope": []string{"mcp:tools"}})), invalid("/mcp", token.DetailClaimType))
	add("`scp` array holding a number", r("GET", "/mcp", user(devidp.Claims{"scp": []any{"mcp:tools", 7}})), invalid("/mcp", token.DetailClaimType))
	add("`scp` array with the required scope (control row)", r("GET", "/mcp", user(devidp.Claims{"scp": []string{"mcp:tools"}})), accept())
	return rows
}
