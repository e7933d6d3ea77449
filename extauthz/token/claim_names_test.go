package token

import (
	"context"
	"slices"
	"testing"

	"github.com/stepup-authz/stepup-authz/policy"
)

// Microsoft Entra ID's acrs claim is decoded with the other claims, by the one
// mapping that JWTs and introspection answers share.
func TestACRSClaim(t *testing.T) {
	keys := newKeyring(t)
	f := newFixture(t, keys.all(), nil)
	c, err := f.v.Verify(context.Background(), f.token(t, keys.rs, map[string]any{"acrs": []string{"c1", "c2"}, "acr": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.ACRS, []string{"c1", "c2"}) || c.ACR != "1" {
		t.Fatalf("claims %+v", c)
	}

	fi := newIntrospectionFixture(t, nil)
	fi.ep.setClaims(t, fi.active(map[string]any{"acrs": []string{"c3"}}))
	c, err = fi.v.Verify(context.Background(), opaqueToken)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.ACRS, []string{"c3"}) {
		t.Fatalf("introspected claims %+v", c)
	}
	t.Run("acrs that is not an array of strings makes an introspection answer invalid", func(t *testing.T) {
		fi := newIntrospectionFixture(t, nil)
		fi.ep.setClaims(t, fi.active(map[string]any{"acrs": "c1"}))
		wantDetail(t, verify(t, fi.v, opaqueToken), DetailClaimType)
	})
	t.Run("with jwt: true the answer's acrs takes precedence", func(t *testing.T) {
		fi := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.OpaqueTokens, c.JWT = false, true })
		k := newRSA(t, "k1", "RS256")
		fi.idp.publish(t, k)
		fi.v = fi.newVerifier(t)
		fi.ep.setClaims(t, map[string]any{"active": true, "acrs": []string{"c2"}})
		c, err := fi.v.Verify(context.Background(), fi.token(t, k, map[string]any{"acrs": []string{"c1"}}))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.ACRS, []string{"c2"}) {
			t.Fatalf("claims %+v", c)
		}
	})
}

// claim_names reads a claim under the identity provider's name, with the
// same type rules, and never under its own name.
func TestClaimNames(t *testing.T) {
	keys := newKeyring(t)
	cognito := func(cfg *IssuerConfig, _ *Options) {
		cfg.Audiences = []string{"app-client-1"}
		cfg.ClaimNames = map[string]string{"aud": "client_id"}
	}
	auth0 := func(cfg *IssuerConfig, _ *Options) {
		cfg.ClaimNames = map[string]string{"amr": "https://ns.example/amr", "auth_time": "https://ns.example/auth_time"}
	}
	for _, tt := range []struct {
		name   string
		mod    func(*IssuerConfig, *Options)
		claims map[string]any
		detail string
		check  func(t *testing.T, c *policy.Claims)
	}{
		{name: "aud is read from client_id", mod: cognito,
			claims: map[string]any{"aud": absent, "client_id": "app-client-1"},
			check: func(t *testing.T, c *policy.Claims) {
				if c.ClientID != "app-client-1" {
					t.Errorf("client_id %q", c.ClientID)
				}
			}},
		{name: "a client_id naming another client is a wrong audience", mod: cognito,
			claims: map[string]any{"aud": absent, "client_id": "other-client"}, detail: DetailBadAudience},
		{name: "an aud claim is not read when aud comes from client_id", mod: cognito,
			claims: map[string]any{"aud": "app-client-1"}, detail: DetailBadAudience},
		{name: "a wrongly typed renamed claim is invalid", mod: cognito,
			claims: map[string]any{"aud": absent, "client_id": 7}, detail: DetailClaimType},
		{name: "amr and auth_time come from namespaced claims", mod: auth0,
			claims: map[string]any{"https://ns.example/amr": []string{"pwd", "mfa"}, "https://ns.example/auth_time": 1893553445},
			check: func(t *testing.T, c *policy.Claims) {
				if !slices.Equal(c.AMR, []string{"pwd", "mfa"}) || c.AuthTime.Unix() != 1893553445 {
					t.Errorf("amr %v auth_time %v", c.AMR, c.AuthTime)
				}
			}},
		{name: "the claims under their own names are not read", mod: auth0,
			claims: map[string]any{"amr": []string{"mfa"}, "auth_time": 1893553445},
			check: func(t *testing.T, c *policy.Claims) {
				if c.AMR != nil || !c.AuthTime.IsZero() {
					t.Errorf("amr %v auth_time %v", c.AMR, c.AuthTime)
				}
			}},
		{name: "a namespaced auth_time that is not a number is invalid", mod: auth0,
			claims: map[string]any{"https://ns.example/auth_time": "1893553445"}, detail: DetailClaimType},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, keys.all(), tt.mod)
			c, err := f.v.Verify(context.Background(), f.token(t, keys.rs, tt.claims))
			wantDetail(t, err, tt.detail)
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
	t.Run("an introspection answer is read through claim_names too", func(t *testing.T) {
		fi := newIntrospectionFixture(t, nil)
		fi.cfg.Audiences = []string{"app-client-1"}
		fi.cfg.ClaimNames = map[string]string{"aud": "client_id"}
		fi.v = fi.newVerifier(t)
		fi.ep.setClaims(t, fi.active(map[string]any{"aud": absent, "client_id": "app-client-1"}))
		if err := verify(t, fi.v, opaqueToken); err != nil {
			t.Fatal(err)
		}
		fi.ep.setClaims(t, fi.active(map[string]any{"aud": "app-client-1", "client_id": "web"}))
		fi.v = fi.newVerifier(t) // an empty cache
		wantDetail(t, verify(t, fi.v, opaqueToken), DetailBadAudience)
	})
	t.Run("claim_names refuses a claim that cannot be renamed", func(t *testing.T) {
		if _, err := newClaimNames(map[string]string{"iss": "issuer"}); err == nil {
			t.Fatal("iss was accepted")
		}
		if _, err := newClaimNames(map[string]string{"amr": ""}); err == nil {
			t.Fatal("an empty name was accepted")
		}
	})
}
