package devidp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/stepup-authz/stepup-authz/internal/dpopproof"
)

// serveIdP runs the dev IdP over real HTTP on loopback, its Issuer the server's URL.
func serveIdP(t *testing.T) (*IdP, *httptest.Server) {
	t.Helper()
	idp, err := New("https://api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(idp.Handler())
	t.Cleanup(srv.Close)
	idp.Issuer = srv.URL
	return idp, srv
}

// tokenRequest posts form to /token with the given DPoP header values.
func tokenRequest(t *testing.T, srv *httptest.Server, form url.Values, proofs ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("status %d: body is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

// claimsOf verifies an issued token with the IdP's published key and returns its claims.
func claimsOf(t *testing.T, idp *IdP, tok string) jwt.MapClaims {
	t.Helper()
	c := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, c, func(tk *jwt.Token) (any, error) {
		k := idp.Key(tk.Header["kid"].(string))
		if k == nil {
			t.Fatalf("unknown kid %v", tk.Header["kid"])
		}
		return k.Private.Public(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTokenEndpointBindsToTheDPoPProofKey(t *testing.T) {
	idp, srv := serveIdP(t)
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			key, err := dpopproof.NewKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			proof, err := key.Proof(http.MethodPost, srv.URL+"/token", "", "", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			status, body := tokenRequest(t, srv, url.Values{"acr": {"aal2"}}, proof)
			if status != http.StatusOK || body["token_type"] != "DPoP" {
				t.Fatalf("status %d, body %v: want 200 with token_type DPoP", status, body)
			}
			c := claimsOf(t, idp, body["access_token"].(string))
			if cnf, _ := c["cnf"].(map[string]any); cnf["jkt"] != key.Thumbprint() {
				t.Fatalf("cnf = %v, want jkt %s", c["cnf"], key.Thumbprint())
			}
			if c["acr"] != "aal2" {
				t.Errorf("acr = %v", c["acr"])
			}
		})
	}
	t.Run("dpop_jkt that names the proof's key is fine", func(t *testing.T) {
		key, _ := dpopproof.NewKey("ES256")
		proof, _ := key.Proof(http.MethodPost, srv.URL+"/token", "", "", time.Now())
		status, body := tokenRequest(t, srv, url.Values{"dpop_jkt": {key.Thumbprint()}}, proof)
		if status != http.StatusOK || body["token_type"] != "DPoP" {
			t.Fatalf("status %d, body %v", status, body)
		}
	})
	t.Run("without a proof the token is a bearer token", func(t *testing.T) {
		status, body := tokenRequest(t, srv, url.Values{"acr": {"aal1"}})
		if status != http.StatusOK || body["token_type"] != "Bearer" {
			t.Fatalf("status %d, body %v", status, body)
		}
		if c := claimsOf(t, idp, body["access_token"].(string)); c["cnf"] != nil {
			t.Fatalf("cnf = %v, want none", c["cnf"])
		}
	})
}

// TestTokenEndpointRefusesBadProofs: RFC 9449 §5: an invalid proof is a 400
// invalid_dpop_proof, never a bearer token.
func TestTokenEndpointRefusesBadProofs(t *testing.T) {
	_, srv := serveIdP(t)
	key, err := dpopproof.NewKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := dpopproof.NewKey("ES256")
	now := time.Now()
	tokenURL := srv.URL + "/token"
	sign := func(c dpopproof.Claims) string {
		p, err := key.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := func() string { return sign(dpopproof.Claims{HTM: "POST", HTU: tokenURL, IAT: now.Unix()}) }
	// A proof signed by one key that carries another's jwk.
	foreign := func() string {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
			(&jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{"jwk": jose.JSONWebKey{Key: other.Signer.Public()}}}).WithType("dpop+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(dpopproof.Claims{JTI: "j", HTM: "POST", HTU: tokenURL, IAT: now.Unix()})
		jws, _ := s.Sign(b)
		out, _ := jws.CompactSerialize()
		return out
	}
	withHeader := func(opts *jose.SignerOptions) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key.Signer}, opts)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(dpopproof.Claims{JTI: "j", HTM: "POST", HTU: tokenURL, IAT: now.Unix()})
		jws, _ := s.Sign(b)
		out, _ := jws.CompactSerialize()
		return out
	}
	privateJWK := func() string {
		return withHeader((&jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{"jwk": jose.JSONWebKey{Key: key.Signer}}}).WithType("dpop+jwt"))
	}
	hmac := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, (&jose.SignerOptions{}).WithType("dpop+jwt"))
		jws, _ := s.Sign([]byte(`{"jti":"j","htm":"POST","htu":"` + tokenURL + `","iat":1}`))
		out, _ := jws.CompactSerialize()
		return out
	}
	tests := []struct {
		name   string
		form   url.Values
		proofs []string
	}{
		{"two DPoP headers", nil, []string{good(), good()}},
		{"one header holding two proofs", nil, []string{good() + "," + good()}},
		{"not a JWS", nil, []string{"not-a-jws"}},
		{"typ is not dpop+jwt", nil, []string{withHeader((&jose.SignerOptions{EmbedJWK: true}).WithType("JWT"))}},
		{"no jwk", nil, []string{withHeader((&jose.SignerOptions{}).WithType("dpop+jwt"))}},
		{"a private jwk", nil, []string{privateJWK()}},
		{"an HMAC proof", nil, []string{hmac()}},
		{"the signature is not the jwk's", nil, []string{foreign()}},
		{"htm is not POST", nil, []string{sign(dpopproof.Claims{HTM: "GET", HTU: tokenURL, IAT: now.Unix()})}},
		{"htu is another endpoint", nil, []string{sign(dpopproof.Claims{HTM: "POST", HTU: srv.URL + "/introspect", IAT: now.Unix()})}},
		{"htu is another host", nil, []string{sign(dpopproof.Claims{HTM: "POST", HTU: "http://evil.example/token", IAT: now.Unix()})}},
		{"iat is stale", nil, []string{sign(dpopproof.Claims{HTM: "POST", HTU: tokenURL, IAT: now.Add(-5 * time.Minute).Unix()})}},
		{"iat is in the future", nil, []string{sign(dpopproof.Claims{HTM: "POST", HTU: tokenURL, IAT: now.Add(5 * time.Minute).Unix()})}},
		{"no iat", nil, []string{sign(dpopproof.Claims{HTM: "POST", HTU: tokenURL})}},
		{"dpop_jkt names another key", url.Values{"dpop_jkt": {other.Thumbprint()}}, []string{good()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := tokenRequest(t, srv, tc.form, tc.proofs...)
			if status != http.StatusBadRequest || body["error"] != "invalid_dpop_proof" || body["access_token"] != nil {
				t.Fatalf("status %d, body %v: want 400 invalid_dpop_proof and no token", status, body)
			}
			if d, _ := body["error_description"].(string); d == "" {
				t.Errorf("no error_description")
			}
		})
	}
}

func TestDiscoveryNamesDPoPAlgorithms(t *testing.T) {
	_, srv := serveIdP(t)
	resp, err := srv.Client().Get(srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Algs []string `json:"dpop_signing_alg_values_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Algs) == 0 || doc.Algs[0] != "ES256" {
		t.Fatalf("dpop_signing_alg_values_supported = %v", doc.Algs)
	}
}
