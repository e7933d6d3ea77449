package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestNewRefusesWhatItDoesNotImplement(t *testing.T) {
	tests := []struct {
		name    string
		cfg     config
		opts    Options
		wantErr []string // substrings of the error
	}{
		{
			name: "an unknown HTTP filter is refused by name",
			cfg: config{filters: L{M{"name": "envoy.filters.http.lua", "typed_config": M{
				"@type":               "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
				"default_source_code": M{"inline_string": "function envoy_on_request(h) end"},
			}}}},
			wantErr: []string{"http_filters[0]", "envoy.filters.http.lua", "not supported"},
		},
		{
			name:    "RDS is refused",
			cfg:     config{hcm: M{"route_config": nil, "rds": M{"route_config_name": "r", "config_source": M{"ads": M{}}}}},
			wantErr: []string{"typed_config.rds", "RDS"},
		},
		{
			name:    "the gRPC authorization service only: http_service is refused",
			cfg:     config{filters: L{M{"name": authzFilter, "typed_config": M{"@type": extAuthzType, "http_service": M{"server_uri": M{"uri": "http://authz", "cluster": "authz", "timeout": "1s"}}}}}},
			wantErr: []string{"http_filters[0].typed_config.http_service"},
		},
		{
			name:    "transport_api_version other than V3 is refused, as Envoy does",
			cfg:     config{filters: L{extAuthz(M{"transport_api_version": "AUTO"})}},
			wantErr: []string{"transport_api_version", "V3"},
		},
		{
			name:    "an ext_authz cluster without HTTP/2 is refused",
			cfg:     config{filters: L{extAuthz(M{"grpc_service": M{"envoy_grpc": M{"cluster_name": "app"}}})}},
			wantErr: []string{"envoy_grpc.cluster_name", "HTTP/2"},
		},
		{
			name:    "an ext_authz field that changes behaviour and is not implemented is refused",
			cfg:     config{filters: L{extAuthz(M{"with_request_body": M{"max_request_bytes": 1024}})}},
			wantErr: []string{"typed_config.with_request_body", "not supported"},
		},
		{
			name:    "a TLS transport socket on a cluster is refused",
			cfg:     config{clusters: map[string]M{"app": {"transport_socket": M{"name": "tls", "typed_config": M{"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"}}}}},
			wantErr: []string{"clusters[1].transport_socket", "TLS"},
		},
		{
			name:    "a route action field the proxy does not implement is refused",
			cfg:     config{vhosts: L{M{"name": "v", "domains": L{"*"}, "routes": L{M{"name": "r", "match": M{"prefix": "/"}, "route": M{"cluster": "app", "prefix_rewrite": "/x"}}}}}},
			wantErr: []string{"routes[0].route.prefix_rewrite"},
		},
		{
			name:    "a route to an undefined cluster is refused",
			cfg:     config{vhosts: L{M{"name": "v", "domains": L{"*"}, "routes": L{rt("r", M{"prefix": "/"}, M{"route": M{"cluster": "nowhere"}})}}}},
			wantErr: []string{"route.cluster", `"nowhere"`},
		},
		{
			name: "a strict jwt_authn requirement is refused",
			cfg: config{filters: L{M{"name": "envoy.filters.http.jwt_authn", "typed_config": M{
				"@type":     jwtType,
				"providers": M{"idp": M{"issuer": "i", "remote_jwks": M{"http_uri": M{"uri": "http://idp/jwks", "cluster": "idp", "timeout": "1s"}}}},
				"rules":     L{M{"match": M{"prefix": "/"}, "requires": M{"provider_name": "idp"}}},
			}}}},
			wantErr: []string{"rules[0].requires.provider_name"},
		},
		{
			name: "an access log filter is refused",
			cfg: config{hcm: M{"access_log": L{M{"name": "log", "filter": M{"not_health_check_filter": M{}},
				"typed_config": M{"@type": stdoutLog}}}}},
			wantErr: []string{"access_log[0].filter"},
		},
		{
			name: "a CORS policy field the proxy does not implement is refused",
			cfg: config{
				filters: L{M{"name": "envoy.filters.http.cors", "typed_config": M{"@type": corsType}}},
				vhosts: L{M{"name": "v", "domains": L{"*"}, "routes": L{rt("r", M{"prefix": "/"}, nil)},
					"typed_per_filter_config": M{"envoy.filters.http.cors": M{"@type": corsPolType, "allow_private_network_access": true}}}},
			},
			wantErr: []string{`typed_per_filter_config["envoy.filters.http.cors"].allow_private_network_access`},
		},
		{
			name:    "the router must be the last filter",
			cfg:     config{filters: L{M{"name": "envoy.filters.http.router", "typed_config": M{"@type": routerType}}}},
			wantErr: []string{"http_filters[0]", "router must be the last"},
		},
		{
			name:    "a misspelled field fails strict loading",
			cfg:     config{filters: L{extAuthz(M{"route_metadata_context_namespace": L{"stepup"}})}},
			wantErr: []string{"route_metadata_context_namespace"},
		},
		{
			name:    "Options.ClusterAddrs addresses must be host:port",
			opts:    Options{ClusterAddrs: map[string]string{"app": "no-port"}},
			wantErr: []string{`ClusterAddrs["app"]`},
		},
		{
			name:    "Options.ListenerAddr must be host:port",
			opts:    Options{ListenerAddr: "no-port"},
			wantErr: []string{"ListenerAddr"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.cfg.yaml(t), tc.opts)
			if err == nil {
				p.Close()
				t.Fatal("New accepted the config")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestUnsupportedErrorsAreMarked(t *testing.T) {
	_, err := New(config{hcm: M{"tracing": M{}}}.yaml(t), Options{})
	if !errors.Is(err, errUnsupported) || !strings.Contains(err.Error(), "typed_config.tracing") {
		t.Fatalf("err = %v, want errUnsupported naming typed_config.tracing", err)
	}
}

func TestShippedYAMLsLoadWithOneOverrideMap(t *testing.T) {
	// `stepup-authz dev` passes the same map whichever bootstrap it runs;
	// only envoy-jwt-authn.yaml defines idp_jwks.
	addrs := map[string]string{"stepup_authz": "127.0.0.1:1", "app": "127.0.0.1:2", "idp_jwks": "127.0.0.1:3"}
	for _, name := range []string{"envoy.yaml", "envoy-context-extensions.yaml", "envoy-jwt-authn.yaml"} {
		t.Run(name, func(t *testing.T) {
			p, err := New(readShipped(t, name), Options{ClusterAddrs: addrs})
			if err != nil {
				t.Fatal(err)
			}
			p.Close()
		})
	}
}

func TestShippedContextExtensionsYAML(t *testing.T) {
	authz := startAuthz(t, nil)
	up := startUpstream(t)
	f := startProxy(t, readShipped(t, "envoy-context-extensions.yaml"), Options{ClusterAddrs: map[string]string{"stepup_authz": authz.addr, "app": up.addr()}})

	resp := f.do(t, http.MethodPost, "/api/payout-destination", nil)
	if b := body(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %q", resp.StatusCode, b)
	}
	ce := authz.last(t).GetAttributes().GetContextExtensions()
	if ce["name"] != "payout-destination" || ce["required_acr"] == "" {
		t.Errorf("context_extensions = %v, want payout-destination's", ce)
	}

	resp = f.do(t, http.MethodGet, "/healthz", http.Header{"X-Stepup-Sub": {"forged"}})
	if b := body(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz status %d %q", resp.StatusCode, b)
	}
	if n := len(authz.requests()); n != 1 {
		t.Errorf("ext_authz called %d times, want 1 (healthz is not checked)", n)
	}
	if got := up.last(t).Header.Get("X-Stepup-Sub"); got != "" {
		t.Errorf("healthz upstream got x-stepup-sub %q", got)
	}
}

func TestListenAndServe(t *testing.T) {
	authz := startAuthz(t, nil)
	up := startUpstream(t)
	p, err := New(readShipped(t, "envoy.yaml"), Options{
		ListenerAddr: "127.0.0.1:0",
		ClusterAddrs: map[string]string{"stepup_authz": authz.addr, "app": up.addr()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.ListenAndServe(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for p.Addr() == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p.Addr() == "" {
		t.Fatal("the proxy never reported its address")
	}
	c := &http.Client{Transport: &http.Transport{}}
	resp, err := c.Get("http://" + p.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != http.StatusOK || b != "upstream ok" {
		t.Errorf("status %d %q", resp.StatusCode, b)
	}
	c.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ListenAndServe returned %v after shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after the context was cancelled")
	}
}
