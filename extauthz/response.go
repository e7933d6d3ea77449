package extauthz

import (
	"strconv"
	"strings"
	"unsafe"

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

// The parts of responses whose wire form never varies are built once: the
// fixed denials, the statuses, the dynamic metadata of a policy without a
// name, and whole responses for the fixed denials. Concurrent marshalling of
// a shared, never-mutated message is safe; nothing here is ever modified, and
// neither may callers of Evaluate modify a Result's Response.
var (
	deniedNoToken = denied(typev3.StatusCode_Unauthorized, `{"error":"unauthorized"}`, "Bearer")
	deniedInvalid = denied(typev3.StatusCode_Unauthorized, `{"error":"unauthorized"}`,
		`Bearer error="invalid_token"`)
	deniedUnavailable = denied(typev3.StatusCode_ServiceUnavailable, `{"error":"temporarily_unavailable"}`, "")
	deniedPolicyError = denied(typev3.StatusCode_InternalServerError, `{"error":"policy_error"}`, "")

	statusOK     = &rpcstatus.Status{Code: int32(codes.OK)}
	statusDenied = &rpcstatus.Status{Code: int32(codes.PermissionDenied)}

	decisionValues = map[bool]*structpb.Value{true: structpb.NewStringValue("allow"), false: structpb.NewStringValue("deny")}
	reasonValues   = func() map[policy.Reason]*structpb.Value {
		m := make(map[policy.Reason]*structpb.Value, len(policy.Reasons))
		for _, r := range policy.Reasons {
			m[r] = structpb.NewStringValue(string(r))
		}
		return m
	}()
	// unnamedMetadata[allow][reason] is the dynamic metadata of a policy without a name.
	unnamedMetadata = func() map[bool]map[policy.Reason]*structpb.Struct {
		m := map[bool]map[policy.Reason]*structpb.Struct{}
		for _, allow := range []bool{true, false} {
			m[allow] = make(map[policy.Reason]*structpb.Struct, len(policy.Reasons))
			for _, r := range policy.Reasons {
				m[allow][r] = &structpb.Struct{Fields: map[string]*structpb.Value{
					"decision": decisionValues[allow],
					"reason":   reasonValues[r],
				}}
			}
		}
		return m
	}()
	// fixedDenials are whole responses for the denials of a policy without a name.
	fixedDenials = func() map[policy.Reason]*authv3.CheckResponse {
		m := map[policy.Reason]*authv3.CheckResponse{}
		for r, dr := range map[policy.Reason]*authv3.DeniedHttpResponse{
			policy.ReasonTokenMissing:             deniedNoToken,
			policy.ReasonTokenInvalid:             deniedInvalid,
			policy.ReasonKeysUnavailable:          deniedUnavailable,
			policy.ReasonIntrospectionUnavailable: deniedUnavailable,
			policy.ReasonPolicyError:              deniedPolicyError,
		} {
			m[r] = &authv3.CheckResponse{
				Status:          statusDenied,
				HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: dr},
				DynamicMetadata: unnamedMetadata[false][r],
			}
		}
		return m
	}()
)

// outcome is everything needed to write the CheckResponse for a decision.
type outcome struct {
	decision policy.Decision
	// dryRun is set when a dry_run policy turned a denial into an allow; the
	// decision keeps the reason it would have denied with.
	dryRun bool
	claims *policy.Claims
	rules  *policy.IssuerRules
	// stepUps, when set, remembers step-up denials (the Engine's).
	stepUps *stepUpMemo
	// dpop is what DPoP changes in the response (dpop_response.go).
	dpop dpopOutcome
	// document is the protected resource metadata document's response, when
	// the request fetched it (resource.go).
	document *authv3.DeniedHttpResponse
	// resource, when set, puts resource_metadata on every challenge (resource.go).
	resource *protectedResource
}

