package policy

import (
	"reflect"
	"testing"
	"time"
)

// testNow is the instant every decision test is judged at.
var testNow = time.Unix(1_800_000_000, 0)

const testSkew = 30 * time.Second

func ago(d time.Duration) time.Time { return testNow.Add(-d) }

func testSettings() *Settings {
	return &Settings{Levels: DefaultLevels, ClockSkew: testSkew, MachineRule: MachineRFC9068}
}

// testRules is one issuer that speaks every dialect the contract names:
// Okta's URN, Keycloak's numeric levels and Auth0's amr-only MFA.
func testRules() *IssuerRules {
	return &IssuerRules{
		ACRAliases: map[string]string{
			"urn:okta:loa:2fa:any": "aal2",
			"1":                    "aal1",
			"2":                    "aal2",
			"phrh":                 "aal3",
			"urn:broken":           "aal9", // an alias to no level maps to nothing
		},
		AMRLevels: map[string]string{
			"mfa":   "aal2",
			"otp":   "aal2",
			"hwk":   "aal3",
			"pwd":   "aal1",
			"weird": "aal9",
		},
	}
}

// human is a human token: it has a subject that is not its client.
func human(acr string, authTime time.Time) *Claims {
	c := &Claims{Issuer: "https://idp.example.com", Subject: "user-1", ClientID: "web-app", AuthTime: authTime}
	if acr != "" {
		c.ACR, c.HasACR = acr, true
	}
	return c
}

// machine is an RFC 9068 machine token: sub equals client_id.
func machine(scopes ...string) *Claims {
	return &Claims{Issuer: "https://idp.example.com", Subject: "payout-batch", ClientID: "payout-batch", Scopes: scopes}
}

// withScopes gives c the scopes.
func withScopes(c *Claims, scopes ...string) *Claims {
	c.Scopes = scopes
	return c
}

func aal2Route() Policy { return Policy{RequiredACR: "aal2"} }
func aal2Fresh5m() Policy {
	return Policy{RequiredACR: "aal2", MaxAge: 5 * time.Minute, HasMaxAge: true}
}
func onlyMaxAge(d time.Duration) Policy { return Policy{MaxAge: d, HasMaxAge: true} }

