package extauthz_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
	"github.com/stepup-authz/stepup-authz/internal/oidcprovider"
)

// introspected is a real ext_authz gRPC server on loopback whose config
// introspects at a real identity provider, counting every introspection by
// result.
type introspected struct {
	*harness
	logs    *lockedBuffer // JSON log lines
	mu      sync.Mutex
	results map[string]int
}

func (h *introspected) count(result string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.results[result]
}

// startIntrospected serves cfgYAML over real gRPC. A {{SECRET:value}} in it
// becomes the path of a file holding value.
func startIntrospected(t *testing.T, cfgYAML string) *introspected {
	t.Helper()
	for {
		i := strings.Index(cfgYAML, "{{SECRET:")
		if i < 0 {
			break
		}
		j := strings.Index(cfgYAML[i:], "}}") + i
		p := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(p, []byte(cfgYAML[i+len("{{SECRET:"):j]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfgYAML = cfgYAML[:i] + p + cfgYAML[j+2:]
	}
	cfg, err := config.Parse([]byte(cfgYAML), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	h := &introspected{results: map[string]int{}, logs: &lockedBuffer{}}
	ks := token.NewKeySets(token.KeySetOptions{})
	t.Cleanup(ks.Close)
	engine, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{OnIntrospection: func(_, result string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.results[result]++
	}})
	if err != nil {
		t.Fatal(err)
	}
	h.harness = &harness{client: serveEngine(t, engine, extauthz.Options{Logger: slog.New(slog.NewJSONHandler(h.logs, nil))})}
	return h
}

// oidcConfig introspects opaque tokens at node-oidc-provider p. endpoint ""
// reads it from p's discovery document.
func oidcConfig(p *oidcprovider.Provider, client, secret, auth, endpoint, cacheTTL string) string {
	ep := ""
	if endpoint != "" {
		ep = fmt.Sprintf("      endpoint: %q\n", endpoint)
	}
	return fmt.Sprintf(`
issuers:
  - issuer: %q
    audiences: [%q]
    introspection:
%s      client_id: %q
      client_secret_file: "{{SECRET:%s}}"
      auth: %s
      opaque_tokens: true
      cache_ttl: %s
policy:
  default: {}
  routes:
    - name: payout-destination
      match: { path_prefix: /api/payout-destination, methods: [POST] }
      required_acr: aal2
      max_age: 5m
      machine_scopes: ["payouts:write"]
`, p.Issuer, oidcprovider.ResourceOpaque, ep, client, secret, auth, cacheTTL)
}

func payout(tok string) req {
	return req{method: "POST", path: "/api/payout-destination", headers: bearer(tok)}
}

// TestIntrospectionWithNodeOIDCProvider proves interoperability with a
// real, certified OpenID Provider whose access tokens are opaque: only its
// introspection endpoint (found through its discovery document) knows their
// acr, amr and auth_time.
func TestIntrospectionWithNodeOIDCProvider(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	login := func(t *testing.T, acr string, age time.Duration) string {
		t.Helper()
		tok, err := p.Login(ctx, oidcprovider.Login{Sub: "user-7", ACR: acr, AMR: []string{"pwd", "otp"}, Age: age, Resource: oidcprovider.ResourceOpaque})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(tok.AccessToken, ".") {
			t.Fatalf("access token %q is not opaque", tok.AccessToken)
		}
		return tok.AccessToken
	}

	for _, client := range []struct{ id, secret, auth string }{
		{oidcprovider.IntrospectBasicID, oidcprovider.IntrospectBasicSecret, config.AuthClientSecretBasic},
		{oidcprovider.IntrospectPostID, oidcprovider.IntrospectPostSecret, config.AuthClientSecretPost},
	} {
		t.Run(client.auth, func(t *testing.T) {
			h := startIntrospected(t, oidcConfig(p, client.id, client.secret, client.auth, "", "60s"))

			t.Run("an aal2 login of a minute ago is allowed, with the answer's identity upstream", func(t *testing.T) {
				resp := h.check(t, payout(login(t, "aal2", time.Minute)))
				set, _ := okHeaders(t, resp)
				if set["x-stepup-sub"] != "user-7" || set["x-stepup-acr"] != "aal2" || set["x-stepup-auth-time"] == "" {
					t.Fatalf("upstream headers %v", set)
				}
				expectReason(t, resp, "allow", "allowed")
			})
			t.Run("an aal1 login is asked to step up", func(t *testing.T) {
				resp := h.check(t, payout(login(t, "aal1", time.Minute)))
				expectDenied(t, resp, denial{401, stepUpAAL2Body, stepUpAAL2})
				expectReason(t, resp, "deny", "acr_too_low")
			})
			t.Run("an aal2 login of ten minutes ago is asked to authenticate again", func(t *testing.T) {
				resp := h.check(t, payout(login(t, "aal2", 10*time.Minute)))
				expectDenied(t, resp, denial{401, stepUpAAL2Body, stepUpFresh})
				expectReason(t, resp, "deny", "auth_too_old")
			})
			t.Run("a token the provider never issued is invalid", func(t *testing.T) {
				resp := h.check(t, payout("dGhpcyBpcyBub3QgYSB0b2tlbiBvZiB0aGUgcHJvdmlkZXI"))
				expectDenied(t, resp, denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`})
				expectReason(t, resp, "deny", "token_invalid")
			})
			if got := h.count(token.IntrospectActive); got != 3 {
				t.Errorf("%d active answers counted, want 3", got)
			}
			if got := h.count(token.IntrospectInactive); got != 1 {
				t.Errorf("%d inactive answers counted, want 1", got)
			}
		})
	}

	t.Run("a client-credentials token (no sub in its answer) is a machine token", func(t *testing.T) {
		h := startIntrospected(t, oidcConfig(p, oidcprovider.IntrospectBasicID, oidcprovider.IntrospectBasicSecret, config.AuthClientSecretBasic, "", "60s"))
		withScope, err := p.ClientCredentials(ctx, oidcprovider.ResourceOpaque, "payouts:write", "")
		if err != nil {
			t.Fatal(err)
		}
		resp := h.check(t, payout(withScope.AccessToken))
		set, _ := okHeaders(t, resp)
		if set["x-stepup-sub"] != "app" {
			t.Fatalf("upstream headers %v", set)
		}
		without, err := p.ClientCredentials(ctx, oidcprovider.ResourceOpaque, "profile:read", "")
		if err != nil {
			t.Fatal(err)
		}
		resp = h.check(t, payout(without.AccessToken))
		expectDenied(t, resp, denial{403, `{"error":"insufficient_scope"}`, `Bearer error="insufficient_scope", scope="payouts:write"`})
		expectReason(t, resp, "deny", "scope_missing")
	})

	t.Run("a revoked token stops working within cache_ttl", func(t *testing.T) {
		h := startIntrospected(t, oidcConfig(p, oidcprovider.IntrospectBasicID, oidcprovider.IntrospectBasicSecret, config.AuthClientSecretBasic, "", "1s"))
		tok := login(t, "aal2", 0)
		expectReason(t, h.check(t, payout(tok)), "allow", "allowed")
		if err := p.Revoke(ctx, tok); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			md := metadataOf(t, h.check(t, payout(tok)))
			if md["reason"] == "token_invalid" {
				break
			}
			if md["reason"] != "allowed" || time.Now().After(deadline) {
				t.Fatalf("revoked token: %v", md)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("a secret the provider refuses is introspection_unavailable, never an allow", func(t *testing.T) {
		h := startIntrospected(t, oidcConfig(p, oidcprovider.IntrospectBasicID, "wrong-secret", config.AuthClientSecretBasic, "", "60s"))
		resp := h.check(t, payout(login(t, "aal2", 0)))
		expectDenied(t, resp, denial{503, `{"error":"temporarily_unavailable"}`, ""})
		expectReason(t, resp, "deny", "introspection_unavailable")
		if got := h.count(token.IntrospectStatus); got != 1 {
			t.Fatalf("%d http_error results, want 1", got)
		}
	})

	t.Run("1000 concurrent checks of one new token make exactly one call to the endpoint", func(t *testing.T) {
		target, err := url.Parse(p.Issuer)
		if err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int64
		rp := httputil.NewSingleHostReverseProxy(target)
		counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			rp.ServeHTTP(w, r)
		}))
		defer counting.Close()
		h := startIntrospected(t, oidcConfig(p, oidcprovider.IntrospectBasicID, oidcprovider.IntrospectBasicSecret, config.AuthClientSecretBasic, counting.URL+"/token/introspection", "60s"))
		tok := login(t, "aal2", 0)
		const n = 1000
		var wg sync.WaitGroup
		reasons := make(chan any, n)
		for range n {
			wg.Go(func() { reasons <- metadataOf(t, h.check(t, payout(tok)))["reason"] })
		}
		wg.Wait()
		close(reasons)
		for r := range reasons {
			if r != "allowed" {
				t.Fatalf("a concurrent check: %v", r)
			}
		}
		if got := calls.Load(); got != 1 {
			t.Fatalf("%d calls reached the introspection endpoint, want exactly 1", got)
		}
	})
}

// node-oidc-provider refuses to introspect its own JWT access tokens
// (unsupported_token_type), so jwt: true is proven against the dev IdP, which
// answers for its lightweight JWTs as Keycloak does.
func TestIntrospectionOfLightweightJWTs(t *testing.T) {
	idp, err := devidp.New(audience)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	defer hs.Close()
	idp.Issuer = hs.URL
	h := startIntrospected(t, fmt.Sprintf(`
issuers:
  - issuer: %[1]q
    audiences: [%[2]q]
    introspection:
      client_id: %[3]q
      client_secret_file: "{{SECRET:%[4]s}}"
      jwt: true
policy:
  default: { required_acr: aal2, max_age: 300 }
`, hs.URL, audience, devidp.IntrospectionClientID, idp.IntrospectionSecret()))

	mint := func(acr string) string {
		tok, err := idp.MintLightweight(devidp.Claims{"sub": "user-9", "acr": acr, "auth_time": time.Now().Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	t.Run("acr and auth_time come from the introspection answer", func(t *testing.T) {
		resp := h.check(t, req{path: "/x", headers: bearer(mint("aal2"))})
		set, _ := okHeaders(t, resp)
		if set["x-stepup-acr"] != "aal2" || set["x-stepup-auth-time"] == "" || set["x-stepup-sub"] != "user-9" {
			t.Fatalf("upstream headers %v", set)
		}
	})
	t.Run("an aal1 lightweight token is asked to step up", func(t *testing.T) {
		expectReason(t, h.check(t, req{path: "/x", headers: bearer(mint("aal1"))}), "deny", "acr_too_low")
	})
	t.Run("a revoked lightweight token is invalid", func(t *testing.T) {
		tok := mint("aal2")
		idp.Revoke(tok)
		expectReason(t, h.check(t, req{path: "/x", headers: bearer(tok)}), "deny", "token_invalid")
	})
	t.Run("a forged JWT never reaches the endpoint", func(t *testing.T) {
		before := idp.IntrospectionHits()
		evil, err := devidp.NewKey("rs-1", "RS256")
		if err != nil {
			t.Fatal(err)
		}
		forged, err := idp.MintWith(evil, devidp.Claims{"sub": "user-9", "acr": "aal3"})
		if err != nil {
			t.Fatal(err)
		}
		expectReason(t, h.check(t, req{path: "/x", headers: bearer(forged)}), "deny", "token_invalid")
		if idp.IntrospectionHits() != before {
			t.Fatal("a forged JWT was introspected")
		}
	})
}

// opaqueDevConfig takes opaque tokens to the dev IdP's introspection endpoint.
func opaqueDevConfig(idp *devidp.IdP, extra string) string {
	return fmt.Sprintf(`
issuers:
  - issuer: %[1]q
    jwks_uri: "%[1]s/jwks.json"
    audiences: [%[2]q]
    introspection:
      client_id: %[3]q
      client_secret_file: "{{SECRET:%[4]s}}"
      opaque_tokens: true
%[5]spolicy:
  default: {}
`, idp.Issuer, audience, devidp.IntrospectionClientID, idp.IntrospectionSecret(), extra)
}

func newDevIdP(t *testing.T) *devidp.IdP {
	t.Helper()
	idp, err := devidp.New(audience)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	t.Cleanup(hs.Close)
	idp.Issuer = hs.URL
	return idp
}

// CONTRACT.md: a Check waits for an introspection at most 80 % of its gRPC
// deadline, then answers 503 itself. Were it to wait longer, the client
// would see DeadlineExceeded (and Envoy its own status_on_error) instead.
func TestIntrospectionAnswersBeforeTheCallersDeadline(t *testing.T) {
	idp := newDevIdP(t)
	release := make(chan struct{})
	defer close(release)
	idp.SetIntrospectionFault(func(w http.ResponseWriter, _ string) bool {
		<-release
		return false
	})
	h := startIntrospected(t, opaqueDevConfig(idp, ""))
	tok, err := idp.MintOpaque(devidp.Claims{"sub": "user-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	resp, err := h.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/x", Host: "app.example.com", Headers: map[string]string{
			":method": "GET", ":path": "/x", ":authority": "app.example.com", "authorization": "Bearer " + tok,
		}},
	}}})
	if err != nil {
		t.Fatalf("Check returned %v: the answer came after the caller's deadline", err)
	}
	expectDenied(t, resp, denial{503, `{"error":"temporarily_unavailable"}`, ""})
	expectReason(t, resp, "deny", "introspection_unavailable")
}
