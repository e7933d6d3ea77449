package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
	"github.com/stepup-authz/stepup-authz/internal/dpopproof"
	"github.com/stepup-authz/stepup-authz/internal/oidcprovider"
	"github.com/stepup-authz/stepup-authz/internal/redistest"
)

const dpopURL = "https://app.example.com/api/payout"

// checkDPoP sends a Check for GET https://app.example.com/api/payout (Envoy's
// x-forwarded-proto https) with the token under scheme and the given proof.
func (s *server) checkDPoP(t *testing.T, scheme, tok, proof string) *authv3.CheckResponse {
	t.Helper()
	headers := map[string]string{
		":method": "GET", ":path": "/api/payout?page=2", ":authority": "app.example.com",
		"x-forwarded-proto": "https", "authorization": scheme + " " + tok,
	}
	if proof != "" {
		headers["dpop"] = proof
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := s.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/payout?page=2", Host: "app.example.com", Scheme: "http", Headers: headers,
		}},
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func dpopToken(t *testing.T, idp *devidp.IdP, key *dpopproof.Key) string {
	t.Helper()
	tok, err := idp.Mint(devidp.Claims{"sub": "user-42", "acr": "aal2", "auth_time": time.Now().Unix(),
		"cnf": map[string]any{"jkt": key.Thumbprint()}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func proofFor(t *testing.T, key *dpopproof.Key, tok, nonce string) string {
	t.Helper()
	p, err := key.Proof("GET", dpopURL, tok, nonce, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeSecret(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDPoPReplicasShareRedis runs two replicas of the real binary against one
// real Redis: a proof accepted by one is refused by the other, a nonce one
// issued is accepted by the other, and with Redis gone DPoP fails closed (503)
// while bearer tokens are unaffected.
func TestDPoPReplicasShareRedis(t *testing.T) {
	rds := redistest.Start(t, "replay-store-secret")
	idp := startIdP(t)
	var nonceKey [48]byte
	_, _ = rand.Read(nonceKey[:])
	config := `
listen: { grpc: "{{GRPC}}", admin: "{{ADMIN}}" }
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "{{ISSUER}}/jwks.json"
    audiences: ["https://api.example.com"]
dpop:
  nonce: true
  nonce_key_file: "` + writeSecret(t, "nonce.key", base64.StdEncoding.EncodeToString(nonceKey[:])) + `"
  replay_store:
    type: redis
    address: "` + rds.Addr + `"
    password_file: "` + writeSecret(t, "redis.password", rds.Password) + `"
`
	a := startServer(t, idp, config)
	b := startServer(t, idp, config)
	key, err := dpopproof.NewKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	tok := dpopToken(t, idp, key)

	// No nonce yet: replica a asks for one.
	resp := a.checkDPoP(t, "DPoP", tok, proofFor(t, key, tok, ""))
	nonce := header(resp, "dpop-nonce")
	if resp.GetDeniedResponse().GetStatus().GetCode() != 401 || resp.GetDeniedResponse().GetBody() != `{"error":"use_dpop_nonce"}` || nonce == "" {
		t.Fatalf("first request: %s, DPoP-Nonce %q; want 401 use_dpop_nonce with a nonce", describe(resp), nonce)
	}
	// Replica a's nonce is good on replica b (the key file is shared).
	proof := proofFor(t, key, tok, nonce)
	resp = b.checkDPoP(t, "DPoP", tok, proof)
	if resp.GetOkResponse() == nil {
		t.Fatalf("replica b with replica a's nonce: %s", describe(resp))
	}
	if responseHeader(resp, "dpop-nonce") == "" {
		t.Error("an allowed DPoP request carries no fresh DPoP-Nonce (response_headers_to_add)")
	}
	// The same proof again, on the other replica: a replay.
	resp = a.checkDPoP(t, "DPoP", tok, proof)
	if resp.GetDeniedResponse().GetStatus().GetCode() != 401 || resp.GetDeniedResponse().GetBody() != `{"error":"invalid_dpop_proof"}` {
		t.Fatalf("replay on replica a: %s; want 401 invalid_dpop_proof", describe(resp))
	}
	waitFor(t, "replica a's log naming the replay", func() bool { return strings.Contains(a.stderr.String(), "detail=proof_replayed") })
	// And on the same replica.
	if resp := b.checkDPoP(t, "DPoP", tok, proof); resp.GetOkResponse() != nil {
		t.Fatal("replay on replica b accepted")
	}
	// A fresh proof is fine on either.
	if resp := a.checkDPoP(t, "DPoP", tok, proofFor(t, key, tok, nonce)); resp.GetOkResponse() == nil {
		t.Fatalf("a fresh proof on replica a: %s", describe(resp))
	}

	// Redis goes away: DPoP fails closed, bearer tokens do not need it.
	rds.Stop()
	resp = b.checkDPoP(t, "DPoP", tok, proofFor(t, key, tok, nonce))
	if resp.GetDeniedResponse().GetStatus().GetCode() != 503 || resp.GetDeniedResponse().GetBody() != `{"error":"temporarily_unavailable"}` {
		t.Fatalf("with Redis down: %s; want 503 temporarily_unavailable", describe(resp))
	}
	waitFor(t, "replica b's log saying replay_store_unavailable", func() bool {
		return strings.Contains(b.stderr.String(), "reason=replay_store_unavailable")
	})
	if resp := b.check(t, "GET", "/api/payout", userToken(t, idp, "aal2", 0)); resp.GetOkResponse() == nil {
		t.Fatalf("a bearer token with Redis down: %s", describe(resp))
	}
	// The bound token cannot fall back to Bearer either.
	if resp := b.check(t, "GET", "/api/payout", tok); resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("the DPoP-bound token as Bearer: %s", describe(resp))
	}
}

// TestDPoPWithNodeOIDCProvider: node-oidc-provider (features.dPoP) issues a
// DPoP-bound RFC 9068 token to an oauth4webapi client, which then calls a
// protected resource through the front proxy on the shipped envoy.yaml, with
// its own proof and its own use_dpop_nonce retry; proofs made by jose are
// judged the same way. Nobody here wrote the client, the proofs or the token.
func TestDPoPWithNodeOIDCProvider(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	app := &upstream{}
	appSrv := httptest.NewServer(app)
	t.Cleanup(appSrv.Close)
	nonceFile := writeSecret(t, "nonce.key", strings.Repeat("n", 48))
	srv := startServer(t, &devidp.IdP{Issuer: p.Issuer}, `
listen: { grpc: "{{GRPC}}", admin: "{{ADMIN}}" }
issuers:
  - issuer: "{{ISSUER}}"
    audiences: ["`+oidcprovider.ResourceJWT+`"]
dpop:
  nonce: true
  nonce_key_file: "`+nonceFile+`"
policy:
  default: { sender_constraint: dpop }
`)
	listen := freeAddr(t)
	idpHost := strings.TrimPrefix(p.Issuer, "http://")
	bootstrap := shippedBootstrap(t, "envoy.yaml", map[int]string{
		8000: listen, 9191: srv.grpcAddr, 8081: appSrv.Listener.Addr().String(), 8080: idpHost,
	})
	base := goProxy(t, bootstrap, listen)

	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg+" token and oauth4webapi's own proofs, nonce retry included", func(t *testing.T) {
			tok, err := p.Login(ctx, oidcprovider.Login{Sub: "user-9", ACR: "aal2", Resource: oidcprovider.ResourceJWT, DPoP: alg})
			if err != nil {
				t.Fatal(err)
			}
			before := app.count()
			resp, err := p.Request(ctx, tok.AccessToken, tok.DPoPKey, "GET", base+"/api/marketing-preferences?x=1")
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != http.StatusOK || app.count() != before+1 {
				t.Fatalf("oauth4webapi's DPoP request: %d %s %v", resp.Status, resp.Body, resp.Headers)
			}
			if got := app.last().Get("X-Stepup-Sub"); got != "user-9" {
				t.Errorf("x-stepup-sub upstream = %q", got)
			}
			// The same token as a bearer token: the downgrade is refused
			// (oauth4webapi turns the 401 challenge into an error).
			resp, err = p.Request(ctx, tok.AccessToken, "", "GET", base+"/api/marketing-preferences")
			if err == nil || !strings.Contains(err.Error(), "WWWAuthenticateChallengeError") {
				t.Fatalf("the DPoP-bound token as Bearer: %+v, %v; want the 401 challenge", resp, err)
			}
			if app.count() != before+1 {
				t.Fatal("the bearer request reached the app")
			}
		})
	}

	t.Run("proofs made by jose: accepted once, refused for another URL", func(t *testing.T) {
		tok, err := p.Login(ctx, oidcprovider.Login{Sub: "user-10", ACR: "aal2", Resource: oidcprovider.ResourceJWT, DPoP: "ES256"})
		if err != nil {
			t.Fatal(err)
		}
		target := base + "/api/marketing-preferences"
		send := func(proof string) reply {
			req, _ := http.NewRequest("GET", target, nil)
			req.Header.Set("Authorization", "DPoP "+tok.AccessToken)
			req.Header.Set("DPoP", proof)
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Body.Close()
			var b strings.Builder
			_, _ = io.Copy(&b, r.Body)
			return reply{r.StatusCode, r.Header, b.String()}
		}
		first, _, err := p.Proof(ctx, tok.DPoPKey, "GET", target, tok.AccessToken, "")
		if err != nil {
			t.Fatal(err)
		}
		r := send(first)
		nonce := r.header.Get("DPoP-Nonce")
		if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `DPoP error="use_dpop_nonce"`) || nonce == "" {
			t.Fatalf("without a nonce: %s", r)
		}
		withNonce, _, err := p.Proof(ctx, tok.DPoPKey, "GET", target, tok.AccessToken, nonce)
		if err != nil {
			t.Fatal(err)
		}
		if r := send(withNonce); r.status != 200 {
			t.Fatalf("jose proof with the server's nonce: %s", r)
		}
		if r := send(withNonce); r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `DPoP error="invalid_dpop_proof"`) {
			t.Fatalf("the same proof again: %s", r)
		}
		other, _, err := p.Proof(ctx, tok.DPoPKey, "GET", base+"/api/other", tok.AccessToken, nonce)
		if err != nil {
			t.Fatal(err)
		}
		if r := send(other); r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_dpop_proof") {
			t.Fatalf("a proof for another URL: %s", r)
		}
	})
}

// responseHeader finds a header the server adds to the client's response
// (ok_response.response_headers_to_add).
func responseHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetOkResponse().GetResponseHeadersToAdd() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}
