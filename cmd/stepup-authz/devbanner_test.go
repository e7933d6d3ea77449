//go:build !serveronly

package main

import (
	"testing"

	"github.com/stepup-authz/stepup-authz/envoy/proxy"
)

func TestRouteSummary(t *testing.T) {
	md := func(m map[string]any) map[string]map[string]any { return map[string]map[string]any{"stepup": m} }
	for _, c := range []struct {
		name  string
		route proxy.Route
		want  string
	}{
		{"ext_authz disabled needs no token", proxy.Route{AuthzDisabled: true}, "no token (ext_authz disabled on this route)"},
		{"acr and max_age from metadata", proxy.Route{RouteMetadata: md(map[string]any{"required_acr": "aal2", "max_age": 120.0})}, "aal2, authenticated within 120 s"},
		{"a duration string is shown in seconds", proxy.Route{RouteMetadata: md(map[string]any{"max_age": "5m"})}, "authenticated within 300 s"},
		{"context extensions count too", proxy.Route{ContextExtensions: map[string]string{"required_acr": "aal3"}}, "aal3"},
		{"metadata wins over context extensions field by field",
			proxy.Route{RouteMetadata: md(map[string]any{"required_acr": "aal2"}), ContextExtensions: map[string]string{"required_acr": "aal3", "max_age": "60"}},
			"aal2, authenticated within 60 s"},
		{"machine scopes are named", proxy.Route{RouteMetadata: md(map[string]any{"machine_scopes": []any{"a:b"}})}, "any valid token; machine tokens need a:b"},
		{"mode off needs no token", proxy.Route{RouteMetadata: md(map[string]any{"mode": "off", "required_acr": "aal2"})}, "no token (mode off)"},
		{"dry_run says it never denies", proxy.Route{RouteMetadata: md(map[string]any{"mode": "dry_run", "required_acr": "aal2"})}, "aal2 (dry_run: reported, never denied)"},
		{"another namespace is not the server's", proxy.Route{RouteMetadata: map[string]map[string]any{"other": {"required_acr": "aal2"}}}, "any valid token"},
		{"required_scopes alone", proxy.Route{RouteMetadata: md(map[string]any{"required_scopes": "mcp:tools", "resource_path": "/mcp"})}, "a token with scope mcp:tools (RFC 9728 resource /mcp)"},
		{"required_scopes with step-up", proxy.Route{RouteMetadata: md(map[string]any{"required_acr": "aal2", "required_scopes": []any{"a", "b"}})}, "aal2, scope a b"},
		{"the well-known path is answered by the server", proxy.Route{Match: "path_separated_prefix /.well-known/oauth-protected-resource"}, "GET/HEAD: the RFC 9728 metadata document, no token (with protected_resource); otherwise any valid token"},
		{"a policy the server cannot read is a 500", proxy.Route{RouteMetadata: md(map[string]any{"required_acr": "aal9"})}, `policy_error (500): required_acr: "aal9" is not one of acr_levels [aal1 aal2 aal3]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := routeSummary(c.route); got != c.want {
				t.Errorf("routeSummary = %q, want %q", got, c.want)
			}
		})
	}
}

func TestStepUpExample(t *testing.T) {
	md := func(m map[string]any) map[string]map[string]any { return map[string]map[string]any{"stepup": m} }
	for _, c := range []struct {
		name   string
		routes []proxy.Route
		want   devExample
		ok     bool
	}{
		{"the first step-up route, one level below its requirement",
			[]proxy.Route{
				{Match: "prefix /api/prefs", RouteMetadata: md(map[string]any{"name": "prefs"})},
				{Match: "prefix /api/keys", Methods: []string{"PUT"}, RouteMetadata: md(map[string]any{"required_acr": "aal3"})},
			},
			devExample{method: "PUT", path: "/api/keys", weakWhat: "a weaker sign-in (aal2)", weakArgs: "--acr aal2", strongLevel: "aal3"}, true},
		{"max_age alone: a sign-in just too old",
			[]proxy.Route{{Match: "path /api/x", RouteMetadata: md(map[string]any{"max_age": 60.0})}},
			devExample{method: "POST", path: "/api/x", weakWhat: "a sign-in older than max_age", weakArgs: "--acr aal1 --age 2m0s", strongLevel: "aal1"}, true},
		{"the lowest level: a token without acr",
			[]proxy.Route{{Match: "path /api/x", RouteMetadata: md(map[string]any{"required_acr": "aal1"})}},
			devExample{method: "POST", path: "/api/x", weakWhat: "a token without acr", weakArgs: "--acr ''", strongLevel: "aal1"}, true},
		{"regex routes and routes with header conditions are skipped",
			[]proxy.Route{
				{Match: "safe_regex /api/.*", RouteMetadata: md(map[string]any{"required_acr": "aal2"})},
				{Match: "prefix /api", MoreConditions: true, RouteMetadata: md(map[string]any{"required_acr": "aal2"})},
				{Match: "prefix /x", AuthzDisabled: true},
			},
			devExample{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := stepUpExample(c.routes)
			if ok != c.ok || got != c.want {
				t.Errorf("stepUpExample = %+v, %v; want %+v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}
