package token

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	testClientID     = "stepup-authz"
	testClientSecret = "s3cr3t:with/odd&chars"
	opaqueToken      = "2YotnFZFEjr1zCsicMWpAA"
)

// endpoint is a real HTTP introspection endpoint on 127.0.0.1 whose answer
// each test sets; it records what it was sent.
type endpoint struct {
	srv *httptest.Server

	mu     sync.Mutex
	answer func(w http.ResponseWriter, r *http.Request)
	forms  []url.Values
	auths  []string
	hdrs   []http.Header

	calls, inFlight, maxInFlight atomic.Int64
}

func newEndpoint(t testing.TB) *endpoint {
	t.Helper()
	e := &endpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	n := e.inFlight.Add(1)
	defer e.inFlight.Add(-1)
	for {
		m := e.maxInFlight.Load()
		if n <= m || e.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	e.calls.Add(1)
	_ = r.ParseForm()
	e.mu.Lock()
	e.forms = append(e.forms, r.PostForm)
	e.auths = append(e.auths, r.Header.Get("Authorization"))
	e.hdrs = append(e.hdrs, r.Header.Clone())
	answer := e.answer
	e.mu.Unlock()
	if r.Method != http.MethodPost {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	answer(w, r)
}

func (e *endpoint) set(answer func(w http.ResponseWriter, r *http.Request)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.answer = answer
}

// setJSON answers 200 with body as JSON text.
func (e *endpoint) setJSON(body string) {
	e.set(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	})
}

// setClaims answers 200 with the JSON of claims.
func (e *endpoint) setClaims(t testing.TB, claims map[string]any) {
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	e.setJSON(string(b))
}

func (e *endpoint) lastForm() url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.forms[len(e.forms)-1]
}

// ifixture is a Verifier with one issuer whose keys come from a test IdP and
// whose introspection endpoint is ep.
type ifixture struct {
	*fixture
	ep *endpoint

	rmu     sync.Mutex
	results []string
}

func newIntrospectionFixture(t testing.TB, mod func(*IntrospectionConfig)) *ifixture {
	t.Helper()
	k := newRSA(t, "k1", "RS256")
	f := &ifixture{ep: newEndpoint(t)}
	f.fixture = newFixture(t, []testKey{k}, func(cfg *IssuerConfig, opts *Options) {
		ic := &IntrospectionConfig{
			Endpoint:         f.ep.srv.URL + "/introspect",
			ClientID:         testClientID,
			ClientSecret:     testClientSecret,
			OpaqueTokens:     true,
			RequireAudience:  true,
			CacheTTL:         time.Minute,
			NegativeCacheTTL: 5 * time.Second,
			MaxInFlight:      4,
		}
		if mod != nil {
			mod(ic)
		}
		cfg.Introspection = ic
		opts.OnIntrospection = func(_, result string) {
			f.rmu.Lock()
			defer f.rmu.Unlock()
			f.results = append(f.results, result)
		}
	})
	f.fixture.idp.publish(t, k)
	return f
}

func (f *ifixture) introspectResults() []string {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	return slices.Clone(f.results)
}

