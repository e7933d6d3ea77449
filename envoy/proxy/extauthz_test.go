package proxy

import (
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestCheckRequest(t *testing.T) {
	stepupRoutes := func(vhostExtra M) L {
		return L{with(M{"name": "app", "domains": L{"*"}, "routes": L{
			rt("payout", M{"prefix": "/api/payout"}, M{"metadata": M{"filter_metadata": M{
				"stepup": M{"required_acr": "aal2", "max_age": 300},
				"other":  M{"secret": "not for the authz server"},
			}}}),
			rt("default", M{"prefix": "/"}, nil),
		}}, vhostExtra)}
	}
	tests := []struct {
		name    string
		cfg     config
		path    string
		headers http.Header
		check   func(t *testing.T, f *front, req *authv3.CheckRequest)
	}{
		{
			name: "route metadata reaches the check for the configured namespace only",
			cfg:  config{filters: L{extAuthz(M{"route_metadata_context_namespaces": L{"stepup"}})}, vhosts: stepupRoutes(nil)},
			path: "/api/payout",
			check: func(t *testing.T, _ *front, req *authv3.CheckRequest) {
				fm := req.GetAttributes().GetRouteMetadataContext().GetFilterMetadata()
				if len(fm) != 1 {
					t.Fatalf("route metadata namespaces = %v, want only stepup", keysOf(fm))
				}
				st := fm["stepup"].GetFields()
				if st["required_acr"].GetStringValue() != "aal2" {
					t.Errorf("required_acr = %v", st["required_acr"])
				}
				if _, ok := st["max_age"].GetKind().(*structpb.Value_NumberValue); !ok || st["max_age"].GetNumberValue() != 300 {
					t.Errorf("max_age = %v, want the number 300", st["max_age"])
				}
			},
		},
		{
			name: "virtual host metadata never reaches the check",
			cfg: config{filters: L{extAuthz(M{"route_metadata_context_namespaces": L{"stepup"}})},
				vhosts: stepupRoutes(M{"metadata": M{"filter_metadata": M{"stepup": M{"required_acr": "aal3"}}}})},
			path: "/somewhere/else",
			check: func(t *testing.T, _ *front, req *authv3.CheckRequest) {
				if fm := req.GetAttributes().GetRouteMetadataContext().GetFilterMetadata(); len(fm) != 0 {
					t.Errorf("route metadata = %v, want none", fm)
				}
			},
		},
		{
			name: "context extensions merge virtual host then route, the route's key winning",
			cfg: config{filters: L{extAuthz(nil)}, vhosts: L{M{
				"name": "app", "domains": L{"*"},
				"typed_per_filter_config": perRoute(M{"check_settings": M{"context_extensions": M{"a": "vhost", "b": "vhost"}}}),
				"routes": L{rt("r", M{"prefix": "/"}, M{
					"typed_per_filter_config": perRoute(M{"check_settings": M{"context_extensions": M{"b": "route", "c": "route"}}}),
				})},
			}}},
			path: "/x",
			check: func(t *testing.T, _ *front, req *authv3.CheckRequest) {
				got := req.GetAttributes().GetContextExtensions()
				want := map[string]string{"a": "vhost", "b": "route", "c": "route"}
				if !mapsEqual(got, want) {
					t.Errorf("context_extensions = %v, want %v", got, want)
				}
			},
		},
		{
			name:    "every request header is sent lower-cased, repeats joined with a comma, Host as :authority only",
			cfg:     config{filters: L{extAuthz(nil)}},
			path:    "/a?b=c",
			headers: http.Header{"X-Multi": {"one", "two"}, "Authorization": {"Bearer tok"}},
			check: func(t *testing.T, f *front, req *authv3.CheckRequest) {
				h := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
				host := f.srv.Listener.Addr().String()
				want := map[string]string{
					"x-multi": "one,two", "authorization": "Bearer tok",
					":authority": host, ":method": "GET", ":path": "/a?b=c", ":scheme": "http",
					"x-forwarded-proto": "http",
				}
				for k, v := range want {
					if h[k] != v {
						t.Errorf("headers[%q] = %q, want %q", k, h[k], v)
					}
				}
				if _, ok := h["host"]; ok {
					t.Error("headers has a host key; HTTP/1 Host must appear as :authority only")
				}
				if h["x-request-id"] == "" {
					t.Error("x-request-id was not generated")
				}
				if req.GetAttributes().GetRequest().GetHttp().GetHeaderMap() != nil {
					t.Error("header_map is set without encode_raw_headers")
				}
			},
		},
		{
			name: "the http attributes carry the stream id, path with query, host, scheme, protocol and peers",
			cfg:  config{filters: L{extAuthz(nil)}},
			path: "/a?b=c",
			check: func(t *testing.T, f *front, req *authv3.CheckRequest) {
				a := req.GetAttributes()
				hr := a.GetRequest().GetHttp()
				if _, err := strconv.ParseUint(hr.GetId(), 10, 64); err != nil || hr.GetId() == hr.GetHeaders()["x-request-id"] {
					t.Errorf("id = %q, want the decimal stream id (not x-request-id)", hr.GetId())
				}
				if hr.GetMethod() != "GET" || hr.GetPath() != "/a?b=c" || hr.GetScheme() != "http" || hr.GetProtocol() != "HTTP/1.1" {
					t.Errorf("method/path/scheme/protocol = %q %q %q %q", hr.GetMethod(), hr.GetPath(), hr.GetScheme(), hr.GetProtocol())
				}
				if hr.GetHost() != f.srv.Listener.Addr().String() {
					t.Errorf("host = %q", hr.GetHost())
				}
				if hr.GetQuery() != "" || hr.GetFragment() != "" {
					t.Errorf("query/fragment = %q/%q, Envoy leaves them empty", hr.GetQuery(), hr.GetFragment())
				}
				if d := time.Since(a.GetRequest().GetTime().AsTime()); d < 0 || d > time.Minute {
					t.Errorf("request.time is %v ago", d)
				}
				src := a.GetSource().GetAddress().GetSocketAddress()
				if src.GetAddress() != "127.0.0.1" || src.GetPortValue() == 0 {
					t.Errorf("source = %v", src)
				}
				_, port, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
				dst := a.GetDestination().GetAddress().GetSocketAddress()
				if dst.GetAddress() != "127.0.0.1" || strconv.Itoa(int(dst.GetPortValue())) != port {
					t.Errorf("destination = %v, want 127.0.0.1:%s", dst, port)
				}
			},
		},
		{
			name:    "encode_raw_headers sends header_map with one raw entry per occurrence instead of headers",
			cfg:     config{filters: L{extAuthz(M{"encode_raw_headers": true})}},
			path:    "/raw",
			headers: http.Header{"X-Multi": {"one", "two"}},
			check: func(t *testing.T, _ *front, req *authv3.CheckRequest) {
				hr := req.GetAttributes().GetRequest().GetHttp()
				if len(hr.GetHeaders()) != 0 {
					t.Errorf("headers = %v, want empty with encode_raw_headers", hr.GetHeaders())
				}
				var multi []string
				var path string
				for _, e := range hr.GetHeaderMap().GetHeaders() {
					if e.GetValue() != "" {
						t.Errorf("entry %q has value %q; only raw_value is set", e.GetKey(), e.GetValue())
					}
					switch e.GetKey() {
					case "x-multi":
						multi = append(multi, string(e.GetRawValue()))
					case ":path":
						path = string(e.GetRawValue())
					}
				}
				if !slices.Equal(multi, []string{"one", "two"}) || path != "/raw" {
					t.Errorf("x-multi entries = %q, :path = %q", multi, path)
				}
			},
		},
		{
			name: "allowed_headers limits the headers sent to the server",
			cfg: config{filters: L{extAuthz(M{"allowed_headers": M{"patterns": L{
				M{"exact": "authorization"}, M{"exact": ":path"},
			}}})}},
			path:    "/a",
			headers: http.Header{"Authorization": {"Bearer x"}, "X-Secret": {"s"}},
			check: func(t *testing.T, _ *front, req *authv3.CheckRequest) {
				h := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
				if !slices.Equal(keysOf(h), []string{":path", "authorization"}) {
					t.Errorf("header keys = %v", keysOf(h))
				}
			},
		},
		{
			name: "the check sees the normalised path and the route chosen by it",
			cfg: config{
				hcm:     M{"normalize_path": true, "merge_slashes": true},
				filters: L{extAuthz(M{"route_metadata_context_namespaces": L{"stepup"}})},
				vhosts:  stepupRoutes(nil),
			},
			path: "/api/./x/..//payout/%7Ey?q=1",
			check: func(t *testing.T, _ *front, req *authv3.CheckRequest) {
				if p := req.GetAttributes().GetRequest().GetHttp().GetPath(); p != "/api/payout/~y?q=1" {
					t.Errorf("path = %q", p)
				}
				if _, ok := req.GetAttributes().GetRouteMetadataContext().GetFilterMetadata()["stepup"]; !ok {
					t.Error("the normalised path did not select the payout route")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authz := startAuthz(t, nil)
			up := startUpstream(t)
			f := startProxy(t, tc.cfg.yaml(t), Options{ClusterAddrs: map[string]string{"authz": authz.addr, "app": up.addr()}})
			resp := f.do(t, http.MethodGet, tc.path, tc.headers)
			if b := body(t, resp); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %q, want 200", resp.StatusCode, b)
			}
			tc.check(t, f, authz.last(t))
		})
	}
}

func TestCheckOutcomes(t *testing.T) {
	okWith := func(ok *authv3.OkHttpResponse) func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}, nil
		}
	}
	reply := func(r *authv3.CheckResponse, err error) func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return func(*authv3.CheckRequest) (*authv3.CheckResponse, error) { return r, err }
	}
	errorResponse := func(code typev3.StatusCode, body string, hs ...*corev3.HeaderValueOption) *authv3.CheckResponse {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.Unavailable)},
			HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: code}, Headers: hs, Body: body,
			}},
		}
	}
	const stepUpBody = `{"error":"step_up_required","required_acr":"aal2","max_age":300}`
	tests := []struct {
		name      string
		filter    M
		respond   func(*authv3.CheckRequest) (*authv3.CheckResponse, error)
		delay     time.Duration
		authzDown bool
		method    string
		path      string
		headers   http.Header

		wantStatus  int
		wantBody    string
		wantHeaders http.Header // exact values of these keys
		wantAbsent  []string

		wantUpstream    bool
		upstreamURI     string
		upstreamHeaders http.Header
		upstreamAbsent  []string
	}{
		{
			name: "a denial reaches the client exactly: status, every header, body",
			respond: reply(deny(typev3.StatusCode_Unauthorized, stepUpBody,
				overwrite("WWW-Authenticate", `Bearer error="insufficient_user_authentication", acr_values="aal2", max_age="300"`),
				overwrite("Content-Type", "application/json"),
				overwrite("Cache-Control", "no-store"),
				hdr("Set-Cookie", "a=1", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
				hdr("Set-Cookie", "b=2", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
			), nil),
			wantStatus: http.StatusUnauthorized,
			wantBody:   stepUpBody,
			wantHeaders: http.Header{
				"Www-Authenticate": {`Bearer error="insufficient_user_authentication", acr_values="aal2", max_age="300"`},
				"Content-Type":     {"application/json"},
				"Cache-Control":    {"no-store"},
				"Set-Cookie":       {"a=1", "b=2"},
				"Content-Length":   {strconv.Itoa(len(stepUpBody))},
			},
		},
		{
			name:        "a denial with a body and no content-type is sent as text/plain",
			respond:     reply(deny(typev3.StatusCode_Forbidden, "nope"), nil),
			wantStatus:  http.StatusForbidden,
			wantBody:    "nope",
			wantHeaders: http.Header{"Content-Type": {"text/plain"}},
		},
		{
			name:        "a denial without a body gets no content-type",
			respond:     reply(deny(typev3.StatusCode_Unauthorized, "", overwrite("WWW-Authenticate", "Bearer")), nil),
			wantStatus:  http.StatusUnauthorized,
			wantHeaders: http.Header{"Www-Authenticate": {"Bearer"}},
			wantAbsent:  []string{"Content-Type"},
		},
		{
			name:       "a denial without an HTTP status is a 403",
			respond:    reply(&authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil),
			wantStatus: http.StatusForbidden,
		},
		{
			name:        "a HEAD request gets a denial's headers without its body",
			method:      http.MethodHead,
			respond:     reply(deny(typev3.StatusCode_Unauthorized, stepUpBody, overwrite("Content-Type", "application/json")), nil),
			wantStatus:  http.StatusUnauthorized,
			wantHeaders: http.Header{"Content-Type": {"application/json"}},
		},
		{
			name:    "an allow overwrites client-sent copies, then applies headers_to_remove",
			headers: http.Header{"X-Stepup-Sub": {"forged"}, "X-Stepup-Acr": {"forged"}, "X-Stepup-Dry-Run": {"forged"}},
			respond: okWith(&authv3.OkHttpResponse{
				Headers:         []*corev3.HeaderValueOption{overwrite("x-stepup-sub", "alice"), overwrite("x-stepup-acr", "aal2")},
				HeadersToRemove: []string{"x-stepup-dry-run", "x-stepup-acr"},
			}),
			wantStatus:      http.StatusOK,
			wantBody:        "upstream ok",
			wantUpstream:    true,
			upstreamHeaders: http.Header{"X-Stepup-Sub": {"alice"}},
			upstreamAbsent:  []string{"X-Stepup-Acr", "X-Stepup-Dry-Run"},
		},
		{
			name:    "header mutations follow each append action",
			headers: http.Header{"X-Append": {"client"}, "X-Keep": {"client"}, "X-Joined": {"client"}},
			respond: okWith(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				hdr("x-append", "server", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
				hdr("x-keep", "server", corev3.HeaderValueOption_ADD_IF_ABSENT),
				hdr("x-new", "server", corev3.HeaderValueOption_ADD_IF_ABSENT),
				hdr("x-missing", "server", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
				{Header: &corev3.HeaderValue{Key: "x-joined", Value: "server"}, Append: wrapperspb.Bool(true)},
			}}),
			wantStatus:   http.StatusOK,
			wantUpstream: true,
			upstreamHeaders: http.Header{
				"X-Append": {"client", "server"},
				"X-Keep":   {"client"},
				"X-New":    {"server"},
				"X-Joined": {"client,server"},
			},
			upstreamAbsent: []string{"X-Missing"},
		},
		{
			name:         "headers_to_remove never removes pseudo-headers or host",
			path:         "/kept?x=1",
			respond:      okWith(&authv3.OkHttpResponse{HeadersToRemove: []string{":path", "host", ":authority"}}),
			wantStatus:   http.StatusOK,
			wantUpstream: true,
			upstreamURI:  "/kept?x=1",
		},
		{
			name: "response_headers_to_add reach the client on an allow",
			respond: okWith(&authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{
				overwrite("x-stepup-dry-run", "token_missing"),
			}}),
			wantStatus:   http.StatusOK,
			wantHeaders:  http.Header{"X-Stepup-Dry-Run": {"token_missing"}, "X-Upstream": {"app"}},
			wantUpstream: true,
		},
		{
			name: "query parameters are set and removed on the way upstream",
			path: "/q?keep=1&drop=2",
			respond: okWith(&authv3.OkHttpResponse{
				QueryParametersToSet:    []*corev3.QueryParameter{{Key: "added", Value: "3"}},
				QueryParametersToRemove: []string{"drop"},
			}),
			wantStatus:   http.StatusOK,
			wantUpstream: true,
			upstreamURI:  "/q?added=3&keep=1",
		},
		{
			// ENVOY.md §2: status.code defaults to 0 (OK), so Envoy allows a
			// CheckResponse without a status.
			name:         "a missing status allows the request, as in Envoy",
			respond:      reply(&authv3.CheckResponse{}, nil),
			wantStatus:   http.StatusOK,
			wantUpstream: true,
		},
		{
			name:       "an unreachable authorization server answers status_on_error with an empty body",
			filter:     M{"status_on_error": M{"code": "ServiceUnavailable"}},
			authzDown:  true,
			wantStatus: http.StatusServiceUnavailable,
			wantAbsent: []string{"Content-Type", "Www-Authenticate"},
		},
		{
			name:       "without status_on_error a failed check is a 403",
			authzDown:  true,
			wantStatus: http.StatusForbidden,
		},
		{
			name:       "a check that times out answers status_on_error",
			filter:     M{"status_on_error": M{"code": "ServiceUnavailable"}, "grpc_service": M{"envoy_grpc": M{"cluster_name": "authz"}, "timeout": "0.1s"}},
			delay:      time.Second,
			wantStatus: http.StatusServiceUnavailable,
		},
		{
			name:       "a gRPC error answers status_on_error and drops the server's details",
			filter:     M{"status_on_error": M{"code": "ServiceUnavailable"}},
			respond:    reply(nil, status.Error(codes.Internal, "boom")),
			wantStatus: http.StatusServiceUnavailable,
			wantAbsent: []string{"Content-Type"},
		},
		{
			name:            "failure_mode_allow lets a failed check through and marks it when asked",
			filter:          M{"failure_mode_allow": true, "failure_mode_allow_header_add": true},
			authzDown:       true,
			wantStatus:      http.StatusOK,
			wantUpstream:    true,
			upstreamHeaders: http.Header{"X-Envoy-Auth-Failure-Mode-Allowed": {"true"}},
		},
		{
			name:       "failure_mode_allow never turns a denial into an allow",
			filter:     M{"failure_mode_allow": true},
			respond:    reply(deny(typev3.StatusCode_Unauthorized, ""), nil),
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:        "an error_response sends its status, headers and body",
			filter:      M{"status_on_error": M{"code": "ServiceUnavailable"}},
			respond:     reply(errorResponse(typev3.StatusCode_BadGateway, "down", overwrite("x-why", "idp")), nil),
			wantStatus:  http.StatusBadGateway,
			wantBody:    "down",
			wantHeaders: http.Header{"X-Why": {"idp"}, "Content-Type": {"text/plain"}},
		},
		{
			name:       "an error_response without a status uses status_on_error",
			filter:     M{"status_on_error": M{"code": "ServiceUnavailable"}},
			respond:    reply(errorResponse(0, ""), nil),
			wantStatus: http.StatusServiceUnavailable,
		},
		{
			name:         "failure_mode_allow lets an error_response through",
			filter:       M{"failure_mode_allow": true},
			respond:      reply(errorResponse(typev3.StatusCode_BadGateway, "down"), nil),
			wantStatus:   http.StatusOK,
			wantUpstream: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authz := startAuthz(t, tc.respond)
			authz.delay = tc.delay
			up := startUpstream(t)
			authzAddr := authz.addr
			if tc.authzDown {
				authzAddr = closedAddr(t)
			}
			cfg := config{filters: L{extAuthz(tc.filter)}}
			f := startProxy(t, cfg.yaml(t), Options{ClusterAddrs: map[string]string{"authz": authzAddr, "app": up.addr()}})
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodGet
			}
			if path == "" {
				path = "/api/thing"
			}
			resp := f.do(t, method, path, tc.headers)
			got := body(t, resp)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d (body %q), want %d", resp.StatusCode, got, tc.wantStatus)
			}
			if tc.wantBody != "" || !tc.wantUpstream {
				if got != tc.wantBody {
					t.Errorf("body = %q, want %q", got, tc.wantBody)
				}
			}
			for k, want := range tc.wantHeaders {
				if g := resp.Header.Values(k); !slices.Equal(g, want) {
					t.Errorf("response %s = %q, want %q", k, g, want)
				}
			}
			for _, k := range tc.wantAbsent {
				if g := resp.Header.Values(k); len(g) > 0 {
					t.Errorf("response %s = %q, want none", k, g)
				}
			}
			ups := up.requests()
			if !tc.wantUpstream {
				if len(ups) != 0 {
					t.Errorf("the upstream was called %d times, want 0", len(ups))
				}
				return
			}
			last := up.last(t)
			if tc.upstreamURI != "" && last.RequestURI != tc.upstreamURI {
				t.Errorf("upstream request URI = %q, want %q", last.RequestURI, tc.upstreamURI)
			}
			for k, want := range tc.upstreamHeaders {
				if g := last.Header.Values(k); !slices.Equal(g, want) {
					t.Errorf("upstream %s = %q, want %q", k, g, want)
				}
			}
			for _, k := range tc.upstreamAbsent {
				if g := last.Header.Values(k); len(g) > 0 {
					t.Errorf("upstream %s = %q, want none", k, g)
				}
			}
		})
	}
}

