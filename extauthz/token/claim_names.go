package token

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Some identity providers carry a claim the server needs under another name:
// Amazon Cognito's access tokens name their client in client_id and have no
// aud; Auth0 refuses custom acr, amr and auth_time claims, so a post-login
// Action can only add them under a namespaced name; Okta names the client cid.
// An issuer's claim_names reads such a claim under the IdP's name, with the
// same type rules, for JWTs and introspection answers alike.

// RenamableClaims are the claims claim_names may map, in the order they are
// documented.
func RenamableClaims() []string {
	return []string{"aud", "client_id", "acr", "amr", "auth_time"}
}

// claimNames maps a claim the server reads to the name one issuer's tokens
// carry it under; nil maps nothing.
type claimNames map[string]string

func newClaimNames(m map[string]string) (claimNames, error) {
	if len(m) == 0 {
		return nil, nil
	}
	for std, theirs := range m {
		if !slices.Contains(RenamableClaims(), std) {
			return nil, fmt.Errorf("claim_names: %q is not one of %s", std, strings.Join(RenamableClaims(), ", "))
		}
		if theirs == "" {
			return nil, fmt.Errorf("claim_names.%s: empty claim name", std)
		}
	}
	return maps.Clone(m), nil
}

// members is the claims object m as the server reads it: each mapped claim
// takes the value of the issuer's claim, and the claim under its own name is
// not read (absent from the issuer's claim, it is absent). m is not modified.
func (n claimNames) members(m map[string]json.RawMessage) map[string]json.RawMessage {
	if len(n) == 0 {
		return m
	}
	out := maps.Clone(m)
	for std, theirs := range n {
		delete(out, std)
		if v, ok := m[theirs]; ok {
			out[std] = v
		}
	}
	return out
}

// apply reads t's payload again through n. The signature covers the payload
// bytes, whatever names they are read by.
func (n claimNames) apply(t *compact) error {
	if len(n) == 0 {
		return nil
	}
	_, p64, _ := strings.Cut(t.signed, ".")
	b, err := b64.DecodeString(p64)
	if err != nil {
		return invalid(DetailMalformed, "payload: %w", err)
	}
	m, err := decodeObject(b, "payload")
	if err != nil {
		return err
	}
	p, err := payloadOf(n.members(m))
	if err != nil {
		return err
	}
	t.payload = p
	return nil
}
