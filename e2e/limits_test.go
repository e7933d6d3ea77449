package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The limits of README's "Tokens" and "gRPC server limits", against the binary:
// a 1 MiB Authorization header still reaches the server (max receive size 4 MiB)
// and is a clear 401; so are 1001 headers; a CheckRequest over 4 MiB is refused by
// gRPC with RESOURCE_EXHAUSTED, which Envoy answers with status_on_error.
func TestRequestLimits(t *testing.T) {
	t.Parallel()
	idp := startIdP(t)
	s := startServer(t, idp, faultConfig("5m", false))
	tok := userToken(t, idp, "aal2", 0)
	check := func(headers map[string]string) (*authv3.CheckResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/home", Host: "app.example.com", Headers: headers,
			}},
		}})
	}
	for _, c := range []struct {
		name    string
		headers map[string]string
		want    verdict
	}{
		{"a valid token", map[string]string{"authorization": "Bearer " + tok}, vAllow},
		{"a 16,385-byte token", map[string]string{"authorization": "Bearer " + strings.Repeat("a", 16385)}, vInvalid},
		{"a 1 MiB token", map[string]string{"authorization": "Bearer " + strings.Repeat("a", 1<<20)}, vInvalid},
		{"a valid token among 1001 headers", manyHeaders(1001, tok), vInvalid},
		{"a valid token among 1000 headers", manyHeaders(1000, tok), vAllow},
	} {
		resp, err := check(c.headers)
		if err != nil {
			t.Errorf("%s: gRPC error %v", c.name, err)
			continue
		}
		if got := classify(resp); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	_, err := check(map[string]string{"authorization": "Bearer " + tok, "x-padding": strings.Repeat("p", 5<<20)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 5 MiB CheckRequest: %v, want RESOURCE_EXHAUSTED", err)
	}
	if resp, err := check(map[string]string{"authorization": "Bearer " + tok}); err != nil || classify(resp) != vAllow {
		t.Errorf("after the oversized request: %v %v", err, describe(resp))
	}
	s.stop(t)
}

func manyHeaders(n int, tok string) map[string]string {
	h := map[string]string{"authorization": "Bearer " + tok}
	for i := 0; len(h) < n; i++ {
		h[fmt.Sprintf("x-h-%d", i)] = "v"
	}
	return h
}
