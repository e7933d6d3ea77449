package policy

import (
	"fmt"
	"slices"
)

// The policy fields of protected resources (CONTRACT.md, "Protected resource
// metadata (RFC 9728) and scope step-up"): resource_path completes the
// resource identifier that challenges point at and the metadata document
// names; required_scopes are scopes that every token must carry.

// parseResourcePath accepts "" (no path) or a path exactly as Envoy's path
// normalisation would send it: the identifier is compared byte for byte by
// clients (RFC 9728 §3.3), goes into a quoted header parameter, and names the
// well-known URL that the server answers, whose path it also normalises.
func parseResourcePath(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("must be a path such as \"/mcp\" (or \"\" for none), got %s", describe(v))
	}
	if s == "" {
		return "", nil
	}
	if s[0] != '/' {
		return "", fmt.Errorf("%q must start with / (write it like \"/mcp\")", s)
	}
	n, err := NormalizePath(s)
	if err != nil || n != s {
		if err == nil {
			return "", fmt.Errorf("%q is not a normalised path (no query, fragment, dot segments, repeated slashes or characters that need escaping); write it as %q", s, n)
		}
		return "", fmt.Errorf("%q is not a normalised path: %v", s, err)
	}
	return s, nil
}

// ChallengeScopes is the scope parameter of an insufficient_scope challenge
// for d: required_scopes, then, for a machine token, the machine_scopes not
// already listed.
func (d *Decision) ChallengeScopes() []string {
	p := &d.Policy
	if !d.Machine || len(p.MachineScopes) == 0 {
		return p.RequiredScopes
	}
	if len(p.RequiredScopes) == 0 {
		return p.MachineScopes
	}
	out := append([]string(nil), p.RequiredScopes...)
	for _, s := range p.MachineScopes {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