// active returns a valid active answer for f's issuer, with overrides.
func (f *ifixture) active(overrides map[string]any) map[string]any {
	now := f.clock.Now()
	c := map[string]any{
		"active":    true,
		"iss":       f.idp.issuer(),
		"aud":       testAudience,
		"sub":       "user-1",
		"client_id": "web",
		"acr":       "aal2",
		"amr":       []string{"pwd", "otp"},
		"auth_time": now.Add(-time.Minute).Unix(),
		"iat":       now.Add(-time.Minute).Unix(),
		"exp":       now.Add(time.Hour).Unix(),
		"scope":     "openid payouts:write",
	}
	for k, v := range overrides {
		if v == absent {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func verify(t testing.TB, v *testVerifier, raw string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := v.Verify(ctx, raw)
	return err
}

func TestIntrospectionRequestAndClaims(t *testing.T) {
	for _, auth := range []string{ClientSecretBasic, ClientSecretPost} {
		t.Run(auth, func(t *testing.T) {
			f := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.Auth = auth })
			f.ep.setClaims(t, f.active(nil))
			c, err := f.v.Verify(context.Background(), opaqueToken)
			if err != nil {
				t.Fatal(err)
			}
			now := f.clock.Now()
			if c.Issuer != f.idp.issuer() || c.Subject != "user-1" || c.ClientID != "web" || !c.HasACR || c.ACR != "aal2" ||
				!slices.Equal(c.AMR, []string{"pwd", "otp"}) || c.AuthTime.Unix() != now.Add(-time.Minute).Unix() ||
				c.Expiry.Unix() != now.Add(time.Hour).Unix() || !slices.Equal(c.Scopes, []string{"openid", "payouts:write"}) {
				t.Fatalf("claims %+v", c)
			}
			// RFC 7662 §2.1: a form POST with the token and its hint.
			form := f.ep.lastForm()
			if form.Get("token") != opaqueToken || form.Get("token_type_hint") != "access_token" {
				t.Fatalf("form %v", form)
			}
			f.ep.mu.Lock()
			hdr, authz := f.ep.hdrs[0], f.ep.auths[0]
			f.ep.mu.Unlock()
			if hdr.Get("Content-Type") != "application/x-www-form-urlencoded" || hdr.Get("Accept") != "application/json" {
				t.Fatalf("headers %v", hdr)
			}
			switch auth {
			case ClientSecretBasic:
				// RFC 6749 §2.3.1: each part form-urlencoded, then base64.
				want := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(testClientID)+":"+url.QueryEscape(testClientSecret)))
				if authz != want || form.Has("client_secret") {
					t.Fatalf("basic auth %q (want %q), form %v", authz, want, form)
				}
			case ClientSecretPost:
				if authz != "" || form.Get("client_id") != testClientID || form.Get("client_secret") != testClientSecret {
					t.Fatalf("post auth: header %q, form %v", authz, form)
				}
			}
			if got := f.introspectResults(); !slices.Equal(got, []string{IntrospectActive}) {
				t.Fatalf("results %v", got)
			}
		})
	}
}

