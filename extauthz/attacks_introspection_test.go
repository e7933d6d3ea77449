package extauthz_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// introspectionAttackRows are the attack rows against introspection: an
// opaque-token issuer O and a lightweight-JWT issuer L (jwt: true), both dev
// IdPs whose introspection endpoint a row can make misbehave (a fault keyed
// by the token the row sends). Every row goes through the real gRPC server
// and real HTTP to the endpoint.
func introspectionAttackRows(t *testing.T) []attack {
	t.Helper()
	o, l := newDevIdP(t), newDevIdP(t)
	var otherOriginHits atomic.Int64
	otherOrigin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		otherOriginHits.Add(1)
		_, _ = w.Write([]byte(`{"active":true,"sub":"attacker"}`))
	}))
	t.Cleanup(otherOrigin.Close)
	t.Cleanup(func() {
		if n := otherOriginHits.Load(); n != 0 {
			t.Errorf("a redirect was followed to another origin %d times", n)
		}
	})
	ih := startIntrospected(t, fmt.Sprintf(`
issuers:
  - issuer: %[1]q
    jwks_uri: "%[1]s/jwks.json"
    audiences: [%[3]q]
    introspection:
      client_id: %[4]q
      client_secret_file: "{{SECRET:%[5]s}}"
      opaque_tokens: true
  - issuer: %[2]q
    jwks_uri: "%[2]s/jwks.json"
    audiences: [%[3]q]
    introspection:
      client_id: %[4]q
      client_secret_file: "{{SECRET:%[6]s}}"
      jwt: true
policy:
  default: {}
`, o.Issuer, l.Issuer, audience, devidp.IntrospectionClientID, o.IntrospectionSecret(), l.IntrospectionSecret()))
	h := &attackHarness{harness: ih.harness, logs: ih.logs, a: o, b: l}

	body := func(s string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(s))
		}
	}
	activeAs := func(over string) func(http.ResponseWriter) {
		exp := time.Now().Add(time.Hour).Unix()
		return body(fmt.Sprintf(`{"active":true,"iss":%q,"aud":%q,"sub":"user-1","exp":%d,%s}`, o.Issuer, audience, exp, over))
	}
	faults := map[string]func(http.ResponseWriter){
		"fault-active-string":   body(fmt.Sprintf(`{"active":"true","iss":%q,"aud":%q,"sub":"user-1"}`, o.Issuer, audience)),
		"fault-active-number":   body(`{"active":1,"sub":"user-1","aud":"` + audience + `"}`),
		"fault-active-repeated": body(`{"active":false,"active":true,"sub":"user-1","aud":"` + audience + `"}`),
		"fault-other-issuer":    body(fmt.Sprintf(`{"active":true,"iss":"https://evil.example.com","aud":%q,"sub":"user-1"}`, audience)),
		"fault-other-audience":  body(fmt.Sprintf(`{"active":true,"iss":%q,"aud":"https://other.example.com","sub":"user-1"}`, o.Issuer)),
		"fault-no-audience":     body(fmt.Sprintf(`{"active":true,"iss":%q,"sub":"user-1"}`, o.Issuer)),
		"fault-acr-number":      activeAs(`"acr":3`),
		"fault-auth-time-text":  activeAs(`"auth_time":"yesterday"`),
		"fault-auth-time-ahead": activeAs(fmt.Sprintf(`"auth_time":%d`, time.Now().Add(time.Hour).Unix())),
		"fault-dpop-bound":      activeAs(`"cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}`),
		"fault-html-200": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<!doctype html><title>Sign in</title>"))
		},
		"fault-array":  body(`[{"active":true}]`),
		"fault-string": body(`"active"`),
		"fault-1mib":   body(`{"active":true,"pad":"` + strings.Repeat("A", 1<<20) + `"}`),
		"fault-500": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte("<html>Internal Server Error</html>"))
		},
		"fault-redirect": func(w http.ResponseWriter) {
			w.Header().Set("Location", otherOrigin.URL+"/introspect")
			w.WriteHeader(http.StatusTemporaryRedirect)
		},
	}
	o.SetIntrospectionFault(func(w http.ResponseWriter, tok string) bool {
		if f, ok := faults[tok]; ok {
			f(w)
			return true
		}
		return false
	})

	var rows []attack
	in := func(tok string) req { return req{path: "/home", headers: bearer(tok)} }
	add := func(group, name string, r req, want expectation) {
		rows = append(rows, attack{group: group, name: name, req: r, want: want, on: h})
	}
	opaque := func(c devidp.Claims) string {
		tok, err := o.MintOpaque(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	unavailable := expectation{kind: introspectionDown}

	const g = "Opaque tokens (introspection)"
	add(g, "an opaque token the issuer issued (control row)", in(opaque(devidp.Claims{"sub": "user-1", "acr": "aal2"})), accept())
	add(g, "an opaque token the issuer never issued", in("bm90LWlzc3VlZC1ieS10aGUtaWRw"), deny(token.DetailInactive))
	revoked := opaque(devidp.Claims{"sub": "user-1"})
	o.Revoke(revoked)
	add(g, "an opaque token revoked at the issuer", in(revoked), deny(token.DetailInactive))
	add(g, "an opaque token past its exp (the issuer says inactive)", in(opaque(devidp.Claims{"exp": time.Now().Add(-time.Minute).Unix()})), deny(token.DetailInactive))
	add(g, "an opaque token issued for another audience", in(opaque(devidp.Claims{"aud": "https://other.example.com"})), deny(token.DetailBadAudience))
	add(g, "answer `active: \"true\"` (a string)", in("fault-active-string"), deny(token.DetailInactive))
	add(g, "answer `active: 1`", in("fault-active-number"), deny(token.DetailInactive))
	add(g, "answer naming another `iss`", in("fault-other-issuer"), deny(token.DetailUnknownIssuer))
	add(g, "answer for another `aud`", in("fault-other-audience"), deny(token.DetailBadAudience))
	add(g, "answer without `aud` (require_audience)", in("fault-no-audience"), deny(token.DetailBadAudience))
	add(g, "answer with `acr` as a number", in("fault-acr-number"), deny(token.DetailClaimType))
	add(g, "answer with `auth_time` as a string", in("fault-auth-time-text"), deny(token.DetailClaimType))
	add(g, "answer with `auth_time` an hour ahead", in("fault-auth-time-ahead"), deny("auth_time_in_future"))
	add(g, "answer binding the token to a DPoP key (`cnf.jkt`), presented as Bearer", in("fault-dpop-bound"), deny(token.DetailBoundAsBearer))
	add(g, "answer `{\"active\":false,\"active\":true}` (a repeated member)", in("fault-active-repeated"), unavailable)
	add(g, "an HTML page with status 200", in("fault-html-200"), unavailable)
	add(g, "a JSON array with status 200", in("fault-array"), unavailable)
	add(g, "a JSON string with status 200", in("fault-string"), unavailable)
	add(g, "an answer over 1 MiB", in("fault-1mib"), unavailable)
	add(g, "an HTML error page with status 500", in("fault-500"), unavailable)
	add(g, "a 307 redirect to another origin (never followed)", in("fault-redirect"), unavailable)
	add(g, "an opaque token of 16,385 bytes (never sent)", in(strings.Repeat("A", token.MaxTokenBytes+1)), deny(token.DetailTooLarge))
	attacker, err := devidp.NewKey("attacker-1", "RS256")
	if err != nil {
		t.Fatal(err)
	}
	add(g, "a JWT of an unconfigured issuer is not sent to the opaque-token issuer", in(jws(t, attacker, "RS256", hdr(t, "RS256", "attacker-1", nil), claimsFor(t, "https://evil.example.com", audience, nil))), deny(token.DetailUnknownIssuer))

	const gl = "Lightweight JWTs (jwt: true)"
	light := func(c devidp.Claims) string {
		tok, err := l.MintLightweight(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	add(gl, "a lightweight JWT whose acr only the answer carries (control row)", in(light(devidp.Claims{"sub": "user-1", "acr": "aal2"})), accept())
	revokedJWT := light(devidp.Claims{"sub": "user-1"})
	l.Revoke(revokedJWT)
	add(gl, "a lightweight JWT revoked at the issuer (signature and exp still valid)", in(revokedJWT), deny(token.DetailInactive))
	impostor, err := devidp.NewKey("rs-1", "RS256") // the issuer's kid, another key
	if err != nil {
		t.Fatal(err)
	}
	forged, err := l.MintWith(impostor, devidp.Claims{"sub": "user-1", "acr": "aal3"})
	if err != nil {
		t.Fatal(err)
	}
	hits := l.IntrospectionHits()
	t.Cleanup(func() {
		if l.IntrospectionHits() != hits+2 { // the control row and the revoked row
			t.Errorf("issuer L was asked %d times, want 2: a forged JWT must never be introspected", l.IntrospectionHits()-hits)
		}
	})
	add(gl, "a JWT under the issuer's kid signed by another key (never introspected)", in(forged), deny(token.DetailBadSignature))
	return rows
}
