package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
	"github.com/stepup-authz/stepup-authz/internal/tracing/otlptest"
)

// serve with tracing on, as an operator turns it on (STEPUP_TRACING_* and
// OTEL_* around an untouched config file): the key sets' first fetch and a
// Check under Envoy's gRPC trace context reach a real OTLP/HTTP receiver,
// the last spans sent on shutdown.
func TestServeExportsSpans(t *testing.T) {
	rcv := otlptest.Start(t)
	idp, err := devidp.New("https://api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	defer hs.Close()
	idp.Issuer = hs.URL
	grpcAddr, adminAddr := loopbackAddr(t), loopbackAddr(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := strings.NewReplacer("{{ACR}}", "aal2", "{{GRPC}}", grpcAddr, "{{ADMIN}}", adminAddr, "{{ISSUER}}", hs.URL).Replace(serveConfig)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STEPUP_TRACING_ENABLED", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.HTTPEndpoint)
	t.Setenv("OTEL_SERVICE_NAME", "authz-under-test")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, path, config.NewViper(), os.Stderr) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok, err := idp.UserToken("user-1", "aal1", 0)
	if err != nil {
		t.Fatal(err)
	}
	const envoyTrace, envoySpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	cctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+envoyTrace+"-"+envoySpan+"-01")
	resp, err := authv3.NewAuthorizationClient(conn).Check(cctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/pay", Host: "app", Headers: map[string]string{"authorization": "Bearer " + tok}},
	}}})
	if err != nil || resp.GetDeniedResponse() == nil {
		t.Fatalf("Check: %v, %v; want a step-up denial", resp, err)
	}
	cancel() // what SIGTERM does: the buffered spans are sent on the way out
	if err := <-served; err != nil {
		t.Fatal(err)
	}

	var check, fetch bool
	for _, s := range rcv.Spans() {
		if s.Resource["service.name"] != "authz-under-test" {
			t.Errorf("span %s: service.name %v, want OTEL_SERVICE_NAME's", s.Name, s.Resource["service.name"])
		}
		switch s.Name {
		case extauthz.SpanCheck:
			check = s.TraceID == envoyTrace && s.ParentSpanID == envoySpan &&
				s.Attributes[extauthz.AttrReason] == "acr_too_low" && s.Attributes[extauthz.AttrPolicy] == "pay"
		case token.SpanJWKSFetch:
			fetch = fetch || (s.ParentSpanID == "" && s.Attributes[token.AttrIssuer] == hs.URL)
		}
	}
	if !check || !fetch {
		t.Errorf("Check span under Envoy's trace: %v; the first key fetch as a root span: %v (received %+v)", check, fetch, rcv.Spans())
	}
}