func keysOf[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestExtAuthzEnablement(t *testing.T) {
	const filterConfigType = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
	ce := func(k, v string) M { return M{"check_settings": M{"context_extensions": M{k: v}}} }
	tests := []struct {
		name           string
		filterDisabled bool // HttpFilter.disabled
		vhostConfig    M    // typed_per_filter_config of the virtual host
		routeConfig    M    // typed_per_filter_config of the route
		wantCheck      bool
	}{
		{"a filter disabled in http_filters does not run on a route without per-route config", true, nil, nil, false},
		{"a filter disabled in http_filters runs where a route's per-route config enables it", true, nil, perRoute(ce("k", "v")), true},
		{"FilterConfig disabled turns the filter off for a route", false, nil, M{authzFilter: M{"@type": filterConfigType, "disabled": true}}, false},
		{"a route's check_settings overrides the virtual host's disabled", false, perRoute(M{"disabled": true}), perRoute(ce("k", "v")), true},
		{"a route's disabled overrides the virtual host's check_settings", false, perRoute(ce("k", "v")), perRoute(M{"disabled": true}), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authz := startAuthz(t, nil)
			up := startUpstream(t)
			filter := extAuthz(nil)
			if tc.filterDisabled {
				filter["disabled"] = true
			}
			vh := M{"name": "app", "domains": L{"*"}}
			if tc.vhostConfig != nil {
				vh["typed_per_filter_config"] = tc.vhostConfig
			}
			r := rt("r", M{"prefix": "/"}, nil)
			if tc.routeConfig != nil {
				r["typed_per_filter_config"] = tc.routeConfig
			}
			vh["routes"] = L{r}
			f := startProxy(t, config{filters: L{filter}, vhosts: L{vh}}.yaml(t), Options{ClusterAddrs: map[string]string{"authz": authz.addr, "app": up.addr()}})
			resp := f.do(t, http.MethodGet, "/x", nil)
			if b := body(t, resp); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %q", resp.StatusCode, b)
			}
			if got := len(authz.requests()) == 1; got != tc.wantCheck {
				t.Errorf("checked = %v, want %v", got, tc.wantCheck)
			}
		})
	}
}

