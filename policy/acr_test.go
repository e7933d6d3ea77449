package policy

import (
	"strings"
	"testing"
)

func TestLevelsValidate(t *testing.T) {
	tests := []struct {
		name    string
		levels  Levels
		wantErr string // "" means valid
	}{
		{name: "the default ladder is valid", levels: DefaultLevels},
		{name: "a single level is valid", levels: Levels{"aal2"}},
		{name: "Keycloak's numeric levels are valid", levels: Levels{"0", "1", "2"}},
		{name: "refeds URIs are valid", levels: Levels{"https://refeds.org/profile/sfa", "https://refeds.org/profile/mfa"}},
		{name: "a nil ladder is refused", levels: nil, wantErr: "must name at least one level"},
		{name: "an empty ladder is refused", levels: Levels{}, wantErr: "must name at least one level"},
		{name: "an empty level is refused by index", levels: Levels{"aal1", ""}, wantErr: "[1] is empty"},
		{name: "a blank level is refused by index", levels: Levels{" ", "aal2"}, wantErr: "[0] is empty"},
		{name: "a repeated level is refused by index", levels: Levels{"aal1", "aal2", "aal1"}, wantErr: `[2] "aal1" appears twice`},
		{name: "a level with a double quote is refused", levels: Levels{`aal"1`}, wantErr: `[0] "aal\"1": contains '"', which cannot appear in a WWW-Authenticate parameter`},
		{name: "a level with a backslash is refused", levels: Levels{"aal1", `aal\2`}, wantErr: `[1] "aal\\2": contains '\\'`},
		{name: "a level with a line feed is refused", levels: Levels{"aal1\n"}, wantErr: `[0] "aal1\n": contains '\n'`},
		{name: "a level with a carriage return is refused", levels: Levels{"aal\r1"}, wantErr: `contains '\r'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.levels.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestLevelsRank(t *testing.T) {
	tests := []struct {
		name  string
		level string
		want  int
	}{
		{"aal1 is the lowest", "aal1", 0},
		{"aal2 is in the middle", "aal2", 1},
		{"aal3 is the highest", "aal3", 2},
		{"an unknown level has no rank", "aal9", -1},
		{"levels are case-sensitive", "AAL1", -1},
		{"the empty string has no rank", "", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DefaultLevels.Rank(tt.level); got != tt.want {
				t.Errorf("Rank(%q) = %d, want %d", tt.level, got, tt.want)
			}
		})
	}
}

func TestLevelsString(t *testing.T) {
	tests := []struct {
		name   string
		levels Levels
		want   string
	}{
		{"the default ladder reads as in error messages", DefaultLevels, "[aal1 aal2 aal3]"},
		{"an empty ladder is empty brackets", Levels{}, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.levels.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIssuerRulesLevel(t *testing.T) {
	tests := []struct {
		name      string
		rules     *IssuerRules
		claims    *Claims
		wantLevel string
		wantRank  int
	}{
		{name: "a plain level is itself", rules: &IssuerRules{}, claims: &Claims{ACR: "aal2", HasACR: true}, wantLevel: "aal2", wantRank: 1},
		{name: "without amr_levels an amr reaches no level", rules: &IssuerRules{}, claims: &Claims{AMR: []string{"mfa"}}, wantLevel: "", wantRank: -1},
		{name: "an Okta alias maps to aal2", rules: testRules(), claims: &Claims{ACR: "urn:okta:loa:2fa:any", HasACR: true}, wantLevel: "aal2", wantRank: 1},
		{name: "a Keycloak numeric acr maps to its level", rules: testRules(), claims: &Claims{ACR: "1", HasACR: true}, wantLevel: "aal1", wantRank: 0},
		{name: "an alias key is taken verbatim, case and all", rules: testRules(), claims: &Claims{ACR: "URN:OKTA:LOA:2FA:ANY", HasACR: true}, wantLevel: "", wantRank: -1},
		{name: "an alias may override a level's own name", rules: &IssuerRules{ACRAliases: map[string]string{"aal1": "aal2"}}, claims: &Claims{ACR: "aal1", HasACR: true}, wantLevel: "aal2", wantRank: 1},
		{name: "an absent acr falls back to amr", rules: testRules(), claims: &Claims{AMR: []string{"pwd", "otp"}}, wantLevel: "aal2", wantRank: 1},
		{name: "an unknown acr falls back to amr", rules: testRules(), claims: &Claims{ACR: "x", HasACR: true, AMR: []string{"hwk"}}, wantLevel: "aal3", wantRank: 2},
		{name: "a known acr is not raised by amr", rules: testRules(), claims: &Claims{ACR: "aal1", HasACR: true, AMR: []string{"hwk"}}, wantLevel: "aal1", wantRank: 0},
		{name: "the highest amr level wins", rules: testRules(), claims: &Claims{AMR: []string{"mfa", "hwk", "pwd"}}, wantLevel: "aal3", wantRank: 2},
		{name: "an amr level off the ladder is skipped", rules: testRules(), claims: &Claims{AMR: []string{"weird", "pwd"}}, wantLevel: "aal1", wantRank: 0},
		{name: "no acr and no amr reaches no level", rules: testRules(), claims: &Claims{}, wantLevel: "", wantRank: -1},
		{name: "unmapped amr reaches no level", rules: testRules(), claims: &Claims{AMR: []string{"sms", "face"}}, wantLevel: "", wantRank: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			level, rank := tt.rules.Level(DefaultLevels, tt.claims)
			if level != tt.wantLevel || rank != tt.wantRank {
				t.Errorf("Level() = %q, %d; want %q, %d", level, rank, tt.wantLevel, tt.wantRank)
			}
		})
	}
}

func TestIssuerRulesChallengeACR(t *testing.T) {
	okta := &IssuerRules{ChallengeACRValues: map[string]string{"aal2": "urn:okta:loa:2fa:any", "aal3": "phrh"}}
	tests := []struct {
		name  string
		rules *IssuerRules
		level string
		want  string
	}{
		{"a mapped level is sent as the IdP's value", okta, "aal2", "urn:okta:loa:2fa:any"},
		{"another mapped level is sent as its own value", okta, "aal3", "phrh"},
		{"an unmapped level is sent as its own name", okta, "aal1", "aal1"},
		{"without challenge values the level's own name is sent", &IssuerRules{}, "aal2", "aal2"},
		{"acr aliases do not change the challenge", &IssuerRules{ACRAliases: map[string]string{"urn:okta:loa:2fa:any": "aal2"}}, "aal2", "aal2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rules.ChallengeACR(tt.level); got != tt.want {
				t.Errorf("ChallengeACR(%q) = %q, want %q", tt.level, got, tt.want)
			}
		})
	}
}

func TestLevelWithASpaceIsRefused(t *testing.T) {
	if err := (Levels{"aal1", "high level"}).Validate(); err == nil || !strings.Contains(err.Error(), "space") {
		t.Fatalf("Validate() = %v, want an error about the space", err)
	}
}