func TestDecide(t *testing.T) {
	tests := []struct {
		name       string
		claims     *Claims
		policy     Policy
		rules      *IssuerRules // nil: testRules()
		settings   *Settings    // nil: testSettings()
		want       Reason
		wantDetail string
		wantLevel  string
		wantMach   bool
	}{
		// acr ranking
		{name: "aal2 token satisfies an aal2 route", claims: human("aal2", ago(time.Minute)), policy: aal2Route(), want: ReasonAllowed, wantLevel: "aal2"},
		{name: "aal3 token satisfies an aal2 route", claims: human("aal3", ago(time.Minute)), policy: aal2Route(), want: ReasonAllowed, wantLevel: "aal3"},
		{name: "aal1 token is too low for an aal2 route", claims: human("aal1", ago(time.Minute)), policy: aal2Route(), want: ReasonACRTooLow, wantLevel: "aal1"},
		{name: "aal2 token is too low for an aal3 route", claims: human("aal2", ago(time.Minute)), policy: Policy{RequiredACR: "aal3"}, want: ReasonACRTooLow, wantLevel: "aal2"},
		{name: "aal1 token satisfies an aal1 route", claims: human("aal1", ago(time.Minute)), policy: Policy{RequiredACR: "aal1"}, want: ReasonAllowed, wantLevel: "aal1"},
		{name: "acr that is on no ladder and has no amr is too low, reported raw", claims: human("urn:unknown", ago(time.Minute)), policy: aal2Route(), want: ReasonACRTooLow, wantLevel: "urn:unknown"},
		{name: "acr compares case-sensitively, so AAL2 is unknown and too low", claims: human("AAL2", ago(time.Minute)), policy: aal2Route(), want: ReasonACRTooLow, wantLevel: "AAL2"},
		{name: "an empty acr claim is present but unknown, so too low rather than missing", claims: &Claims{Subject: "u", ACR: "", HasACR: true, AuthTime: ago(time.Minute)}, policy: aal2Route(), want: ReasonACRTooLow, wantLevel: ""},
		{name: "no acr and no amr is acr_missing", claims: human("", ago(time.Minute)), policy: aal2Route(), want: ReasonACRMissing, wantLevel: ""},
		{name: "no acr and only unmapped amr is acr_missing", claims: &Claims{Subject: "u", AMR: []string{"pwd-unmapped", "sms"}, AuthTime: ago(time.Minute)}, policy: aal2Route(), want: ReasonACRMissing, wantLevel: ""},
		{name: "no acr with an amr that maps to a level off the ladder is acr_missing", claims: &Claims{Subject: "u", AMR: []string{"weird"}, AuthTime: ago(time.Minute)}, policy: aal2Route(), want: ReasonACRMissing},

		// acr_aliases
		{name: "Okta urn:okta:loa:2fa:any is aal2 and satisfies an aal2 route", claims: human("urn:okta:loa:2fa:any", ago(time.Minute)), policy: aal2Route(), want: ReasonAllowed, wantLevel: "aal2"},
		{name: "Okta urn:okta:loa:2fa:any is aal2 and is too low for an aal3 route", claims: human("urn:okta:loa:2fa:any", ago(time.Minute)), policy: Policy{RequiredACR: "aal3"}, want: ReasonACRTooLow, wantLevel: "aal2"},
		{name: "Keycloak numeric acr 2 satisfies an aal2 route", claims: human("2", ago(time.Minute)), policy: aal2Route(), want: ReasonAllowed, wantLevel: "aal2"},
		{name: "Keycloak numeric acr 1 is too low for an aal2 route", claims: human("1", ago(time.Minute)), policy: aal2Route(), want: ReasonACRTooLow, wantLevel: "aal1"},
		{name: "an alias is per issuer: without rules Keycloak 2 is unknown", claims: human("2", ago(time.Minute)), policy: aal2Route(), rules: &IssuerRules{}, want: ReasonACRTooLow, wantLevel: "2"},
		{name: "an alias to a level off the ladder is an unknown acr", claims: human("urn:broken", ago(time.Minute)), policy: aal2Route(), want: ReasonACRTooLow, wantLevel: "urn:broken"},

		// amr_levels
		{name: "Auth0-style amr mfa with no acr is aal2 and satisfies an aal2 route", claims: &Claims{Subject: "u", AMR: []string{"mfa"}, AuthTime: ago(time.Minute)}, policy: aal2Route(), want: ReasonAllowed, wantLevel: "aal2"},
		{name: "amr mfa with no acr is too low for an aal3 route", claims: &Claims{Subject: "u", AMR: []string{"mfa"}, AuthTime: ago(time.Minute)}, policy: Policy{RequiredACR: "aal3"}, want: ReasonACRTooLow, wantLevel: "aal2"},
		{name: "the highest amr level wins whatever the order", claims: &Claims{Subject: "u", AMR: []string{"hwk", "pwd", "mfa"}, AuthTime: ago(time.Minute)}, policy: Policy{RequiredACR: "aal3"}, want: ReasonAllowed, wantLevel: "aal3"},
		{name: "amr is used when acr is unknown", claims: &Claims{Subject: "u", ACR: "urn:unknown", HasACR: true, AMR: []string{"mfa"}, AuthTime: ago(time.Minute)}, policy: aal2Route(), want: ReasonAllowed, wantLevel: "aal2"},
		{name: "amr is ignored when acr names a level, even a lower one", claims: &Claims{Subject: "u", ACR: "aal1", HasACR: true, AMR: []string{"hwk"}, AuthTime: ago(time.Minute)}, policy: aal2Route(), want: ReasonACRTooLow, wantLevel: "aal1"},
		{name: "amr is ignored when an aliased acr names a level", claims: &Claims{Subject: "u", ACR: "1", HasACR: true, AMR: []string{"mfa"}, AuthTime: ago(time.Minute)}, policy: aal2Route(), want: ReasonACRTooLow, wantLevel: "aal1"},
		{name: "unknown acr with only unmapped amr is too low, not missing", claims: &Claims{Subject: "u", ACR: "urn:unknown", HasACR: true, AMR: []string{"sms"}, AuthTime: ago(time.Minute)}, policy: aal2Route(), want: ReasonACRTooLow, wantLevel: "urn:unknown"},

		// freshness
		{name: "auth_time exactly max_age ago is allowed", claims: human("aal2", ago(5*time.Minute)), policy: aal2Fresh5m(), want: ReasonAllowed, wantLevel: "aal2"},
		{name: "auth_time max_age plus clock_skew ago is allowed", claims: human("aal2", ago(5*time.Minute+testSkew)), policy: aal2Fresh5m(), want: ReasonAllowed, wantLevel: "aal2"},
		{name: "auth_time one second beyond max_age plus clock_skew is auth_too_old", claims: human("aal2", ago(5*time.Minute+testSkew+time.Second)), policy: aal2Fresh5m(), want: ReasonAuthTooOld, wantLevel: "aal2"},
		{name: "auth_time an hour ago is auth_too_old for a 5m route", claims: human("aal3", ago(time.Hour)), policy: aal2Fresh5m(), want: ReasonAuthTooOld, wantLevel: "aal3"},
		{name: "missing auth_time on a max_age route is auth_time_missing", claims: human("aal2", time.Time{}), policy: aal2Fresh5m(), want: ReasonAuthTimeMissing, wantLevel: "aal2"},
		{name: "missing auth_time on a max_age-only route is auth_time_missing", claims: human("", time.Time{}), policy: onlyMaxAge(time.Minute), want: ReasonAuthTimeMissing},
		{name: "missing auth_time is fine when the route has no max_age", claims: human("aal2", time.Time{}), policy: aal2Route(), want: ReasonAllowed, wantLevel: "aal2"},
		{name: "a max_age-only route needs no acr", claims: human("", ago(time.Minute)), policy: onlyMaxAge(5 * time.Minute), want: ReasonAllowed},
		{name: "max_age 0 with auth_time now is allowed, so step-up cannot loop", claims: human("aal2", testNow), policy: onlyMaxAge(0), want: ReasonAllowed, wantLevel: "aal2"},
		{name: "max_age 0 with auth_time exactly clock_skew ago is allowed", claims: human("aal2", ago(testSkew)), policy: onlyMaxAge(0), want: ReasonAllowed, wantLevel: "aal2"},
		{name: "max_age 0 with auth_time 31s ago and 30s skew is auth_too_old", claims: human("aal2", ago(31*time.Second)), policy: onlyMaxAge(0), want: ReasonAuthTooOld, wantLevel: "aal2"},
		{name: "max_age 0 with no clock_skew and auth_time 1s ago is auth_too_old", claims: human("aal2", ago(time.Second)), policy: onlyMaxAge(0), settings: &Settings{Levels: DefaultLevels}, want: ReasonAuthTooOld, wantLevel: "aal2"},
		{name: "the largest accepted max_age does not overflow into auth_too_old", claims: human("aal2", ago(24*time.Hour)), policy: onlyMaxAge(time.Duration(maxAgeLimit) * time.Second), want: ReasonAllowed, wantLevel: "aal2"},
		{name: "acr is judged before freshness", claims: human("aal1", ago(time.Hour)), policy: aal2Fresh5m(), want: ReasonACRTooLow, wantLevel: "aal1"},
		{name: "missing acr is judged before missing auth_time", claims: human("", time.Time{}), policy: aal2Fresh5m(), want: ReasonACRMissing},

		// auth_time in the future
		{name: "auth_time beyond clock_skew in the future makes the token invalid", claims: human("aal2", testNow.Add(testSkew+time.Second)), policy: aal2Fresh5m(), want: ReasonTokenInvalid, wantDetail: "auth_time_in_future", wantLevel: "aal2"},
		{name: "auth_time in the future is invalid even on a route with no requirement", claims: human("aal2", testNow.Add(time.Hour)), policy: Policy{}, want: ReasonTokenInvalid, wantDetail: "auth_time_in_future", wantLevel: "aal2"},
		{name: "auth_time in the future is invalid for a machine token too", claims: &Claims{Subject: "svc", ClientID: "svc", AuthTime: testNow.Add(time.Hour)}, policy: Policy{}, want: ReasonTokenInvalid, wantDetail: "auth_time_in_future"},
		{name: "auth_time exactly clock_skew in the future is tolerated", claims: human("aal2", testNow.Add(testSkew)), policy: aal2Fresh5m(), want: ReasonAllowed, wantLevel: "aal2"},

		// no requirement
		{name: "a policy with no requirement allows a human token with nothing but a subject", claims: &Claims{Subject: "u"}, policy: Policy{}, want: ReasonAllowed},
		{name: "a policy with no requirement allows an aal1 human token", claims: human("aal1", ago(48*time.Hour)), policy: Policy{}, want: ReasonAllowed, wantLevel: "aal1"},
		{name: "a policy with no requirement allows a machine token without scopes", claims: machine(), policy: Policy{}, want: ReasonAllowed, wantMach: true},
		{name: "mode is not Decide's business: an off policy with a requirement is still judged", claims: human("aal1", ago(time.Minute)), policy: Policy{RequiredACR: "aal2", Mode: ModeOff}, want: ReasonACRTooLow, wantLevel: "aal1"},

		// machine tokens
		{name: "machine token on a step-up route without machine_scopes is scope_missing", claims: machine("payouts:write"), policy: aal2Fresh5m(), want: ReasonScopeMissing, wantMach: true},
		{name: "machine token on a max_age-only route without machine_scopes is scope_missing", claims: machine("payouts:write"), policy: onlyMaxAge(time.Minute), want: ReasonScopeMissing, wantMach: true},
		{name: "machine token with every machine_scope passes a step-up route without acr or auth_time", claims: machine("payouts:read", "payouts:write", "openid"), policy: Policy{RequiredACR: "aal3", MaxAge: 0, HasMaxAge: true, MachineScopes: []string{"payouts:write", "payouts:read"}}, want: ReasonAllowed, wantMach: true},
		{name: "machine token missing one machine_scope is scope_missing", claims: machine("payouts:read"), policy: Policy{RequiredACR: "aal2", MachineScopes: []string{"payouts:read", "payouts:write"}}, want: ReasonScopeMissing, wantMach: true},
		{name: "machine token with no scopes on a scopes route is scope_missing", claims: machine(), policy: Policy{RequiredACR: "aal2", MachineScopes: []string{"payouts:write"}}, want: ReasonScopeMissing, wantMach: true},
		{name: "scopes compare exactly: payouts:write does not satisfy payouts:writer", claims: machine("payouts:write"), policy: Policy{MachineScopes: []string{"payouts:writer"}}, want: ReasonScopeMissing, wantMach: true},
		{name: "machine token on a route with no requirements is allowed", claims: machine(), policy: Policy{Name: "health"}, want: ReasonAllowed, wantMach: true},
		{name: "machine token on a scopes-only route with the scope is allowed", claims: machine("payouts:write"), policy: Policy{MachineScopes: []string{"payouts:write"}}, want: ReasonAllowed, wantMach: true},
		{name: "machine token on a scopes-only route without the scope is scope_missing", claims: machine("payouts:read"), policy: Policy{MachineScopes: []string{"payouts:write"}}, want: ReasonScopeMissing, wantMach: true},
		{name: "gty client-credentials makes a machine token without client_id", claims: &Claims{Subject: "svc", Gty: "client-credentials"}, policy: aal2Route(), want: ReasonScopeMissing, wantMach: true},
		{name: "machine token is never asked for acr even when it carries a low one", claims: &Claims{Subject: "svc", ClientID: "svc", ACR: "aal1", HasACR: true, Scopes: []string{"payouts:write"}}, policy: Policy{RequiredACR: "aal3", MachineScopes: []string{"payouts:write"}}, want: ReasonAllowed, wantLevel: "aal1", wantMach: true},
		{name: "a token with client_id but another sub is human under rfc9068", claims: &Claims{Subject: "user-1", ClientID: "web-app"}, policy: aal2Route(), want: ReasonACRMissing},
		{name: "a token with client_id but another sub is a machine under the client_id rule", claims: &Claims{Subject: "user-1", ClientID: "web-app"}, policy: aal2Route(), settings: &Settings{Levels: DefaultLevels, ClockSkew: testSkew, MachineRule: MachineClientID}, want: ReasonScopeMissing, wantMach: true},
		{name: "the zero machine rule is rfc9068", claims: &Claims{Subject: "user-1", ClientID: "web-app"}, policy: aal2Route(), settings: &Settings{Levels: DefaultLevels, ClockSkew: testSkew}, want: ReasonACRMissing},
		{name: "a human token on a scopes-only route is allowed without scopes", claims: human("", time.Time{}), policy: Policy{MachineScopes: []string{"payouts:write"}}, want: ReasonAllowed},
		{name: "a human token on a step-up route with machine_scopes still needs step-up", claims: human("aal1", ago(time.Minute)), policy: Policy{RequiredACR: "aal2", MachineScopes: []string{"payouts:write"}}, want: ReasonACRTooLow, wantLevel: "aal1"},

		// required_scopes: every token, human or machine; after level and freshness
		{name: "a human token with every required scope is allowed", claims: withScopes(human("aal1", ago(time.Minute)), "mcp:tools", "openid"), policy: Policy{RequiredScopes: []string{"mcp:tools"}}, want: ReasonAllowed, wantLevel: "aal1"},
		{name: "a human token without a required scope is scope_missing", claims: withScopes(human("aal2", ago(time.Minute)), "openid"), policy: Policy{RequiredScopes: []string{"mcp:tools"}}, want: ReasonScopeMissing, wantLevel: "aal2"},
		{name: "a human token with no scopes at all is scope_missing", claims: human("aal2", ago(time.Minute)), policy: Policy{RequiredScopes: []string{"mcp:tools"}}, want: ReasonScopeMissing, wantLevel: "aal2"},
		{name: "a human token missing one of two required scopes is scope_missing", claims: withScopes(human("aal2", ago(time.Minute)), "mcp:tools"), policy: Policy{RequiredScopes: []string{"mcp:tools", "mcp:resources"}}, want: ReasonScopeMissing, wantLevel: "aal2"},
		{name: "level is checked before scopes: a low acr without the scope is acr_too_low", claims: human("aal1", ago(time.Minute)), policy: Policy{RequiredACR: "aal2", RequiredScopes: []string{"mcp:tools"}}, want: ReasonACRTooLow, wantLevel: "aal1"},
		{name: "freshness is checked before scopes: an old sign-in without the scope is auth_too_old", claims: human("aal2", ago(time.Hour)), policy: Policy{RequiredACR: "aal2", MaxAge: time.Minute, HasMaxAge: true, RequiredScopes: []string{"mcp:tools"}}, want: ReasonAuthTooOld, wantLevel: "aal2"},
		{name: "a fresh aal2 token without the scope is then scope_missing", claims: human("aal2", ago(time.Second)), policy: Policy{RequiredACR: "aal2", MaxAge: time.Minute, HasMaxAge: true, RequiredScopes: []string{"mcp:tools"}}, want: ReasonScopeMissing, wantLevel: "aal2"},
		{name: "a machine token with the required scope on a route without step-up is allowed", claims: machine("mcp:tools"), policy: Policy{RequiredScopes: []string{"mcp:tools"}}, want: ReasonAllowed, wantMach: true},
		{name: "a machine token without the required scope is scope_missing", claims: machine("payouts:write"), policy: Policy{RequiredScopes: []string{"mcp:tools"}}, want: ReasonScopeMissing, wantMach: true},
		{name: "a machine token needs required_scopes and machine_scopes: machine_scopes alone is scope_missing", claims: machine("payouts:write"), policy: Policy{RequiredACR: "aal2", MachineScopes: []string{"payouts:write"}, RequiredScopes: []string{"mcp:tools"}}, want: ReasonScopeMissing, wantMach: true},
		{name: "a machine token needs required_scopes and machine_scopes: required_scopes alone is scope_missing", claims: machine("mcp:tools"), policy: Policy{RequiredACR: "aal2", MachineScopes: []string{"payouts:write"}, RequiredScopes: []string{"mcp:tools"}}, want: ReasonScopeMissing, wantMach: true},
		{name: "a machine token with required_scopes and machine_scopes is allowed", claims: machine("mcp:tools", "payouts:write"), policy: Policy{RequiredACR: "aal2", MachineScopes: []string{"payouts:write"}, RequiredScopes: []string{"mcp:tools"}}, want: ReasonAllowed, wantMach: true},
		{name: "required_scopes do not stand in for machine_scopes on a step-up route", claims: machine("mcp:tools"), policy: Policy{RequiredACR: "aal2", RequiredScopes: []string{"mcp:tools"}}, want: ReasonScopeMissing, wantMach: true},

		// custom ladders
		{name: "a custom ladder ranks its own levels", claims: human("silver", ago(time.Minute)), policy: Policy{RequiredACR: "bronze"}, rules: &IssuerRules{}, settings: &Settings{Levels: Levels{"bronze", "silver", "gold"}, ClockSkew: testSkew}, want: ReasonAllowed, wantLevel: "silver"},
		{name: "a custom ladder refuses a lower level", claims: human("bronze", ago(time.Minute)), policy: Policy{RequiredACR: "gold"}, rules: &IssuerRules{}, settings: &Settings{Levels: Levels{"bronze", "silver", "gold"}, ClockSkew: testSkew}, want: ReasonACRTooLow, wantLevel: "bronze"},
		{name: "a refeds URI is a level like any other", claims: human("https://refeds.org/profile/mfa", ago(time.Minute)), policy: Policy{RequiredACR: "https://refeds.org/profile/mfa"}, rules: &IssuerRules{}, settings: &Settings{Levels: Levels{"https://refeds.org/profile/sfa", "https://refeds.org/profile/mfa"}, ClockSkew: testSkew}, want: ReasonAllowed, wantLevel: "https://refeds.org/profile/mfa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, s := tt.rules, tt.settings
			if rules == nil {
				rules = testRules()
			}
			if s == nil {
				s = testSettings()
			}
			p := tt.policy
			d := Decide(tt.claims, &p, rules, s, testNow)
			if d.Reason != tt.want {
				t.Errorf("Reason = %q, want %q (detail %q)", d.Reason, tt.want, d.Detail)
			}
			if d.Detail != tt.wantDetail {
				t.Errorf("Detail = %q, want %q", d.Detail, tt.wantDetail)
			}
			if d.Level != tt.wantLevel {
				t.Errorf("Level = %q, want %q", d.Level, tt.wantLevel)
			}
			if d.Machine != tt.wantMach {
				t.Errorf("Machine = %v, want %v", d.Machine, tt.wantMach)
			}
			if !reflect.DeepEqual(d.Policy, tt.policy) {
				t.Errorf("Policy = %v, want the policy it applied, %v", d.Policy, tt.policy)
			}
			if got, want := d.Allowed(), tt.want == ReasonAllowed; got != want {
				t.Errorf("Allowed() = %v, want %v", got, want)
			}
		})
	}
}

