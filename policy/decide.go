package policy

import "time"

// Settings are the server-wide inputs to every decision.
type Settings struct {
	Levels      Levels
	ClockSkew   time.Duration
	MachineRule MachineRule
}

// Decision is the verdict on one request, always with its reason.
type Decision struct {
	Reason Reason
	// Detail refines token_invalid and policy_error for logs only
	// ("expired", "bad_signature", ...).
	Detail string
	// Policy is the policy the decision applied.
	Policy Policy
	// Machine reports a machine token.
	Machine bool
	// Level is what x-stepup-acr carries: the level the token reached, else
	// its raw acr, else "".
	Level string
}

// Allowed reports whether the decision is not a denial: the request goes
// upstream, or (metadata_served) the server answered it itself.
func (d *Decision) Allowed() bool {
	o := OutcomeOf(d.Reason)
	return o == Allow || o == Served
}

// Outcome is the decision-table row this decision falls in.
func (d *Decision) Outcome() Outcome { return OutcomeOf(d.Reason) }

// Deny builds a decision that was reached before claims could be judged
// (no token, invalid token, no keys, unreadable policy).
func Deny(r Reason, detail string, p Policy) Decision {
	return Decision{Reason: r, Detail: detail, Policy: p}
}

// Decide judges verified claims against a resolved policy. It does not look at
// the policy's mode; the caller applies off and dry_run around it.
func Decide(c *Claims, p *Policy, rules *IssuerRules, s *Settings, now time.Time) Decision {
	d := Decision{Reason: ReasonAllowed, Policy: *p}
	level, rank := rules.Level(s.Levels, c)
	switch {
	case rank >= 0:
		d.Level = level
	case c.HasACR && rules.LevelClaim != LevelClaimACRS:
		// Under level_claim acrs the acr claim is ignored, and a raw acrs
		// array is no header value: x-stepup-acr is then only ever a level.
		d.Level = c.ACR
	}
	if !c.AuthTime.IsZero() && inFuture(c.AuthTime, now, s.ClockSkew) {
		d.Reason, d.Detail = ReasonTokenInvalid, "auth_time_in_future"
		return d
	}
	// Before step-up and scopes: stepping up with an unbound token would only
	// lead to this denial again.
	if !meetsSenderConstraint(p.SenderConstraint, c.Confirmation) {
		d.Reason, d.Detail = ReasonSenderConstraintMissing, string(p.SenderConstraint)
		return d
	}

	if s.MachineRule.IsMachine(c) {
		d.Machine = true
		// A machine can't step up: on a step-up route it needs scopes that
		// the route grants to machines, and without any it is refused.
		switch {
		case p.NeedsStepUp() && len(p.MachineScopes) == 0,
			!hasAllScopes(p.MachineScopes, c.Scopes), !hasAllScopes(p.RequiredScopes, c.Scopes):
			d.Reason = ReasonScopeMissing
		}
		return d
	}

	if p.RequiredACR != "" {
		switch {
		case rank < 0 && !rules.hasLevelClaim(c):
			d.Reason = ReasonACRMissing
			return d
		case rank < s.Levels.Rank(p.RequiredACR):
			d.Reason = ReasonACRTooLow
			return d
		}
	}
	if p.HasMaxAge {
		switch {
		case c.AuthTime.IsZero():
			d.Reason = ReasonAuthTimeMissing
			return d
		case tooOld(c.AuthTime, now, p.MaxAge, s.ClockSkew):
			d.Reason = ReasonAuthTooOld
			return d
		}
	}
	// Scopes come last: a user who must also step up is asked to step up
	// first, and the new token is then asked for the scopes (CONTRACT.md).
	if !hasAllScopes(p.RequiredScopes, c.Scopes) {
		d.Reason = ReasonScopeMissing
	}
	return d
}
