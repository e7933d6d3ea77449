package extauthz_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// loopsCounted sums stepup_step_up_loop_suspected_total over the step-up reasons.
func loopsCounted(m *extauthz.Metrics, issuer string) float64 {
	n := 0.0
	for _, r := range []string{"acr_too_low", "acr_missing", "auth_time_missing", "auth_too_old"} {
		n += testutil.ToFloat64(m.LoopSuspected.WithLabelValues(issuer, r))
	}
	return n
}

// TestStepUpLoopDetector sends each flow over real gRPC to a server verifying real
// tokens, and checks the loop counter and warning. A loop is a subject who was
// denied for a step-up requirement at t0 and comes back with a token authenticated
// after t0 (auth_time, else iat) that still fails the same requirement.
func TestStepUpLoopDetector(t *testing.T) {
	type step struct {
		path   string
		claims func(now time.Time) devidp.Claims
		allow  bool // the decision expected; false means a denial
	}
	const payout, admin, reports = "/api/payout-destination", "/api/admin/users", "/api/reports/q3"
	at := func(d time.Duration) func(now time.Time) int64 {
		return func(now time.Time) int64 { return now.Add(d).Unix() }
	}
	user := func(acr string, authAge time.Duration) func(now time.Time) devidp.Claims {
		return func(now time.Time) devidp.Claims {
			return devidp.Claims{"sub": "user-1", "acr": acr, "auth_time": at(-authAge)(now)}
		}
	}
	tests := []struct {
		name  string
		steps []step
		loops float64
		// reason is the reason the loop is counted under, when loops is 1.
		reason string
	}{
		{"the seed flow (aal1 denied, fresh aal2 allowed) is not a loop", []step{
			{payout, user("aal1", time.Minute), false},
			{payout, user("aal2", 0), true},
		}, 0, ""},
		{"a first denial of a token issued moments ago is not a loop", []step{
			{payout, user("aal1", 0), false},
		}, 0, ""},
		{"retrying the denied token is not a loop", []step{
			{payout, user("aal1", time.Minute), false},
			{payout, user("aal1", time.Minute), false},
			{payout, user("aal1", time.Minute), false},
		}, 0, ""},
		{"a refreshed token (new iat, the old auth_time) on the denied route is not a loop", []step{
			{payout, func(now time.Time) devidp.Claims {
				return devidp.Claims{"sub": "user-1", "acr": "aal1", "auth_time": at(-time.Hour)(now), "iat": at(-time.Minute)(now)}
			}, false},
			{payout, func(now time.Time) devidp.Claims {
				return devidp.Claims{"sub": "user-1", "acr": "aal1", "auth_time": at(-time.Hour)(now), "iat": now.Unix()}
			}, false},
		}, 0, ""},
		{"an IdP that ignores acr_values (a new sign-in after the denial, still aal1) is a loop", []step{
			{payout, user("aal1", time.Minute), false},
			{payout, user("aal1", 0), false},
		}, 1, "acr_too_low"},
		{"an IdP that ignores max_age (a new token after the denial, auth_time still old) is not counted: auth_time did not move", []step{
			{payout, user("aal2", 10*time.Minute), false},
			{payout, user("aal2", 10*time.Minute), false},
		}, 0, ""},
		{"an IdP that leaves auth_time out: a token issued after the denial stands in by its iat, and is a loop", []step{
			{payout, func(now time.Time) devidp.Claims {
				return devidp.Claims{"sub": "user-1", "acr": "aal2", "iat": at(-time.Minute)(now)}
			}, false},
			{payout, func(now time.Time) devidp.Claims { return devidp.Claims{"sub": "user-1", "acr": "aal2"} }, false},
		}, 1, "auth_time_missing"},
		{"an IdP that leaves acr out is a loop on the retry", []step{
			{payout, func(now time.Time) devidp.Claims {
				return devidp.Claims{"sub": "user-1", "auth_time": at(-time.Minute)(now)}
			}, false},
			{payout, func(now time.Time) devidp.Claims { return devidp.Claims{"sub": "user-1", "auth_time": now.Unix()} }, false},
		}, 1, "acr_missing"},
		{"a new aal1 sign-in after a step-up that worked starts afresh", []step{
			{payout, user("aal1", time.Minute), false},
			{payout, user("aal2", 0), true},
			{payout, user("aal1", 0), false},
		}, 0, ""},
		{"another requirement (aal3 on another route) is not the same loop", []step{
			{payout, user("aal1", time.Minute), false},
			{admin, user("aal2", 0), false},
		}, 0, ""},
		{"another subject is not the same loop", []step{
			{payout, user("aal1", time.Minute), false},
			{payout, func(now time.Time) devidp.Claims {
				return devidp.Claims{"sub": "user-2", "acr": "aal1", "auth_time": now.Unix()}
			}, false},
		}, 0, ""},
		{"dry_run denials never count: nobody was asked to step up", []step{
			{reports, user("aal1", time.Minute), true},
			{reports, user("aal1", 0), true},
		}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, m, logs := observed(t)
			for i, s := range tt.steps {
				c := s.claims(time.Now())
				c["jti"] = i // distinct tokens even when the claims are equal
				method := "POST"
				if s.path != payout {
					method = "GET"
				}
				resp := h.check(t, req{method: method, path: s.path, headers: bearer(h.token(t, c))})
				if allowed := resp.GetOkResponse() != nil; allowed != s.allow {
					t.Fatalf("step %d: allowed = %v, want %v (%s)", i, allowed, s.allow, describeResp(resp))
				}
			}
			if got := loopsCounted(m, h.idp.Issuer); got != tt.loops {
				t.Errorf("loops counted = %v, want %v", got, tt.loops)
			}
			warned := strings.Count(logs.String(), "step-up loop suspected")
			if warned != int(tt.loops) {
				t.Errorf("%d loop warnings, want %v:\n%s", warned, tt.loops, logs.String())
			}
			if tt.loops == 1 {
				if got := testutil.ToFloat64(m.LoopSuspected.WithLabelValues(h.idp.Issuer, tt.reason)); got != 1 {
					t.Errorf("loop counted under reason %s: %v, want 1", tt.reason, got)
				}
				for _, want := range []string{"level=WARN", "sub=user-1", "reason=" + tt.reason, "denied_at=", "authenticated_at=", "policy=payout-destination"} {
					if !strings.Contains(logs.String(), want) {
						t.Errorf("loop warning lacks %q:\n%s", want, logs.String())
					}
				}
			}
		})
	}
}
