package extauthz

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

// The wire form of sender-constrained decisions (CONTRACT.md, "Sender-
// constrained tokens"): under the DPoP scheme every challenge uses the DPoP
// scheme and carries algs (RFC 9449 §7.1); a route that requires a binding
// tells a client without credentials that DPoP is accepted (§7.2); and when
// server nonces are on, every DPoP denial and allow carries a current
// DPoP-Nonce (§8, §9).

// HeaderDPoPNonce is the response header that carries a server nonce.
const HeaderDPoPNonce = "dpop-nonce"

// dpopOutcome is what the response writer needs to know about DPoP.
type dpopOutcome struct {
	// scheme is the credential's scheme (0 when there was none).
	scheme token.Scheme
	// algs is dpop.algorithms space-separated.
	algs string
	// nonce, when set, goes out as DPoP-Nonce.
	nonce string
}

// dpopDenial returns the denied response for a decision whose wire form DPoP
// changes, or nil when the usual one applies.
func dpopDenial(o *outcome) *authv3.DeniedHttpResponse {
	d := &o.decision
	underDPoP := o.dpop.scheme == token.SchemeDPoP
	var dr *authv3.DeniedHttpResponse
	switch {
	case d.Reason == policy.ReasonProofInvalid:
		dr = denied(typev3.StatusCode_Unauthorized, `{"error":"invalid_dpop_proof"}`,
			`DPoP error="invalid_dpop_proof", error_description="`+proofDescription(d.Detail)+`", algs="`+o.dpop.algs+`"`)
	case d.Reason == policy.ReasonNonceRequired:
		dr = denied(typev3.StatusCode_Unauthorized, `{"error":"use_dpop_nonce"}`,
			`DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof", algs="`+o.dpop.algs+`"`)
	case d.Reason == policy.ReasonSenderConstraintMissing:
		switch {
		case d.Policy.SenderConstraint != policy.SenderMTLS:
			dr = denied(typev3.StatusCode_Unauthorized, `{"error":"unauthorized"}`, `DPoP algs="`+o.dpop.algs+`"`)
		case underDPoP:
			dr = denied(typev3.StatusCode_Unauthorized, `{"error":"unauthorized"}`,
				`DPoP error="invalid_token", error_description="a certificate-bound token is required", algs="`+o.dpop.algs+`"`)
		default:
			dr = denied(typev3.StatusCode_Unauthorized, `{"error":"unauthorized"}`,
				`Bearer error="invalid_token", error_description="a certificate-bound token is required"`)
		}
	case d.Reason == policy.ReasonTokenMissing:
		// RFC 9449 §7.2: both schemes are offered where DPoP is accepted.
		if sc := d.Policy.SenderConstraint; sc == policy.SenderDPoP || sc == policy.SenderEither {
			dr = denied(typev3.StatusCode_Unauthorized, `{"error":"unauthorized"}`, `Bearer, DPoP algs="`+o.dpop.algs+`"`)
		}
	case !underDPoP:
	case d.Outcome() == policy.Unauthorized:
		dr = denied(typev3.StatusCode_Unauthorized, `{"error":"unauthorized"}`, `DPoP error="invalid_token", algs="`+o.dpop.algs+`"`)
	case d.Outcome() == policy.StepUp:
		dr = dpopChallenge(stepUpResponse(d, o.rules, o.stepUps), o.dpop.algs)
	case d.Outcome() == policy.InsufficientScope:
		dr = dpopChallenge(scopeResponse(d), o.dpop.algs)
	}
	if dr != nil && o.dpop.nonce != "" {
		dr.Headers = append(dr.Headers, header(HeaderDPoPNonce, o.dpop.nonce))
	}
	return dr
}

// dpopChallenge rewrites a Bearer challenge (RFC 9470 step-up, RFC 6750
// insufficient_scope) into the DPoP scheme with algs, keeping status, body
// and the other parameters. The shared Bearer response is not modified.
func dpopChallenge(bearer *authv3.DeniedHttpResponse, algs string) *authv3.DeniedHttpResponse {
	dr := &authv3.DeniedHttpResponse{Status: bearer.GetStatus(), Body: bearer.GetBody()}
	dr.Headers = make([]*corev3.HeaderValueOption, 0, len(bearer.GetHeaders())+1)
	for _, h := range bearer.GetHeaders() {
		if h.GetHeader().GetKey() == "www-authenticate" {
			v := strings.TrimPrefix(h.GetHeader().GetValue(), "Bearer ")
			h = header("www-authenticate", "DPoP "+v+`, algs="`+algs+`"`)
		}
		dr.Headers = append(dr.Headers, h)
	}
	return dr
}

// proofDescription is the error_description of invalid_dpop_proof: which rule
// of RFC 9449 §4.3 the proof broke. Header-safe text.
func proofDescription(detail string) string {
	switch detail {
	case token.ProofMissing:
		return "the request has no DPoP proof"
	case token.ProofMultiple:
		return "the request has more than one DPoP proof"
	case token.ProofTooLarge:
		return "the DPoP proof is larger than " + strconv.Itoa(token.MaxProofBytes) + " bytes"
	case token.ProofMalformed:
		return "the DPoP proof is not a compact JWS of JSON objects"
	case token.ProofTyp:
		return "the DPoP proof's typ is not dpop+jwt"
	case token.ProofAlg:
		return "the DPoP proof's alg is not one of algs"
	case token.ProofCrit:
		return "the DPoP proof has a header extension that is not supported"
	case token.ProofJWKMissing:
		return "the DPoP proof has no jwk"
	case token.ProofJWKPrivate:
		return "the DPoP proof's jwk holds private key material"
	case token.ProofJWKInvalid:
		return "the DPoP proof's jwk is not a public key for its alg"
	case token.ProofBadSignature:
		return "the DPoP proof's signature does not verify with its jwk"
	case token.ProofClaims:
		return "the DPoP proof lacks jti, htm, htu or iat, or one has the wrong type"
	case token.ProofHTM:
		return "the DPoP proof's htm is not the request method"
	case token.ProofHTU:
		return "the DPoP proof's htu is not the request URL"
	case token.ProofIATFuture:
		return "the DPoP proof's iat is in the future"
	case token.ProofIATStale:
		return "the DPoP proof's iat is too old"
	case token.ProofATHMissing:
		return "the DPoP proof has no ath"
	case token.ProofATHMismatch:
		return "the DPoP proof's ath is not the hash of the access token"
	case token.ProofReplayed:
		return "the DPoP proof was used before"
	}
	return "the DPoP proof is invalid"
}

// addNonce puts a current DPoP-Nonce on an allowed DPoP request's response
// (ok_response.response_headers_to_add, RFC 9449 §9).
func addNonce(ok *authv3.OkHttpResponse, nonce string) {
	ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, header(HeaderDPoPNonce, nonce))
}
