package token

import (
	"encoding/json"
	"reflect"
	"strings"

	"github.com/stepup-authz/stepup-authz/policy"
)

// DetailPayloadMismatch: the payload Envoy's jwt_authn verified is not the bearer token's.
const DetailPayloadMismatch = "jwt_authn_payload_mismatch"

// VerifyEnvoyPayload accepts raw on the strength of Envoy's jwt_authn filter, which
// verified its signature before ext_authz ran and stored the payload in dynamic
// metadata (payload_in_metadata, forwarded with metadata_context_namespaces).
// jwtAuthn is that namespace, envoy.filters.http.jwt_authn, as plain values.
//
// It is used only for issuers configured with an EnvoyPayloadKey, and only when the
// payload stored under that key is exactly the bearer token's own payload: a request
// cannot pair its token with a payload Envoy verified for someone else. Every rule
// that needs no key still applies here (structure, claim types, algorithm allow-list,
// typ, iss, aud, exp, nbf, iat). ok is false when the payload path does not apply
// (issuer not opted in, or no payload stored); the caller then verifies raw itself.
func (v *Verifier) VerifyEnvoyPayload(raw string, jwtAuthn map[string]any) (c *policy.Claims, ok bool, err error) {
	if len(raw) > MaxTokenBytes {
		return nil, true, invalid(DetailTooLarge, "token is %d bytes, limit %d", len(raw), MaxTokenBytes)
	}
	t, err := splitCompact(raw)
	if err != nil {
		return nil, true, err
	}
	is, known := v.issuers[t.payload.iss]
	if !known || is.envoyKey == "" {
		return nil, false, nil
	}
	stored, present := jwtAuthn[is.envoyKey].(map[string]any)
	if !present {
		return nil, false, nil
	}
	if err := is.checkHeader(t); err != nil {
		return nil, true, err
	}
	if !samePayload(t, stored) {
		return nil, true, invalid(DetailPayloadMismatch, "the payload jwt_authn stored under %q is not this token's", is.envoyKey)
	}
	c, err = is.claims(t.payload)
	return c, true, err
}

// samePayload compares the token's payload with the one jwt_authn stored. Both are
// decoded the way a protobuf Struct holds JSON (numbers as float64), so equal JSON
// compares equal.
func samePayload(t *compact, stored map[string]any) bool {
	_, p64, _ := strings.Cut(t.signed, ".")
	b, err := b64.DecodeString(p64)
	if err != nil {
		return false
	}
	var own map[string]any
	if err := json.Unmarshal(b, &own); err != nil {
		return false
	}
	return reflect.DeepEqual(own, stored)
}
