package extauthz_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// payloadOf decodes a token's payload the way jwt_authn's payload_in_metadata
// stores it: a Struct of the JSON claims.
func payloadOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The issuer at 127.0.0.1:1/down opted in with jwt_authn_payload: jwt_payload,
// and its JWKS never answers: a token of that issuer can only pass on the
// strength of Envoy's jwt_authn payload.
func TestJWTAuthnPayload(t *testing.T) {
	h := newHarness(t)
	const down = "http://127.0.0.1:1/down"
	mint := func(c devidp.Claims) string {
		c["iss"] = down
		return h.token(t, c)
	}
	aal2 := mint(devidp.Claims{"sub": "u", "acr": "aal2", "auth_time": time.Now().Unix()})
	other := mint(devidp.Claims{"sub": "someone-else", "acr": "aal3", "auth_time": time.Now().Unix()})
	expired := mint(devidp.Claims{"sub": "u", "acr": "aal2", "auth_time": time.Now().Unix(), "exp": time.Now().Add(-time.Hour).Unix()})
	invalid := denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`}
	payout := func(tok string, jwtAuthn map[string]any) req {
		return req{method: "POST", path: "/api/payout-destination", headers: bearer(tok), jwtAuthn: jwtAuthn}
	}

	t.Run("a token whose payload jwt_authn verified is accepted without keys", func(t *testing.T) {
		set, _ := okHeaders(t, h.check(t, payout(aal2, map[string]any{"jwt_payload": payloadOf(t, aal2)})))
		if set["x-stepup-sub"] != "u" || set["x-stepup-acr"] != "aal2" {
			t.Errorf("headers %v", set)
		}
	})
	t.Run("step-up rules still apply to a jwt_authn payload", func(t *testing.T) {
		aal1 := mint(devidp.Claims{"sub": "u", "acr": "aal1", "auth_time": time.Now().Unix()})
		expectDenied(t, h.check(t, payout(aal1, map[string]any{"jwt_payload": payloadOf(t, aal1)})),
			denial{401, `{"error":"step_up_required","required_acr":"aal2","max_age":300}`, stepUpAAL2})
	})
	t.Run("someone else's verified payload cannot be paired with this token", func(t *testing.T) {
		expectDenied(t, h.check(t, payout(aal2, map[string]any{"jwt_payload": payloadOf(t, other)})), invalid)
	})
	t.Run("a payload with one claim changed is refused", func(t *testing.T) {
		p := payloadOf(t, aal2)
		p["acr"] = "aal3"
		expectDenied(t, h.check(t, payout(aal2, map[string]any{"jwt_payload": p})), invalid)
	})
	t.Run("an expired token is refused even with its payload", func(t *testing.T) {
		expectDenied(t, h.check(t, payout(expired, map[string]any{"jwt_payload": payloadOf(t, expired)})), invalid)
	})
	t.Run("without the payload the server verifies itself, and this issuer has no keys", func(t *testing.T) {
		expectDenied(t, h.check(t, payout(aal2, map[string]any{"other_key": payloadOf(t, aal2)})),
			denial{503, `{"error":"temporarily_unavailable"}`, ""})
	})
	t.Run("an issuer that did not opt in is always verified here", func(t *testing.T) {
		tok := h.user(t, "aal2", 0)
		forged := tok[:strings.LastIndex(tok, ".")+1] + "AAAA"
		expectDenied(t, h.check(t, payout(forged, map[string]any{"jwt_payload": payloadOf(t, forged)})), invalid)
	})
}

// An issuer's claim_names apply to a payload Envoy's jwt_authn verified as to a
// token verified here: the claims are read from the same bytes under the same names.
func TestJWTAuthnPayloadClaimNames(t *testing.T) {
	const down = "http://127.0.0.1:1/cognito-like"
	h := startIntrospected(t, `
issuers:
  - issuer: "`+down+`"
    jwks_uri: "`+down+`/jwks.json"
    audiences: ["app-client-1"]
    jwt_authn_payload: jwt_payload
    claim_names: { aud: client_id }
policy:
  default: { max_age: 300 }
`)
	idp := newDevIdP(t)
	mint := func(c devidp.Claims) string {
		c["iss"], c["sub"], c["auth_time"] = down, "u", time.Now().Unix()
		tok, err := idp.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	check := func(tok string) req {
		return req{path: "/home", headers: bearer(tok), jwtAuthn: map[string]any{"jwt_payload": payloadOf(t, tok)}}
	}
	ok := mint(devidp.Claims{"aud": nil, "client_id": "app-client-1"})
	if set, _ := okHeaders(t, h.check(t, check(ok))); set["x-stepup-sub"] != "u" {
		t.Errorf("headers %v", set)
	}
	wrong := mint(devidp.Claims{"aud": "app-client-1", "client_id": "other-client"})
	expectDenied(t, h.check(t, check(wrong)), denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`})
}
