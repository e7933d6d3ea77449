package extauthz

import (
	"math"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

// attributes is what a decision needs from a CheckRequest, read once.
type attributes struct {
	method string
	host   string
	// path is as Envoy sent it, query string included; route matching strips it.
	path string
	// authorization is the first Authorization value and authorizations the
	// number of them: one from Envoy's joined header map, possibly several
	// from raw header_map, which are then all in moreAuthorization. The usual
	// single value costs no allocation; authValues gives them all.
	authorization     string
	authorizations    int
	moreAuthorization []string
	// stepupHeaders are the client-sent x-stepup-* header names, lower-cased.
	stepupHeaders []string
	requestID     string
	// metadata is route_metadata_context.filter_metadata[namespace], if any.
	metadata *structpb.Struct
	// extensions are the per-route context_extensions, if any.
	extensions map[string]string
	// jwtAuthn is metadata_context.filter_metadata["envoy.filters.http.jwt_authn"]:
	// payloads Envoy's jwt_authn filter verified, if it runs before us.
	jwtAuthn *structpb.Struct
	// headerCount is the number of header entries the request carried.
	headerCount int

	// What sender-constrained tokens need (sender.go): every DPoP header value
	// (one, or one holding a comma, from Envoy's joined map; several from raw
	// header_map), the scheme for the request URL, and the client certificate
	// as Envoy sends it or as x-forwarded-client-cert carries it.
	dpop           []string
	scheme         string // attributes.request.http.scheme, else :scheme
	forwardedProto string
	peerCert       string // attributes.source.certificate (URL-encoded PEM)
	xfcc           string
	xfccCount      int
	// authScheme is the scheme the token came under, once the judge read it
	// (challenges under DPoP use the DPoP scheme).
	authScheme token.Scheme
}

// MaxHeaders is the most header entries a CheckRequest may carry for its token to be
// read: ten times Envoy's default max_headers_count (100), which Envoy enforces on
// the client's request before ext_authz runs. A request with more is judged as
// carrying an invalid token (DetailTooManyHeaders): it fails closed on enforce
// routes, is reported under dry_run, and mode off still lets it through with its
// x-stepup-* headers stripped.
const MaxHeaders = 1000

// DetailTooManyHeaders is the token_invalid detail of a request over MaxHeaders.
const DetailTooManyHeaders = "too_many_headers"

// jwtAuthnNamespace is where jwt_authn stores verified payloads, whatever the
// filter's name (it is hard-coded in Envoy's jwt_authn filter).
const jwtAuthnNamespace = "envoy.filters.http.jwt_authn"

const stepupPrefix = "x-stepup-"

// readAttributes converts a CheckRequest into attributes. Envoy lower-cases
// header names in `headers`; with encode_raw_headers it sends `header_map`
// instead, unmerged and unsanitised, so names are compared case-insensitively.
func readAttributes(req *authv3.CheckRequest, namespace string) attributes {
	attrs := req.GetAttributes()
	http := attrs.GetRequest().GetHttp()
	a := attributes{
		method:     http.GetMethod(),
		host:       http.GetHost(),
		path:       http.GetPath(),
		extensions: attrs.GetContextExtensions(),
		scheme:     http.GetScheme(),
		peerCert:   attrs.GetSource().GetCertificate(),
	}
	if md := attrs.GetRouteMetadataContext().GetFilterMetadata(); md != nil {
		a.metadata = md[namespace]
	}
	if md := attrs.GetMetadataContext().GetFilterMetadata(); md != nil {
		a.jwtAuthn = md[jwtAuthnNamespace]
	}
	if headers := http.GetHeaders(); len(headers) > 0 {
		a.headerCount = len(headers)
		for k, v := range headers {
			a.header(k, v)
		}
	} else {
		a.headerCount = len(http.GetHeaderMap().GetHeaders())
		for _, hv := range http.GetHeaderMap().GetHeaders() {
			v := hv.GetValue()
			if raw := hv.GetRawValue(); len(raw) > 0 {
				v = string(raw)
			}
			a.header(strings.ToLower(hv.GetKey()), v)
		}
	}
	return a
}

func (a *attributes) header(name, value string) {
	switch {
	case name == "authorization":
		a.authorizations++
		if a.authorizations == 1 {
			a.authorization = value
			break
		}
		if a.moreAuthorization == nil {
			a.moreAuthorization = []string{a.authorization}
		}
		a.moreAuthorization = append(a.moreAuthorization, value)
	case name == ":authority":
		if a.host == "" {
			a.host = value
		}
	case name == ":path":
		if a.path == "" {
			a.path = value
		}
	case name == ":method":
		if a.method == "" {
			a.method = value
		}
	case name == "x-request-id":
		a.requestID = value
	case name == "dpop":
		a.dpop = append(a.dpop, value)
	case name == ":scheme":
		if a.scheme == "" {
			a.scheme = value
		}
	case name == "x-forwarded-proto":
		a.forwardedProto = value
	case name == "x-forwarded-client-cert":
		// Two entries are two elements; joined with ',' they read as such.
		if a.xfccCount++; a.xfccCount > 1 {
			value = a.xfcc + "," + value
		}
		a.xfcc = value
	case len(name) > len(stepupPrefix) && strings.EqualFold(name[:len(stepupPrefix)], stepupPrefix):
		a.stepupHeaders = append(a.stepupHeaders, strings.ToLower(name))
	}
}

// authValues returns every Authorization value, using buf for a single one.
func (a *attributes) authValues(buf *[1]string) []string {
	switch a.authorizations {
	case 0:
		return nil
	case 1:
		buf[0] = a.authorization
		return buf[:]
	default:
		return a.moreAuthorization
	}
}

// jwtAuthnPayloads are the payloads Envoy's jwt_authn filter stored in the
// request's dynamic metadata, compared in place: converting the Struct
// (AsMap) would allocate its whole tree on every request that carries it.
type jwtAuthnPayloads struct{ s *structpb.Struct }

// Match implements token.JWTAuthnPayloads. A payload is present when name holds a
// Struct, as jwt_authn's payload_in_metadata writes it; it is equal when
// Struct.AsMap would give a map reflect.DeepEqual to own.
func (p jwtAuthnPayloads) Match(name string, own map[string]any) (present, equal bool) {
	v, ok := p.s.GetFields()[name]
	if !ok {
		return false, false
	}
	st, isStruct := v.GetKind().(*structpb.Value_StructValue)
	if !isStruct {
		return false, false
	}
	return true, own != nil && equalStruct(st.StructValue, own)
}

// equalStruct reports whether s.AsMap() would be reflect.DeepEqual to m.
func equalStruct(s *structpb.Struct, m map[string]any) bool {
	fields := s.GetFields()
	if len(fields) != len(m) {
		return false
	}
	for k, v := range fields {
		x, ok := m[k]
		if !ok || !equalValue(v, x) {
			return false
		}
	}
	return true
}

// equalValue reports whether v.AsInterface() would be reflect.DeepEqual to x.
func equalValue(v *structpb.Value, x any) bool {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		// AsInterface gives non-finite numbers as the strings JSON would need.
		switch n := k.NumberValue; {
		case math.IsNaN(n):
			return x == "NaN"
		case math.IsInf(n, 1):
			return x == "Infinity"
		case math.IsInf(n, -1):
			return x == "-Infinity"
		default:
			f, ok := x.(float64)
			return ok && f == n
		}
	case *structpb.Value_StringValue:
		s, ok := x.(string)
		return ok && s == k.StringValue
	case *structpb.Value_BoolValue:
		b, ok := x.(bool)
		return ok && b == k.BoolValue
	case *structpb.Value_StructValue:
		m, ok := x.(map[string]any)
		return ok && m != nil && equalStruct(k.StructValue, m)
	case *structpb.Value_ListValue:
		l, ok := x.([]any)
		items := k.ListValue.GetValues()
		if !ok || l == nil || len(l) != len(items) {
			return false
		}
		for i, it := range items {
			if !equalValue(it, l[i]) {
				return false
			}
		}
		return true
	default: // null, or no kind: AsInterface gives nil
		return x == nil
	}
}

// routeRequest is what config route matching looks at.
func (a *attributes) routeRequest() policy.Request {
	return policy.Request{Host: a.host, Method: a.method, Path: a.path}
}
