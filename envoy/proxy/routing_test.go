package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// stepupServer denies /api/* with a step-up challenge unless the request
// carries "authorization: Bearer good", and allows the rest, setting
// x-stepup-sub; every reply carries decision/reason dynamic metadata.
func stepupServer(req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	h := req.GetAttributes().GetRequest().GetHttp()
	md := func(decision, reason string) *structpb.Struct {
		s, _ := structpb.NewStruct(map[string]any{"decision": decision, "reason": reason})
		return s
	}
	if strings.HasPrefix(h.GetPath(), "/api/") && h.GetHeaders()["authorization"] != "Bearer good" {
		r := deny(typev3.StatusCode_Unauthorized, `{"error":"unauthorized"}`,
			overwrite("www-authenticate", "Bearer"), overwrite("content-type", "application/json"))
		r.DynamicMetadata = md("deny", "token_missing")
		return r, nil
	}
	r := allow()
	r.GetOkResponse().Headers = append(r.GetOkResponse().Headers, overwrite("x-stepup-sub", "alice"))
	r.DynamicMetadata = md("allow", "allowed")
	return r, nil
}

func TestShippedEnvoyYAML(t *testing.T) {
	const origin = "http://localhost:3000"
	routeName := func(req *authv3.CheckRequest) string {
		return req.GetAttributes().GetRouteMetadataContext().GetFilterMetadata()["stepup"].GetFields()["name"].GetStringValue()
	}
	tests := []struct {
		name       string
		method     string
		target     string
		headers    []string
		wantStatus int
		wantChecks int
		// checks on the single CheckRequest, when wantChecks is 1
		wantPath  string
		wantRoute string
		// response headers that must be present / absent
		wantHeaders map[string]string
		wantAbsent  []string
		wantUp      bool
		upAbsent    []string
	}{
		{
			name:       "the healthz route skips the check and strips client-sent x-stepup headers",
			target:     "/healthz",
			headers:    []string{"X-Stepup-Sub: forged", "X-Stepup-Acr: aal3", "X-Stepup-Dry-Run: allowed"},
			wantStatus: http.StatusOK,
			wantUp:     true,
			upAbsent:   []string{"X-Stepup-Sub", "X-Stepup-Acr", "X-Stepup-Dry-Run"},
		},
		{
			name:       "payout-destination's route metadata reaches the check",
			target:     "/api/payout-destination",
			headers:    []string{"Authorization: Bearer good", "X-Stepup-Sub: forged"},
			wantStatus: http.StatusOK,
			wantChecks: 1,
			wantPath:   "/api/payout-destination",
			wantRoute:  "payout-destination",
			wantUp:     true,
		},
		{
			name:       "DELETE on /api/account selects delete-account through its :method matcher",
			method:     http.MethodDelete,
			target:     "/api/account",
			headers:    []string{"Authorization: Bearer good"},
			wantStatus: http.StatusOK,
			wantChecks: 1,
			wantRoute:  "delete-account",
			wantUp:     true,
		},
		{
			name:       "GET on /api/account falls through to the default route",
			target:     "/api/account",
			headers:    []string{"Authorization: Bearer good"},
			wantStatus: http.StatusOK,
			wantChecks: 1,
			wantRoute:  "default",
			wantUp:     true,
		},
		{
			name:       "an encoded slash is rejected with 400 before any check",
			target:     "/api%2Fpayout-destination",
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "an encoded backslash is rejected with 400 before any check",
			target:     "/api/payout-destination%5c..%5cadmin",
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "dot segments are resolved and slashes merged before routing",
			target:     "/static/../api//./payout-destination///x",
			headers:    []string{"Authorization: Bearer good"},
			wantStatus: http.StatusOK,
			wantChecks: 1,
			wantPath:   "/api/payout-destination/x",
			wantRoute:  "payout-destination",
			wantUp:     true,
		},
		{
			name:       "percent-encoded unreserved characters are decoded before routing",
			target:     "/api/%70ayout%2Ddestination",
			headers:    []string{"Authorization: Bearer good"},
			wantStatus: http.StatusOK,
			wantChecks: 1,
			wantPath:   "/api/payout-destination",
			wantRoute:  "payout-destination",
			wantUp:     true,
		},
		{
			name:       "the query string is kept and not normalised",
			target:     "/api/payout-destination?next=/a/../b&x=%2F",
			headers:    []string{"Authorization: Bearer good"},
			wantStatus: http.StatusOK,
			wantChecks: 1,
			wantPath:   "/api/payout-destination?next=/a/../b&x=%2F",
			wantRoute:  "payout-destination",
			wantUp:     true,
		},
		{
			name:       "a denial reaches the client with the CORS headers",
			target:     "/api/payout-destination",
			headers:    []string{"Origin: " + origin},
			wantStatus: http.StatusUnauthorized,
			wantChecks: 1,
			wantHeaders: map[string]string{
				"Access-Control-Allow-Origin":   origin,
				"Access-Control-Expose-Headers": "www-authenticate, dpop-nonce",
				"Www-Authenticate":              "Bearer",
				"Content-Type":                  "application/json",
			},
		},
		{
			name:       "a CORS preflight is answered by the CORS filter without calling ext_authz",
			method:     http.MethodOptions,
			target:     "/api/payout-destination",
			headers:    []string{"Origin: " + origin, "Access-Control-Request-Method: POST", "Access-Control-Request-Headers: authorization, dpop"},
			wantStatus: http.StatusOK,
			wantHeaders: map[string]string{
				"Access-Control-Allow-Origin":  origin,
				"Access-Control-Allow-Methods": "GET, POST, DELETE, PUT, OPTIONS",
				"Access-Control-Allow-Headers": "authorization, content-type, dpop",
			},
		},
		{
			name:       "a request without Origin gets no CORS headers",
			target:     "/api/payout-destination",
			wantStatus: http.StatusUnauthorized,
			wantChecks: 1,
			wantAbsent: []string{"Access-Control-Allow-Origin", "Access-Control-Expose-Headers"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authz := startAuthz(t, stepupServer)
			up := startUpstream(t)
			f := startProxy(t, readShipped(t, "envoy.yaml"), Options{ClusterAddrs: map[string]string{"stepup_authz": authz.addr, "app": up.addr()}})
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			resp := f.raw(t, method, tc.target, tc.headers...)
			got := body(t, resp)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d (body %q), want %d", resp.StatusCode, got, tc.wantStatus)
			}
			if tc.wantStatus == http.StatusBadRequest && got != "" {
				t.Errorf("400 body = %q, want empty", got)
			}
			checks := authz.requests()
			if len(checks) != tc.wantChecks {
				t.Fatalf("ext_authz was called %d times, want %d", len(checks), tc.wantChecks)
			}
			if tc.wantChecks == 1 {
				if tc.wantPath != "" && checks[0].GetAttributes().GetRequest().GetHttp().GetPath() != tc.wantPath {
					t.Errorf("checked path = %q, want %q", checks[0].GetAttributes().GetRequest().GetHttp().GetPath(), tc.wantPath)
				}
				if tc.wantRoute != "" && routeName(checks[0]) != tc.wantRoute {
					t.Errorf("route metadata name = %q, want %q", routeName(checks[0]), tc.wantRoute)
				}
			}
			for k, v := range tc.wantHeaders {
				if g := resp.Header.Get(k); g != v {
					t.Errorf("response %s = %q, want %q", k, g, v)
				}
			}
			for _, k := range tc.wantAbsent {
				if g := resp.Header.Values(k); len(g) > 0 {
					t.Errorf("response %s = %q, want none", k, g)
				}
			}
			ups := up.requests()
			if tc.wantUp != (len(ups) == 1) {
				t.Fatalf("upstream requests = %d, want upstream reached = %v", len(ups), tc.wantUp)
			}
			if tc.wantUp {
				last := ups[0]
				for _, k := range tc.upAbsent {
					if g := last.Header.Values(k); len(g) > 0 {
						t.Errorf("upstream %s = %q, want none", k, g)
					}
				}
				if tc.wantChecks == 1 && !slices.Equal(last.Header.Values("X-Stepup-Sub"), []string{"alice"}) {
					t.Errorf("upstream x-stepup-sub = %q, want only the server's", last.Header.Values("X-Stepup-Sub"))
				}
			}
		})
	}
}

