package policy

import (
	"regexp"
	"strings"
	"testing"
)

func mustRegex(t *testing.T, expr string) *regexp.Regexp {
	t.Helper()
	re, err := CompileRegex(expr)
	if err != nil {
		t.Fatalf("CompileRegex(%q): %v", expr, err)
	}
	return re
}

func route(name string, m RouteMatch) Route { return Route{Name: name, Match: m} }

func TestMatchRoute(t *testing.T) {
	payout := route("payout", RouteMatch{Hosts: []string{"app.example.com"}, PathPrefix: "/api/payout-destination", Methods: []string{"POST"}})
	tests := []struct {
		name   string
		routes func(t *testing.T) []Route
		req    Request
		want   string // the matched route's name; "" for no match
	}{
		// first match wins
		{
			name:   "the first matching route wins over a later, more specific one",
			routes: func(*testing.T) []Route { return []Route{route("api", RouteMatch{PathPrefix: "/api/"}), payout} },
			req:    Request{Host: "app.example.com", Method: "POST", Path: "/api/payout-destination"},
			want:   "api",
		},
		{
			name:   "a route that does not match is skipped for the next",
			routes: func(*testing.T) []Route { return []Route{route("admin", RouteMatch{PathPrefix: "/admin"}), payout} },
			req:    Request{Host: "app.example.com", Method: "POST", Path: "/api/payout-destination"},
			want:   "payout",
		},
		{
			name:   "no matching route is no match",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com", Method: "POST", Path: "/api/profile"},
		},
		{
			name:   "an empty match selects everything",
			routes: func(*testing.T) []Route { return []Route{route("all", RouteMatch{})} },
			req:    Request{Host: "anything", Method: "DELETE", Path: "/whatever?x"},
			want:   "all",
		},

		// hosts
		{
			name:   "the host compares case-insensitively with the port stripped",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "APP.example.com:8443", Method: "POST", Path: "/api/payout-destination"},
			want:   "payout",
		},
		{
			name:   "a configured host in mixed case still matches",
			routes: func(*testing.T) []Route { return []Route{route("r", RouteMatch{Hosts: []string{"App.Example.COM"}})} },
			req:    Request{Host: "app.example.com", Path: "/"},
			want:   "r",
		},
		{
			name: "a configured host with a port matches the host on any port",
			routes: func(*testing.T) []Route {
				return []Route{route("r", RouteMatch{Hosts: []string{"app.example.com:443"}})}
			},
			req:  Request{Host: "app.example.com:8443", Path: "/"},
			want: "r",
		},
		{
			name:   "a fully qualified host with a trailing dot matches",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com.", Method: "POST", Path: "/api/payout-destination"},
			want:   "payout",
		},
		{
			name: "any of several hosts matches",
			routes: func(*testing.T) []Route {
				return []Route{route("r", RouteMatch{Hosts: []string{"a.example.com", "b.example.com"}})}
			},
			req:  Request{Host: "b.example.com", Path: "/"},
			want: "r",
		},
		{
			name:   "a bracketed IPv6 host with a port matches",
			routes: func(*testing.T) []Route { return []Route{route("r", RouteMatch{Hosts: []string{"::1"}})} },
			req:    Request{Host: "[::1]:9000", Path: "/"},
			want:   "r",
		},
		{
			name:   "another host does not match",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "evil.example.com", Method: "POST", Path: "/api/payout-destination"},
		},
		{
			name:   "a host that merely starts with the configured one does not match",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com.evil.test", Method: "POST", Path: "/api/payout-destination"},
		},
		{
			name:   "a missing host does not match a host rule",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Method: "POST", Path: "/api/payout-destination"},
		},

		// methods
		{
			name:   "another method does not match",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com", Method: "GET", Path: "/api/payout-destination"},
		},
		{
			name:   "a lower-case request method matches an upper-case rule",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com", Method: "post", Path: "/api/payout-destination"},
			want:   "payout",
		},
		{
			name:   "any of several methods matches",
			routes: func(*testing.T) []Route { return []Route{route("r", RouteMatch{Methods: []string{"PUT", "PATCH"}})} },
			req:    Request{Method: "PATCH", Path: "/"},
			want:   "r",
		},

		// all conditions
		{
			name:   "the right host and method on another path does not match",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com", Method: "POST", Path: "/api/payouts"},
		},
		{
			name:   "the right path and method on another host does not match",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "api.example.com", Method: "POST", Path: "/api/payout-destination/1"},
		},
		{
			name: "path, prefix and regex must all hold",
			routes: func(t *testing.T) []Route {
				return []Route{route("r", RouteMatch{PathPrefix: "/api/", PathRegex: mustRegex(t, `/api/v[0-9]+/.*`)})}
			},
			req: Request{Path: "/api/x/v1/y"},
		},

		// path
		{
			name:   "an exact path matches the same path",
			routes: func(*testing.T) []Route { return []Route{route("r", RouteMatch{Path: "/api/keys"})} },
			req:    Request{Path: "/api/keys?page=2"},
			want:   "r",
		},
		{
			name:   "an exact path matches a spelling that normalises to it",
			routes: func(*testing.T) []Route { return []Route{route("r", RouteMatch{Path: "/api/keys"})} },
			req:    Request{Path: "/api/v1/../%6Beys"},
			want:   "r",
		},
		{
			name:   "an exact path does not match a sub-path",
			routes: func(*testing.T) []Route { return []Route{route("r", RouteMatch{Path: "/api/keys"})} },
			req:    Request{Path: "/api/keys/1"},
		},
		{
			name:   "an exact path does not match the same path with a trailing slash",
			routes: func(*testing.T) []Route { return []Route{route("r", RouteMatch{Path: "/api/keys"})} },
			req:    Request{Path: "/api/keys/"},
		},

		// path_prefix
		{
			name:   "a prefix matches a repeated-slash spelling",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com", Method: "POST", Path: "/api//payout-destination"},
			want:   "payout",
		},
		{
			name:   "a prefix matches an encoded-letter spelling",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com", Method: "POST", Path: "/api/%70ayout-destination"},
			want:   "payout",
		},
		{
			name:   "a prefix matches a dot-dot detour into it",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com", Method: "POST", Path: "/api/public/../payout-destination"},
			want:   "payout",
		},
		{
			name:   "a prefix does not match a dot-dot detour out of it",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com", Method: "POST", Path: "/api/payout-destination/../profile"},
		},
		{
			name:   "a prefix is case-sensitive",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com", Method: "POST", Path: "/API/payout-destination"},
		},
		{
			name:   "a prefix is a string prefix, as in Envoy",
			routes: func(*testing.T) []Route { return []Route{payout} },
			req:    Request{Host: "app.example.com", Method: "POST", Path: "/api/payout-destinations"},
			want:   "payout",
		},

		// path_regex
		{
			name:   "a regex matches the whole path",
			routes: func(t *testing.T) []Route { return []Route{route("r", RouteMatch{PathRegex: mustRegex(t, `/api/.*`)})} },
			req:    Request{Path: "/api/y"},
			want:   "r",
		},
		{
			name:   "a regex does not match a path it is only inside of",
			routes: func(t *testing.T) []Route { return []Route{route("r", RouteMatch{PathRegex: mustRegex(t, `/api/.*`)})} },
			req:    Request{Path: "/x/api/y"},
		},
		{
			name: "a regex does not match a path it is only a prefix of",
			routes: func(t *testing.T) []Route {
				return []Route{route("r", RouteMatch{PathRegex: mustRegex(t, `/api/keys/[0-9]+`)})}
			},
			req: Request{Path: "/api/keys/12/rotate"},
		},
		{
			name:   "an alternation is anchored as a whole",
			routes: func(t *testing.T) []Route { return []Route{route("r", RouteMatch{PathRegex: mustRegex(t, `/a|/b`)})} },
			req:    Request{Path: "/x/b"},
		},
		{
			name: "a regex sees the path without its query",
			routes: func(t *testing.T) []Route {
				return []Route{route("r", RouteMatch{PathRegex: mustRegex(t, `/api/keys/[0-9]+`)})}
			},
			req:  Request{Path: "/api/keys/12?x=/y"},
			want: "r",
		},
		{
			name: "a regex sees the normalised path",
			routes: func(t *testing.T) []Route {
				return []Route{route("r", RouteMatch{PathRegex: mustRegex(t, `/api/keys/[0-9]+`)})}
			},
			req:  Request{Path: "/api//keys/./%31%32"},
			want: "r",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MatchRoute(tt.routes(t), tt.req)
			if err != nil {
				t.Fatalf("MatchRoute: %v", err)
			}
			name := ""
			if got != nil {
				name = got.Name
			}
			if name != tt.want {
				t.Errorf("matched %q, want %q", name, tt.want)
			}
		})
	}
}

