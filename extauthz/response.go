package extauthz

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/policy"
)

// Upstream identity headers set on every allow with a verified token.
const (
	HeaderSub      = "x-stepup-sub"
	HeaderACR      = "x-stepup-acr"
	HeaderAuthTime = "x-stepup-auth-time"
	HeaderDryRun   = "x-stepup-dry-run"
)

// The denials whose wire form never varies are built once. Concurrent
// marshalling of a shared, never-mutated message is safe.
var (
	deniedNoToken = denied(typev3.StatusCode_Unauthorized, `{"error":"unauthorized"}`, "Bearer")
	deniedInvalid = denied(typev3.StatusCode_Unauthorized, `{"error":"unauthorized"}`,
		`Bearer error="invalid_token"`)
	deniedUnavailable = denied(typev3.StatusCode_ServiceUnavailable, `{"error":"temporarily_unavailable"}`, "")
	deniedPolicyError = denied(typev3.StatusCode_InternalServerError, `{"error":"policy_error"}`, "")
)

// outcome is everything needed to write the CheckResponse for a decision.
type outcome struct {
	decision policy.Decision
	// dryRun is set when a dry_run policy turned a denial into an allow; the
	// decision keeps the reason it would have denied with.
	dryRun bool
	claims *policy.Claims
	rules  *policy.IssuerRules
}

// buildResponse writes the CheckResponse for a decision. Every response sets
// Status explicitly: an unset status means "allow" to Envoy. Denials are
// PERMISSION_DENIED with a denied_response, never a gRPC error, which Envoy
// would answer with its own status_on_error and no body (ENVOY.md §2).
func buildResponse(o *outcome, a *attributes) *authv3.CheckResponse {
	d := &o.decision
	resp := &authv3.CheckResponse{DynamicMetadata: dynamicMetadata(o)}
	if d.Allowed() || o.dryRun {
		resp.Status = &rpcstatus.Status{Code: int32(codes.OK)}
		resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: okResponse(o, a)}
		return resp
	}
	resp.Status = &rpcstatus.Status{Code: int32(codes.PermissionDenied)}
	var dr *authv3.DeniedHttpResponse
	switch d.Outcome() {
	case policy.Unauthorized:
		dr = deniedInvalid
		if d.Reason == policy.ReasonTokenMissing {
			dr = deniedNoToken
		}
	case policy.StepUp:
		dr = stepUpResponse(d, o.rules)
	case policy.InsufficientScope:
		dr = scopeResponse(&d.Policy)
	case policy.Unavailable:
		dr = deniedUnavailable
	default:
		dr = deniedPolicyError
	}
	resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: dr}
	return resp
}

// okResponse sets the identity headers (overwriting any client copy) and
// removes every other client-sent x-stepup-* header, so nothing upstream can
// mistake a forged header for ours. headers_to_remove is applied after the
// header mutations, so it never names a header this response sets.
func okResponse(o *outcome, a *attributes) *authv3.OkHttpResponse {
	ok := &authv3.OkHttpResponse{}
	c := o.claims
	if c != nil {
		ok.Headers = append(ok.Headers, header(HeaderSub, c.Subject))
		if o.decision.Level != "" {
			ok.Headers = append(ok.Headers, header(HeaderACR, o.decision.Level))
		}
		if !c.AuthTime.IsZero() {
			ok.Headers = append(ok.Headers, header(HeaderAuthTime, strconv.FormatInt(c.AuthTime.Unix(), 10)))
		}
	}
	if o.dryRun {
		ok.Headers = append(ok.Headers, header(HeaderDryRun, string(o.decision.Reason)))
	}
	if len(a.stepupHeaders) > 0 {
		// A set, not a scan of the list: a request can carry thousands of x-stepup-*
		// headers, and the answer must stay linear in them.
		seen := make(map[string]bool, len(a.stepupHeaders))
		for _, name := range a.stepupHeaders {
			if !seen[name] && !setsHeader(ok.Headers, name) {
				seen[name] = true
				ok.HeadersToRemove = append(ok.HeadersToRemove, name)
			}
		}
	}
	return ok
}

func setsHeader(hs []*corev3.HeaderValueOption, name string) bool {
	for _, h := range hs {
		if h.Header.Key == name {
			return true
		}
	}
	return false
}

// stepUpResponse is the RFC 9470 challenge plus the JSON body that frontend
// wrappers read. A field the policy does not set is left out of both.
func stepUpResponse(d *policy.Decision, rules *policy.IssuerRules) *authv3.DeniedHttpResponse {
	p := &d.Policy
	var body, challenge strings.Builder
	body.WriteString(`{"error":"step_up_required"`)
	challenge.WriteString(`Bearer error="insufficient_user_authentication", error_description="`)
	challenge.WriteString(stepUpDescription(d.Reason))
	challenge.WriteByte('"')
	if p.RequiredACR != "" {
		// required_acr and acr levels are checked header-safe when parsed.
		body.WriteString(`,"required_acr":"` + p.RequiredACR + `"`)
		// RFC 9470 §3: acr_values is what the client sends to the IdP.
		challenge.WriteString(`, acr_values="` + rules.ChallengeACR(p.RequiredACR) + `"`)
	}
	if p.HasMaxAge {
		secs := strconv.FormatInt(int64(p.MaxAge.Seconds()), 10)
		body.WriteString(`,"max_age":` + secs)
		challenge.WriteString(`, max_age="` + secs + `"`)
	}
	body.WriteString("}")
	return denied(typev3.StatusCode_Unauthorized, body.String(), challenge.String())
}

func stepUpDescription(r policy.Reason) string {
	switch r {
	case policy.ReasonACRMissing, policy.ReasonACRTooLow:
		return "A stronger authentication is required"
	default:
		return "A more recent authentication is required"
	}
}

// scopeResponse is RFC 6750 §3.1 insufficient_scope, naming the scopes the
// route requires of machine tokens (no scope parameter when it names none).
func scopeResponse(p *policy.Policy) *authv3.DeniedHttpResponse {
	challenge := `Bearer error="insufficient_scope"`
	if len(p.MachineScopes) > 0 {
		// Scopes are RFC 6749 scope-tokens, checked when parsed: no quotes.
		challenge += `, scope="` + strings.Join(p.MachineScopes, " ") + `"`
	}
	return denied(typev3.StatusCode_Forbidden, `{"error":"insufficient_scope"}`, challenge)
}

func denied(code typev3.StatusCode, body, challenge string) *authv3.DeniedHttpResponse {
	dr := &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: code},
		Body:   body,
		Headers: []*corev3.HeaderValueOption{
			// Envoy sets text/plain for a body unless a content-type is given.
			header("content-type", "application/json"),
			header("cache-control", "no-store"),
		},
	}
	if challenge != "" {
		dr.Headers = append(dr.Headers, header("www-authenticate", challenge))
	}
	return dr
}

// header sets one header, replacing any existing value: old Envoys ignore
// append_action and overwrite when append is unset; new ones honour it.
func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// dynamicMetadata lets access logs print
// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)%.
func dynamicMetadata(o *outcome) *structpb.Struct {
	decision := "deny"
	if o.decision.Allowed() || o.dryRun {
		decision = "allow"
	}
	fields := map[string]*structpb.Value{
		"decision": structpb.NewStringValue(decision),
		"reason":   structpb.NewStringValue(string(o.decision.Reason)),
	}
	if o.decision.Policy.Name != "" {
		fields["name"] = structpb.NewStringValue(o.decision.Policy.Name)
	}
	return &structpb.Struct{Fields: fields}
}
