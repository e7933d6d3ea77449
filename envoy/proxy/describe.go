package proxy

import (
	"maps"
	"regexp"
	"strings"
)

// Route describes one route of the bootstrap as the proxy reads it: what it
// matches and what its ext_authz filter would tell the authorization server.
// `stepup-authz dev` prints its banner from these, so the banner always says
// what the bootstrap in use says.
type Route struct {
	VirtualHost string
	Name        string
	// Match is the path condition as written in the bootstrap: "prefix /api",
	// "path /healthz", "path_separated_prefix /api" or "safe_regex ^/a$".
	Match string
	// Methods are the values of exact ":method" header matchers (any of them
	// matches); nil means any method.
	Methods []string
	// MoreConditions is true when other header matchers also apply.
	MoreConditions bool
	// AuthzDisabled is true when no ext_authz filter runs on this route (or
	// the bootstrap has none): Envoy sends no Check at all.
	AuthzDisabled bool
	// RouteMetadata is the route's filter_metadata that the ext_authz filter
	// forwards (route_metadata_context_namespaces), by namespace.
	RouteMetadata map[string]map[string]any
	// ContextExtensions are the merged check_settings.context_extensions.
	ContextExtensions map[string]string
}

// ListenAddr returns the listener address the proxy serves on: the
// bootstrap's, or Options.ListenerAddr.
func (p *Proxy) ListenAddr() string { return p.listenAddr }

// Routes returns every route, in the order Envoy tries them within each
// virtual host.
func (p *Proxy) Routes() []Route {
	var out []Route
	for _, vh := range p.hcm.routes.vhosts {
		for _, r := range vh.routes {
			out = append(out, p.describeRoute(r))
		}
	}
	return out
}

func (p *Proxy) describeRoute(r *route) Route {
	d := Route{VirtualHost: r.vh.name, Name: r.name, Match: r.match.describe()}
	for _, hm := range r.match.headers {
		if hm.name == ":method" && hm.str != nil && hm.str.exact != nil && !hm.invert && !hm.str.ignoreCase {
			d.Methods = append(d.Methods, *hm.str.exact)
		} else {
			d.MoreConditions = true
		}
	}
	authz := p.authzFilter()
	if authz == nil || !r.filterEnabled(authz) {
		d.AuthzDisabled = true
		return d
	}
	f := authz.factory.(*extAuthzFilter)
	skip, ce := f.routeSettings(r)
	if skip {
		d.AuthzDisabled = true
		return d
	}
	d.ContextExtensions = maps.Clone(ce)
	for _, ns := range f.routeMetadataNS {
		if s, ok := r.metadata.GetFilterMetadata()[ns]; ok {
			if d.RouteMetadata == nil {
				d.RouteMetadata = map[string]map[string]any{}
			}
			d.RouteMetadata[ns] = s.AsMap()
		}
	}
	return d
}

// authzFilter is the first ext_authz filter of the chain, or nil.
func (p *Proxy) authzFilter() *filterEntry {
	for _, e := range p.hcm.filters {
		if _, ok := e.factory.(*extAuthzFilter); ok {
			return e
		}
	}
	return nil
}

func (m *routeMatch) describe() string {
	switch {
	case m.prefix != nil:
		return "prefix " + *m.prefix
	case m.path != nil:
		return "path " + *m.path
	case m.separated != nil:
		return "path_separated_prefix " + *m.separated
	case m.re != nil:
		return "safe_regex " + unanchor(m.re)
	}
	return ""
}

// unanchor gives back the regex as written (compileRegex anchors it).
func unanchor(re *regexp.Regexp) string {
	return strings.TrimSuffix(strings.TrimPrefix(re.String(), "^(?:"), ")$")
}
