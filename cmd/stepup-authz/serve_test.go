package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// serveConfig requires acr on POST /pay; see e2e/load_test.go for why the policy
// comes first and the issuer last.
const serveConfig = `
policy:
  routes:
    - match: { path_prefix: /pay, methods: [POST] }
      required_acr: {{ACR}}
      name: pay
listen: { grpc: "{{GRPC}}", admin: "{{ADMIN}}" }
issuers:
  - audiences: ["https://api.example.com"]
    jwks_uri: "{{ISSUER}}/jwks.json"
    issuer: "{{ISSUER}}"
`

func loopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// In process, with goleak: serve answers 200 concurrent Checks while its config is
// rewritten (valid and invalid, renamed and in place) without a failed Check or an
// answer no config gives; cancelling its context (what SIGTERM does) under the same
// load drains and returns nil; and nothing it started is left running.
func TestServeReloadAndShutdownLeaveNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	idp, err := devidp.New("https://api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	defer hs.Close()
	idp.Issuer = hs.URL
	grpcAddr, adminAddr := loopbackAddr(t), loopbackAddr(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	render := func(acr string) []byte {
		return []byte(strings.NewReplacer("{{ACR}}", acr, "{{GRPC}}", grpcAddr, "{{ADMIN}}", adminAddr, "{{ISSUER}}", hs.URL).Replace(serveConfig))
	}
	if err := os.WriteFile(path, render("aal2"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, path, config.NewViper(), logs) }()
	get := func(p string) string {
		resp, err := http.Get("http://" + adminAddr + p)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return ""
		}
		return string(b)
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	poll("ready", func() bool { return get("/readyz") != "" })
	reloads := func(result string) float64 {
		m := regexp.MustCompile(`(?m)^stepup_config_reloads_total\{result="` + result + `"\} (\S+)$`).FindStringSubmatch(get("/metrics"))
		if m == nil {
			return 0
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	tok, err := idp.UserToken("user-1", "aal2", 0)
	if err != nil {
		t.Fatal(err)
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/pay", Host: "app", Headers: map[string]string{"authorization": "Bearer " + tok}},
	}}}

	// counts[phase][answer]; phase 0 is the reloads, phase 1 the shutdown.
	var mu sync.Mutex
	counts := [2]map[string]int{{}, {}}
	var phase int
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := client.Check(rctx, req)
				rcancel()
				answer := "other"
				switch {
				case err != nil:
					answer = "gRPC " + status.Code(err).String()
				case resp.GetStatus().GetCode() == int32(codes.OK):
					answer = "allowed"
				case resp.GetDeniedResponse().GetBody() == `{"error":"step_up_required","required_acr":"aal3"}`:
					answer = "step-up aal3"
				}
				mu.Lock()
				counts[phase][answer]++
				mu.Unlock()
				if err != nil {
					return // the server is going away: stop, as a client would
				}
			}
		}()
	}

	for i := range 10 {
		valid := i%2 == 0
		text := render("aal9")
		if valid {
			text = render(map[bool]string{true: "aal3", false: "aal2"}[i%4 == 0])
		}
		result := map[bool]string{true: "ok", false: "invalid"}[valid]
		before := reloads(result)
		if i%4 < 2 {
			tmp := path + ".tmp"
			if err := os.WriteFile(tmp, text, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(path, text, 0o600); err != nil {
			t.Fatal(err)
		}
		poll("reload "+strconv.Itoa(i), func() bool { return reloads(result) > before })
	}

	mu.Lock()
	phase = 1
	mu.Unlock()
	cancel() // what SIGTERM does
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve returned %v after its context was cancelled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not return within its 15s drain timeout")
	}
	close(stop)
	wg.Wait()

	t.Logf("during 10 reloads: %v; after shutdown began: %v", counts[0], counts[1])
	for answer := range counts[0] {
		if answer != "allowed" && answer != "step-up aal3" {
			t.Errorf("during reloads: %d answers %q", counts[0][answer], answer)
		}
	}
	if counts[0]["allowed"] == 0 || counts[0]["step-up aal3"] == 0 {
		t.Errorf("the load did not see both configs: %v", counts[0])
	}
	for answer := range counts[1] {
		if answer != "allowed" && answer != "step-up aal3" && answer != "gRPC Unavailable" {
			t.Errorf("during shutdown: %d answers %q", counts[1][answer], answer)
		}
	}
	conn.Close()
	hs.CloseClientConnections()
	http.DefaultClient.CloseIdleConnections() // the admin polls' keep-alive connections
}

func TestServeGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	unset := func(string) (string, bool) { return "", false }
	setGCPercent(unset)
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("without GOGC, the GC percent is %d, want %d", got, gcPercent)
	}
	set := func(k string) (string, bool) { return "50", k == "GOGC" }
	debug.SetGCPercent(50) // what the runtime made of GOGC=50
	setGCPercent(set)
	if got := debug.SetGCPercent(100); got != 50 {
		t.Errorf("with GOGC=50, the GC percent is %d, want GOGC's 50", got)
	}
}
