package bench

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// floorServer is the naive reference: a grpc-go ext_authz server with the
// default codec and options that answers every Check with OK.
type floorServer struct {
	authv3.UnimplementedAuthorizationServer
}

func (floorServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}, nil
}

// ServeAdmin serves /metrics with the Go runtime's metrics on lis, so that
// bench can read a reference server's allocations as it reads stepup-authz's.
func ServeAdmin(lis net.Listener) *http.Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	return srv
}

// ServeFloor serves the always-OK floor on lis until the server is stopped.
func ServeFloor(lis net.Listener) *grpc.Server {
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, floorServer{})
	registerHealth(gs)
	go func() { _ = gs.Serve(lis) }()
	return gs
}

func registerHealth(gs *grpc.Server) {
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
}

// jwtServer is the reference for tokens that miss every cache: it parses and
// verifies each bearer token with golang-jwt/v5 (RS256, iss, aud, exp, iat)
// and applies the route's acr and auth_time rule, with no cache, behind the
// same grpc-go defaults as the floor.
type jwtServer struct {
	authv3.UnimplementedAuthorizationServer
	keys   map[string]*rsa.PublicKey
	parser *jwt.Parser
}

var denied401 = &authv3.CheckResponse{
	Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
	HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
	}},
}

func (s *jwtServer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	auth := req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]
	raw, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return denied401, nil
	}
	claims := jwt.MapClaims{}
	if _, err := s.parser.ParseWithClaims(raw, claims, s.key); err != nil {
		return denied401, nil
	}
	acr, _ := claims["acr"].(string)
	authTime, _ := claims["auth_time"].(float64)
	age := time.Since(time.Unix(int64(authTime), 0))
	if acr != "aal2" && acr != "aal3" || age > Route.MaxAge+30*time.Second {
		return denied401, nil
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}, nil
}

func (s *jwtServer) key(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if k, ok := s.keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("unknown kid %q", kid)
}

// ServeJWTFloor fetches the RSA keys at jwksURL and serves the golang-jwt
// reference on lis.
func ServeJWTFloor(lis net.Listener, jwksURL, issuer, audience string) (*grpc.Server, error) {
	keys, err := fetchRSAKeys(jwksURL)
	if err != nil {
		return nil, err
	}
	s := &jwtServer{keys: keys, parser: jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(30*time.Second),
	)}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, s)
	registerHealth(gs)
	go func() { _ = gs.Serve(lis) }()
	return gs, nil
}

func fetchRSAKeys(url string) (map[string]*rsa.PublicKey, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var set struct {
		Keys []struct {
			Kty, Kid, N, E string
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: key %q is not a valid RSA JWK", url, k.Kid)
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	if len(keys) == 0 {
		return nil, errors.New(url + ": no RSA keys")
	}
	return keys, nil
}
