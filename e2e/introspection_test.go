package e2e

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// opaqueConfig sends opaque tokens to the dev IdP's introspection endpoint,
// authenticating with the secret in secretFile. jwksURI lets a test point the
// issuer's keys somewhere that never answers.
func opaqueConfig(jwksURI, secretFile string) string {
	return `
listen: { grpc: "{{GRPC}}", admin: "{{ADMIN}}" }
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "` + jwksURI + `"
    audiences: ["https://api.example.com"]
    introspection:
      client_id: "` + devidp.IntrospectionClientID + `"
      client_secret_file: "` + secretFile + `"
      opaque_tokens: true
policy:
  default: { required_acr: aal2 }
`
}

func opaque(t *testing.T, idp *devidp.IdP, acr string) string {
	t.Helper()
	tok, err := idp.MintOpaque(devidp.Claims{"sub": "user-42", "acr": acr, "auth_time": time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestCheckShowsIntrospection(t *testing.T) {
	idp := startIdP(t)
	secret := writeFile(t, "secret", idp.IntrospectionSecret()+"\n")
	// check listens on nothing; the addresses only need to be valid.
	cfg := writeFile(t, "config.yaml", strings.NewReplacer("{{ISSUER}}", idp.Issuer, "{{GRPC}}", "127.0.0.1:0", "{{ADMIN}}", "127.0.0.1:1").
		Replace(opaqueConfig("{{ISSUER}}/jwks.json", secret)))

	code, out, stderr := run(t, nil, "check", "--config", cfg, "--token", opaque(t, idp, "aal2"), "--path", "/home")
	if code != 0 {
		t.Fatalf("exit %d, want 0\n%s%s", code, out, stderr)
	}
	for _, want := range []string{
		"decision: allow",
		"introspection: issuer " + idp.Issuer + " asked at " + idp.Issuer + "/introspect: active",
		`claims:   sub="user-42" acr="aal2"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = run(t, nil, "check", "--config", cfg, "--token", "bm90LWlzc3VlZC1ieS10aGUtaWRw", "--path", "/home")
	if code != 1 || !strings.Contains(out, "reason:   token_invalid") || !strings.Contains(out, "detail:   inactive") ||
		!strings.Contains(out, ": inactive") {
		t.Fatalf("a token the IdP never issued: exit %d\n%s", code, out)
	}

	code, out, _ = run(t, nil, "check", "--config", cfg, "--token", userToken(t, idp, "aal2", 0), "--path", "/home")
	if code != 0 || !strings.Contains(out, "introspection: not used for this token") {
		t.Fatalf("a JWT: exit %d\n%s", code, out)
	}
}

func TestValidateIntrospection(t *testing.T) {
	bad := writeFile(t, "bad.yaml", `
issuers:
  - issuer: "https://a.example.com"
    audiences: ["api"]
    introspection: { client_id: a, client_secret_file: /no/such/file, auth: basic, opaque_tokens: true }
  - issuer: "https://b.example.com"
    audiences: ["api"]
    introspection: { client_id: b, client_secret_file: /no/such/file, opaque_tokens: true, max_in_flight: 0 }
`)
	code, _, stderr := run(t, nil, "validate", "--config", bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		`issuers[0].introspection.client_secret_file: cannot read "/no/such/file"`,
		`issuers[0].introspection.auth: "basic" is not one of client_secret_basic, client_secret_post`,
		`issuers[1].introspection.max_in_flight: 0 is not a whole number`,
		`issuers[1].introspection.opaque_tokens: issuers[0] ("https://a.example.com") and issuers[1] ("https://b.example.com") both set it`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr)
		}
	}
}

// An issuer that only introspects (its keys never load) makes the server
// ready once its endpoint is known; a reload re-reads the client secret.
func TestServeIntrospectionReadinessAndSecretReload(t *testing.T) {
	idp := startIdP(t)
	secretPath := writeFile(t, "secret", "not-the-secret\n")
	cfg := opaqueConfig("http://"+deadAddr(t)+"/jwks.json", secretPath)
	s := startServer(t, idp, cfg)
	if code, body := s.get(t, "/readyz"); code != 200 || !strings.Contains(body, `"introspection":{"endpoint":"`+idp.Issuer+`/introspect","opaque_tokens":true,"ready":true}`) {
		t.Fatalf("/readyz %d %s", code, body)
	}

	tok := opaque(t, idp, "aal2")
	if resp := s.check(t, "GET", "/home", tok); resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
		t.Fatalf("a refused client secret: %s, want 503", describe(resp))
	}
	if strings.Contains(s.stderr.String(), "not-the-secret") {
		t.Fatal("the client secret was logged")
	}

	// Rotate the secret, then reload the config (as a ConfigMap update or an
	// edit does): the new secret is used from then on.
	if err := os.WriteFile(secretPath, []byte(idp.IntrospectionSecret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.writeConfig(t, idp, cfg+"# reloaded\n")
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := s.check(t, "GET", "/home", tok)
		if resp.GetOkResponse() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the reload: %s", describe(resp))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(s.stderr.String(), idp.IntrospectionSecret()) {
		t.Fatal("the client secret was logged")
	}
	// The polls above made some refused calls, then one that succeeded.
	_, metrics := s.get(t, "/metrics")
	for _, want := range []string{
		`stepup_introspection_requests_total{issuer="` + idp.Issuer + `",result="http_error"} `,
		`stepup_introspection_requests_total{issuer="` + idp.Issuer + `",result="active"} 1` + "\n",
		`stepup_decisions_total{decision="deny",policy="",reason="introspection_unavailable"} `,
	} {
		if !strings.Contains(metrics, want) || strings.Contains(metrics, want+"0\n") {
			t.Errorf("/metrics lacks %s (or it is 0)", want)
		}
	}
	// Pre-filled for the introspected issuer, so a first failure is an increase.
	if !strings.Contains(metrics, `stepup_introspection_requests_total{issuer="`+idp.Issuer+`",result="timeout"} 0`) {
		t.Errorf("/metrics lacks the pre-filled timeout series")
	}
}
