package policy

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
)

// RouteMatch selects requests for a config route. Every condition that is
// given must hold; an empty match selects everything.
type RouteMatch struct {
	Hosts      []string // compared case-insensitively, any port stripped
	Path       string   // exact, after normalisation
	PathPrefix string
	PathRegex  *regexp.Regexp // RE2, anchored to the whole path as Envoy's safe_regex
	Methods    []string       // upper case
}

// Route is one entry of policy.routes.
type Route struct {
	Name  string
	Match RouteMatch
	Layer Layer
}

// CompileRegex anchors a path_regex the way Envoy's safe_regex matches: the
// whole path, not a substring.
func CompileRegex(expr string) (*regexp.Regexp, error) {
	// Compile alone first: "/a)|(.*" is invalid, but wrapped it would compile
	// into a pattern that matches every path.
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// Request is what route matching looks at.
type Request struct {
	Host   string
	Method string
	// Path is as Envoy sends it: possibly with a query string, not normalised.
	Path string
}

// MatchRoute returns the first route that matches, or nil. Paths are
// normalised first (see NormalizePath); a path that cannot be normalised
// without guessing is an error, never a silent fallthrough to a looser rule.
func MatchRoute(routes []Route, r Request) (*Route, error) {
	if len(routes) == 0 {
		return nil, nil
	}
	path, err := NormalizePath(r.Path)
	if err != nil {
		return nil, err
	}
	host := normalizeHost(r.Host)
	for i := range routes {
		if routes[i].Match.matches(host, r.Method, path) {
			return &routes[i], nil
		}
	}
	return nil, nil
}

func (m *RouteMatch) matches(host, method, path string) bool {
	// Configured hosts are normalised here too, so a route written as
	// "App.example.com:443" cannot silently never match.
	if len(m.Hosts) > 0 && !slices.ContainsFunc(m.Hosts, func(h string) bool { return normalizeHost(h) == host }) {
		return false
	}
	if len(m.Methods) > 0 && !slices.Contains(m.Methods, strings.ToUpper(method)) {
		return false
	}
	if m.Path != "" && path != m.Path {
		return false
	}
	if m.PathPrefix != "" && !strings.HasPrefix(path, m.PathPrefix) {
		return false
	}
	if m.PathRegex != nil && !m.PathRegex.MatchString(path) {
		return false
	}
	return true
}

// NormalizeHost lower-cases a host and strips any port, for config values.
func NormalizeHost(h string) string { return normalizeHost(h) }

func normalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// ValidateMatch reports match values that could never match a normalised request.
func ValidateMatch(m RouteMatch) error {
	for _, p := range []string{m.Path, m.PathPrefix} {
		if p == "" {
			continue
		}
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("%q must start with /", p)
		}
		if n, err := NormalizePath(p); err != nil {
			return err
		} else if n != p {
			return fmt.Errorf("%q is not normalised (requests are matched as %q)", p, n)
		}
	}
	return nil
}
