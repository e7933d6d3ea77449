package proxy

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/types/known/structpb"
)

// idp serves a JWKS with one RS256 key made for the test and signs tokens.
type idp struct {
	key  *rsa.PrivateKey
	kid  string
	srv  *httptest.Server
	mu   sync.Mutex
	hits int
	host string // Host header of the last JWKS fetch
}

func startIdP(t *testing.T) *idp {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	d := &idp{key: key, kid: "test-key"}
	jwk, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: d.kid, ALG: jwkset.AlgRS256, USE: jwkset.UseSig}})
	if err != nil {
		t.Fatal(err)
	}
	set, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	if err != nil {
		t.Fatal(err)
	}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.hits++
		d.host = r.Host
		d.mu.Unlock()
		if r.URL.Path != "/jwks.json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(set)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *idp) fetches() (int, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hits, d.host
}

func (d *idp) sign(t *testing.T, claims jwt.MapClaims, key *rsa.PrivateKey) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = d.kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwtPayload(req *authv3.CheckRequest) *structpb.Struct {
	return req.GetAttributes().GetMetadataContext().GetFilterMetadata()["envoy.filters.http.jwt_authn"].GetFields()["jwt_payload"].GetStructValue()
}

func TestShippedJwtAuthnYAML(t *testing.T) {
	yaml := readShipped(t, "envoy-jwt-authn.yaml")
	// The issuer and audience come from the shipped file itself.
	probe, err := New(yaml, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var provider *jwtProvider
	for _, e := range probe.hcm.filters {
		if f, ok := e.factory.(*jwtAuthnFilter); ok {
			provider = f.providers[0]
		}
	}
	probe.Close()
	if provider == nil || len(provider.audiences) == 0 {
		t.Fatal("the shipped jwt_authn YAML has no provider with audiences")
	}
	now := time.Now()
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	claims := func(extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": provider.issuer, "aud": provider.audiences[0], "sub": "alice",
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "auth_time": now.Add(-time.Minute).Unix(), "acr": "aal2",
		}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}

	tests := []struct {
		name        string
		path        string
		token       func(d *idp) string
		wantPayload bool
		wantChecks  int
		noFetch     bool // no provider accepts the token's issuer
	}{
		{
			name:        "a valid token's payload reaches metadata_context under payload_in_metadata",
			path:        "/api/payout-destination",
			token:       func(d *idp) string { return d.sign(t, claims(nil), d.key) },
			wantPayload: true,
			wantChecks:  1,
		},
		{
			name:       "a token signed by another key adds no metadata and the request still reaches ext_authz",
			path:       "/api/payout-destination",
			token:      func(d *idp) string { return d.sign(t, claims(nil), other) },
			wantChecks: 1,
		},
		{
			name:       "an expired token adds no metadata",
			path:       "/api/payout-destination",
			token:      func(d *idp) string { return d.sign(t, claims(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}), d.key) },
			wantChecks: 1,
		},
		{
			name:       "a token for another audience adds no metadata",
			path:       "/api/payout-destination",
			token:      func(d *idp) string { return d.sign(t, claims(jwt.MapClaims{"aud": "https://other.example"}), d.key) },
			wantChecks: 1,
		},
		{
			name:       "a token from another issuer adds no metadata",
			path:       "/api/payout-destination",
			token:      func(d *idp) string { return d.sign(t, claims(jwt.MapClaims{"iss": "https://evil.example"}), d.key) },
			wantChecks: 1,
			noFetch:    true,
		},
		{
			name:       "a request without a token continues without metadata",
			path:       "/api/payout-destination",
			wantChecks: 1,
		},
		{
			name:  "healthz has no requirement and no check",
			path:  "/healthz",
			token: func(d *idp) string { return d.sign(t, claims(nil), d.key) },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := startIdP(t)
			authz := startAuthz(t, nil)
			up := startUpstream(t)
			f := startProxy(t, yaml, Options{ClusterAddrs: map[string]string{
				"stepup_authz": authz.addr, "app": up.addr(), "idp_jwks": d.srv.Listener.Addr().String(),
			}})
			h := http.Header{}
			var tok string
			if tc.token != nil {
				tok = tc.token(d)
				h.Set("Authorization", "Bearer "+tok)
			}
			for range 2 { // the second request is served from the JWKS cache
				resp := f.do(t, http.MethodGet, tc.path, h)
				if b := body(t, resp); resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d %q", resp.StatusCode, b)
				}
			}
			checks := authz.requests()
			if len(checks) != 2*tc.wantChecks {
				t.Fatalf("ext_authz called %d times, want %d", len(checks), 2*tc.wantChecks)
			}
			hits, host := d.fetches()
			if tc.path == "/healthz" {
				if hits != 0 {
					t.Errorf("JWKS fetched %d times for a route without a requirement", hits)
				}
				return
			}
			if tok != "" && !tc.noFetch && (hits != 1 || host != provider.jwks.uri.Host) {
				t.Errorf("JWKS fetched %d times with Host %q, want once with %q", hits, host, provider.jwks.uri.Host)
			}
			req := checks[1]
			if got := req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]; tok != "" && got != "Bearer "+tok {
				t.Errorf("authorization seen by ext_authz = %q; forward: true must keep it", got)
			}
			payload := jwtPayload(req)
			if !tc.wantPayload {
				if payload != nil {
					t.Errorf("metadata_context carries a payload %v, want none", payload)
				}
				return
			}
			fields := payload.GetFields()
			if fields["sub"].GetStringValue() != "alice" || fields["acr"].GetStringValue() != "aal2" {
				t.Errorf("payload = %v", payload)
			}
			at, ok := fields["auth_time"].GetKind().(*structpb.Value_NumberValue)
			if !ok || int64(at.NumberValue) != now.Add(-time.Minute).Unix() {
				t.Errorf("auth_time = %v, want a number", fields["auth_time"])
			}
		})
	}
}