func TestClearRouteCacheReroutes(t *testing.T) {
	authz := startAuthz(t, func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		r := allow()
		r.GetOkResponse().Headers = []*corev3.HeaderValueOption{overwrite("x-tier", "gold")}
		return r, nil
	})
	up := startUpstream(t)
	vh := M{"name": "app", "domains": L{"*"}, "routes": L{
		rt("gold", M{"prefix": "/", "headers": L{M{"name": "x-tier", "string_match": M{"exact": "gold"}}}}, M{"request_headers_to_remove": L{"x-routed"}}),
		rt("other", M{"prefix": "/"}, nil),
	}}
	for _, clear := range []bool{false, true} {
		f := startProxy(t, config{filters: L{extAuthz(M{"clear_route_cache": clear})}, vhosts: L{vh}}.yaml(t), Options{ClusterAddrs: map[string]string{"authz": authz.addr, "app": up.addr()}})
		resp := f.do(t, http.MethodGet, "/x", http.Header{"X-Routed": {"yes"}})
		body(t, resp)
		// Only the "gold" route strips x-routed, so its absence shows which
		// route the router used.
		if gold := up.last(t).Header.Get("X-Routed") == ""; gold != clear {
			t.Errorf("clear_route_cache %v: routed to gold = %v", clear, gold)
		}
	}
}