// Every row is a denial: an *InvalidError with the detail (the token is not
// acceptable: 401), or, with detail "", an error wrapping
// ErrIntrospectionUnavailable (503) — never claims.
func TestIntrospectionDenials(t *testing.T) {
	big := `{"active":true,"pad":"` + strings.Repeat("x", MaxIntrospectionBytes) + `"}`
	other := newEndpoint(t)
	other.setJSON(`{"active":true}`)
	for _, tc := range []struct {
		name   string
		answer func(f *ifixture, w http.ResponseWriter, r *http.Request)
		detail string
		result string
	}{
		{"active false is inactive", jsonAnswer(`{"active":false}`), DetailInactive, IntrospectInactive},
		{"an answer without active is inactive", claimsAnswer(map[string]any{"active": absent}), DetailInactive, IntrospectInactive},
		{`active "true" (a string) is inactive`, claimsAnswer(map[string]any{"active": "true"}), DetailInactive, IntrospectInactive},
		{"active 1 is inactive", claimsAnswer(map[string]any{"active": 1}), DetailInactive, IntrospectInactive},
		{"active null is inactive", claimsAnswer(map[string]any{"active": nil}), DetailInactive, IntrospectInactive},
		{"an answer for another issuer is invalid", claimsAnswer(map[string]any{"iss": "https://evil.example.com"}), DetailUnknownIssuer, IntrospectInvalid},
		{"an answer without aud is invalid when require_audience", claimsAnswer(map[string]any{"aud": absent}), DetailBadAudience, IntrospectInvalid},
		{"an answer for another audience is invalid", claimsAnswer(map[string]any{"aud": []string{"https://other.example.com"}}), DetailBadAudience, IntrospectInvalid},
		{"an answer whose exp has passed is invalid", claimsAnswer(map[string]any{"exp": t0.Add(-time.Hour).Unix()}), DetailExpired, IntrospectInvalid},
		{"an answer whose nbf is ahead is invalid", claimsAnswer(map[string]any{"nbf": t0.Add(time.Hour).Unix()}), DetailNotYetValid, IntrospectInvalid},
		{"an answer issued in the future is invalid", claimsAnswer(map[string]any{"iat": t0.Add(time.Hour).Unix()}), DetailIssuedInFuture, IntrospectInvalid},
		{"acr that is not a string is invalid", claimsAnswer(map[string]any{"acr": 2}), DetailClaimType, IntrospectInvalid},
		{"auth_time that is not a number is invalid", claimsAnswer(map[string]any{"auth_time": "1700000000"}), DetailClaimType, IntrospectInvalid},
		{"amr that is not an array of strings is invalid", claimsAnswer(map[string]any{"amr": "otp"}), DetailClaimType, IntrospectInvalid},
		{"aud that is a number is invalid", claimsAnswer(map[string]any{"aud": 7}), DetailClaimType, IntrospectInvalid},
		{"a cnf with neither jkt nor x5t#S256 is a binding that cannot be checked", claimsAnswer(map[string]any{"cnf": map[string]any{"jwk": map[string]any{"kty": "EC"}}}), DetailBinding, IntrospectInvalid},
		{"cnf that is not an object is invalid", claimsAnswer(map[string]any{"cnf": "jkt"}), DetailClaimType, IntrospectInvalid},
		{"a repeated active member is unavailable", jsonAnswer(`{"active":false,"active":true}`), "", IntrospectMalformed},
		{"an HTML page with status 200 is unavailable", func(_ *ifixture, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html><body>Sign in</body></html>"))
		}, "", IntrospectMalformed},
		{"a JSON array is unavailable", jsonAnswer(`[{"active":true}]`), "", IntrospectMalformed},
		{"the JSON value true is unavailable", jsonAnswer(`true`), "", IntrospectMalformed},
		{"an empty 200 is unavailable", jsonAnswer(``), "", IntrospectMalformed},
		{"an HTML error page with status 500 is unavailable", func(_ *ifixture, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte("<html>oops</html>"))
		}, "", IntrospectStatus},
		{"401 (our client secret refused) is unavailable", func(_ *ifixture, w http.ResponseWriter, _ *http.Request) {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		}, "", IntrospectStatus},
		{"an answer over 1 MiB is unavailable", jsonAnswer(big), "", IntrospectTooLarge},
		{"a redirect to another origin is not followed", func(_ *ifixture, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.srv.URL+"/introspect", http.StatusTemporaryRedirect)
		}, "", IntrospectRedirect},
		{"a 302 to another origin is not followed either", func(_ *ifixture, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.srv.URL+"/introspect", http.StatusFound)
		}, "", IntrospectRedirect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newIntrospectionFixture(t, nil)
			f.ep.set(func(w http.ResponseWriter, r *http.Request) { tc.answer(f, w, r) })
			c, err := f.v.Verify(context.Background(), opaqueToken)
			if c != nil {
				t.Fatalf("got claims %+v, want a denial", c)
			}
			if tc.detail != "" {
				wantDetail(t, err, tc.detail)
			} else if !errors.Is(err, ErrIntrospectionUnavailable) || InvalidDetail(err) != "" {
				t.Fatalf("want unavailable, got %v", err)
			}
			if got := f.introspectResults(); !slices.Equal(got, []string{tc.result}) {
				t.Fatalf("results %v, want [%s]", got, tc.result)
			}
			if msg := err.Error(); strings.Contains(msg, testClientSecret) || strings.Contains(msg, opaqueToken) {
				t.Fatalf("the error shows the secret or the token: %s", msg)
			}
		})
	}
	if n := other.calls.Load(); n != 0 {
		t.Fatalf("the other origin was called %d times", n)
	}
}

func jsonAnswer(body string) func(*ifixture, http.ResponseWriter, *http.Request) {
	return func(_ *ifixture, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}
}