// TestDecideMaxAgeSpellingsAgree resolves max_age from each spelling a source
// may use and checks they decide alike on both sides of the boundary.
func TestDecideMaxAgeSpellingsAgree(t *testing.T) {
	spellings := []struct {
		name string
		meta map[string]any
		ext  map[string]string
	}{
		{name: "route metadata number 300", meta: map[string]any{"max_age": float64(300)}},
		{name: "route metadata duration 5m", meta: map[string]any{"max_age": "5m"}},
		{name: "route metadata duration 300s", meta: map[string]any{"max_age": "300s"}},
		{name: "config int 300", meta: map[string]any{"max_age": 300}},
		{name: "context extension digits 300", ext: map[string]string{"max_age": "300"}},
		{name: "context extension duration 5m", ext: map[string]string{"max_age": "5m"}},
	}
	ages := []struct {
		name string
		age  time.Duration
		want Reason
	}{
		{"authenticated just now", 0, ReasonAllowed},
		{"authenticated 299s ago", 299 * time.Second, ReasonAllowed},
		{"authenticated exactly 300s ago", 300 * time.Second, ReasonAllowed},
		{"authenticated 330s ago, within skew", 330 * time.Second, ReasonAllowed},
		{"authenticated 331s ago", 331 * time.Second, ReasonAuthTooOld},
		{"authenticated a day ago", 24 * time.Hour, ReasonAuthTooOld},
	}
	want := Policy{MaxAge: 300 * time.Second, HasMaxAge: true}
	for _, sp := range spellings {
		var l Layer
		var err error
		src := SourceRouteMetadata
		if sp.ext != nil {
			l, err = ParseContextExtensions(sp.ext, DefaultLevels)
			src = SourceContextExtensions
		} else {
			l, err = ParseMetadata(sp.meta, DefaultLevels)
		}
		if err != nil {
			t.Fatalf("%s: %v", sp.name, err)
		}
		p, _ := Resolve(Sourced{Source: src, Layer: l})
		if !reflect.DeepEqual(p, want) {
			t.Errorf("%s resolves to %v, want %v", sp.name, p, want)
		}
		for _, a := range ages {
			t.Run(sp.name+" with a token "+a.name, func(t *testing.T) {
				d := Decide(human("aal2", ago(a.age)), &p, testRules(), testSettings(), testNow)
				if d.Reason != a.want {
					t.Errorf("Reason = %q, want %q", d.Reason, a.want)
				}
			})
		}
	}
}

