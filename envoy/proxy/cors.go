package proxy

import (
	"fmt"
	"net/http"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"google.golang.org/protobuf/proto"
)

// corsFilter is envoy.filters.http.cors with its policies in
// typed_per_filter_config (source/extensions/filters/http/cors/cors_filter.cc).
type corsFilter struct {
	name string
}

// corsPolicy is one CorsPolicy; unset string fields are "".
type corsPolicy struct {
	origins             []*stringMatcher
	allowMethods        string
	allowHeaders        string
	exposeHeaders       string
	maxAge              string
	allowCredentials    *bool
	forwardNotMatchingP *bool
}

func buildCors(path, name string, c *corsv3.Cors) (*corsFilter, error) {
	if err := only(path, c); err != nil {
		return nil, err
	}
	return &corsFilter{name: name}, nil
}

func (f *corsFilter) perRoute(path string, m proto.Message) (any, error) {
	cp, ok := m.(*corsv3.CorsPolicy)
	if !ok {
		return nil, unsupported(path, fmt.Sprintf("%T for the CORS filter; expected a CorsPolicy", m))
	}
	// filter_enabled / shadow_enabled (runtime fractions) and private network
	// access are not implemented.
	if err := only(path, cp, "allow_origin_string_match", "allow_methods", "allow_headers", "expose_headers",
		"max_age", "allow_credentials", "forward_not_matching_preflights"); err != nil {
		return nil, err
	}
	pol := &corsPolicy{
		allowMethods:  cp.GetAllowMethods(),
		allowHeaders:  cp.GetAllowHeaders(),
		exposeHeaders: cp.GetExposeHeaders(),
		maxAge:        cp.GetMaxAge(),
	}
	if cp.GetAllowCredentials() != nil {
		v := cp.GetAllowCredentials().GetValue()
		pol.allowCredentials = &v
	}
	if cp.GetForwardNotMatchingPreflights() != nil {
		v := cp.GetForwardNotMatchingPreflights().GetValue()
		pol.forwardNotMatchingP = &v
	}
	for i, sm := range cp.GetAllowOriginStringMatch() {
		m, err := newStringMatcher(indexed(join(path, "allow_origin_string_match"), i), sm)
		if err != nil {
			return nil, err
		}
		pol.origins = append(pol.origins, m)
	}
	return pol, nil
}

type corsStream struct {
	f *corsFilter
	// policies, most specific (route) first, as CorsFilter::initializeCorsPolicies
	// orders them; each accessor takes the first policy that sets the field.
	policies      []*corsPolicy
	isCorsRequest bool
	latchedOrigin string
}

func (f *corsFilter) newStream(s *stream) filterStream { return &corsStream{f: f} }

func (c *corsStream) origins() []*stringMatcher {
	for _, p := range c.policies {
		if len(p.origins) > 0 {
			return p.origins
		}
	}
	return nil
}

func (c *corsStream) str(get func(*corsPolicy) string) string {
	for _, p := range c.policies {
		if v := get(p); v != "" {
			return v
		}
	}
	return ""
}

func (c *corsStream) flag(get func(*corsPolicy) *bool, def bool) bool {
	for _, p := range c.policies {
		if v := get(p); v != nil {
			return *v
		}
	}
	return def
}

func (c *corsStream) allowCredentials() bool {
	return c.flag(func(p *corsPolicy) *bool { return p.allowCredentials }, false)
}

// decodeHeaders answers a CORS preflight (OPTIONS with a non-empty Origin and
// Access-Control-Request-Method) itself, so it never reaches later filters
// such as ext_authz (CorsFilter::decodeHeaders).
func (c *corsStream) decodeHeaders(s *stream) *localReply {
	if s.route == nil {
		return nil
	}
	for _, pf := range s.route.perFilterConfigs(c.f.name) {
		if pol, ok := pf.cfg.(*corsPolicy); ok {
			c.policies = append([]*corsPolicy{pol}, c.policies...)
		}
	}
	if len(c.policies) == 0 {
		// Policies on the route itself (RouteAction.cors) are deprecated and
		// refused at load, so no policy means the filter does nothing.
		return nil
	}
	origin := s.headers.value("origin")
	if origin == "" {
		return nil
	}
	allowed := false
	for _, m := range c.origins() {
		if m.match("*") || m.match(origin) {
			allowed = true
			break
		}
	}
	if allowed {
		c.latchedOrigin = origin
	}
	c.isCorsRequest = true
	if s.headers.value(":method") != http.MethodOptions || s.headers.value("access-control-request-method") == "" {
		return nil
	}
	// forward_not_matching_preflights defaults to true.
	if !allowed && c.flag(func(p *corsPolicy) *bool { return p.forwardNotMatchingP }, true) {
		return nil
	}
	return &localReply{status: http.StatusOK, details: "cors_response", modify: func(h *headerMap) {
		if allowed {
			h.set("access-control-allow-origin", origin)
		}
		if c.allowCredentials() {
			h.set("access-control-allow-credentials", "true")
		}
		if m := c.str(func(p *corsPolicy) string { return p.allowMethods }); m != "" {
			if m == "*" {
				m = s.headers.value("access-control-request-method")
			}
			h.set("access-control-allow-methods", m)
		}
		if hs := c.str(func(p *corsPolicy) string { return p.allowHeaders }); hs != "" {
			if hs == "*" {
				hs = s.headers.value("access-control-request-headers")
			}
			h.set("access-control-allow-headers", hs)
		}
		if ma := c.str(func(p *corsPolicy) string { return p.maxAge }); ma != "" {
			h.set("access-control-max-age", ma)
		}
	}}
}

// encodeHeaders adds the CORS response headers to every response of a CORS
// request whose origin matched, local replies included (a denial from
// ext_authz gets Access-Control-Expose-Headers too) (CorsFilter::encodeHeaders).
func (c *corsStream) encodeHeaders(s *stream, h *headerMap) {
	if !c.isCorsRequest || c.latchedOrigin == "" {
		return
	}
	h.set("access-control-allow-origin", c.latchedOrigin)
	if c.allowCredentials() {
		h.set("access-control-allow-credentials", "true")
	}
	if eh := c.str(func(p *corsPolicy) string { return p.exposeHeaders }); eh != "" {
		h.set("access-control-expose-headers", eh)
	}
}
