package policy

import (
	"fmt"
	"slices"
	"strings"
)

// DefaultLevels is the acr ladder used when the config names none.
var DefaultLevels = Levels{"aal1", "aal2", "aal3"}

// Levels is the acr ladder in ascending strength: a token at a higher level
// satisfies a lower requirement. (The seed compared acr for equality, which
// refused aal3 users on aal2 routes; we rank instead.)
type Levels []string

// Rank returns the position of level in the ladder, or -1 if it is not on it.
func (l Levels) Rank(level string) int {
	return slices.Index(l, level)
}

// Validate reports a ladder that is empty, has blanks or repeats a level.
func (l Levels) Validate() error {
	if len(l) == 0 {
		return fmt.Errorf("must name at least one level")
	}
	seen := make(map[string]bool, len(l))
	for i, lv := range l {
		if strings.TrimSpace(lv) == "" {
			return fmt.Errorf("[%d] is empty", i)
		}
		if err := checkHeaderSafe(lv); err != nil {
			return fmt.Errorf("[%d] %q: %v", i, lv, err)
		}
		// RFC 9470 §3: acr_values is a space-separated list, so a level can't hold a space.
		if strings.ContainsAny(lv, " \t") {
			return fmt.Errorf("[%d] %q contains a space; acr_values is space-separated (RFC 9470)", i, lv)
		}
		if seen[lv] {
			return fmt.Errorf("[%d] %q appears twice", i, lv)
		}
		seen[lv] = true
	}
	return nil
}

func (l Levels) String() string { return "[" + strings.Join(l, " ") + "]" }

// IssuerRules is how one identity provider expresses authentication strength.
// Real IdPs disagree: Okta sends urn:okta:loa:2fa:any, Keycloak numeric
// levels, Auth0 signals MFA only through amr.
type IssuerRules struct {
	// ACRAliases maps this IdP's acr values to levels. Keys are verbatim.
	ACRAliases map[string]string
	// AMRLevels maps amr values to the level they imply; used only when acr is
	// absent or maps to no level.
	AMRLevels map[string]string
	// ChallengeACRValues maps a level to what this IdP expects in acr_values.
	ChallengeACRValues map[string]string
	// LevelClaim is the claim the level is read from: LevelClaimACR ("", the
	// default) or LevelClaimACRS (Microsoft Entra ID's authentication contexts).
	LevelClaim LevelClaim
	// Challenge is how a step-up denial asks this IdP's clients for more:
	// ChallengeRFC9470 ("", the default) or ChallengeEntra.
	Challenge Challenge
}

// LevelClaim names the claim an issuer's level is read from (level_claim).
type LevelClaim string

const (
	// LevelClaimACR reads the acr string (OpenID Connect Core §2).
	LevelClaimACR LevelClaim = "acr"
	// LevelClaimACRS reads Microsoft Entra ID's acrs array of authentication
	// context ids; acr is then ignored.
	LevelClaimACRS LevelClaim = "acrs"
)

// ParseLevelClaim reads a level_claim value; "" is the default, acr.
func ParseLevelClaim(s string) (LevelClaim, error) {
	switch LevelClaim(s) {
	case "", LevelClaimACR:
		return LevelClaimACR, nil
	case LevelClaimACRS:
		return LevelClaimACRS, nil
	}
	return "", fmt.Errorf("%q is not one of %s, %s", s, LevelClaimACR, LevelClaimACRS)
}

// Challenge names the dialect of an issuer's step-up challenge (challenge).
type Challenge string

const (
	// ChallengeRFC9470 is insufficient_user_authentication with acr_values and
	// max_age (RFC 9470 §3).
	ChallengeRFC9470 Challenge = "rfc9470"
	// ChallengeEntra is Microsoft Entra ID's claims challenge
	// (insufficient_claims with claims="<base64 JSON>"), which MSAL acts on.
	ChallengeEntra Challenge = "entra"
)

// ParseChallenge reads a challenge value; "" is the default, rfc9470.
func ParseChallenge(s string) (Challenge, error) {
	switch Challenge(s) {
	case "", ChallengeRFC9470:
		return ChallengeRFC9470, nil
	case ChallengeEntra:
		return ChallengeEntra, nil
	}
	return "", fmt.Errorf("%q is not one of %s, %s", s, ChallengeRFC9470, ChallengeEntra)
}

// hasLevelClaim reports whether c carries the claim this issuer's level is
// read from: an absent one is acr_missing, one that maps to no level
// acr_too_low.
func (r *IssuerRules) hasLevelClaim(c *Claims) bool {
	if r.LevelClaim == LevelClaimACRS {
		return len(c.ACRS) > 0
	}
	return c.HasACR
}

// Level returns the level a token reached and its rank, or ("", -1) when
// neither its level claim (acr, or each value of acrs, after aliases) nor any
// of its amr values names a level.
func (r *IssuerRules) Level(levels Levels, c *Claims) (string, int) {
	if r.LevelClaim == LevelClaimACRS {
		// CONTRACT.md, "Identity-provider dialects": the highest level any
		// acrs value maps to; a value that is itself a level name counts as it.
		best, bestRank := "", -1
		for _, v := range c.ACRS {
			lv := v
			if alias, ok := r.ACRAliases[v]; ok {
				lv = alias
			}
			if rank := levels.Rank(lv); rank > bestRank {
				best, bestRank = lv, rank
			}
		}
		if bestRank >= 0 {
			return best, bestRank
		}
	} else if c.HasACR {
		lv := c.ACR
		if alias, ok := r.ACRAliases[c.ACR]; ok {
			lv = alias
		}
		if rank := levels.Rank(lv); rank >= 0 {
			return lv, rank
		}
	}
	best, bestRank := "", -1
	for _, m := range c.AMR {
		lv, ok := r.AMRLevels[m]
		if !ok {
			continue
		}
		if rank := levels.Rank(lv); rank > bestRank {
			best, bestRank = lv, rank
		}
	}
	return best, bestRank
}

// ChallengeACR returns what to send in acr_values for a required level.
func (r *IssuerRules) ChallengeACR(level string) string {
	if v, ok := r.ChallengeACRValues[level]; ok {
		return v
	}
	return level
}