func claimsAnswer(overrides map[string]any) func(*ifixture, http.ResponseWriter, *http.Request) {
	return func(f *ifixture, w http.ResponseWriter, _ *http.Request) {
		b, _ := json.Marshal(f.active(overrides))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}
}

// An answer without sub (a client-credentials token: no resource owner)
// speaks for its client: sub is client_id, a machine token (RFC 9068 §2.2).
func TestIntrospectionAnswerWithoutSubjectIsTheClient(t *testing.T) {
	f := newIntrospectionFixture(t, nil)
	f.ep.setClaims(t, f.active(map[string]any{"sub": absent, "client_id": "batch-job", "acr": absent, "amr": absent, "auth_time": absent}))
	c, err := f.v.Verify(context.Background(), opaqueToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "batch-job" || c.ClientID != "batch-job" {
		t.Fatalf("claims %+v", c)
	}
}

func TestIntrospectionAnswerWithoutAudienceWhenNotRequired(t *testing.T) {
	f := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.RequireAudience = false })
	f.ep.setClaims(t, f.active(map[string]any{"aud": absent, "iss": absent}))
	if err := verify(t, f.v, opaqueToken); err != nil {
		t.Fatal(err)
	}
	// An aud that is present must still match.
	f.ep.setClaims(t, f.active(map[string]any{"aud": "https://other.example.com"}))
	wantDetail(t, verify(t, f.v, "another-opaque-token"), DetailBadAudience)
}

func TestIntrospectionSameOriginRedirectIsFollowed(t *testing.T) {
	f := newIntrospectionFixture(t, nil)
	f.ep.set(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/introspect" {
			http.Redirect(w, r, "/v2/introspect", http.StatusPermanentRedirect)
			return
		}
		b, _ := json.Marshal(f.active(nil))
		_, _ = w.Write(b)
	})
	if err := verify(t, f.v, opaqueToken); err != nil {
		t.Fatal(err)
	}
	if form := f.ep.lastForm(); form.Get("token") != opaqueToken {
		t.Fatalf("the redirected POST lost its body: %v", form)
	}
}

