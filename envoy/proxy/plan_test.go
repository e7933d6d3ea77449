package proxy

import (
	"net/http"
	"reflect"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// comparable strips what differs between two CheckRequests for the same
// request by design: the stream id, the time, the peer addresses (and the
// x-forwarded-for and x-envoy-external-address an edge proxy writes from
// them), the generated
// x-request-id and the headers Go's HTTP client adds.
func comparable(r *authv3.CheckRequest) *authv3.CheckRequest {
	r = proto.Clone(r).(*authv3.CheckRequest)
	a := r.GetAttributes()
	a.Source, a.Destination = nil, nil
	a.Request.Time = nil
	a.Request.Http.Id = ""
	for _, k := range []string{"x-request-id", "x-forwarded-for", "x-envoy-external-address", "user-agent", "accept-encoding"} {
		delete(a.Request.Http.Headers, k)
	}
	return r
}

// The plan is the proxy's own code path: for every request, the CheckRequest
// it plans is the one the proxy sends, and where it sends none, neither does
// the proxy.
func TestPlanIsWhatTheProxySends(t *testing.T) {
	for _, bootstrap := range []string{"envoy.yaml", "envoy-context-extensions.yaml"} {
		t.Run(bootstrap, func(t *testing.T) {
			authz := startAuthz(t, nil)
			up := startUpstream(t)
			f := startProxy(t, readShipped(t, bootstrap), Options{ClusterAddrs: map[string]string{"stepup_authz": authz.addr, "app": up.addr()}})
			for _, c := range []struct {
				name, method, target string
				checked              bool
				status               int
			}{
				{"a step-up route with its metadata", "POST", "/api/payout-destination", true, 0},
				{"dot segments and repeated slashes are normalised first", "POST", "/api/./x/..//payout-destination?x=1", true, 0},
				{"a DELETE-only route", "DELETE", "/api/account", true, 0},
				{"the same path with another method falls through", "GET", "/api/account", true, 0},
				{"the catch-all route", "GET", "/home", true, 0},
				{"a route with ext_authz disabled sends no Check", "GET", "/healthz", false, 0},
				{"an encoded slash is refused before routing", "GET", "/api%2Fpayout-destination", false, http.StatusBadRequest},
			} {
				t.Run(c.name, func(t *testing.T) {
					before := len(authz.requests())
					resp := f.raw(t, c.method, c.target, "Authorization: Bearer abc.def.ghi", "X-Custom: 1")
					resp.Body.Close()

					req, err := http.NewRequest(c.method, "http://app.example.com"+c.target, nil)
					if err != nil {
						t.Fatal(err)
					}
					req.RequestURI = c.target
					req.Header.Set("Authorization", "Bearer abc.def.ghi")
					req.Header.Set("X-Custom", "1")
					req.Header.Set("Connection", "close")
					plan := f.p.Plan(req)

					sent := authz.requests()[before:]
					if !c.checked {
						if len(sent) != 0 || plan.Check != nil {
							t.Fatalf("proxy sent %d Checks, plan has %v; want none", len(sent), plan.Check)
						}
						if c.status != 0 && (plan.Status != c.status || resp.StatusCode != c.status) {
							t.Errorf("plan status %d, proxy answered %d; want %d", plan.Status, resp.StatusCode, c.status)
						}
						if c.status == 0 && plan.Details != "ext_authz_disabled" {
							t.Errorf("plan details %q, want ext_authz_disabled", plan.Details)
						}
						return
					}
					if len(sent) != 1 || plan.Check == nil {
						t.Fatalf("proxy sent %d Checks, plan has %v; want one each", len(sent), plan.Check)
					}
					if a, b := comparable(sent[0]), comparable(plan.Check); !proto.Equal(a, b) {
						t.Errorf("planned CheckRequest differs from the one sent:\nsent:\n%s\nplanned:\n%s", prototext.Format(a), prototext.Format(b))
					}
				})
			}
		})
	}
}

func TestPlanWithoutARoute(t *testing.T) {
	yaml := config{
		filters: L{extAuthz(nil)},
		vhosts:  L{M{"name": "app", "domains": L{"app.example.com"}, "routes": L{rt("api", M{"prefix": "/api"}, nil)}}},
	}.yaml(t)
	p, err := New(yaml, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, c := range []struct{ name, host, path string }{
		{"no virtual host for the host", "other.example.com", "/api"},
		{"no route in the virtual host", "app.example.com", "/home"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+c.host+c.path, nil)
			plan := p.Plan(req)
			if plan.Status != http.StatusNotFound || plan.Details != "route_not_found" || plan.Check != nil || plan.Route != nil {
				t.Errorf("plan = %+v, want 404 route_not_found without a Check", plan)
			}
		})
	}
}

func TestRoutesDescribeTheShippedBootstrap(t *testing.T) {
	p, err := New(readShipped(t, "envoy.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	got := p.Routes()
	want := []Route{
		{VirtualHost: "app", Name: "healthz", Match: "path /healthz", AuthzDisabled: true},
		{VirtualHost: "app", Name: "payout-destination", Match: "prefix /api/payout-destination",
			RouteMetadata: map[string]map[string]any{"stepup": {"name": "payout-destination", "required_acr": "aal2", "max_age": 300.0, "machine_scopes": []any{"payouts:write"}}}},
		{VirtualHost: "app", Name: "delete-account", Match: "prefix /api/account", Methods: []string{"DELETE"},
			RouteMetadata: map[string]map[string]any{"stepup": {"name": "delete-account", "required_acr": "aal2", "max_age": 60.0}}},
		{VirtualHost: "app", Name: "mcp", Match: "path_separated_prefix /mcp",
			RouteMetadata: map[string]map[string]any{"stepup": {"name": "mcp", "resource_path": "/mcp", "required_scopes": []any{"mcp:tools"}}}},
		{VirtualHost: "app", Name: "protected-resource-metadata", Match: "path_separated_prefix /.well-known/oauth-protected-resource"},
		{VirtualHost: "app", Name: "marketing-preferences", Match: "prefix /api/marketing-preferences",
			RouteMetadata: map[string]map[string]any{"stepup": {"name": "marketing-preferences"}}},
		{VirtualHost: "app", Name: "default", Match: "prefix /", RouteMetadata: map[string]map[string]any{"stepup": {"name": "default"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Routes() =\n%#v\nwant\n%#v", got, want)
	}
	if p.ListenAddr() != "0.0.0.0:8000" {
		t.Errorf("ListenAddr() = %q", p.ListenAddr())
	}
}