// TestDecideMaxAgeZeroFromSources checks that max_age 0 arriving from a source
// is a rule ("just now") rather than an absent one.
func TestDecideMaxAgeZeroFromSources(t *testing.T) {
	tests := []struct {
		name string
		ext  string
		age  time.Duration
		want Reason
	}{
		{"max_age \"0\" with auth_time now is allowed", "0", 0, ReasonAllowed},
		{"max_age \"0\" with auth_time 30s ago and 30s skew is allowed", "0", 30 * time.Second, ReasonAllowed},
		{"max_age \"0\" with auth_time 31s ago and 30s skew is auth_too_old", "0", 31 * time.Second, ReasonAuthTooOld},
		{"max_age \"0s\" with auth_time 31s ago and 30s skew is auth_too_old", "0s", 31 * time.Second, ReasonAuthTooOld},
		{"max_age \"\" over a default of 0 removes the freshness rule", "", 365 * 24 * time.Hour, ReasonAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ext, err := ParseContextExtensions(map[string]string{"max_age": tt.ext}, DefaultLevels)
			if err != nil {
				t.Fatal(err)
			}
			def, err := ParseMetadata(map[string]any{"max_age": 0}, DefaultLevels)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := Resolve(Sourced{Source: SourceContextExtensions, Layer: ext}, Sourced{Source: SourceDefault, Layer: def})
			d := Decide(human("aal2", ago(tt.age)), &p, testRules(), testSettings(), testNow)
			if d.Reason != tt.want {
				t.Errorf("Reason = %q, want %q (policy %v)", d.Reason, tt.want, p)
			}
		})
	}
}

