package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/envoy/proxy"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// upstream is the demo app behind the proxy: it records what reached it.
type upstream struct {
	mu   sync.Mutex
	seen []http.Header
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, r.Header.Clone())
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"data":{"ok":true}}`)
}

func (u *upstream) last() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// stack is the whole seed flow on one machine: a dev IdP, the real
// stepup-authz binary, a front proxy on a shipped Envoy bootstrap and the app.
type stack struct {
	idp      *devidp.IdP
	idpURL   string
	server   *server
	app      *upstream
	proxyURL string
}

// shippedBootstrap reads a shipped Envoy YAML with its fixed ports (listener
// 8000, stepup_authz 9191, app 8081, idp 8080) moved to the given addresses.
func shippedBootstrap(t *testing.T, name string, ports map[int]string) []byte {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "envoy", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for fixed, addr := range ports {
		_, port, _ := net.SplitHostPort(addr)
		s = strings.ReplaceAll(s, "127.0.0.1:"+strconv.Itoa(fixed), addr)
		s = strings.ReplaceAll(s, "port_value: "+strconv.Itoa(fixed), "port_value: "+port)
	}
	return []byte(s)
}

// proxyRunner starts a front proxy for a bootstrap and returns its base URL.
type proxyRunner func(t *testing.T, bootstrap []byte, listen string) string

// goProxy runs the Envoy-compatible front proxy in-process.
func goProxy(t *testing.T, bootstrap []byte, listen string) string {
	t.Helper()
	p, err := proxy.New(bootstrap, proxy.Options{ListenerAddr: listen, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("front proxy: %v", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

// envoyBinary is real Envoy when one is installed (ENVOY_BIN or envoy on PATH).
func envoyBinary() string {
	if b := os.Getenv("ENVOY_BIN"); b != "" {
		return b
	}
	b, _ := exec.LookPath("envoy")
	return b
}

// realEnvoy runs the same bootstrap through real Envoy.
func realEnvoy(t *testing.T, bootstrap []byte, listen string) string {
	t.Helper()
	bin := envoyBinary()
	cfg := filepath.Join(t.TempDir(), "envoy.yaml")
	// Envoy binds the listener itself; its admin port moves off 9901 too.
	b := strings.ReplaceAll(string(bootstrap), "port_value: 9901", "port_value: 0")
	if err := os.WriteFile(cfg, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", cfg, "--base-id", strconv.Itoa(int(time.Now().UnixNano()%10000)), "-l", "warning")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("envoy output:\n%s", out.String())
		}
	})
	waitFor(t, "envoy listening on "+listen, func() bool {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + listen
}

const stackConfig = `
listen: { grpc: "{{GRPC}}", admin: "{{ADMIN}}" }
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "{{ISSUER}}/jwks.json"
    audiences: ["https://api.example.com"]
    jwt_authn_payload: jwt_payload