func TestMatchRouteReturnsPathErrors(t *testing.T) {
	routes := []Route{
		route("payout", RouteMatch{PathPrefix: "/api/payout-destination"}),
		route("rest", RouteMatch{}),
	}
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{"an encoded slash is an error, not a fall-through to a looser route", "/api%2Fpayout-destination", "%2F"},
		{"an encoded backslash is an error", "/api/payout-destination%5Cx", "%5C"},
		{"a literal backslash is an error", `/api\payout-destination`, "backslash"},
		{"a malformed escape is an error", "/api/payout-destination%", "malformed percent-encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MatchRoute(routes, Request{Host: "app.example.com", Method: "POST", Path: tt.path})
			if err == nil {
				t.Fatalf("MatchRoute(%q) = %v, nil; want an error", tt.path, got)
			}
			if got != nil {
				t.Errorf("MatchRoute(%q) returned route %q with its error", tt.path, got.Name)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestMatchRouteWithoutRoutes(t *testing.T) {
	// With no config routes there is nothing to match and nothing to guess,
	// so even an unnormalisable path is no match rather than an error.
	for _, routes := range [][]Route{nil, {}} {
		got, err := MatchRoute(routes, Request{Path: "/api%2Fx"})
		if got != nil || err != nil {
			t.Errorf("MatchRoute(%v) = %v, %v; want nil, nil", routes, got, err)
		}
	}
}

func TestMatchRouteReturnsTheRouteItself(t *testing.T) {
	routes := []Route{route("a", RouteMatch{PathPrefix: "/a"}), route("b", RouteMatch{PathPrefix: "/b"})}
	got, err := MatchRoute(routes, Request{Path: "/b"})
	if err != nil || got != &routes[1] {
		t.Errorf("MatchRoute = %p, %v; want &routes[1] (%p)", got, err, &routes[1])
	}
}

func TestCompileRegex(t *testing.T) {
	tests := []struct {
		name    string
		expr    string
		path    string
		want    bool
		wantErr string
	}{
		{name: "a pattern matches the whole path", expr: `/api/.*`, path: "/api/x", want: true},
		{name: "a pattern does not match inside a path", expr: `/api/.*`, path: "/x/api/y"},
		{name: "a pattern does not match a longer path", expr: `/api`, path: "/api/x"},
		{name: "an explicitly anchored pattern still works", expr: `^/api/[a-z]+$`, path: "/api/keys", want: true},
		{name: "an alternation is grouped before anchoring", expr: `/a|/b`, path: "/b", want: true},
		{name: "an alternation does not match a suffix", expr: `/a|/b`, path: "/x/b"},
		{name: "an alternation does not match a prefix", expr: `/a|/b`, path: "/a/x"},
		{name: "an invalid pattern is an error", expr: `/api/(`, wantErr: "missing closing )"},
		{name: "a Perl lookahead is not RE2 and is an error", expr: `/api/(?!admin)`, wantErr: "invalid or unsupported Perl syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			re, err := CompileRegex(tt.expr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CompileRegex(%q) error = %v, want one containing %q", tt.expr, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := re.MatchString(tt.path); got != tt.want {
				t.Errorf("%q matches %q: %v, want %v", tt.expr, tt.path, got, tt.want)
			}
		})
	}
}

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"a lower-case host is unchanged", "app.example.com", "app.example.com"},
		{"case is folded", "APP.Example.COM", "app.example.com"},
		{"a port is stripped", "app.example.com:8443", "app.example.com"},
		{"case is folded and a port stripped together", "APP.example.com:8443", "app.example.com"},
		{"a trailing dot is stripped", "app.example.com.", "app.example.com"},
		{"a trailing dot before a port is stripped", "app.example.com.:443", "app.example.com"},
		{"a bracketed IPv6 address with a port loses both", "[::1]:8443", "::1"},
		{"a bracketed IPv6 address loses its brackets", "[::1]", "::1"},
		{"a bare IPv6 address is unchanged", "::1", "::1"},
		{"an IPv4 address loses its port", "127.0.0.1:9191", "127.0.0.1"},
		{"an empty host stays empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NormalizeHost(tt.in); got != tt.want {
				t.Errorf("NormalizeHost(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidateMatch(t *testing.T) {
	tests := []struct {
		name    string
		m       RouteMatch
		wantErr string
	}{
		{name: "an empty match is valid", m: RouteMatch{}},
		{name: "a normalised path and prefix are valid", m: RouteMatch{Path: "/api/keys", PathPrefix: "/api/"}},
		{name: "a prefix with a trailing slash is valid", m: RouteMatch{PathPrefix: "/api/payout-destination/"}},
		{name: "a path without a leading slash is refused", m: RouteMatch{Path: "api/keys"}, wantErr: `"api/keys" must start with /`},
		{name: "a prefix without a leading slash is refused", m: RouteMatch{PathPrefix: "api"}, wantErr: `"api" must start with /`},
		{name: "a prefix with a repeated slash could never match", m: RouteMatch{PathPrefix: "/api//x"}, wantErr: `"/api//x" is not normalised (requests are matched as "/api/x")`},
		{name: "a path with a dot-dot could never match", m: RouteMatch{Path: "/a/../b"}, wantErr: `"/a/../b" is not normalised (requests are matched as "/b")`},
		{name: "a prefix with an encoded letter could never match", m: RouteMatch{PathPrefix: "/%61pi"}, wantErr: `"/%61pi" is not normalised (requests are matched as "/api")`},
		{name: "a prefix with a lower-case escape could never match", m: RouteMatch{PathPrefix: "/a%3a"}, wantErr: `(requests are matched as "/a%3A")`},
		{name: "a prefix with raw non-ASCII could never match", m: RouteMatch{PathPrefix: "/café"}, wantErr: `"/café" is not normalised (requests are matched as "/caf%C3%A9")`},
		{name: "a path with a raw space could never match", m: RouteMatch{Path: "/a b"}, wantErr: `(requests are matched as "/a%20b")`},
		{name: "a prefix with a query could never match", m: RouteMatch{PathPrefix: "/api?x"}, wantErr: `(requests are matched as "/api")`},
		{name: "a prefix with an encoded slash is refused", m: RouteMatch{PathPrefix: "/api%2Fx"}, wantErr: "encoded slash"},
		{name: "a path with a backslash is refused", m: RouteMatch{Path: `/api\x`}, wantErr: "backslash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateMatch(tt.m)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCompileRegexRefusesWhatOnlyCompilesWhenWrapped(t *testing.T) {
	if _, err := CompileRegex("/a)|(.*"); err == nil {
		t.Fatal(`"/a)|(.*" compiled; wrapped it would match every path`)
	}
}