// buildResponse writes the CheckResponse for a decision. Every response sets
// Status explicitly: an unset status means "allow" to Envoy. Denials are
// PERMISSION_DENIED with a denied_response, never a gRPC error, which Envoy
// would answer with its own status_on_error and no body (ENVOY.md §2).
func buildResponse(o *outcome, a *attributes) *authv3.CheckResponse {
	d := &o.decision
	if o.document != nil {
		return &authv3.CheckResponse{
			Status:          statusDenied,
			HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: o.document},
			DynamicMetadata: dynamicMetadata(o),
		}
	}
	if d.Allowed() || o.dryRun {
		return okResponse(o, a)
	}
	dr := dpopDenial(o)
	if dr == nil && d.Policy.Name == "" && o.resource == nil {
		if resp, ok := fixedDenials[d.Reason]; ok {
			return resp
		}
	}
	switch {
	case dr != nil:
	case d.Outcome() == policy.Unauthorized:
		dr = deniedInvalid
		if d.Reason == policy.ReasonTokenMissing {
			dr = deniedNoToken
		}
	case d.Outcome() == policy.StepUp:
		dr = stepUpResponse(d, o.rules, o.stepUps)
	case d.Outcome() == policy.InsufficientScope:
		dr = scopeResponse(d)
	case d.Outcome() == policy.Unavailable:
		dr = deniedUnavailable
	default:
		dr = deniedPolicyError
	}
	if o.resource != nil {
		dr = o.resource.challenge(dr, a, d.Policy.ResourcePath)
	}
	// The response and its oneof wrapper in one allocation.
	blk := &struct {
		resp authv3.CheckResponse
		wrap authv3.CheckResponse_DeniedResponse
	}{}
	blk.wrap.DeniedResponse = dr
	blk.resp.Status = statusDenied
	blk.resp.HttpResponse = &blk.wrap
	blk.resp.DynamicMetadata = dynamicMetadata(o)
	return &blk.resp
}

// okBlock is an allow response in one allocation: the response, its oneof
// wrapper, the OkHttpResponse and room for its identity headers.
type okBlock struct {
	resp authv3.CheckResponse
	wrap authv3.CheckResponse_OkResponse
	ok   authv3.OkHttpResponse
	ptrs [4]*corev3.HeaderValueOption
	opts [4]corev3.HeaderValueOption
	vals [4]corev3.HeaderValue
	// digits holds x-stepup-auth-time's value, written once before use.
	digits [20]byte
}

// set adds a header that replaces any existing value (see header).
func (b *okBlock) set(k, v string) {
	i := len(b.ok.Headers)
	if i == len(b.opts) {
		b.ok.Headers = append(b.ok.Headers, header(k, v))
		return
	}
	b.vals[i].Key, b.vals[i].Value = k, v
	b.opts[i].Header = &b.vals[i]
	b.opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	b.ok.Headers = append(b.ok.Headers, &b.opts[i])
}

