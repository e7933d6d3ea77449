package policy

import (
	"testing"
	"time"
)

// entraRules is a Microsoft Entra ID issuer: the level comes from the acrs
// authentication contexts (CONTRACT.md, "Identity-provider dialects").
func entraRules() *IssuerRules {
	return &IssuerRules{
		LevelClaim: LevelClaimACRS,
		Challenge:  ChallengeEntra,
		ACRAliases: map[string]string{"c1": "aal2", "c2": "aal3", "c9": "aal9"},
		AMRLevels:  map[string]string{"mfa": "aal2"},
	}
}

// entraUser is an Entra ID access token: acrs, never auth_time.
func entraUser(acrs ...string) *Claims {
	return &Claims{Issuer: "https://login.microsoftonline.com/t/v2.0", Subject: "user-1", ACRS: acrs}
}

func TestDecideLevelClaimACRS(t *testing.T) {
	withACR := func(c *Claims, acr string) *Claims { c.ACR, c.HasACR = acr, true; return c }
	withAMR := func(c *Claims, amr ...string) *Claims { c.AMR = amr; return c }
	tests := []struct {
		name      string
		claims    *Claims
		policy    Policy
		want      Reason
		wantLevel string
	}{
		{"a context that maps to aal2 satisfies an aal2 route", entraUser("c1"), aal2Route(), ReasonAllowed, "aal2"},
		{"the highest context counts, whatever its place in acrs", entraUser("c2", "c1"), Policy{RequiredACR: "aal3"}, ReasonAllowed, "aal3"},
		{"a value that is itself a level name counts as that level", entraUser("aal3"), Policy{RequiredACR: "aal3"}, ReasonAllowed, "aal3"},
		{"a context below the route is acr_too_low", entraUser("c1"), Policy{RequiredACR: "aal3"}, ReasonACRTooLow, "aal2"},
		{"contexts that map to no level are acr_too_low, and no level goes upstream", entraUser("c7", "c9"), aal2Route(), ReasonACRTooLow, ""},
		{"no acrs is acr_missing", entraUser(), aal2Route(), ReasonACRMissing, ""},
		{"an empty acrs array is acr_missing", entraUser([]string{}...), aal2Route(), ReasonACRMissing, ""},
		{"the acr claim is ignored: an aal3 acr without acrs is acr_missing", withACR(entraUser(), "aal3"), aal2Route(), ReasonACRMissing, ""},
		{"the acr claim is ignored: it never lowers a level from acrs", withACR(entraUser("c1"), "aal1"), aal2Route(), ReasonAllowed, "aal2"},
		{"the raw acr never goes upstream under acrs", withACR(entraUser(), "urn:other"), Policy{}, ReasonAllowed, ""},
		{"without acrs, amr_levels give the level", withAMR(entraUser(), "mfa"), aal2Route(), ReasonAllowed, "aal2"},
		{"an unmapped context falls back to amr_levels", withAMR(entraUser("c7"), "mfa"), aal2Route(), ReasonAllowed, "aal2"},
		{"Entra tokens carry no auth_time: a max_age route is auth_time_missing", entraUser("c1"), aal2Fresh5m(), ReasonAuthTimeMissing, "aal2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.claims, &tt.policy, entraRules(), testSettings(), testNow)
			if d.Reason != tt.want || d.Level != tt.wantLevel {
				t.Errorf("Decide = %s level %q, want %s level %q", d.Reason, d.Level, tt.want, tt.wantLevel)
			}
		})
	}
}

func TestDecideLevelClaimACRIgnoresACRS(t *testing.T) {
	// The default level_claim reads acr only: acrs from another issuer's
	// dialect gives no level.
	c := entraUser("aal3")
	d := Decide(c, &Policy{RequiredACR: "aal2"}, testRules(), testSettings(), testNow)
	if d.Reason != ReasonACRMissing {
		t.Errorf("Decide = %s, want acr_missing", d.Reason)
	}
	c.ACR, c.HasACR, c.AuthTime = "aal2", true, ago(time.Minute)
	if d := Decide(c, &Policy{RequiredACR: "aal2"}, testRules(), testSettings(), testNow); d.Reason != ReasonAllowed || d.Level != "aal2" {
		t.Errorf("Decide = %s level %q, want allowed aal2", d.Reason, d.Level)
	}
}

func TestParseDialect(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want LevelClaim
		ok   bool
	}{{"", LevelClaimACR, true}, {"acr", LevelClaimACR, true}, {"acrs", LevelClaimACRS, true}, {"ACRS", "", false}, {"amr", "", false}} {
		got, err := ParseLevelClaim(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseLevelClaim(%q) = %q, %v", tt.in, got, err)
		}
	}
	for _, tt := range []struct {
		in   string
		want Challenge
		ok   bool
	}{{"", ChallengeRFC9470, true}, {"rfc9470", ChallengeRFC9470, true}, {"entra", ChallengeEntra, true}, {"Entra", "", false}, {"msal", "", false}} {
		got, err := ParseChallenge(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseChallenge(%q) = %q, %v", tt.in, got, err)
		}
	}
}