func TestOutcomeOf(t *testing.T) {
	tests := []struct {
		name   string
		reason Reason
		want   Outcome
	}{
		{"allowed lets the request through", ReasonAllowed, Allow},
		{"mode_off lets the request through", ReasonModeOff, Allow},
		{"token_missing is a plain 401", ReasonTokenMissing, Unauthorized},
		{"token_invalid is a plain 401", ReasonTokenInvalid, Unauthorized},
		{"acr_too_low asks for step-up", ReasonACRTooLow, StepUp},
		{"acr_missing asks for step-up", ReasonACRMissing, StepUp},
		{"auth_time_missing asks for step-up", ReasonAuthTimeMissing, StepUp},
		{"auth_too_old asks for step-up", ReasonAuthTooOld, StepUp},
		{"scope_missing is insufficient scope", ReasonScopeMissing, InsufficientScope},
		{"keys_unavailable is unavailable", ReasonKeysUnavailable, Unavailable},
		{"introspection_unavailable is unavailable", ReasonIntrospectionUnavailable, Unavailable},
		{"policy_error is a policy failure", ReasonPolicyError, PolicyFailure},
		{"an unknown reason fails closed as a policy failure", Reason("bogus"), PolicyFailure},
		{"an empty reason fails closed as a policy failure", Reason(""), PolicyFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OutcomeOf(tt.reason); got != tt.want {
				t.Errorf("OutcomeOf(%q) = %v, want %v", tt.reason, got, tt.want)
			}
			d := Deny(tt.reason, "detail", Policy{Name: "n"})
			if got := d.Outcome(); got != tt.want {
				t.Errorf("Decision.Outcome() = %v, want %v", got, tt.want)
			}
			if got, want := d.Allowed(), tt.want == Allow; got != want {
				t.Errorf("Decision.Allowed() = %v, want %v", got, want)
			}
		})
	}
}

func TestReasonsIsTheContractVocabulary(t *testing.T) {
	// CONTRACT.md, "Reasons": the closed set, in order.
	want := []string{
		"allowed", "mode_off", "token_missing", "token_invalid", "acr_too_low", "acr_missing",
		"auth_time_missing", "auth_too_old", "scope_missing", "keys_unavailable", "policy_error",
		// Added in December 2026 (sender-constrained tokens).
		"proof_invalid", "nonce_required", "sender_constraint_missing", "replay_store_unavailable",
		// Added in December 2026 (CONTRACT.md, "Opaque and lightweight tokens").
		"introspection_unavailable", "metadata_served",
	}
	got := make([]string, len(Reasons))
	for i, r := range Reasons {
		got[i] = string(r)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Reasons = %v, want %v", got, want)
	}
}

func TestDeny(t *testing.T) {
	p := Policy{RequiredACR: "aal2", Name: "payout"}
	d := Deny(ReasonTokenInvalid, "expired", p)
	want := Decision{Reason: ReasonTokenInvalid, Detail: "expired", Policy: p}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Deny = %+v, want %+v", d, want)
	}
}
