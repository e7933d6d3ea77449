package policy

import (
	"strings"
	"testing"
)

func TestSenderConstraintDecisions(t *testing.T) {
	dpopBound := Confirmation{JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
	certBound := Confirmation{X5TS256: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}
	both := Confirmation{JKT: dpopBound.JKT, X5TS256: certBound.X5TS256}
	for _, tc := range []struct {
		name string
		sc   SenderConstraint
		cnf  Confirmation
		want Reason
	}{
		{"no constraint lets an unbound token through", SenderNone, Confirmation{}, ReasonAllowed},
		{"no constraint lets a bound token through", SenderNone, dpopBound, ReasonAllowed},
		{"dpop refuses an unbound token", SenderDPoP, Confirmation{}, ReasonSenderConstraintMissing},
		{"dpop refuses a certificate-bound token", SenderDPoP, certBound, ReasonSenderConstraintMissing},
		{"dpop accepts a DPoP-bound token", SenderDPoP, dpopBound, ReasonAllowed},
		{"mtls refuses an unbound token", SenderMTLS, Confirmation{}, ReasonSenderConstraintMissing},
		{"mtls refuses a DPoP-bound token", SenderMTLS, dpopBound, ReasonSenderConstraintMissing},
		{"mtls accepts a certificate-bound token", SenderMTLS, certBound, ReasonAllowed},
		{"any refuses an unbound token", SenderEither, Confirmation{}, ReasonSenderConstraintMissing},
		{"any accepts a DPoP-bound token", SenderEither, dpopBound, ReasonAllowed},
		{"any accepts a certificate-bound token", SenderEither, certBound, ReasonAllowed},
		{"any accepts a token bound both ways", SenderEither, both, ReasonAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := human("aal2", ago(0))
			c.Confirmation = tc.cnf
			p := Policy{SenderConstraint: tc.sc}
			d := Decide(c, &p, testRules(), testSettings(), testNow)
			if d.Reason != tc.want {
				t.Errorf("reason = %s, want %s", d.Reason, tc.want)
			}
			m := machine("payouts:write")
			m.Confirmation = tc.cnf
			if d := Decide(m, &p, testRules(), testSettings(), testNow); d.Reason != tc.want {
				t.Errorf("machine token: reason = %s, want %s", d.Reason, tc.want)
			}
		})
	}
}

func TestSenderConstraintComesBeforeStepUp(t *testing.T) {
	// An unbound aal1 token on a dpop + aal2 route: asking it to step up would
	// only bring back another unbound token.
	p := Policy{RequiredACR: "aal2", SenderConstraint: SenderDPoP}
	d := Decide(human("aal1", ago(0)), &p, testRules(), testSettings(), testNow)
	if d.Reason != ReasonSenderConstraintMissing || d.Outcome() != Unauthorized {
		t.Errorf("decision = %s (%v), want sender_constraint_missing, a 401", d.Reason, d.Outcome())
	}
	c := human("aal1", ago(0))
	c.Confirmation.JKT = "k"
	if d := Decide(c, &p, testRules(), testSettings(), testNow); d.Reason != ReasonACRTooLow {
		t.Errorf("bound aal1 token: %s, want acr_too_low", d.Reason)
	}
}

func TestParseSenderConstraint(t *testing.T) {
	for _, v := range []string{"dpop", "mtls", "any", ""} {
		l := metaLayer(t, map[string]any{"sender_constraint": v})
		if !l.SenderConstraint.Set || string(l.SenderConstraint.Value) != v {
			t.Errorf("metadata %q: %+v", v, l.SenderConstraint)
		}
		e := extLayer(t, map[string]string{"sender_constraint": v})
		if e.SenderConstraint != l.SenderConstraint {
			t.Errorf("context extension %q: %+v, metadata %+v", v, e.SenderConstraint, l.SenderConstraint)
		}
	}
	for _, bad := range []any{"DPoP", "bearer", "mtls dpop", true, []any{"dpop"}, nil} {
		_, err := ParseMetadata(map[string]any{"sender_constraint": bad}, DefaultLevels)
		if err == nil || !strings.HasPrefix(err.Error(), "sender_constraint: ") || !strings.Contains(err.Error(), "dpop, mtls, any") {
			t.Errorf("sender_constraint %#v: error %v, want one naming the field and the allowed values", bad, err)
		}
	}
	if _, err := ParseContextExtensions(map[string]string{"sender_constraint": "both"}, DefaultLevels); err == nil {
		t.Error("context extension sender_constraint: both was accepted")
	}
}

func TestSenderConstraintResolvesFieldByField(t *testing.T) {
	route := Sourced{Source: SourceConfigRoute, Label: "payout", Layer: Layer{RequiredACR: set("aal2")}}
	def := Sourced{Source: SourceDefault, Layer: Layer{SenderConstraint: set(SenderDPoP)}}
	p, prov := Resolve(route, def)
	if p.SenderConstraint != SenderDPoP || p.RequiredACR != "aal2" || prov[FieldSenderConstraint] != "policy.default" {
		t.Errorf("policy %+v, provenance %v: the default's sender_constraint should fill in under a route's acr", p, prov)
	}
	// A more specific source clears it with "".
	meta := Sourced{Source: SourceRouteMetadata, Layer: metaLayer(t, map[string]any{"sender_constraint": ""})}
	p, prov = Resolve(meta, route, def)
	if p.SenderConstraint != SenderNone || prov[FieldSenderConstraint] != "route_metadata" {
		t.Errorf("policy %+v, provenance %v: route metadata's \"\" should clear the default's dpop", p, prov)
	}
	ext := Sourced{Source: SourceContextExtensions, Layer: extLayer(t, map[string]string{"sender_constraint": "mtls"})}
	if p := Merge(ext, def); p.SenderConstraint != SenderMTLS {
		t.Errorf("context extension mtls under a dpop default: %+v", p)
	}
	if got := (Policy{SenderConstraint: SenderEither}).String(); !strings.Contains(got, "sender_constraint=any") {
		t.Errorf("String() = %s", got)
	}
}
