package token

import (
	"encoding/json"

	"github.com/stepup-authz/stepup-authz/policy"
)

// A token's cnf claim (RFC 7800 §3.1) binds it to a key its presenter must
// prove it holds: jkt to a DPoP key (RFC 9449 §6.1), x5t#S256 to a client
// certificate (RFC 8705 §3.1). A token bound to a key must never pass as a
// bearer token, so cnf is read strictly: an object whose jkt and x5t#S256,
// when present, are non-empty strings, and that holds at least one of them —
// a binding this server cannot check (cnf.jwk, cnf.kid, ...) is refused rather
// than ignored.

// DetailBinding is the *InvalidError detail of a cnf claim that cannot be
// understood or checked.
const DetailBinding = "unsupported_binding"

// confirmationMember reads the cnf claim of a decoded JWT payload.
func confirmationMember(m map[string]json.RawMessage) (policy.Confirmation, error) {
	raw, ok := m["cnf"]
	if !ok {
		return policy.Confirmation{}, nil
	}
	if len(raw) == 0 || raw[0] != '{' {
		return policy.Confirmation{}, invalid(DetailClaimType, "claim \"cnf\" is %s, want an object", jsonKind(raw))
	}
	members, err := decodeObject(raw, "cnf")
	if err != nil {
		return policy.Confirmation{}, invalid(DetailClaimType, "claim \"cnf\": %v", err)
	}
	var c policy.Confirmation
	for _, f := range []struct {
		name string
		dst  *string
	}{{"jkt", &c.JKT}, {"x5t#S256", &c.X5TS256}} {
		s, present, err := stringMember(members, f.name, "cnf member")
		if err != nil {
			return policy.Confirmation{}, invalid(DetailClaimType, "%v", err)
		}
		if present && s == "" {
			return policy.Confirmation{}, invalid(DetailClaimType, "cnf member %q is empty", f.name)
		}
		*f.dst = s
	}
	if c.IsZero() {
		return policy.Confirmation{}, invalid(DetailBinding, "cnf binds the token with neither jkt nor x5t#S256, which this server cannot check")
	}
	return c, nil
}
