package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

const seedConfig = `
listen:
  grpc: "{{GRPC}}"
  admin: "{{ADMIN}}"
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "{{ISSUER}}/jwks.json"
    audiences: ["https://api.example.com"]
policy:
  routes:
    - name: payout-destination
      match: { path_prefix: /api/payout-destination, methods: [POST] }
      required_acr: aal2
      max_age: 5m
`

// TestSeedStory walks the tutorial's flow against the real binary: an aal1
// session is asked to step up, a fresh aal2 token passes with identity
// headers for the app, and six minutes later the same level is too old.
func TestSeedStory(t *testing.T) {
	idp := startIdP(t)
	s := startServer(t, idp, seedConfig)

	// 1. Signed in with a password only: step-up required, RFC 9470 challenge.
	resp := s.check(t, "POST", "/api/payout-destination", userToken(t, idp, "aal1", time.Minute))
	dr := resp.GetDeniedResponse()
	if resp.GetStatus().GetCode() != int32(codes.PermissionDenied) || dr.GetStatus().GetCode() != 401 {
		t.Fatalf("aal1: %s, want 401", describe(resp))
	}
	if got, want := dr.GetBody(), `{"error":"step_up_required","required_acr":"aal2","max_age":300}`; got != want {
		t.Errorf("aal1 body = %s, want %s", got, want)
	}
	if got, want := header(resp, "www-authenticate"),
		`Bearer error="insufficient_user_authentication", error_description="A stronger authentication is required", acr_values="aal2", max_age="300"`; got != want {
		t.Errorf("aal1 challenge = %s, want %s", got, want)
	}

	// 2. Stepped up just now: allowed, with the identity the app may trust.
	fresh := userToken(t, idp, "aal2", 0)
	resp = s.check(t, "POST", "/api/payout-destination", fresh)
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("fresh aal2: %s, want OK", describe(resp))
	}
	if header(resp, "x-stepup-sub") != "user-42" || header(resp, "x-stepup-acr") != "aal2" || header(resp, "x-stepup-auth-time") == "" {
		t.Errorf("upstream headers: sub=%q acr=%q auth_time=%q", header(resp, "x-stepup-sub"), header(resp, "x-stepup-acr"), header(resp, "x-stepup-auth-time"))
	}

	// 3. The same level, authenticated six minutes ago: step up again.
	resp = s.check(t, "POST", "/api/payout-destination", userToken(t, idp, "aal2", 6*time.Minute))
	if resp.GetDeniedResponse().GetStatus().GetCode() != 401 ||
		!strings.Contains(header(resp, "www-authenticate"), `error="insufficient_user_authentication"`) {
		t.Fatalf("stale aal2: %s, want 401 step_up_required", describe(resp))
	}

	// The admin server tells the same story.
	if code, body := s.get(t, "/metrics"); code != http.StatusOK ||
		!strings.Contains(body, `stepup_decisions_total{decision="deny",policy="payout-destination",reason="acr_too_low"} 1`) ||
		!strings.Contains(body, `stepup_decisions_total{decision="deny",policy="payout-destination",reason="auth_too_old"} 1`) ||
		!strings.Contains(body, `stepup_decisions_total{decision="allow",policy="payout-destination",reason="allowed"} 1`) {
		t.Errorf("metrics (%d) missing decision counts:\n%s", code, grep(body, "stepup_decisions_total"))
	}
	if code, _ := s.get(t, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if !strings.Contains(s.stderr.String(), "reason=acr_too_low") {
		t.Errorf("no denial log line with its reason:\n%s", s.stderr.String())
	}
	if strings.Contains(s.stderr.String(), fresh[:40]) {
		t.Error("a token appears in the logs")
	}

	// The normal flow is not a step-up loop: the counter stays at 0 and nothing warns.
	loops := func() float64 {
		n := 0.0
		for _, r := range []string{"acr_too_low", "acr_missing", "auth_time_missing", "auth_too_old"} {
			n += s.metric(t, `stepup_step_up_loop_suspected_total{issuer="`+idp.Issuer+`",reason="`+r+`"}`)
		}
		return n
	}
	if n := loops(); n != 0 || strings.Contains(s.stderr.String(), "step-up loop suspected") {
		t.Errorf("the seed flow counted %v step-up loops:\n%s", n, s.stderr.String())
	}
	// 4. An IdP that ignores acr_values: asked for aal2, the user signs in again and
	// gets aal1 once more. That retry is a loop.
	resp = s.check(t, "POST", "/api/payout-destination", userToken(t, idp, "aal1", 0))
	if resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("aal1 again: %s, want 401 step_up_required", describe(resp))
	}
	if n := s.metric(t, `stepup_step_up_loop_suspected_total{issuer="`+idp.Issuer+`",reason="acr_too_low"}`); n != 1 {
		t.Errorf("loop counter after an IdP ignored acr_values = %v, want 1", n)
	}
	if !strings.Contains(s.stderr.String(), "step-up loop suspected") {
		t.Errorf("no loop warning:\n%s", s.stderr.String())
	}
	s.stop(t)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
