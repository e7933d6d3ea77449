// Package bench is the machinery behind `stepup-authz bench`: realistic
// CheckRequests, a lean HTTP/2 gRPC load generator (closed and open loop),
// reference servers (the naive always-OK floor and a golang-jwt verifier), child
// process management with CPU pinning and accounting, and the report.
//
// It is also used by the Go benchmarks, so that `go test -bench` and the load
// tool send the same CheckRequest.
package bench

import (
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// Audience is the audience of every benchmark token.
const Audience = "https://api.example.com"

// Route is what every benchmark request asks for: POST /api/payout-destination
// with route metadata {required_acr: aal2, max_age: 300} in the "stepup" namespace.
var Route = struct {
	Method, Host, Path, Namespace, RequiredACR string
	MaxAge                                     time.Duration
}{"POST", "app.example.com", "/api/payout-destination", "stepup", "aal2", 300 * time.Second}

// Request builds the CheckRequest Envoy's ext_authz filter sends for a browser's
// POST to the payout route: 12 request headers (pseudo-headers included),
// peer addresses, the stream id, and the route metadata. raw is the bearer token
// ("" sends no Authorization header; a 12th header takes its place).
func Request(raw string) *authv3.CheckRequest {
	headers := map[string]string{
		":authority":      Route.Host,
		":method":         Route.Method,
		":path":           Route.Path,
		":scheme":         "https",
		"user-agent":      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0 Safari/537.36",
		"accept":          "application/json, text/plain, */*",
		"accept-encoding": "gzip, deflate, br, zstd",
		"content-type":    "application/json",
		"content-length":  "87",
		"x-forwarded-for": "203.0.113.7",
		"x-request-id":    "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
	}
	if raw != "" {
		headers["authorization"] = "Bearer " + raw
	} else {
		headers["origin"] = "https://" + Route.Host
	}
	md, err := structpb.NewStruct(map[string]any{
		"required_acr": Route.RequiredACR,
		"max_age":      Route.MaxAge.Seconds(),
	})
	if err != nil {
		panic(err)
	}
	peer := func(ip string, port uint32) *authv3.AttributeContext_Peer {
		return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}},
		}}}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      peer("10.12.0.7", 51234),
		Destination: peer("10.12.3.4", 8080),
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Unix(1_800_000_000, 123_000_000)),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       "17815235498718232515",
				Method:   Route.Method,
				Headers:  headers,
				Path:     Route.Path,
				Host:     Route.Host,
				Scheme:   "https",
				Protocol: "HTTP/2",
			},
		},
		RouteMetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{Route.Namespace: md}},
	}}
}

// Claims are the claims of a typical human access token at acr, authenticated
// at authTime, with a unique jti n. Signed with RS256 (2048-bit) the token is
// about 800 bytes. It expires an hour after authTime.
func Claims(acr string, authTime time.Time, n int) devidp.Claims {
	return devidp.Claims{
		"sub":       "00u1a2b3c4d5e6f7g8h9",
		"client_id": "web-frontend",
		"acr":       acr,
		"amr":       []string{"pwd", "otp"},
		"auth_time": authTime.Unix(),
		"scope":     "openid profile email payouts:read payouts:write",
		"sid":       "f3c5b2a1-8d7e-4c6b-9a5f-1e2d3c4b5a69",
		"jti":       fmt.Sprintf("%016x", n),
		"exp":       authTime.Add(time.Hour).Unix(),
	}
}
