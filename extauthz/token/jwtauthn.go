package token

import (
	"context"
	"encoding/json"
	"strings"
)

// DetailPayloadMismatch: the payload Envoy's jwt_authn verified is not the bearer token's.
const DetailPayloadMismatch = "jwt_authn_payload_mismatch"

// JWTAuthnPayloads are the payloads Envoy's jwt_authn filter verified on one request
// and stored in dynamic metadata (payload_in_metadata, forwarded with
// metadata_context_namespaces), by payload_in_metadata name. The caller adapts the
// request's envoy.filters.http.jwt_authn metadata to it.
type JWTAuthnPayloads interface {
	// Match reports whether a payload is stored under name and, if so, whether it is
	// exactly the JSON object own (as encoding/json decodes it into any: numbers as
	// float64, as a protobuf Struct holds them too).
	Match(name string, own map[string]any) (present, equal bool)
}

// JWTAuthnVerifier accepts a token on the strength of Envoy's jwt_authn filter, which
// verified its signature before ext_authz ran.
//
// It applies only to issuers configured with an EnvoyPayloadKey, and only when the
// request carries a payload under that key; that payload must then be exactly the
// bearer token's own payload: a request cannot pair its token with a payload Envoy
// verified for someone else. Every rule that needs no key still applies (structure,
// claim types, algorithm allow-list, typ, iss, aud, exp, nbf, iat). Otherwise it
// returns ErrNotApplicable and the token is verified here.
type JWTAuthnVerifier struct {
	jwt *JWTVerifier
}

// NewJWTAuthnVerifier trusts jwt_authn for the issuers of jwt that opted in.
func NewJWTAuthnVerifier(jwt *JWTVerifier) *JWTAuthnVerifier { return &JWTAuthnVerifier{jwt: jwt} }

// Verify implements Verifier. The principal holds only for requests that carry the
// token's own payload again: Envoy vouches for a token per request, and a request
// without its word is verified here.
func (v *JWTAuthnVerifier) Verify(_ context.Context, cred Credential) (*Principal, error) {
	if cred.JWTAuthn == nil {
		return nil, ErrNotApplicable
	}
	raw := cred.Token
	if len(raw) > MaxTokenBytes {
		return nil, invalid(DetailTooLarge, "token is %d bytes, limit %d", len(raw), MaxTokenBytes)
	}
	t, err := splitCompact(raw)
	if err != nil {
		return nil, err
	}
	is, known := v.jwt.issuers[t.payload.iss]
	if !known || is.envoyKey == "" {
		return nil, ErrNotApplicable
	}
	own := ownPayload(t)
	present, equal := cred.JWTAuthn.Match(is.envoyKey, own)
	if !present {
		return nil, ErrNotApplicable
	}
	if err := is.names.apply(t); err != nil {
		return nil, err
	}
	if err := is.checkHeader(t); err != nil {
		return nil, err
	}
	if own == nil || !equal {
		return nil, invalid(DetailPayloadMismatch, "the payload jwt_authn stored under %q is not this token's", is.envoyKey)
	}
	pr, err := is.principal(t.payload)
	if err != nil {
		return nil, err
	}
	pr.Hold = &payloadHold{name: is.envoyKey, own: own}
	return pr, nil
}

// ownPayload is the token's payload decoded the way a protobuf Struct holds JSON
// (numbers as float64), for comparing with what jwt_authn stored; nil when it does
// not decode as a JSON object.
func ownPayload(t *compact) map[string]any {
	_, p64, _ := strings.Cut(t.signed, ".")
	b, err := b64.DecodeString(p64)
	if err != nil {
		return nil
	}
	var own map[string]any
	if err := json.Unmarshal(b, &own); err != nil {
		return nil
	}
	return own
}

// payloadHold keeps a principal of an issuer that trusts Envoy's jwt_authn: a request
// that carries a payload under name is served only when it is the token's own (else
// the jwt_authn verifier answers the mismatch). A principal verified here (key set)
// holds without a payload as long as its key is published; one verified on Envoy's
// word (key nil) needs that word on every request.
type payloadHold struct {
	key  *key
	name string
	own  map[string]any
}

func (h *payloadHold) Holds(cred Credential) bool {
	if h.key != nil && h.key.revoked.Load() {
		return false
	}
	if cred.JWTAuthn != nil {
		if present, equal := cred.JWTAuthn.Match(h.name, h.own); present {
			return equal && h.own != nil
		}
	}
	return h.key != nil
}
