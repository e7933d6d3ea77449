package oidcprovider

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The fixture itself: what the provider issues is what the interoperability
// tests rely on, so it is checked here against the provider's own answers.
func TestProviderIssuesWhatTheTestsRelyOn(t *testing.T) {
	p := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("opaque token whose introspection carries the login's acr, amr and auth_time", func(t *testing.T) {
		before := time.Now().Add(-10 * time.Minute).Unix()
		tok, err := p.Login(ctx, Login{Sub: "user-7", ACR: "aal2", AMR: []string{"pwd", "otp"}, Age: 10 * time.Minute, Resource: ResourceOpaque})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(tok.AccessToken, ".") != 0 {
			t.Fatalf("access token %q is not opaque", tok.AccessToken)
		}
		got, err := p.Introspect(ctx, tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if got["active"] != true || got["sub"] != "user-7" || got["acr"] != "aal2" || got["aud"] != ResourceOpaque || got["iss"] != p.Issuer {
			t.Fatalf("introspection answer %v", got)
		}
		if at, _ := got["auth_time"].(float64); int64(at) < before-2 || int64(at) > before+2 {
			t.Fatalf("auth_time %v, want about %d", got["auth_time"], before)
		}
		if err := p.Revoke(ctx, tok.AccessToken); err != nil {
			t.Fatal(err)
		}
		if got, err := p.Introspect(ctx, tok.AccessToken); err != nil || got["active"] != false {
			t.Fatalf("after revocation: %v, %v", got, err)
		}
	})

	t.Run("DPoP-bound JWT access token whose cnf.jkt is the proof key's thumbprint", func(t *testing.T) {
		tok, err := p.Login(ctx, Login{Sub: "user-8", ACR: "aal1", Resource: ResourceJWT, DPoP: "ES256"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.EqualFold(tok.TokenType, "dpop") || tok.DPoPKey == "" {
			t.Fatalf("token type %q, key %q", tok.TokenType, tok.DPoPKey)
		}
		claims := payload(t, tok.AccessToken)
		cnf, _ := claims["cnf"].(map[string]any)
		_, jkt, err := p.Proof(ctx, tok.DPoPKey, "GET", "https://app.example.com/x", tok.AccessToken, "")
		if err != nil {
			t.Fatal(err)
		}
		if cnf["jkt"] != jkt || claims["acr"] != "aal1" || claims["aud"] != ResourceJWT {
			t.Fatalf("claims %v, proof key thumbprint %q", claims, jkt)
		}
	})

	// node-oidc-provider never introspects its own JWT access tokens
	// (shared/reject_structured_tokens.js: unsupported_token_type), so
	// introspection of lightweight JWTs (`jwt: true`) cannot be proven with it.
	t.Run("lightweight JWT without authentication claims, which the provider will not introspect", func(t *testing.T) {
		tok, err := p.Login(ctx, Login{Sub: "user-9", ACR: "aal2", Resource: ResourceLightweight})
		if err != nil {
			t.Fatal(err)
		}
		claims := payload(t, tok.AccessToken)
		if _, ok := claims["acr"]; ok {
			t.Fatalf("lightweight token carries acr: %v", claims)
		}
		if _, err := p.Introspect(ctx, tok.AccessToken); err == nil || !strings.Contains(err.Error(), "unsupported_token_type") {
			t.Fatalf("introspection of a JWT access token: %v, want unsupported_token_type", err)
		}
	})
}

func payload(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
