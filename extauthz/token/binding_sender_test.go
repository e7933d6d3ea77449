package token

import (
	"errors"
	"testing"

	"github.com/stepup-authz/stepup-authz/policy"
)

func TestSenderBinding(t *testing.T) {
	proof := &Proof{JKT: "key-1"}
	bound := policy.Confirmation{JKT: "key-1"}
	for _, tc := range []struct {
		name   string
		scheme Scheme
		proof  *Proof
		cnf    policy.Confirmation
		detail string
	}{
		{"an unbound bearer token passes", SchemeBearer, nil, policy.Confirmation{}, ""},
		{"a DPoP-bound token with a proof of its key passes", SchemeDPoP, proof, bound, ""},
		{"a DPoP-bound token as Bearer is the refused downgrade", SchemeBearer, nil, bound, DetailBoundAsBearer},
		{"an unbound token under the DPoP scheme is refused", SchemeDPoP, proof, policy.Confirmation{}, DetailUnboundAsDPoP},
		{"a certificate-bound token under the DPoP scheme is refused", SchemeDPoP, proof, policy.Confirmation{X5TS256: "c"}, DetailUnboundAsDPoP},
		{"a valid proof of another key is refused", SchemeDPoP, &Proof{JKT: "key-2"}, bound, DetailBindingMismatch},
		{"no proof at all is refused", SchemeDPoP, nil, bound, DetailBindingMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckDPoPBinding(tc.scheme, tc.proof, tc.cnf)
			if got := InvalidDetail(err); got != tc.detail || (tc.detail == "" && err != nil) {
				t.Errorf("CheckDPoPBinding = %v, want detail %q", err, tc.detail)
			}
		})
	}

	asked := 0
	cert := func(tp string, err error) func() (string, error) {
		return func() (string, error) { asked++; return tp, err }
	}
	for _, tc := range []struct {
		name   string
		cnf    policy.Confirmation
		tp     func() (string, error)
		detail string
	}{
		{"an unbound token needs no certificate", policy.Confirmation{}, cert("", ErrNoCertificate), ""},
		{"the bound certificate passes", policy.Confirmation{X5TS256: "c1"}, cert("c1", nil), ""},
		{"another certificate is refused", policy.Confirmation{X5TS256: "c1"}, cert("c2", nil), DetailBindingMismatch},
		{"no certificate is refused", policy.Confirmation{X5TS256: "c1"}, cert("", ErrNoCertificate), DetailNoCertificate},
		{"an unreadable certificate is refused", policy.Confirmation{X5TS256: "c1"}, cert("", errors.New("not PEM")), DetailNoCertificate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCertificateBinding(tc.cnf, tc.tp)
			if got := InvalidDetail(err); got != tc.detail || (tc.detail == "" && err != nil) {
				t.Errorf("CheckCertificateBinding = %v, want detail %q", err, tc.detail)
			}
		})
	}
	asked = 0
	_ = CheckCertificateBinding(policy.Confirmation{}, cert("x", nil))
	if asked != 0 {
		t.Error("the certificate was read for an unbound token")
	}
}
