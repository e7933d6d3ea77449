// Package token is the token pipeline of the ext_authz server: what a request
// presents (credential.go), who it speaks for (principal.go: the verified-principal
// cache, cache.go, else a verifier: local JWT, jwt.go, or Envoy's jwt_authn,
// jwtauthn.go), whether it is bound to the request (binding.go) and whether its
// claims are acceptable (validity.go), run in that order by a [Pipeline]
// (pipeline.go).
//
// Key material comes only from each configured issuer's JWKS (fetched and cached by
// [KeySets]); token headers that name keys (jku, x5u, jwk, x5c) are never used. A
// [Pipeline] is built per configuration and owns the verified-principal cache, so a
// configuration reload always starts with an empty cache.
package token

import (
	"errors"
	"fmt"
)

// ErrNoToken means the request carries no bearer token: no Authorization header, an
// empty one, another scheme ("Basic ..."), or "Bearer" without a token.
var ErrNoToken = errors.New("no bearer token")

// ErrKeysUnavailable is wrapped by Verify's error when no key set was ever obtained for
// the token's issuer, or when the token names a kid the held keys lack and no fetch that
// could bring its key finishes before Verify's context ends (the refetch is rate limited
// and scheduled for later, or still running): the token cannot be judged, so the caller
// answers 503, not 401.
var ErrKeysUnavailable = errors.New("keys unavailable")

// Detail values of [InvalidError]: short, stable, lower_snake words for logs and metrics.
const (
	DetailMalformed           = "malformed"
	DetailTooLarge            = "too_large"
	DetailMultipleCredentials = "multiple_credentials"
	DetailDuplicateClaim      = "duplicate_claim"
	DetailClaimType           = "claim_type"
	DetailMissingExp          = "missing_exp"
	DetailExpired             = "expired"
	DetailNotYetValid         = "not_yet_valid"
	DetailIssuedInFuture      = "issued_in_future"
	DetailUnknownIssuer       = "unknown_issuer"
	DetailBadAudience         = "bad_audience"
	DetailAlgorithmNotAllowed = "algorithm_not_allowed"
	DetailWrongTyp            = "wrong_typ"
	DetailCritUnsupported     = "crit_unsupported"
	DetailUnknownKid          = "unknown_kid"
	DetailKeyMismatch         = "key_mismatch"
	DetailBadSignature        = "bad_signature"
	DetailInvalidClaims       = "invalid_claims"

	// DetailKeyRefused: the token names a kid that its issuer's JWKS publishes, but
	// with a key this server refuses (an RSA key under 2048 bits, an unsupported
	// curve, ...; the log line of the fetch says which and why).
	DetailKeyRefused = "key_refused"
)

// InvalidError reports a token that is present but not acceptable (the caller answers 401
// with error="invalid_token"). Detail is one of the Detail* constants; Err, when set,
// says more for logs.
type InvalidError struct {
	Detail string
	Err    error
}

func (e *InvalidError) Error() string {
	if e.Err == nil {
		return "invalid token: " + e.Detail
	}
	return "invalid token: " + e.Detail + ": " + e.Err.Error()
}

func (e *InvalidError) Unwrap() error { return e.Err }

// invalid builds an *InvalidError whose Err is formatted like fmt.Errorf.
func invalid(detail, format string, args ...any) *InvalidError {
	return &InvalidError{Detail: detail, Err: fmt.Errorf(format, args...)}
}

// InvalidDetail returns the Detail of the *InvalidError in err's chain, or "" when err
// does not say the token is invalid.
func InvalidDetail(err error) string {
	var ie *InvalidError
	if errors.As(err, &ie) {
		return ie.Detail
	}
	return ""
}