func TestRouteSelection(t *testing.T) {
	vhosts := L{
		M{"name": "exact", "domains": L{"api.example.com", "api.example.com:8000"}, "routes": L{
			rt("exact-path", M{"path": "/only"}, nil),
			rt("regex", M{"safe_regex": M{"regex": "/items/[0-9]+"}}, nil),
			rt("post-only", M{"prefix": "/form", "headers": L{M{"name": ":method", "exact_match": "POST"}}}, nil),
			rt("has-header", M{"prefix": "/flag", "headers": L{M{"name": "x-flag", "present_match": true}}}, nil),
			rt("first", M{"prefix": "/a"}, nil),
			rt("second", M{"prefix": "/a/b"}, nil),
		}},
		M{"name": "suffix", "domains": L{"*.example.com"}, "routes": L{rt("suffix", M{"prefix": "/"}, nil)}},
		M{"name": "prefix", "domains": L{"api.*"}, "routes": L{rt("prefix", M{"prefix": "/"}, nil)}},
	}
	tests := []struct {
		name   string
		method string
		host   string
		path   string
		want   string // route name, "" for none
	}{
		{"an exact domain wins over wildcards", "GET", "api.example.com", "/a", "first"},
		{"domains compare case-insensitively", "GET", "API.Example.COM", "/a", "first"},
		{"the port is part of the host unless configured otherwise", "GET", "api.example.com:9999", "/a", "prefix"},
		{"a domain listed with its port matches that port", "GET", "api.example.com:8000", "/a", "first"},
		{"a suffix wildcard matches a subdomain", "GET", "www.example.com", "/", "suffix"},
		{"a prefix wildcard matches after suffix wildcards", "GET", "api.other.org", "/", "prefix"},
		{"no virtual host means no route", "GET", "unknown.org", "/a", ""},
		{"path matches the whole path only", "GET", "api.example.com", "/only/more", ""},
		{"path ignores the query string", "GET", "api.example.com", "/only?x=1", "exact-path"},
		{"safe_regex must match the whole path", "GET", "api.example.com", "/items/12", "regex"},
		{"safe_regex does not match a longer path", "GET", "api.example.com", "/items/12/x", ""},
		{"a :method header matcher selects by method", "POST", "api.example.com", "/form", "post-only"},
		{"a :method header matcher rejects other methods", "GET", "api.example.com", "/form", ""},
		{"present_match needs the header", "GET", "api.example.com", "/flag", ""},
		{"the first matching route wins", "GET", "api.example.com", "/a/b", "first"},
	}
	p, err := New(config{vhosts: vhosts}.yaml(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHeaderMap()
			h.add(":authority", tc.host)
			h.add(":path", tc.path)
			h.add(":method", tc.method)
			r := p.hcm.routes.selectRoute(h)
			got := ""
			if r != nil {
				got = r.name
			}
			if got != tc.want {
				t.Errorf("route = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNoRouteIsA404WithoutACheck(t *testing.T) {
	authz := startAuthz(t, nil)
	up := startUpstream(t)
	cfg := config{filters: L{extAuthz(nil)}, vhosts: L{M{"name": "only", "domains": L{"api.example.com"}, "routes": L{rt("r", M{"prefix": "/"}, nil)}}}}
	f := startProxy(t, cfg.yaml(t), Options{ClusterAddrs: map[string]string{"authz": authz.addr, "app": up.addr()}})
	resp := f.raw(t, http.MethodGet, "/x") // Host: app.example.com
	if b := body(t, resp); resp.StatusCode != http.StatusNotFound || b != "" {
		t.Fatalf("status %d body %q, want 404 with an empty body", resp.StatusCode, b)
	}
	if n := len(authz.requests()); n != 0 {
		t.Errorf("ext_authz called %d times for a request without a route", n)
	}
}

func TestPathNormalisation(t *testing.T) {
	const (
		keep     = hcmv3.HttpConnectionManager_KEEP_UNCHANGED
		reject   = hcmv3.HttpConnectionManager_REJECT_REQUEST
		redirect = hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT
		forward  = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
	)
	tests := []struct {
		name    string
		in      string
		escaped hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction
		want    string
		action  pathAction
	}{
		{"a dot segment is removed", "/a/./b", keep, "/a/b", pathContinue},
		{"a double-dot segment removes the previous one", "/a/x/../b", keep, "/a/b", pathContinue},
		{"double dots never climb above the root", "/../../a", keep, "/a", pathContinue},
		{"encoded dots are dot segments", "/a/x/%2e%2E/b", keep, "/a/b", pathContinue},
		{"a trailing double dot keeps the slash", "/a/b/..", keep, "/a/", pathContinue},
		{"dots inside a segment are kept", "/a/.well-known/x..y", keep, "/a/.well-known/x..y", pathContinue},
		{"encoded unreserved characters are decoded", "/%41%62c%2D%5F%7E", keep, "/Abc-_~", pathContinue},
		{"encoded reserved characters stay encoded as written", "/a%2fb%3A", keep, "/a%2fb%3A", pathContinue},
		{"characters that must not appear raw are escaped", "/a b\"<>^`{|}", keep, "/a%20b%22%3C%3E%5E%60%7B%7C%7D", pathContinue},
		{"a literal backslash becomes a slash", `/a\b`, keep, "/a/b", pathContinue},
		{"repeated slashes are merged after normalisation", "//a///b/./c//", keep, "/a/b/c/", pathContinue},
		{"the query string is left alone", "/a/../b?x=/../y//z&e=%2F", reject, "/b?x=/../y//z&e=%2F", pathContinue},
		{"a nested escape cannot form a new one", "/%%300", keep, "/%2500", pathContinue},
		{"an invalid escape is kept", "/a%zz", keep, "/a%zz", pathContinue},
		{"an encoded NUL fails normalisation", "/a%00b", keep, "/a%00b", pathReject},
		{"a fragment is rejected", "/a#frag", keep, "/a#frag", pathReject},
		{"REJECT_REQUEST rejects an encoded slash", "/a%2Fb", reject, "/a/b", pathReject},
		{"REJECT_REQUEST rejects an encoded backslash", "/a%5cb", reject, `/a\b`, pathReject},
		{"UNESCAPE_AND_REDIRECT redirects to the normalised path", "/a%2F..%2Fb", redirect, "/b", pathRedirect},
		{"UNESCAPE_AND_FORWARD unescapes and continues", "/a%5Cb", forward, "/a/b", pathContinue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, action := normalizePath(tc.in, true, true, tc.escaped)
			if action != tc.action || (action != pathReject && got != tc.want) {
				t.Errorf("normalizePath(%q) = %q, %v; want %q, %v", tc.in, got, action, tc.want, tc.action)
			}
		})
	}
}