// okResponse sets the identity headers (overwriting any client copy) and
// removes every other client-sent x-stepup-* header, so nothing upstream can
// mistake a forged header for ours. headers_to_remove is applied after the
// header mutations, so it never names a header this response sets.
func okResponse(o *outcome, a *attributes) *authv3.CheckResponse {
	blk := &okBlock{}
	blk.resp.Status = statusOK
	blk.resp.DynamicMetadata = dynamicMetadata(o)
	blk.resp.HttpResponse = &blk.wrap
	blk.wrap.OkResponse = &blk.ok
	ok := &blk.ok
	ok.Headers = blk.ptrs[:0]
	c := o.claims
	if c != nil {
		blk.set(HeaderSub, c.Subject)
		if o.decision.Level != "" {
			blk.set(HeaderACR, o.decision.Level)
		}
		if !c.AuthTime.IsZero() {
			n := len(strconv.AppendInt(blk.digits[:0], c.AuthTime.Unix(), 10))
			// The digits are never written again, so the string stays as it is.
			blk.set(HeaderAuthTime, unsafe.String(&blk.digits[0], n))
		}
	}
	if o.dryRun {
		blk.set(HeaderDryRun, string(o.decision.Reason))
	}
	if len(ok.Headers) == 0 {
		ok.Headers = nil
	}
	if o.dpop.nonce != "" {
		addNonce(ok, o.dpop.nonce)
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
	return &blk.resp
}

func setsHeader(hs []*corev3.HeaderValueOption, name string) bool {
	for _, h := range hs {
		if h.Header.Key == name {
			return true
		}
	}
	return false
}

// stepUpKey is everything a step-up denial's wire form depends on.
type stepUpKey struct {
	stronger          bool // the description: stronger, or more recent
	entra             bool // the challenge is Entra ID's claims challenge
	acr, challenge    string
	maxAge            int64
	hasACR, hasMaxAge bool
}

// stepUpMemo remembers built step-up denials (immutable once built) by what
// their wire form depends on; routes have few distinct policies.
type stepUpMemo = memo[stepUpKey, *authv3.DeniedHttpResponse]

// stepUpResponse is the RFC 9470 challenge plus the JSON body that frontend
// wrappers read. A field the policy does not set is left out of both. A denial
// already built is taken from remembered (when set) rather than built again.
func stepUpResponse(d *policy.Decision, rules *policy.IssuerRules, remembered *stepUpMemo) *authv3.DeniedHttpResponse {
	p := &d.Policy
	k := stepUpKey{stronger: stepUpDescription(d.Reason) == stronger, hasACR: p.RequiredACR != "", hasMaxAge: p.HasMaxAge}
	if k.hasACR {
		k.acr, k.challenge = p.RequiredACR, rules.ChallengeACR(p.RequiredACR)
		k.entra = rules.Challenge == policy.ChallengeEntra
	}
	if k.hasMaxAge {
		k.maxAge = int64(p.MaxAge.Seconds())
	}
	if remembered == nil {
		return buildStepUp(d, rules)
	}
	if dr, ok := remembered.get(k); ok {
		return dr
	}
	dr := buildStepUp(d, rules)
	// The key's strings may point into a request; the memo keeps copies.
	k.acr, k.challenge = strings.Clone(k.acr), strings.Clone(k.challenge)
	remembered.put(k, dr)
	return dr
}

func buildStepUp(d *policy.Decision, rules *policy.IssuerRules) *authv3.DeniedHttpResponse {
	p := &d.Policy
	var body, challenge strings.Builder
	body.WriteString(`{"error":"step_up_required"`)
	if p.RequiredACR != "" {
		// required_acr and acr levels are checked header-safe when parsed.
		body.WriteString(`,"required_acr":"` + p.RequiredACR + `"`)
	}
	if p.HasMaxAge {
		body.WriteString(`,"max_age":` + strconv.FormatInt(int64(p.MaxAge.Seconds()), 10))
	}
	body.WriteString("}")
	if rules.Challenge == policy.ChallengeEntra && p.RequiredACR != "" {
		return denied(typev3.StatusCode_Unauthorized, body.String(), entraChallenge(d.Reason, rules.ChallengeACR(p.RequiredACR)))
	}
	challenge.WriteString(`Bearer error="insufficient_user_authentication", error_description="`)
	challenge.WriteString(stepUpDescription(d.Reason))
	challenge.WriteByte('"')
	if p.RequiredACR != "" {
		// RFC 9470 §3: acr_values is what the client sends to the IdP.
		challenge.WriteString(`, acr_values="` + rules.ChallengeACR(p.RequiredACR) + `"`)
	}
	if p.HasMaxAge {
		challenge.WriteString(`, max_age="` + strconv.FormatInt(int64(p.MaxAge.Seconds()), 10) + `"`)
	}
	return denied(typev3.StatusCode_Unauthorized, body.String(), challenge.String())
}

const stronger = "A stronger authentication is required"

func stepUpDescription(r policy.Reason) string {
	switch r {
	case policy.ReasonACRMissing, policy.ReasonACRTooLow:
		return stronger
	default:
		return "A more recent authentication is required"
	}
}

// scopeResponse is RFC 6750 §3.1 insufficient_scope, naming the scopes the
// route requires of this token (Decision.ChallengeScopes; no scope parameter
// when it names none).
func scopeResponse(d *policy.Decision) *authv3.DeniedHttpResponse {
	challenge := `Bearer error="insufficient_scope"`
	if scopes := d.ChallengeScopes(); len(scopes) > 0 {
		// Scopes are RFC 6749 scope-tokens, checked when parsed: no quotes.
		challenge += `, scope="` + strings.Join(scopes, " ") + `"`
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
	allow := o.decision.Allowed() || o.dryRun
	reason, known := reasonValues[o.decision.Reason]
	if !known {
		reason = structpb.NewStringValue(string(o.decision.Reason))
	}
	if o.decision.Policy.Name == "" && known {
		return unnamedMetadata[allow][o.decision.Reason]
	}
	fields := map[string]*structpb.Value{
		"decision": decisionValues[allow],
		"reason":   reason,
	}
	if o.decision.Policy.Name != "" {
		fields["name"] = structpb.NewStringValue(o.decision.Policy.Name)
	}
	return &structpb.Struct{Fields: fields}
}
