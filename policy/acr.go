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
}

// Level returns the level a token reached and its rank, or ("", -1) when
// neither its acr (after aliases) nor any of its amr values names a level.
func (r *IssuerRules) Level(levels Levels, c *Claims) (string, int) {
	if c.HasACR {
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
