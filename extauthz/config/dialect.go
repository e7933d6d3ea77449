package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

// dialect reads an issuer's level_claim, challenge and claim_names: how its
// tokens say what they say (CONTRACT.md, "Identity-provider dialects").
func (b *builder) dialect(p string, m map[string]any, iss *Issuer) {
	iss.LevelClaim, iss.Challenge = policy.LevelClaimACR, policy.ChallengeRFC9470
	if x := m["level_claim"]; x != nil {
		if s, ok := b.str(p+".level_claim", x); ok {
			if lc, err := policy.ParseLevelClaim(s); err != nil {
				b.add(p+".level_claim", "%v (acrs: Microsoft Entra ID's authentication contexts)", err)
			} else {
				iss.LevelClaim = lc
			}
		}
	}
	if x := m["challenge"]; x != nil {
		if s, ok := b.str(p+".challenge", x); ok {
			if c, err := policy.ParseChallenge(s); err != nil {
				b.add(p+".challenge", "%v (entra: the claims challenge Microsoft's MSAL libraries act on)", err)
			} else {
				iss.Challenge = c
			}
		}
	}
	if x := m["claim_names"]; x != nil {
		names := token.RenamableClaims()
		iss.ClaimNames = b.strMap(p+".claim_names", x, func(kp, k, val string) {
			switch {
			case !slices.Contains(names, k):
				b.add(kp, "%q is not a claim that can be renamed; use one of %s", k, strings.Join(names, ", "))
			case val == "":
				b.add(kp, "must name the claim this identity provider's tokens carry %s under (leave %s out to read it as %q)", k, k, k)
			}
		})
	}
}

// Warnings are what validate prints about a valid config that will not work as
// its author likely means: each line names the field and what to do instead.
// A warning never makes a config invalid.
func (c *Config) Warnings() []string {
	var out []string
	for i := range c.Issuers {
		out = append(out, c.Issuers[i].entraWarnings(fmt.Sprintf("issuers[%d]", i))...)
	}
	if why := c.maxAgeNeverMet(); why != "" {
		if hasMaxAge(&c.Default) {
			out = append(out, "policy.default.max_age: "+why)
		}
		for i, r := range c.Routes {
			if hasMaxAge(&r.Layer) {
				out = append(out, fmt.Sprintf("policy.routes[%d].max_age (%s): %s", i, r.Name, why))
			}
		}
	}
	return append(out, c.resourceWarnings()...)
}

// LayerWarnings are the warnings about one policy layer from outside the
// config (an Envoy route's stepup metadata, checked by validate --envoy),
// each "field: message".
func (c *Config) LayerWarnings(l *policy.Layer) []string {
	if why := c.maxAgeNeverMet(); why != "" && hasMaxAge(l) {
		return []string{"max_age: " + why}
	}
	return nil
}

// maxAgeNeverMet says why no token can meet a max_age under this config, or
// "" when some can: Entra ID access tokens carry no auth_time, so when every
// issuer is challenge: entra, every request to a max_age route would step up
// in a loop.
func (c *Config) maxAgeNeverMet() string {
	if len(c.Issuers) == 0 || slices.ContainsFunc(c.Issuers, func(i Issuer) bool { return i.Challenge != policy.ChallengeEntra }) {
		return ""
	}
	return "every issuer is challenge: entra, and Microsoft Entra ID access tokens carry no auth_time, " +
		"so every token would be denied with auth_time_missing; drop max_age and require a fresh sign-in in Entra instead: " +
		"a Conditional Access policy on the authentication context with the session control Sign-in frequency: Every time, " +
		"and the level that context maps to (acr_aliases, challenge_acr_values) as required_acr"
}

// hasMaxAge reports a layer that sets a freshness rule (max_age: "" clears one).
func hasMaxAge(l *policy.Layer) bool { return l.MaxAge.Set && l.MaxAge.Value >= 0 }

// entraWarnings are the ways an entra issuer's step-up can loop: the claims
// challenge asks Entra ID for an authentication context, which comes back in
// acrs, and names it by challenge_acr_values.
func (i *Issuer) entraWarnings(p string) []string {
	if i.Challenge != policy.ChallengeEntra {
		return nil
	}
	var out []string
	if i.LevelClaim != policy.LevelClaimACRS {
		out = append(out, p+".level_claim: challenge: entra asks for an authentication context, which Entra ID "+
			"reports in acrs, but the level is read from acr: a token that stepped up would still fall short; set level_claim: acrs")
	}
	// Each level that a context reaches through acr_aliases, and the contexts
	// that reach it, in a stable order.
	reached := map[string][]string{}
	for _, ctx := range slices.Sorted(maps.Keys(i.ACRAliases)) {
		lv := i.ACRAliases[ctx]
		reached[lv] = append(reached[lv], ctx)
	}
	for _, lv := range slices.Sorted(maps.Keys(reached)) {
		if _, ok := i.ChallengeACRValues[lv]; !ok {
			out = append(out, fmt.Sprintf("%s.challenge_acr_values: no entry for %s, so a claims challenge for %s asks Entra ID for a context named %q, "+
				"which it does not know; add %s: %s (acr_aliases maps %s to %s)",
				p, lv, lv, lv, lv, reached[lv][0], strings.Join(reached[lv], ", "), lv))
		}
	}
	return out
}
