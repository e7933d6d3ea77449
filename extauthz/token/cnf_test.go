package token

import (
	"testing"

	"github.com/stepup-authz/stepup-authz/policy"
)

func TestConfirmationClaim(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		want    policy.Confirmation
		detail  string
	}{
		{"a token without cnf is a bearer token", `{"sub":"a"}`, policy.Confirmation{}, ""},
		{"cnf.jkt binds to a DPoP key", `{"cnf":{"jkt":"k1"}}`, policy.Confirmation{JKT: "k1"}, ""},
		{"cnf x5t#S256 binds to a certificate", `{"cnf":{"x5t#S256":"c1"}}`, policy.Confirmation{X5TS256: "c1"}, ""},
		{"both bindings are kept, to be checked both", `{"cnf":{"jkt":"k1","x5t#S256":"c1"}}`, policy.Confirmation{JKT: "k1", X5TS256: "c1"}, ""},
		{"unknown cnf members beside jkt are ignored", `{"cnf":{"jkt":"k1","kid":"x"}}`, policy.Confirmation{JKT: "k1"}, ""},
		{"a cnf this server cannot check (jwk) is refused", `{"cnf":{"jwk":{"kty":"EC"}}}`, policy.Confirmation{}, DetailBinding},
		{"an empty cnf object is refused", `{"cnf":{}}`, policy.Confirmation{}, DetailBinding},
		{"cnf that is a string is refused", `{"cnf":"k1"}`, policy.Confirmation{}, DetailClaimType},
		{"cnf null is refused", `{"cnf":null}`, policy.Confirmation{}, DetailClaimType},
		{"a jkt that is a number is refused", `{"cnf":{"jkt":7}}`, policy.Confirmation{}, DetailClaimType},
		{"an empty jkt is refused", `{"cnf":{"jkt":""}}`, policy.Confirmation{}, DetailClaimType},
		{"an empty x5t#S256 is refused", `{"cnf":{"jkt":"k","x5t#S256":""}}`, policy.Confirmation{}, DetailClaimType},
		{"a repeated jkt is refused", `{"cnf":{"jkt":"a","jkt":"b"}}`, policy.Confirmation{}, DetailClaimType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parsePayload([]byte(tc.payload))
			if tc.detail != "" {
				if got := InvalidDetail(err); got != tc.detail {
					t.Fatalf("parsePayload = %v (detail %q), want detail %q", err, got, tc.detail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.cnf != tc.want {
				t.Errorf("cnf = %+v, want %+v", p.cnf, tc.want)
			}
		})
	}
}
