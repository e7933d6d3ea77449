package policy

import "fmt"

// SenderConstraint is the policy field sender_constraint: which proof of
// possession a route requires of its token (CONTRACT.md, "Sender-constrained
// tokens"). The binding itself (cnf.jkt against the DPoP proof, cnf["x5t#S256"]
// against the client certificate) is checked before a decision, for every token
// that carries one; this rule only asks that the token carry the binding.
type SenderConstraint string

const (
	// SenderNone (the empty value, the default) accepts any valid token.
	SenderNone SenderConstraint = ""
	// SenderDPoP requires a DPoP-bound token (cnf.jkt, RFC 9449).
	SenderDPoP SenderConstraint = "dpop"
	// SenderMTLS requires a certificate-bound token (cnf["x5t#S256"], RFC 8705).
	SenderMTLS SenderConstraint = "mtls"
	// SenderEither requires one binding or the other.
	SenderEither SenderConstraint = "any"
)

// parseSenderConstraint maps a source's string to the package's constants, so
// a layer never keeps a string that points into a request.
func parseSenderConstraint(v any) (SenderConstraint, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("must be one of dpop, mtls, any (or \"\" for none), got %s", describe(v))
	}
	switch SenderConstraint(s) {
	case SenderNone:
		return SenderNone, nil
	case SenderDPoP:
		return SenderDPoP, nil
	case SenderMTLS:
		return SenderMTLS, nil
	case SenderEither:
		return SenderEither, nil
	}
	return "", fmt.Errorf("%q is not one of dpop, mtls, any (or \"\" for none)", s)
}

// Confirmation is a token's binding (its cnf claim, RFC 7800), as the token
// pipeline verified it against the request: "" where the token has none.
type Confirmation struct {
	// JKT is cnf.jkt: the RFC 7638 thumbprint of the DPoP key (RFC 9449 §6).
	JKT string
	// X5TS256 is cnf["x5t#S256"]: the client certificate's SHA-256 thumbprint (RFC 8705 §3.1).
	X5TS256 string
}

// IsZero reports a token without any binding.
func (c Confirmation) IsZero() bool { return c.JKT == "" && c.X5TS256 == "" }

// meetsSenderConstraint reports whether a token bound as c satisfies sc.
func meetsSenderConstraint(sc SenderConstraint, c Confirmation) bool {
	switch sc {
	case SenderDPoP:
		return c.JKT != ""
	case SenderMTLS:
		return c.X5TS256 != ""
	case SenderEither:
		return c.JKT != "" || c.X5TS256 != ""
	default:
		return true
	}
}
