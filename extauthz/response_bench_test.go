package extauthz

import (
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/policy"
)

// allowOutcome is an allow with identity headers, as a cached aal2 token gets.
func allowOutcome() (*outcome, *attributes) {
	c := &policy.Claims{Issuer: "https://idp", Subject: "00u1a2b3c4d5e6f7g8h9", ACR: "aal2", HasACR: true,
		AuthTime: time.Unix(1_800_000_000, 0)}
	o := &outcome{claims: c, rules: &policy.IssuerRules{},
		decision: policy.Decision{Reason: policy.ReasonAllowed, Level: "aal2",
			Policy: policy.Policy{RequiredACR: "aal2", MaxAge: 300 * time.Second, HasMaxAge: true}}}
	return o, &attributes{}
}

// BenchmarkBuildResponse builds the CheckResponse of each kind of decision.
func BenchmarkBuildResponse(b *testing.B) {
	allow, a := allowOutcome()
	stepUp, _ := allowOutcome()
	stepUp.decision.Reason = policy.ReasonAuthTooOld
	invalid := &outcome{decision: policy.Decision{Reason: policy.ReasonTokenInvalid}, rules: &policy.IssuerRules{}}
	forged := &attributes{stepupHeaders: []string{"x-stepup-sub", "x-stepup-admin"}}
	for _, tc := range []struct {
		name string
		o    *outcome
		a    *attributes
	}{
		{"decision=allow", allow, a},
		{"decision=allow_forged_headers", allow, forged},
		{"decision=step_up", stepUp, a},
		{"decision=deny_invalid", invalid, a},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := buildResponse(tc.o, tc.a); r.Status == nil {
					b.Fatal("no status")
				}
			}
		})
	}
}
