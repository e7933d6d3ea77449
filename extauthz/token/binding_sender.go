package token

import (
	"crypto/subtle"

	"github.com/stepup-authz/stepup-authz/policy"
)

// The binding stage for sender-constrained tokens: a token whose cnf binds it
// to a key is accepted only when the request proves that key. These checks run
// for every token, whatever the config says (CONTRACT.md): a token bound to a
// key must never pass as a bearer token.

// *InvalidError details of the binding stage (token_invalid).
const (
	// DetailBoundAsBearer: a token with cnf.jkt presented under the Bearer
	// scheme, the downgrade RFC 9449 §7.1 refuses.
	DetailBoundAsBearer = "dpop_bound_as_bearer"
	// DetailUnboundAsDPoP: a token without cnf.jkt under the DPoP scheme.
	DetailUnboundAsDPoP = "unbound_as_dpop"
	// DetailBindingMismatch: a valid proof of another key than cnf.jkt, or a
	// client certificate other than cnf["x5t#S256"].
	DetailBindingMismatch = "binding_mismatch"
	// DetailNoCertificate: a certificate-bound token without a usable client
	// certificate on the request.
	DetailNoCertificate = "no_client_certificate"
)

// CheckDPoPBinding applies RFC 9449 §7.1 to a token's cnf.jkt: under the DPoP
// scheme the token must be bound and the proof (already verified) must be of
// its key; under Bearer the token must not be bound to a DPoP key.
func CheckDPoPBinding(scheme Scheme, proof *Proof, c policy.Confirmation) error {
	switch {
	case scheme == SchemeDPoP && c.JKT == "":
		return invalid(DetailUnboundAsDPoP, "the token has no cnf.jkt but came under the DPoP scheme")
	case scheme != SchemeDPoP && c.JKT != "":
		return invalid(DetailBoundAsBearer, "the token is bound to a DPoP key (cnf.jkt) but came as a bearer token")
	case scheme == SchemeDPoP && (proof == nil || subtle.ConstantTimeCompare([]byte(proof.JKT), []byte(c.JKT)) != 1):
		return invalid(DetailBindingMismatch, "the DPoP proof is signed by another key than the token's cnf.jkt")
	}
	return nil
}

// DPoPBinding is the Binder of DPoP-bound tokens (CheckDPoPBinding).
type DPoPBinding struct{}

// Bind implements Binder.
func (DPoPBinding) Bind(cred Credential, p *Principal) error {
	return CheckDPoPBinding(cred.Scheme, cred.DPoP, p.Claims.Confirmation)
}

// CertificateBinding is the Binder of certificate-bound tokens
// (CheckCertificateBinding).
type CertificateBinding struct{}

// Bind implements Binder.
func (CertificateBinding) Bind(cred Credential, p *Principal) error {
	if p.Claims.Confirmation.X5TS256 == "" {
		return nil
	}
	return CheckCertificateBinding(p.Claims.Confirmation, cred.ClientCert.Thumbprint)
}

// CheckCertificateBinding applies RFC 8705 §3 to a token's cnf["x5t#S256"]:
// the request's client certificate, whose thumbprint thumbprint returns (and
// is only asked for a bound token), must be that one.
func CheckCertificateBinding(c policy.Confirmation, thumbprint func() (string, error)) error {
	if c.X5TS256 == "" {
		return nil
	}
	tp, err := thumbprint()
	if err != nil {
		return invalid(DetailNoCertificate, "the token is bound to a client certificate (cnf x5t#S256): %v", err)
	}
	if subtle.ConstantTimeCompare([]byte(tp), []byte(c.X5TS256)) != 1 {
		return invalid(DetailBindingMismatch, "the client certificate is not the one the token is bound to")
	}
	return nil
}