`

func startStack(t *testing.T, bootstrapName string, runProxy proxyRunner) *stack {
	t.Helper()
	idp, err := devidp.New("https://api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	idpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	idpSrv := &httptest.Server{Listener: idpLn, Config: &http.Server{Handler: idp.Handler()}}
	idpSrv.Start()
	t.Cleanup(idpSrv.Close)
	idp.Issuer = idpSrv.URL

	app := &upstream{}
	appSrv := httptest.NewServer(app)
	t.Cleanup(appSrv.Close)

	srv := startServer(t, idp, stackConfig)
	listen := freeAddr(t)
	bootstrap := shippedBootstrap(t, bootstrapName, map[int]string{
		8000: listen, 9191: srv.grpcAddr, 8081: appSrv.Listener.Addr().String(), 8080: idpLn.Addr().String(),
	})
	return &stack{idp: idp, idpURL: idpSrv.URL, server: srv, app: app, proxyURL: runProxy(t, bootstrap, listen)}
}

// mint asks the dev IdP's token endpoint over HTTP, as the frontend would.
func (s *stack) mint(t *testing.T, form url.Values) string {
	t.Helper()
	resp, err := http.PostForm(s.idpURL+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("token endpoint: %v %s", err, resp.Status)
	}
	return body.AccessToken
}

func (s *stack) user(t *testing.T, acr string, age time.Duration) string {
	return s.mint(t, url.Values{"sub": {"user-1"}, "acr": {acr}, "auth_age_seconds": {strconv.Itoa(int(age.Seconds()))}})
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (s *stack) do(t *testing.T, method, path, tok string, headers map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(method, s.proxyURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func (r reply) String() string { return fmt.Sprintf("%d %s %v", r.status, r.body, r.header) }

const (
	payoutBody      = `{"error":"step_up_required","required_acr":"aal2","max_age":300}`
	payoutChallenge = `Bearer error="insufficient_user_authentication", error_description="A stronger authentication is required", acr_values="aal2", max_age="300"`
	payoutStale     = `Bearer error="insufficient_user_authentication", error_description="A more recent authentication is required", acr_values="aal2", max_age="300"`
)

// walkSeedFlow is every case of the seed story through one proxy and bootstrap.
func walkSeedFlow(t *testing.T, bootstrapName string, runProxy proxyRunner) {
	s := startStack(t, bootstrapName, runProxy)
	var stepped string

	t.Run("an aal1 session is asked to step up, with the exact body and RFC 9470 challenge", func(t *testing.T) {
		before := s.app.count()
		r := s.do(t, "POST", "/api/payout-destination", s.user(t, "aal1", time.Minute), nil)
		if r.status != 401 || r.body != payoutBody || r.header.Get("WWW-Authenticate") != payoutChallenge ||
			r.header.Get("Content-Type") != "application/json" || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("got %s", r)
		}
		if s.app.count() != before {
			t.Error("a denied request reached the app")
		}
	})
	t.Run("after stepping up at the IdP the retry reaches the app with x-stepup headers", func(t *testing.T) {
		stepped = s.user(t, "aal2", 0)
		r := s.do(t, "POST", "/api/payout-destination", stepped, map[string]string{"X-Stepup-Acr": "aal3", "X-Stepup-Admin": "1"})
		if r.status != 200 {
			t.Fatalf("got %s", r)
		}
		h := s.app.last()
		if h.Get("X-Stepup-Sub") != "user-1" || h.Get("X-Stepup-Acr") != "aal2" || h.Get("X-Stepup-Auth-Time") == "" {
			t.Errorf("upstream saw sub=%q acr=%q auth_time=%q", h.Get("X-Stepup-Sub"), h.Get("X-Stepup-Acr"), h.Get("X-Stepup-Auth-Time"))
		}
		if len(h.Values("X-Stepup-Acr")) != 1 || h.Get("X-Stepup-Admin") != "" {
			t.Errorf("forged identity headers reached the app: %v", h)
		}
	})
	t.Run("the same token again within five minutes needs no prompt", func(t *testing.T) {
		if r := s.do(t, "POST", "/api/payout-destination", stepped, nil); r.status != 200 {
			t.Fatalf("got %s", r)
		}
	})
	t.Run("an aal2 sign-in six minutes old is asked again", func(t *testing.T) {
		r := s.do(t, "POST", "/api/payout-destination", s.user(t, "aal2", 6*time.Minute), nil)
		if r.status != 401 || r.body != payoutBody || r.header.Get("WWW-Authenticate") != payoutStale {
			t.Fatalf("got %s", r)
		}
	})
	t.Run("deleting the account with a 90 s old sign-in is asked again", func(t *testing.T) {
		r := s.do(t, "DELETE", "/api/account", s.user(t, "aal2", 90*time.Second), nil)
		if r.status != 401 || r.body != `{"error":"step_up_required","required_acr":"aal2","max_age":60}` {
			t.Fatalf("got %s", r)
		}
	})
	t.Run("a forged x-stepup-acr on the health route never reaches the app", func(t *testing.T) {
		r := s.do(t, "GET", "/healthz", "", map[string]string{"X-Stepup-Acr": "aal3", "X-Stepup-Sub": "admin"})
		if r.status != 200 {
			t.Fatalf("got %s", r)
		}
		if h := s.app.last(); h.Get("X-Stepup-Acr") != "" || h.Get("X-Stepup-Sub") != "" {
			t.Errorf("forged headers reached the app: %v", h)
		}
	})
	t.Run("a CORS preflight passes without a token and a denial exposes the challenge", func(t *testing.T) {
		before := s.app.count()
		r := s.do(t, "OPTIONS", "/api/payout-destination", "", map[string]string{
			"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization",
		})
		if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
			t.Fatalf("preflight: %s", r)
		}
		if s.app.count() != before {
			t.Error("the preflight reached the app")
		}
		r = s.do(t, "POST", "/api/payout-destination", s.user(t, "aal1", 0), map[string]string{"Origin": "http://localhost:3000"})
		if r.status != 401 || !strings.Contains(strings.ToLower(r.header.Get("Access-Control-Expose-Headers")), "www-authenticate") {
			t.Fatalf("denial seen by a script: %s", r)
		}
	})
	t.Run("marketing preferences need no step-up", func(t *testing.T) {
		if r := s.do(t, "POST", "/api/marketing-preferences", s.user(t, "aal1", time.Hour), nil); r.status != 200 {
			t.Fatalf("got %s", r)
		}
	})
	t.Run("a machine token with payouts:write passes and one without gets 403", func(t *testing.T) {
		with := s.mint(t, url.Values{"sub": {"svc-payouts"}, "client_id": {"svc-payouts"}, "scope": {"payouts:write"}})
		if r := s.do(t, "POST", "/api/payout-destination", with, nil); r.status != 200 {
			t.Fatalf("with scope: %s", r)
		}
		without := s.mint(t, url.Values{"sub": {"svc-payouts"}, "client_id": {"svc-payouts"}, "scope": {"payouts:read"}})
		r := s.do(t, "POST", "/api/payout-destination", without, nil)
		if r.status != 403 || r.body != `{"error":"insufficient_scope"}` ||
			r.header.Get("WWW-Authenticate") != `Bearer error="insufficient_scope", scope="payouts:write"` {
			t.Fatalf("without scope: %s", r)
		}
	})
	t.Run("no token is 401 unauthorized", func(t *testing.T) {
		r := s.do(t, "GET", "/api/orders", "", nil)
		if r.status != 401 || r.body != `{"error":"unauthorized"}` || r.header.Get("WWW-Authenticate") != "Bearer" {
			t.Fatalf("got %s", r)
		}
	})
	t.Run("with the ext_authz server down the proxy fails closed with 503", func(t *testing.T) {
		s.server.stop(t)
		before := s.app.count()
		r := s.do(t, "POST", "/api/marketing-preferences", s.user(t, "aal3", 0), nil)
		if r.status != 503 {
			t.Fatalf("got %s", r)
		}
		if s.app.count() != before {
			t.Error("a request reached the app while the server was down")
		}
	})
}

var shippedBootstraps = []string{"envoy.yaml", "envoy-context-extensions.yaml", "envoy-jwt-authn.yaml"}

// TestSeedFlowThroughFrontProxy walks the seed story through the
// Envoy-compatible front proxy on each shipped bootstrap.
func TestSeedFlowThroughFrontProxy(t *testing.T) {
	for _, name := range shippedBootstraps {
		t.Run(name, func(t *testing.T) { walkSeedFlow(t, name, goProxy) })
	}
}

// TestJWTAuthnPayloadIsUsed: behind jwt_authn, stepup-authz takes the payload
// Envoy verified instead of verifying the token again.
func TestJWTAuthnPayloadIsUsed(t *testing.T) {
	s := startStack(t, "envoy-jwt-authn.yaml", goProxy)
	if r := s.do(t, "POST", "/api/payout-destination", s.user(t, "aal2", 0), nil); r.status != 200 {
		t.Fatalf("got %s", r)
	}
	_, metrics := s.server.get(t, "/metrics")
	if !strings.Contains(metrics, `stepup_token_verifications_total{verifier="jwt"} 0`) ||
		!strings.Contains(metrics, `stepup_token_verifications_total{verifier="jwt_authn"} 1`) ||
		!strings.Contains(metrics, `stepup_decisions_total{decision="allow",policy="payout-destination",reason="allowed"} 1`) {
		t.Fatalf("the server verified the token itself (or did not allow it):\n%s", grep(metrics, "stepup_"))
	}
}

// TestSeedFlowThroughRealEnvoy runs the identical cases through real Envoy
// when a binary is available.
func TestSeedFlowThroughRealEnvoy(t *testing.T) {
	if envoyBinary() == "" {
		t.Skip("no Envoy binary (set ENVOY_BIN or put envoy on PATH): the seed flow ran through the Go front proxy only")
	}
	for _, name := range shippedBootstraps {
		t.Run(name, func(t *testing.T) { walkSeedFlow(t, name, realEnvoy) })
	}
}
