package extauthz

import (
	"bytes"
	"encoding/base64"
	"encoding/json"

	"github.com/stepup-authz/stepup-authz/policy"
)

// entraChallenge is Microsoft Entra ID's claims challenge for a step-up
// denial (CONTRACT.md, "Identity-provider dialects"): error="insufficient_claims"
// and claims, the standard base64 (RFC 4648 §4, padded) of
// {"access_token":{"acrs":{"essential":true,"value":"<context>"}}}, which
// MSAL passes to the authorize request as the claims parameter (OpenID
// Connect Core §5.5). Exactly these parameters: no acr_values and no max_age,
// which Entra ID does not read. A policy without required_acr has no
// context to ask for and keeps the RFC 9470 challenge (buildStepUp).
func entraChallenge(r policy.Reason, context string) string {
	return `Bearer error="insufficient_claims", error_description="` + stepUpDescription(r) +
		`", claims="` + base64.StdEncoding.EncodeToString(entraClaims(context)) + `"`
}

// entraClaims is the claims request for one authentication context, with no
// spaces. The context is JSON-escaped as a string (without HTML escaping), so
// an ordinary id ("c1") appears exactly as written.
func entraClaims(context string) []byte {
	var v bytes.Buffer
	enc := json.NewEncoder(&v)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(context) // a string always encodes
	out := make([]byte, 0, 64+v.Len())
	out = append(out, `{"access_token":{"acrs":{"essential":true,"value":`...)
	out = append(out, bytes.TrimSuffix(v.Bytes(), []byte("\n"))...)
	return append(out, "}}}"...)
}
