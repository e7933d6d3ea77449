package proxy

import (
	"net/http"
	"testing"
)

func TestCORS(t *testing.T) {
	const origin = "https://app.example"
	policy := func(extra M) M {
		return M{"envoy.filters.http.cors": with(M{
			"@type":                     corsPolType,
			"allow_origin_string_match": L{M{"exact": origin}},
			"allow_methods":             "GET, POST",
			"allow_headers":             "authorization",
			"expose_headers":            "www-authenticate",
			"max_age":                   "600",
		}, extra)}
	}
	preflight := []string{"Origin: " + origin, "Access-Control-Request-Method: POST"}
	tests := []struct {
		name        string
		vhostPolicy M
		routePolicy M
		method      string
		headers     []string
		wantStatus  int
		wantChecks  int
		wantHeaders map[string]string
		wantAbsent  []string
	}{
		{
			name:        "a matching preflight is answered 200 by the CORS filter before ext_authz",
			vhostPolicy: policy(nil),
			method:      http.MethodOptions,
			headers:     preflight,
			wantStatus:  http.StatusOK,
			wantHeaders: map[string]string{
				"Access-Control-Allow-Origin":   origin,
				"Access-Control-Allow-Methods":  "GET, POST",
				"Access-Control-Allow-Headers":  "authorization",
				"Access-Control-Max-Age":        "600",
				"Access-Control-Expose-Headers": "www-authenticate",
			},
		},
		{
			name:        "allow_credentials adds Access-Control-Allow-Credentials",
			vhostPolicy: policy(M{"allow_credentials": true}),
			method:      http.MethodOptions,
			headers:     preflight,
			wantStatus:  http.StatusOK,
			wantHeaders: map[string]string{"Access-Control-Allow-Credentials": "true"},
		},
		{
			name:        "the route's policy wins field by field over the virtual host's",
			vhostPolicy: policy(nil),
			routePolicy: M{"envoy.filters.http.cors": M{"@type": corsPolType, "allow_methods": "PUT"}},
			method:      http.MethodOptions,
			headers:     preflight,
			wantStatus:  http.StatusOK,
			wantHeaders: map[string]string{"Access-Control-Allow-Methods": "PUT", "Access-Control-Allow-Origin": origin},
		},
		{
			name:        "a preflight from an unknown origin is forwarded by default",
			vhostPolicy: policy(nil),
			method:      http.MethodOptions,
			headers:     []string{"Origin: https://evil.example", "Access-Control-Request-Method: POST"},
			wantStatus:  http.StatusOK, // the fake authz allows, the upstream answers
			wantChecks:  1,
			wantAbsent:  []string{"Access-Control-Allow-Origin"},
		},
		{
			// CorsFilter::decodeHeaders sets Allow-Origin only for an allowed
			// origin; the other preflight headers are set regardless, and the
			// browser refuses for want of Allow-Origin.
			name:        "forward_not_matching_preflights: false answers an unknown origin without Allow-Origin",
			vhostPolicy: policy(M{"forward_not_matching_preflights": false}),
			method:      http.MethodOptions,
			headers:     []string{"Origin: https://evil.example", "Access-Control-Request-Method: POST"},
			wantStatus:  http.StatusOK,
			wantHeaders: map[string]string{"Access-Control-Allow-Methods": "GET, POST"},
			wantAbsent:  []string{"Access-Control-Allow-Origin", "Access-Control-Expose-Headers"},
		},
		{
			name:        "an OPTIONS request without Access-Control-Request-Method is not a preflight",
			vhostPolicy: policy(nil),
			method:      http.MethodOptions,
			headers:     []string{"Origin: " + origin},
			wantStatus:  http.StatusOK,
			wantChecks:  1,
			wantHeaders: map[string]string{"Access-Control-Allow-Origin": origin},
		},
		{
			name:        "an actual request gets Allow-Origin and Expose-Headers on the upstream response",
			vhostPolicy: policy(nil),
			method:      http.MethodGet,
			headers:     []string{"Origin: " + origin},
			wantStatus:  http.StatusOK,
			wantChecks:  1,
			wantHeaders: map[string]string{"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": "www-authenticate"},
		},
		{
			name:       "without a policy the CORS filter does nothing",
			method:     http.MethodOptions,
			headers:    preflight,
			wantStatus: http.StatusOK,
			wantChecks: 1,
			wantAbsent: []string{"Access-Control-Allow-Origin"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authz := startAuthz(t, nil)
			up := startUpstream(t)
			vh := M{"name": "app", "domains": L{"*"}, "routes": L{rt("r", M{"prefix": "/"}, M{})}}
			if tc.vhostPolicy != nil {
				vh["typed_per_filter_config"] = tc.vhostPolicy
			}
			if tc.routePolicy != nil {
				vh["routes"] = L{rt("r", M{"prefix": "/"}, M{"typed_per_filter_config": tc.routePolicy})}
			}
			cfg := config{
				filters: L{M{"name": "envoy.filters.http.cors", "typed_config": M{"@type": corsType}}, extAuthz(nil)},
				vhosts:  L{vh},
			}
			f := startProxy(t, cfg.yaml(t), Options{ClusterAddrs: map[string]string{"authz": authz.addr, "app": up.addr()}})
			resp := f.raw(t, tc.method, "/x", tc.headers...)
			b := body(t, resp)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d (body %q), want %d", resp.StatusCode, b, tc.wantStatus)
			}
			if n := len(authz.requests()); n != tc.wantChecks {
				t.Errorf("ext_authz called %d times, want %d", n, tc.wantChecks)
			}
			for k, v := range tc.wantHeaders {
				if g := resp.Header.Get(k); g != v {
					t.Errorf("%s = %q, want %q", k, g, v)
				}
			}
			for _, k := range tc.wantAbsent {
				if g := resp.Header.Values(k); len(g) > 0 {
					t.Errorf("%s = %q, want none", k, g)
				}
			}
		})
	}
}
