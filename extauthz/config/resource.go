package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/stepup-authz/stepup-authz/policy"
)

// The protected_resource: block (CONTRACT.md, "Protected resource metadata
// (RFC 9728) and scope step-up").
//
// Rules beyond CONTRACT.md that this file decides:
//   - base_url is an origin: scheme://host[:port], https (http only on
//     loopback hosts), no user information, path, query or fragment; a
//     trailing "/" is dropped. A path belongs in the routes' resource_path,
//     so that the well-known URL is always RFC 9728 §3.1's insertion between
//     the host and the path.
//   - authorization_servers are absolute http(s) URLs without query or
//     fragment (RFC 8414 issuer identifiers); absent or [] means every
//     configured issuer.
//   - scopes_supported entries are RFC 6749 scope-tokens.
//   - resource_name has no control characters.

// ProtectedResource is the protected_resource: block; nil when absent.
type ProtectedResource struct {
	// BaseURL is the origin of resource identifiers; "" means derived per
	// request as scheme://authority, like a DPoP proof's htu.
	BaseURL string
	// AuthorizationServers is never empty after validation.
	AuthorizationServers []string
	ScopesSupported      []string
	ResourceName         string
	// DPoPAlgorithms is dpop.algorithms when the config has a dpop: block
	// (the document's dpop_signing_alg_values_supported), else nil.
	DPoPAlgorithms []string
}

var protectedResourceKeys = []string{"base_url", "authorization_servers", "scopes_supported", "resource_name"}

func (b *builder) protectedResource(v any, issuers []Issuer) *ProtectedResource {
	const p = "protected_resource"
	m := b.object(p, v, protectedResourceKeys)
	if m == nil {
		return nil
	}
	pr := &ProtectedResource{}
	if x := m["base_url"]; x != nil {
		if s, ok := b.str(p+".base_url", x); ok {
			pr.BaseURL = b.baseURL(p+".base_url", s)
		}
	}
	if x := m["authorization_servers"]; x != nil {
		if list, ok := b.strList(p+".authorization_servers", x); ok {
			for i, s := range list {
				u, err := url.Parse(s)
				if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") ||
					u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#") {
					b.add(index(p+".authorization_servers", i), "%q is not an issuer identifier: write an absolute https URL without query or fragment, like \"https://idp.example.com\"", s)
				}
			}
			pr.AuthorizationServers = list
		}
	}
	if len(pr.AuthorizationServers) == 0 {
		for _, iss := range issuers {
			if iss.Issuer != "" && !slices.Contains(pr.AuthorizationServers, iss.Issuer) {
				pr.AuthorizationServers = append(pr.AuthorizationServers, iss.Issuer)
			}
		}
	}
	if x := m["scopes_supported"]; x != nil {
		if list, ok := b.strList(p+".scopes_supported", x); ok {
			for i, s := range list {
				if err := policy.CheckScopeToken(s); err != nil {
					b.add(index(p+".scopes_supported", i), "%v", err)
				}
			}
			pr.ScopesSupported = list
		}
	}
	if x := m["resource_name"]; x != nil {
		if s, ok := b.str(p+".resource_name", x); ok {
			if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
				b.add(p+".resource_name", "%q contains a control character", s)
			}
			pr.ResourceName = s
		}
	}
	return pr
}

// baseURL checks base_url and returns it without a trailing "/".
func (b *builder) baseURL(path, s string) string {
	if s == "" {
		return ""
	}
	const example = "https://api.example.com"
	u, err := url.Parse(s)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		b.add(path, "%q is not an absolute URL; write the origin clients connect to, like %q (or leave it out to derive it per request)", s, example)
	case !fetchable(u):
		b.add(path, "%q must use https (%s)", s, loopbackRule)
	case u.User != nil:
		b.add(path, "%q has user information; write the origin alone, like %q", s, example)
	case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		b.add(path, "%q has a query or fragment; write the origin alone, like %q", s, example)
	case u.Path != "" && u.Path != "/":
		b.add(path, "%q has a path; write the origin alone, like %q, and put the path in the routes' resource_path (e.g. resource_path: %q)", s, example, u.Path)
	case policy.CheckHeaderSafe(s) != nil:
		b.add(path, "%q %v", s, policy.CheckHeaderSafe(s))
	}
	return strings.TrimSuffix(s, "/")
}

// resourceWarnings name the policy layers that set resource_path while there
// is no protected_resource block: the field then has no effect (no
// resource_metadata, no document), which is likely not what the author meant.
func (c *Config) resourceWarnings() []string {
	if c.ProtectedResource != nil {
		return nil
	}
	const why = "has no effect without a protected_resource block: no challenge carries resource_metadata and the metadata document is not served; add protected_resource: {} (see README, MCP servers behind Envoy)"
	var out []string
	if c.Default.ResourcePath.Set && c.Default.ResourcePath.Value != "" {
		out = append(out, "policy.default.resource_path "+why)
	}
	for i, r := range c.Routes {
		if r.Layer.ResourcePath.Set && r.Layer.ResourcePath.Value != "" {
			out = append(out, fmt.Sprintf("policy.routes[%d].resource_path (%s) %s", i, r.Name, why))
		}
	}
	return out
}
