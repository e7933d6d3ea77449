package policy

// Reason is the closed vocabulary that explains every decision. The same word
// appears in logs, metric labels, `check` output, Envoy dynamic metadata and
// the x-stepup-dry-run header (CONTRACT.md, "Reasons").
type Reason string

const (
	ReasonAllowed         Reason = "allowed"
	ReasonModeOff         Reason = "mode_off"
	ReasonTokenMissing    Reason = "token_missing"
	ReasonTokenInvalid    Reason = "token_invalid"
	ReasonACRTooLow       Reason = "acr_too_low"
	ReasonACRMissing      Reason = "acr_missing"
	ReasonAuthTimeMissing Reason = "auth_time_missing"
	ReasonAuthTooOld      Reason = "auth_too_old"
	ReasonScopeMissing    Reason = "scope_missing"
	ReasonKeysUnavailable Reason = "keys_unavailable"
	ReasonPolicyError     Reason = "policy_error"
	// Sender-constrained tokens (RFC 9449, RFC 8705).
	ReasonProofInvalid            Reason = "proof_invalid"
	ReasonNonceRequired           Reason = "nonce_required"
	ReasonSenderConstraintMissing Reason = "sender_constraint_missing"
	ReasonReplayStoreUnavailable  Reason = "replay_store_unavailable"
	// ReasonIntrospectionUnavailable: the issuer's introspection endpoint could
	// not say whether the token is active (RFC 7662; 503).
	ReasonIntrospectionUnavailable Reason = "introspection_unavailable"
	// ReasonMetadataServed: the request fetched the protected resource
	// metadata document (RFC 9728 §3), which the server answered itself.
	ReasonMetadataServed Reason = "metadata_served"
)

// Reasons lists every reason, for metrics that pre-register their labels.
var Reasons = []Reason{
	ReasonAllowed, ReasonModeOff, ReasonTokenMissing, ReasonTokenInvalid,
	ReasonACRTooLow, ReasonACRMissing, ReasonAuthTimeMissing, ReasonAuthTooOld,
	ReasonScopeMissing, ReasonKeysUnavailable, ReasonPolicyError,
	ReasonProofInvalid, ReasonNonceRequired, ReasonSenderConstraintMissing, ReasonReplayStoreUnavailable,
	ReasonIntrospectionUnavailable, ReasonMetadataServed,
}

// Outcome is what a decision asks the proxy to do; each maps to one row of
// CONTRACT.md's decision table.
type Outcome int

const (
	// Allow lets the request through.
	Allow Outcome = iota
	// Unauthorized is a missing or invalid token (401, no step-up).
	Unauthorized
	// StepUp asks the user to authenticate again, stronger or more recently (401, RFC 9470).
	StepUp
	// InsufficientScope is a token without the route's scopes (403).
	InsufficientScope
	// Unavailable means no keys were ever obtained for the token's issuer, or
	// its introspection endpoint could not answer (503).
	Unavailable
	// PolicyFailure is a policy value that cannot be understood (500).
	PolicyFailure
	// Served is a request the server answered itself with the protected
	// resource metadata document (200): not a denial, but nothing goes upstream.
	Served
)

// OutcomeOf returns the outcome that a denial for reason r produces.
func OutcomeOf(r Reason) Outcome {
	switch r {
	case ReasonAllowed, ReasonModeOff:
		return Allow
	case ReasonTokenMissing, ReasonTokenInvalid,
		ReasonProofInvalid, ReasonNonceRequired, ReasonSenderConstraintMissing:
		return Unauthorized
	case ReasonACRTooLow, ReasonACRMissing, ReasonAuthTimeMissing, ReasonAuthTooOld:
		return StepUp
	case ReasonScopeMissing:
		return InsufficientScope
	case ReasonKeysUnavailable, ReasonReplayStoreUnavailable, ReasonIntrospectionUnavailable:
		return Unavailable
	case ReasonMetadataServed:
		return Served
	default:
		return PolicyFailure
	}
}
