package proxy

import (
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Plan is what the proxy would do with one request up to the ext_authz
// filter's Check, worked out by the same code that serves requests (path
// normalisation, virtual host and route selection, per-route filter
// settings, the CheckRequest), without sending anything anywhere.
// `stepup-authz check --envoy` is built on it.
type Plan struct {
	// Status, when not 0, is the proxy's own answer before any Check: 400 or
	// 307 from path normalisation, 404 when no route matches.
	Status int
	// Details says why, as Envoy's %RESPONSE_CODE_DETAILS% would
	// ("path_normalization_failed", "route_not_found"), or "ext_authz_disabled"
	// when the route sends no Check and goes upstream unchecked.
	Details string
	// Route is the selected route; nil when none matched.
	Route *Route
	// Check is the CheckRequest the ext_authz filter would send; nil when
	// none is sent.
	Check *authv3.CheckRequest
	// NotRun names the HTTP filters that run before ext_authz on this route
	// and that a plan does not run (cors, jwt_authn): a CORS preflight would
	// be answered by the CORS filter, and jwt_authn's verified payload is
	// missing from Check.Attributes.MetadataContext.
	NotRun []string
}

// Plan works out what the proxy would do with r (its Method, RequestURI or
// URL, Host and Header are read; nothing is sent).
func (p *Proxy) Plan(r *http.Request) *Plan {
	s := &stream{p: p, r: r, id: newStreamID(), start: time.Now(), protocol: protocolString(r)}
	if lr := p.prepareRequest(s); lr != nil {
		return &Plan{Status: lr.status, Details: lr.details}
	}
	s.route = p.hcm.routes.selectRoute(s.headers)
	if s.route == nil {
		// No route: ext_authz checks nothing and the router answers 404
		// (Filter::getPerRouteFlags; route_not_found).
		return &Plan{Status: http.StatusNotFound, Details: "route_not_found"}
	}
	rd := p.describeRoute(s.route)
	plan := &Plan{Route: &rd}
	for _, e := range p.hcm.filters {
		if !s.route.filterEnabled(e) {
			continue
		}
		f, ok := e.factory.(*extAuthzFilter)
		if !ok {
			plan.NotRun = append(plan.NotRun, e.name)
			continue
		}
		skip, ce := f.routeSettings(s.route)
		if skip {
			continue
		}
		plan.Check = f.checkRequest(s, ce)
		return plan
	}
	plan.Details = "ext_authz_disabled"
	return plan
}
