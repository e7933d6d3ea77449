//go:build !serveronly

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// dev token --client-id mints what a service has: a machine token with no
// acr and no auth_time (nobody signed in), unless they are asked for.
func TestDevTokenMachineTokens(t *testing.T) {
	idp, err := devidp.New(devAudience)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	defer hs.Close()
	idp.Issuer = hs.URL

	mint := func(t *testing.T, args ...string) map[string]any {
		t.Helper()
		cmd := newDevTokenCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(append([]string{"--idp", hs.URL}, args...))
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(strings.TrimSpace(out.String()), ".")
		if len(parts) != 3 {
			t.Fatalf("not a JWS: %q", out.String())
		}
		b, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		if err := json.Unmarshal(b, &claims); err != nil {
			t.Fatal(err)
		}
		return claims
	}
	for _, c := range []struct {
		name             string
		args             []string
		sub, clientID    string
		acr, hasAuthTime bool
	}{
		{"a user token by default", nil, "user-1", "", true, true},
		{"--client-id alone is a service: no acr, no auth_time", []string{"--client-id", "payouts-svc", "--scope", "payouts:write"}, "payouts-svc", "payouts-svc", false, false},
		{"a machine token gets acr when asked", []string{"--client-id", "svc", "--acr", "aal2"}, "svc", "svc", true, false},
		{"a machine token gets auth_time when asked", []string{"--client-id", "svc", "--age", "1m"}, "svc", "svc", false, true},
		{"--client-id with --sub is a user token of that client", []string{"--client-id", "web", "--sub", "user-7"}, "user-7", "web", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			claims := mint(t, c.args...)
			if claims["sub"] != c.sub {
				t.Errorf("sub = %v, want %q", claims["sub"], c.sub)
			}
			if got, _ := claims["client_id"].(string); got != c.clientID {
				t.Errorf("client_id = %q, want %q", got, c.clientID)
			}
			if _, ok := claims["acr"]; ok != c.acr {
				t.Errorf("acr present = %v, want %v (%v)", ok, c.acr, claims)
			}
			if _, ok := claims["auth_time"]; ok != c.hasAuthTime {
				t.Errorf("auth_time present = %v, want %v (%v)", ok, c.hasAuthTime, claims)
			}
		})
	}
}
