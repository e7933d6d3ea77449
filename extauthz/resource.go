package extauthz

import (
	"encoding/json"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

// Protected resource metadata (RFC 9728; CONTRACT.md, "Protected resource
// metadata (RFC 9728) and scope step-up"): clients that discover their
// authorization server (MCP clients among them) follow resource_metadata
// from a challenge to the metadata document, which this server answers itself
// on any route where ext_authz runs.

// WellKnownResource is RFC 9728 §3's well-known path.
const WellKnownResource = "/.well-known/oauth-protected-resource"

// protectedResource is one configuration's protected_resource: block.
type protectedResource struct {
	cfg *config.ProtectedResource
	// challenges remembers the shared denials (no token, invalid token) with
	// resource_metadata added, by what the parameter depends on: a flood of
	// requests without a valid token costs a lookup, not a URL and a copy each.
	challenges memo[challengeKey, *authv3.DeniedHttpResponse]
}

// challengeKey is what a shared denial with resource_metadata depends on.
type challengeKey struct {
	dr                                     *authv3.DeniedHttpResponse
	forwardedProto, scheme, host, resource string
}

func newProtectedResource(cfg *config.ProtectedResource) *protectedResource {
	if cfg == nil {
		return nil
	}
	return &protectedResource{cfg: cfg}
}

// base is base_url, else the request's scheme://authority as for a DPoP
// proof's htu; ok is false when the request has none that can be written
// into a URL and a quoted header parameter.
func (r *protectedResource) base(a *attributes) (string, bool) {
	if r.cfg.BaseURL != "" {
		return r.cfg.BaseURL, true
	}
	origin, err := token.RequestOrigin(a.forwardedProto, a.scheme, a.host)
	if err != nil || !authoritySafe(origin) {
		return "", false
	}
	return origin, true
}

// authoritySafe reports an origin made only of RFC 3986 authority characters
// (unreserved, sub-delims but ",", ":", "[", "]", pct-encoded; "/" for "://"):
// nothing that would end a quoted header parameter or a JSON string, and no
// comma, which a careless parser of a challenge list could split on.
func authoritySafe(origin string) bool {
	for i := 0; i < len(origin); i++ {
		c := origin[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+;=:[]%/", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// metadataURL is the resource_metadata parameter for a request on a route
// with resourcePath: the well-known path inserted between the origin and the
// resource path (RFC 9728 §3.1). "" when no base can be worked out.
func (r *protectedResource) metadataURL(a *attributes, resourcePath string) string {
	base, ok := r.base(a)
	if !ok {
		return ""
	}
	return base + WellKnownResource + resourcePath
}

// metadataSuffix reports whether a request fetches the metadata document: a
// GET or HEAD of the well-known path or of that path followed by "/" and a
// suffix (RFC 9728 §3.1), judged on the path normalised as Envoy's
// normalize_path and merge_slashes send it. suffix is "" or starts with "/".
// A path that does not normalise (an encoded slash) is never the document.
func metadataSuffix(method, path string) (suffix string, ok bool) {
	if method != http.MethodGet && method != http.MethodHead {
		return "", false
	}
	if !strings.HasPrefix(path, WellKnownResource) && !strings.Contains(path, "%") && !strings.Contains(path, "//") && !strings.Contains(path, "/.") {
		// The usual request: nothing could normalise into the well-known path.
		return "", false
	}
	n, err := policy.NormalizePath(path)
	if err != nil {
		return "", false
	}
	if n == WellKnownResource {
		return "", true
	}
	if rest, found := strings.CutPrefix(n, WellKnownResource); found && rest[0] == '/' {
		return rest, true
	}
	return "", false
}

// metadataDocument is RFC 9728 §2's document, fields in its order.
type metadataDocument struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	ResourceName           string   `json:"resource_name,omitempty"`
	DPoPAlgs               []string `json:"dpop_signing_alg_values_supported,omitempty"`
}

// document returns the metadata document's response when a asks for it, else
// nil. It is a denied_response with HTTP 200: Envoy sends it as a local reply
// (ENVOY.md, "Facts for the December contract" 1). A HEAD gets the GET's body,
// which Envoy drops while keeping Content-Type (ibid. 6).
func (r *protectedResource) document(a *attributes) *authv3.DeniedHttpResponse {
	suffix, ok := metadataSuffix(a.method, a.path)
	if !ok {
		return nil
	}
	base, ok := r.base(a)
	if !ok {
		return nil
	}
	// §3.3: resource is the identifier whose well-known URL this is.
	doc := metadataDocument{
		Resource:               base + suffix,
		AuthorizationServers:   r.cfg.AuthorizationServers,
		BearerMethodsSupported: []string{"header"},
		ScopesSupported:        r.cfg.ScopesSupported,
		ResourceName:           r.cfg.ResourceName,
		DPoPAlgs:               r.cfg.DPoPAlgorithms,
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil
	}
	return &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode_OK},
		Body:   string(body),
		Headers: []*corev3.HeaderValueOption{
			header("content-type", "application/json"),
			header("cache-control", "public, max-age=300"),
			// Browser-based clients (MCP inspectors) fetch it cross-origin.
			header("access-control-allow-origin", "*"),
		},
	}
}

// challenge returns dr with resource_metadata on its challenges (dr itself when
// it has none, or when no base can be worked out for a). The two shared
// denials are remembered; the others are built per request anyway.
func (r *protectedResource) challenge(dr *authv3.DeniedHttpResponse, a *attributes, resourcePath string) *authv3.DeniedHttpResponse {
	shared := dr == deniedNoToken || dr == deniedInvalid
	var k challengeKey
	if shared {
		k = challengeKey{dr: dr, resource: resourcePath}
		if r.cfg.BaseURL == "" {
			k.forwardedProto, k.scheme, k.host = a.forwardedProto, a.scheme, a.host
		}
		if out, ok := r.challenges.get(k); ok {
			return out
		}
	}
	url := r.metadataURL(a, resourcePath)
	if url == "" {
		return dr
	}
	out := withResourceMetadata(dr, url)
	if shared {
		// The key's strings may point into a request; the memo keeps copies.
		k.forwardedProto, k.scheme, k.host, k.resource = strings.Clone(k.forwardedProto), strings.Clone(k.scheme), strings.Clone(k.host), strings.Clone(k.resource)
		r.challenges.put(k, out)
	}
	return out
}

// withResourceMetadata returns dr with resource_metadata="url" added to every
// challenge of its WWW-Authenticate (RFC 9728 §5.1), or dr itself when it has
// none. dr may be shared and is not modified.
func withResourceMetadata(dr *authv3.DeniedHttpResponse, url string) *authv3.DeniedHttpResponse {
	i := -1
	for j, h := range dr.GetHeaders() {
		if h.GetHeader().GetKey() == "www-authenticate" {
			i = j
		}
	}
	if i < 0 {
		return dr
	}
	out := &authv3.DeniedHttpResponse{Status: dr.GetStatus(), Body: dr.GetBody()}
	out.Headers = append(make([]*corev3.HeaderValueOption, 0, len(dr.GetHeaders())), dr.GetHeaders()...)
	out.Headers[i] = header("www-authenticate", appendAuthParam(dr.GetHeaders()[i].GetHeader().GetValue(), `resource_metadata="`+url+`"`))
	return out
}

// appendAuthParam adds param to each challenge of a WWW-Authenticate value
// (RFC 9110 §11.6.1: challenges and their auth-params are both separated by
// commas; a challenge starts where a token is not followed by "=").
func appendAuthParam(challenges, param string) string {
	var b strings.Builder
	b.Grow(len(challenges) + 2*(len(param)+2))
	finish := func(hasParams bool) {
		if hasParams {
			b.WriteString(", ")
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(param)
	}
	start, hasParams, inQuote := 0, false, false
	for i := 0; i < len(challenges); i++ {
		c := challenges[i]
		switch {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '=':
			hasParams = true
		case c == ',' && startsChallenge(challenges[i+1:]):
			b.WriteString(challenges[start:i])
			finish(hasParams)
			start, hasParams = i, false
		}
	}
	b.WriteString(challenges[start:])
	finish(hasParams)
	return b.String()
}

// startsChallenge reports whether s (what follows a comma) begins a new
// challenge: an auth-scheme token not followed by "=".
func startsChallenge(s string) bool {
	s = strings.TrimLeft(s, " \t")
	n := 0
	for n < len(s) && isTChar(s[n]) {
		n++
	}
	if n == 0 {
		return false
	}
	rest := strings.TrimLeft(s[n:], " \t")
	return rest == "" || rest[0] != '='
}

// isTChar is RFC 9110 §5.6.2's tchar.
func isTChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