func TestIntrospectionTransportFailures(t *testing.T) {
	t.Run("a TLS endpoint whose certificate is not trusted", func(t *testing.T) {
		tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"active":true}`))
		}))
		tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
		tlsSrv.StartTLS()
		defer tlsSrv.Close()
		f := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.Endpoint = tlsSrv.URL + "/introspect" })
		err := verify(t, f.v, opaqueToken)
		if !errors.Is(err, ErrIntrospectionUnavailable) {
			t.Fatalf("want unavailable, got %v", err)
		}
		if got := f.introspectResults(); !slices.Equal(got, []string{IntrospectTLS}) {
			t.Fatalf("results %v", got)
		}
	})
	t.Run("a refused connection", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		f := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.Endpoint = "http://" + addr + "/introspect" })
		if err := verify(t, f.v, opaqueToken); !errors.Is(err, ErrIntrospectionUnavailable) {
			t.Fatalf("want unavailable, got %v", err)
		}
		if got := f.introspectResults(); !slices.Equal(got, []string{IntrospectError}) {
			t.Fatalf("results %v", got)
		}
	})
	t.Run("a slow endpoint ends at the caller's deadline", func(t *testing.T) {
		f := newIntrospectionFixture(t, nil)
		release := make(chan struct{})
		defer close(release)
		f.ep.set(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := f.v.Verify(ctx, opaqueToken)
		if !errors.Is(err, ErrIntrospectionUnavailable) {
			t.Fatalf("want unavailable, got %v", err)
		}
		eventually(t, "the timed-out call to be counted", func() bool {
			return slices.Equal(f.introspectResults(), []string{IntrospectTimeout})
		})
	})
}

func TestIntrospectionCache(t *testing.T) {
	t.Run("an active answer is reused until cache_ttl, then asked again", func(t *testing.T) {
		f := newIntrospectionFixture(t, nil)
		f.ep.setClaims(t, f.active(nil))
		for range 3 {
			if err := verify(t, f.v, opaqueToken); err != nil {
				t.Fatal(err)
			}
		}
		if n := f.ep.calls.Load(); n != 1 {
			t.Fatalf("%d calls, want 1", n)
		}
		// The token is revoked at the IdP: it keeps working only until cache_ttl.
		f.ep.setJSON(`{"active":false}`)
		f.clock.Advance(59 * time.Second)
		if err := verify(t, f.v, opaqueToken); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Second)
		wantDetail(t, verify(t, f.v, opaqueToken), DetailInactive)
		if n := f.ep.calls.Load(); n != 2 {
			t.Fatalf("%d calls, want 2", n)
		}
	})
	t.Run("an active answer is never reused past its exp", func(t *testing.T) {
		f := newIntrospectionFixture(t, nil)
		f.ep.setClaims(t, f.active(map[string]any{"exp": t0.Add(10 * time.Second).Unix()}))
		if err := verify(t, f.v, opaqueToken); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(10 * time.Second)
		f.ep.setJSON(`{"active":false}`)
		wantDetail(t, verify(t, f.v, opaqueToken), DetailInactive)
	})
	t.Run("an inactive answer is remembered for negative_cache_ttl", func(t *testing.T) {
		f := newIntrospectionFixture(t, nil)
		f.ep.setJSON(`{"active":false}`)
		wantDetail(t, verify(t, f.v, opaqueToken), DetailInactive)
		f.ep.setClaims(t, f.active(nil))
		wantDetail(t, verify(t, f.v, opaqueToken), DetailInactive)
		if n := f.ep.calls.Load(); n != 1 {
			t.Fatalf("%d calls, want 1", n)
		}
		f.clock.Advance(5 * time.Second)
		if err := verify(t, f.v, opaqueToken); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an unavailable endpoint is not remembered", func(t *testing.T) {
		f := newIntrospectionFixture(t, nil)
		f.ep.set(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
		if err := verify(t, f.v, opaqueToken); !errors.Is(err, ErrIntrospectionUnavailable) {
			t.Fatalf("want unavailable, got %v", err)
		}
		f.ep.setClaims(t, f.active(nil))
		if err := verify(t, f.v, opaqueToken); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("cache_ttl 0 asks every time", func(t *testing.T) {
		f := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.CacheTTL, c.NegativeCacheTTL = 0, 0 })
		f.ep.setClaims(t, f.active(nil))
		for range 3 {
			if err := verify(t, f.v, opaqueToken); err != nil {
				t.Fatal(err)
			}
		}
		if n := f.ep.calls.Load(); n != 3 {
			t.Fatalf("%d calls, want 3", n)
		}
	})
	t.Run("a new Verifier (a reload) starts with an empty cache", func(t *testing.T) {
		f := newIntrospectionFixture(t, nil)
		f.ep.setClaims(t, f.active(nil))
		if err := verify(t, f.v, opaqueToken); err != nil {
			t.Fatal(err)
		}
		if err := verify(t, f.newVerifier(t), opaqueToken); err != nil {
			t.Fatal(err)
		}
		if n := f.ep.calls.Load(); n != 2 {
			t.Fatalf("%d calls, want 2", n)
		}
	})
}

func TestIntrospectionCoalescesIdenticalCalls(t *testing.T) {
	f := newIntrospectionFixture(t, nil)
	release := make(chan struct{})
	f.ep.set(func(w http.ResponseWriter, _ *http.Request) {
		<-release
		b, _ := json.Marshal(f.active(nil))
		_, _ = w.Write(b)
	})
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() { errs <- verify(t, f.v, opaqueToken) })
	}
	eventually(t, "the first call", func() bool { return f.ep.calls.Load() == 1 })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.ep.calls.Load(); got != 1 {
		t.Fatalf("%d concurrent checks of one token made %d calls, want 1", n, got)
	}
}

func TestIntrospectionMaxInFlight(t *testing.T) {
	f := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.MaxInFlight = 3 })
	release := make(chan struct{})
	f.ep.set(func(w http.ResponseWriter, _ *http.Request) {
		<-release
		_, _ = w.Write([]byte(`{"active":false}`))
	})
	const n = 30
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _ = verify(t, f.v, fmt.Sprintf("garbage-%d", i)) })
	}
	eventually(t, "three calls in flight", func() bool { return f.ep.inFlight.Load() == 3 })
	// A caller whose deadline passes while every slot is taken gets 503.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err := f.v.Verify(ctx, "one-more")
	cancel()
	if !errors.Is(err, ErrIntrospectionUnavailable) {
		t.Fatalf("want unavailable, got %v", err)
	}
	close(release)
	wg.Wait()
	if m := f.ep.maxInFlight.Load(); m != 3 {
		t.Fatalf("max concurrent calls %d, want 3", m)
	}
	if c := f.ep.calls.Load(); c != n {
		t.Fatalf("%d calls, want %d", c, n)
	}
	if !slices.Contains(f.introspectResults(), IntrospectThrottled) {
		t.Fatalf("results %v lack %s", f.introspectResults(), IntrospectThrottled)
	}
}

func TestIntrospectionEndpointFromDiscovery(t *testing.T) {
	t.Run("introspection_endpoint of the discovery document", func(t *testing.T) {
		f := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.Endpoint = "" })
		// The fixture's IdP serves discovery; point it at the endpoint.
		f.idp.setDiscovery(map[string]any{"issuer": f.idp.issuer(), "jwks_uri": f.idp.jwksURI(), "introspection_endpoint": f.ep.srv.URL + "/introspect"})
		v := f.newVerifier(t)
		f.ep.setClaims(t, f.active(nil))
		if err := verify(t, v, opaqueToken); err != nil {
			t.Fatal(err)
		}
		st := v.Status()[0].Introspection
		if st == nil || !st.Ready || st.Endpoint != f.ep.srv.URL+"/introspect" || !st.OpaqueTokens {
			t.Fatalf("status %+v", st)
		}
	})
	for _, tc := range []struct {
		name string
		doc  func(f *ifixture) map[string]any
	}{
		{"a document without introspection_endpoint", func(f *ifixture) map[string]any {
			return map[string]any{"issuer": f.idp.issuer(), "jwks_uri": f.idp.jwksURI()}
		}},
		{"a document of another issuer", func(f *ifixture) map[string]any {
			return map[string]any{"issuer": "https://evil.example.com", "introspection_endpoint": f.ep.srv.URL}
		}},
		{"an endpoint over plain http off loopback", func(f *ifixture) map[string]any {
			return map[string]any{"issuer": f.idp.issuer(), "introspection_endpoint": "http://idp.example.com/introspect"}
		}},
	} {
		t.Run(tc.name+" is unavailable and not ready", func(t *testing.T) {
			f := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.Endpoint = "" })
			f.idp.setDiscovery(tc.doc(f))
			v := f.newVerifier(t)
			f.ep.setClaims(t, f.active(nil))
			if err := verify(t, v, opaqueToken); !errors.Is(err, ErrIntrospectionUnavailable) {
				t.Fatalf("want unavailable, got %v", err)
			}
			if st := v.Status()[0].Introspection; st == nil || st.Ready || st.LastError == "" {
				t.Fatalf("status %+v", st)
			}
			if f.ep.calls.Load() != 0 {
				t.Fatal("the endpoint was called")
			}
		})
	}
}

func TestIntrospectionRouting(t *testing.T) {
	t.Run("a JWT is never sent to the opaque-token issuer", func(t *testing.T) {
		f := newIntrospectionFixture(t, nil)
		f.ep.setClaims(t, f.active(nil))
		other := newRSA(t, "other", "RS256")
		wantDetail(t, verify(t, f.v, mint(t, other, nil, f.claims(map[string]any{"iss": "https://unknown.example.com"}))), DetailUnknownIssuer)
		wantDetail(t, verify(t, f.v, "a.b.c"), DetailMalformed)
		if f.ep.calls.Load() != 0 {
			t.Fatal("a JWT-shaped token was introspected")
		}
	})
	t.Run("without an opaque_tokens issuer an opaque token is malformed", func(t *testing.T) {
		f := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.OpaqueTokens, c.JWT = false, true })
		wantDetail(t, verify(t, f.v, opaqueToken), DetailMalformed)
		if f.ep.calls.Load() != 0 {
			t.Fatal("the endpoint was called")
		}
	})
	t.Run("two opaque_tokens issuers are refused", func(t *testing.T) {
		f := newIntrospectionFixture(t, nil)
		second := f.cfg
		second.Issuer = "https://second.example.com"
		if _, err := newTestVerifier(f.ks, []IssuerConfig{f.cfg, second}, f.opts); err == nil || !strings.Contains(err.Error(), "at most one issuer") {
			t.Fatalf("got %v", err)
		}
	})
}

// jwt: true — Keycloak's lightweight access tokens: the JWT verifies
// locally, then its introspection answer supplies what it leaves out.
func TestIntrospectionOfJWTs(t *testing.T) {
	newJWTFixture := func(t *testing.T) (*ifixture, testKey) {
		f := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.OpaqueTokens, c.JWT = false, true })
		k := newRSA(t, "k1", "RS256")
		f.idp.publish(t, k)
		f.v = f.newVerifier(t)
		return f, k
	}
	t.Run("the answer's claims take precedence, absent ones keep the JWT's", func(t *testing.T) {
		f, k := newJWTFixture(t)
		tok := f.token(t, k, map[string]any{"acr": "aal1", "scope": "openid"})
		f.ep.setClaims(t, map[string]any{"active": true, "acr": "aal3", "auth_time": t0.Add(-time.Minute).Unix()})
		c, err := f.v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		if c.ACR != "aal3" || c.AuthTime.Unix() != t0.Add(-time.Minute).Unix() || c.Subject != "user-1" || !slices.Equal(c.Scopes, []string{"openid"}) {
			t.Fatalf("claims %+v", c)
		}
		if got := f.ep.lastForm().Get("token"); got != tok {
			t.Fatal("the JWT itself was not sent")
		}
	})
	t.Run("an inactive answer makes the JWT invalid", func(t *testing.T) {
		f, k := newJWTFixture(t)
		f.ep.setJSON(`{"active":false}`)
		wantDetail(t, verify(t, f.v, f.token(t, k, nil)), DetailInactive)
	})
	t.Run("an answer with another aud makes the JWT invalid", func(t *testing.T) {
		f, k := newJWTFixture(t)
		f.ep.setClaims(t, map[string]any{"active": true, "aud": "https://other.example.com"})
		wantDetail(t, verify(t, f.v, f.token(t, k, nil)), DetailBadAudience)
	})
	t.Run("a JWT that fails locally is never introspected", func(t *testing.T) {
		f, _ := newJWTFixture(t)
		f.ep.setClaims(t, map[string]any{"active": true})
		forged := newRSA(t, "forged", "RS256")
		forged.kid = "k1"
		wantDetail(t, verify(t, f.v, f.token(t, forged, nil)), DetailBadSignature)
		if f.ep.calls.Load() != 0 {
			t.Fatal("a forged JWT was introspected")
		}
	})
	t.Run("the cached answer ends with the key that verified the JWT", func(t *testing.T) {
		f, k := newJWTFixture(t)
		tok := f.token(t, k, nil)
		f.ep.setClaims(t, map[string]any{"active": true, "acr": "aal2"})
		if err := verify(t, f.v, tok); err != nil {
			t.Fatal(err)
		}
		k2 := newRSA(t, "k2", "RS256")
		f.idp.publish(t, k2)
		f.clock.Advance(10 * time.Second) // past the refetch rate limit
		if !f.v.order[0].keys.refetch(context.Background()) {
			t.Fatal("no refetch")
		}
		wantDetail(t, verify(t, f.v, tok), DetailUnknownKid)
	})
}
