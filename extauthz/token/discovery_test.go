package token

import (
	"context"
	"crypto/elliptic"
	"errors"
	"strings"
	"testing"
)

func TestCheckFetchURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://idp.example.com/jwks", true},
		{"https://idp.example.com:8443/jwks", true},
		{"http://127.0.0.1:8080/jwks", true},
		{"http://127.0.0.2/jwks", true},
		{"http://[::1]:8080/jwks", true},
		{"http://localhost/jwks", true},
		{"http://LOCALHOST:1234/jwks", true},
		{"http://idp.example.com/jwks", false},
		{"http://10.0.0.1/jwks", false},
		{"http://localhost.example.com/jwks", false},
		{"http://127.0.0.1.nip.io/jwks", false},
		{"ftp://idp.example.com/jwks", false},
		{"file:///etc/jwks.json", false},
		{"https:///jwks", false},
		{"/jwks", false},
		{"https:idp.example.com", false},
		{"https://idp.example.com/%zz", false},
	}
	for _, tt := range tests {
		name := tt.url + " is refused"
		if tt.ok {
			name = tt.url + " is allowed"
		}
		t.Run(name, func(t *testing.T) {
			if err := checkFetchURL(tt.url); (err == nil) != tt.ok {
				t.Fatalf("checkFetchURL(%q) = %v", tt.url, err)
			}
		})
	}
}

func TestDiscoveryURL(t *testing.T) {
	tests := []struct{ issuer, want string }{
		{"https://idp.example.com", "https://idp.example.com/.well-known/openid-configuration"},
		{"https://idp.example.com/", "https://idp.example.com/.well-known/openid-configuration"},
		{"https://idp.example.com/realms/a", "https://idp.example.com/realms/a/.well-known/openid-configuration"},
	}
	for _, tt := range tests {
		t.Run("the discovery URL of "+tt.issuer+" has a single slash", func(t *testing.T) {
			if got := discoveryURL(tt.issuer); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDiscovery(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	discover := func(c *IssuerConfig, _ *Options) { c.JWKSURI = "" }
	tests := []struct {
		name      string
		doc       func(p *idp) any         // nil: the IdP's default document
		issuer    func(base string) string // nil: the IdP's URL
		wantKeys  int
		wantError string
	}{
		{name: "keys are found through discovery", wantKeys: 1},
		{name: "an issuer with a trailing slash is discovered without a double slash",
			issuer:   func(base string) string { return base + "/" },
			doc:      func(p *idp) any { return map[string]any{"issuer": p.issuer() + "/", "jwks_uri": p.jwksURI()} },
			wantKeys: 1},
		{name: "a discovery document naming another issuer is refused",
			doc:       func(p *idp) any { return map[string]any{"issuer": "https://evil.example.com", "jwks_uri": p.jwksURI()} },
			wantError: `issuer is "https://evil.example.com"`},
		{name: "a discovery document without issuer is refused",
			doc:       func(p *idp) any { return map[string]any{"jwks_uri": p.jwksURI()} },
			wantError: "issuer is <absent>"},
		{name: "a discovery document with an http jwks_uri on a public host is refused",
			doc: func(p *idp) any {
				return map[string]any{"issuer": p.issuer(), "jwks_uri": "http://idp.example.com/jwks"}
			},
			wantError: "http is allowed only on loopback hosts"},
		{name: "a discovery document without jwks_uri is refused",
			doc:       func(p *idp) any { return map[string]any{"issuer": p.issuer()} },
			wantError: "no jwks_uri"},
		{name: "a discovery document that is not JSON is refused",
			doc:       func(p *idp) any { return "not an object" },
			wantError: "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixtureWith(t, []testKey{k1}, func(p *idp) {
				if tt.doc != nil {
					p.setDiscovery(tt.doc(p))
				}
			}, nil, func(c *IssuerConfig, o *Options) {
				discover(c, o)
				if tt.issuer != nil {
					c.Issuer = tt.issuer(c.Issuer)
				}
			})
			st := f.v.Status()[0]
			if st.Keys != tt.wantKeys || !strings.Contains(st.LastError, tt.wantError) {
				t.Fatalf("status %+v, want %d keys and error containing %q", st, tt.wantKeys, tt.wantError)
			}
			if f.idp.discoveryHits.Load() != 1 {
				t.Fatalf("%d discovery requests, want 1", f.idp.discoveryHits.Load())
			}
			raw := f.token(t, k1, map[string]any{"iss": f.cfg.Issuer})
			_, err := f.v.Verify(context.Background(), raw)
			if tt.wantKeys == 0 {
				if !errors.Is(err, ErrKeysUnavailable) {
					t.Fatalf("want ErrKeysUnavailable, got %v", err)
				}
				if f.lastResult() != FetchInvalid {
					t.Fatalf("fetch result %q, want invalid", f.lastResult())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDiscoveryFollowsAChangedJWKSURI(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	k2 := newEC(t, "k2", elliptic.P256(), "ES256")
	f := newFixture(t, []testKey{k1}, func(c *IssuerConfig, _ *Options) { c.JWKSURI = "" })
	if _, err := f.v.Verify(context.Background(), f.token(t, k1, nil)); err != nil {
		t.Fatal(err)
	}
	f.idp.setDiscovery(map[string]any{"issuer": f.idp.issuer(), "jwks_uri": f.idp.srv.URL + "/jwks-b"})
	f.idp.publish(t, k2)
	f.clock.Advance(defaultMinRefetch)
	if _, err := f.v.Verify(context.Background(), f.token(t, k2, nil)); err != nil {
		t.Fatal(err)
	}
	if st := f.v.Status()[0]; !strings.HasSuffix(st.JWKSURI, "/jwks-b") {
		t.Fatalf("status %+v, want the new jwks_uri", st)
	}
	if n := f.idp.discoveryHits.Load(); n != 2 {
		t.Fatalf("%d discovery requests, want one per fetch", n)
	}
}

func TestDiscoveryUnreachable(t *testing.T) {
	k1 := newEC(t, "k1", elliptic.P256(), "ES256")
	// The IdP serves no discovery document under this issuer's path.
	f := newFixture(t, []testKey{k1}, func(c *IssuerConfig, _ *Options) { c.Issuer, c.JWKSURI = c.Issuer+"/nope", "" })
	_, err := f.v.Verify(context.Background(), f.token(t, k1, map[string]any{"iss": f.cfg.Issuer}))
	if !errors.Is(err, ErrKeysUnavailable) || !strings.Contains(err.Error(), "status 404") {
		t.Fatalf("want ErrKeysUnavailable naming the 404, got %v", err)
	}
	if f.lastResult() != FetchError {
		t.Fatalf("fetch result %q, want error", f.lastResult())
	}
}

// A file: or data: URL is absolute; what is wrong with it is that keys are
// fetched over https, and the message says so.
func TestFetchURLMessageSaysWhatIsTrue(t *testing.T) {
	for _, raw := range []string{"file:///etc/jwks.json", "data:application/json,{}", "https:///jwks"} {
		err := checkFetchURL(raw)
		if err == nil || strings.Contains(err.Error(), "absolute") || !strings.Contains(err.Error(), "https URL with a host") {
			t.Errorf("checkFetchURL(%q) = %v; want it to ask for an https URL with a host", raw, err)
		}
	}
}
