package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.uber.org/goleak"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// TestMain fails the package when a test leaves goroutines behind (an
// unclosed proxy, gRPC connection or upstream transport).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// M and L build bootstrap configs as JSON, which is valid YAML.
type (
	M = map[string]any
	L = []any
)

const (
	hcmURL       = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	extAuthzType = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
	perRouteType = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
	corsType     = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
	corsPolType  = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
	jwtType      = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
	routerType   = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	stdoutLog    = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
	authzFilter  = "envoy.filters.http.ext_authz"
)

// with returns a copy of base with extra's keys set.
func with(base, extra M) M {
	out := maps.Clone(base)
	maps.Copy(out, extra)
	return out
}

// extAuthz is an ext_authz http filter talking to cluster "authz".
func extAuthz(extra M) M {
	return M{"name": authzFilter, "typed_config": with(M{
		"@type":                 extAuthzType,
		"transport_api_version": "V3",
		"grpc_service":          M{"envoy_grpc": M{"cluster_name": "authz"}, "timeout": "2s"},
	}, extra)}
}

// rt is a route to cluster "app".
func rt(name string, match M, extra M) M {
	return with(M{"name": name, "match": match, "route": M{"cluster": "app"}}, extra)
}

// perRoute is a typed_per_filter_config map with an ExtAuthzPerRoute.
func perRoute(cfg M) M {
	return M{authzFilter: with(M{"@type": perRouteType}, cfg)}
}

// config is a bootstrap with one listener, one HCM and clusters "authz"
// (HTTP/2) and "app".
type config struct {
	hcm      M // merged into the HCM's typed_config
	filters  L // before the router
	vhosts   L
	clusters map[string]M // merged into the named cluster
	tls      M            // the filter chain's transport_socket (a TLS listener)
}

func (c config) yaml(t *testing.T) []byte {
	t.Helper()
	filters := append(append(L{}, c.filters...), M{"name": "envoy.filters.http.router", "typed_config": M{"@type": routerType}})
	vhosts := c.vhosts
	if vhosts == nil {
		vhosts = L{M{"name": "app", "domains": L{"*"}, "routes": L{rt("default", M{"prefix": "/"}, nil)}}}
	}
	hcm := with(M{
		"@type":        hcmURL,
		"stat_prefix":  "ingress_http",
		"route_config": M{"name": "local", "virtual_hosts": vhosts},
		"http_filters": filters,
	}, c.hcm)
	cluster := func(name string, h2 bool) M {
		cl := M{
			"name": name, "type": "STATIC", "connect_timeout": "1s",
			"load_assignment": M{"cluster_name": name, "endpoints": L{M{"lb_endpoints": L{M{"endpoint": M{"address": M{
				"socket_address": M{"address": "127.0.0.1", "port_value": 1}}}}}}}},
		}
		defer func() { maps.Copy(cl, c.clusters[name]) }()
		if h2 {
			cl["typed_extension_protocol_options"] = M{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": M{
				"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": M{"http2_protocol_options": M{}},
			}}
		}
		return cl
	}
	chain := M{"filters": L{M{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}}}
	if c.tls != nil {
		chain["transport_socket"] = c.tls
	}
	b := M{"static_resources": M{
		"listeners": L{M{
			"name":          "ingress",
			"address":       M{"socket_address": M{"address": "127.0.0.1", "port_value": 8000}},
			"filter_chains": L{chain},
		}},
		"clusters": L{cluster("authz", true), cluster("app", false), cluster("idp", false)},
	}}
	js, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// fakeAuthz is a tiny authorization server: it records every CheckRequest
// and answers with respond.
type fakeAuthz struct {
	authv3.UnimplementedAuthorizationServer
	addr    string
	respond func(*authv3.CheckRequest) (*authv3.CheckResponse, error)
	delay   time.Duration

	mu   sync.Mutex
	reqs []*authv3.CheckRequest
}

func startAuthz(t *testing.T, respond func(*authv3.CheckRequest) (*authv3.CheckResponse, error)) *fakeAuthz {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAuthz{addr: ln.Addr().String(), respond: respond}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return f
}

func (f *fakeAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			// The server may see the deadline just before the client does;
			// answering "allow" then could still reach the client in time.
			return nil, ctx.Err()
		}
	}
	if f.respond == nil {
		return allow(), nil
	}
	return f.respond(req)
}

func (f *fakeAuthz) requests() []*authv3.CheckRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*authv3.CheckRequest(nil), f.reqs...)
}

func (f *fakeAuthz) last(t *testing.T) *authv3.CheckRequest {
	t.Helper()
	rs := f.requests()
	if len(rs) == 0 {
		t.Fatal("the authorization server was not called")
	}
	return rs[len(rs)-1]
}

func allow() *authv3.CheckResponse {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}
}

func deny(code typev3.StatusCode, body string, headers ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: code}, Headers: headers, Body: body,
		}},
	}
}

func hdr(k, v string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: action}
}

func overwrite(k, v string) *corev3.HeaderValueOption {
	return hdr(k, v, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
}

// upstream is a real HTTP server that records what reached it.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Upstream", "app")
		_, _ = io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) addr() string { return u.srv.Listener.Addr().String() }

func (u *upstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.reqs...)
}

func (u *upstream) last(t *testing.T) *http.Request {
	t.Helper()
	rs := u.requests()
	if len(rs) == 0 {
		t.Fatal("the upstream was not called")
	}
	return rs[len(rs)-1]
}

// closedAddr is a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// front is a proxy served by httptest.
type front struct {
	p   *Proxy
	srv *httptest.Server
}

func startProxy(t *testing.T, yaml []byte, opts Options) *front {
	t.Helper()
	p, err := New(yaml, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return &front{p: p, srv: srv}
}

// do sends a request through the proxy with a real HTTP client.
func (f *front) do(t *testing.T, method, path string, headers http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	c := &http.Client{
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// raw sends a request line and headers byte for byte, so paths that an HTTP
// client would clean or escape (backslashes, %2F) reach the proxy as written.
func (f *front) raw(t *testing.T, method, target string, extra ...string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := method + " " + target + " HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n"
	for _, h := range extra {
		msg += h + "\r\n"
	}
	if _, err := io.WriteString(conn, msg+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readShipped(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logRecords collects slog records.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

// messages returns the records with message msg, each as its attributes.
func (l *logRecords) messages(msg string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.recs {
		if r.Message != msg {
			continue
		}
		m := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

// waitMessages waits until n records with message msg arrived: the proxy
// writes access logs after the response, as Envoy does, so a client may see
// the response before its log line.
func (l *logRecords) waitMessages(t *testing.T, msg string, n int) []map[string]string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := l.messages(msg)
		if len(recs) >= n || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(5 * time.Millisecond)
	}
}