func TestJwtAuthnOptions(t *testing.T) {
	d := startIdP(t)
	now := time.Now()
	tok := d.sign(t, jwt.MapClaims{"iss": "https://idp.test", "aud": "api", "sub": "bob", "exp": now.Add(time.Hour).Unix()}, d.key)
	jwtFilter := func(forward bool) M {
		return M{"name": "envoy.filters.http.jwt_authn", "typed_config": M{
			"@type": jwtType,
			"providers": M{"idp": M{
				"issuer": "https://idp.test", "audiences": L{"api"}, "forward": forward, "payload_in_metadata": "claims",
				"remote_jwks": M{"http_uri": M{"uri": "https://idp.test/jwks.json", "cluster": "idp", "timeout": "1s"}},
			}},
			"rules": L{M{"match": M{"prefix": "/"}, "requires": M{"allow_missing_or_failed": M{}}}},
		}}
	}
	tests := []struct {
		name       string
		forward    bool
		namespaces L
		wantAuthz  bool // Authorization seen by ext_authz and upstream
		wantClaims bool
	}{
		{"forward: false strips Authorization after a successful verification", false, L{"envoy.filters.http.jwt_authn"}, false, true},
		{"forward: true keeps Authorization", true, L{"envoy.filters.http.jwt_authn"}, true, true},
		{"metadata_context carries only the listed namespaces", true, L{"some.other.namespace"}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authz := startAuthz(t, nil)
			up := startUpstream(t)
			cfg := config{filters: L{jwtFilter(tc.forward), extAuthz(M{"metadata_context_namespaces": tc.namespaces})}}
			f := startProxy(t, cfg.yaml(t), Options{ClusterAddrs: map[string]string{
				"authz": authz.addr, "app": up.addr(), "idp": d.srv.Listener.Addr().String(),
			}})
			resp := f.do(t, http.MethodGet, "/x", http.Header{"Authorization": {"Bearer " + tok}})
			if b := body(t, resp); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %q", resp.StatusCode, b)
			}
			req := authz.last(t)
			_, sawAuthz := req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]
			upAuthz := up.last(t).Header.Get("Authorization") != ""
			if sawAuthz != tc.wantAuthz || upAuthz != tc.wantAuthz {
				t.Errorf("authorization at ext_authz = %v, upstream = %v, want %v", sawAuthz, upAuthz, tc.wantAuthz)
			}
			md := req.GetAttributes().GetMetadataContext().GetFilterMetadata()
			claims := md["envoy.filters.http.jwt_authn"].GetFields()["claims"].GetStructValue()
			if (claims != nil) != tc.wantClaims {
				t.Fatalf("metadata_context = %v, want claims: %v", md, tc.wantClaims)
			}
			if tc.wantClaims && claims.GetFields()["sub"].GetStringValue() != "bob" {
				t.Errorf("claims = %v", claims)
			}
		})
	}
}
