package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// Fault tests: the real binary against an identity provider whose JWKS endpoint is
// down, slow, wrong or rotating. Waits poll with deadlines; the durations they
// measure are logged, and asserted only as generous correctness bounds.

// faultConfig serves /home to any valid token of the IdP. refresh is
// jwks_refresh_interval; jwks is the issuer's jwks_uri line ("" for discovery).
func faultConfig(refresh string, discovery bool) string {
	jwks := `    jwks_uri: "{{ISSUER}}/jwks.json"` + "\n"
	if discovery {
		jwks = ""
	}
	return `
listen: { grpc: "{{GRPC}}", admin: "{{ADMIN}}" }
jwks_refresh_interval: ` + refresh + `
issuers:
  - issuer: "{{ISSUER}}"
` + jwks + `    audiences: ["https://api.example.com"]
policy:
  default: {}
`
}

// verdict classifies a Check answer by the contract's decision table.
type verdict string

const (
	vAllow       verdict = "allow"
	vInvalid     verdict = "401 invalid_token"
	vUnavailable verdict = "503 temporarily_unavailable"
	vOther       verdict = "other"
)

func classify(resp *authv3.CheckResponse) verdict {
	if resp.GetStatus() == nil {
		return vOther
	}
	if resp.GetStatus().GetCode() == int32(codes.OK) && resp.GetOkResponse() != nil {
		return vAllow
	}
	dr := resp.GetDeniedResponse()
	if resp.GetStatus().GetCode() != int32(codes.PermissionDenied) || dr == nil ||
		header(resp, "content-type") != "application/json" || header(resp, "cache-control") != "no-store" {
		return vOther
	}
	switch {
	case dr.GetStatus().GetCode() == 401 && dr.GetBody() == `{"error":"unauthorized"}` && header(resp, "www-authenticate") == `Bearer error="invalid_token"`:
		return vInvalid
	case dr.GetStatus().GetCode() == 503 && dr.GetBody() == `{"error":"temporarily_unavailable"}` && header(resp, "www-authenticate") == "":
		return vUnavailable
	}
	return vOther
}

// call is one Check of GET /home with tok, bounded by deadline.
func (s *server) call(tok string, deadline time.Duration) (*authv3.CheckResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	headers := map[string]string{":method": "GET", ":path": "/home", ":authority": "app.example.com", "authorization": "Bearer " + tok}
	return s.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/home", Host: "app.example.com", Headers: headers,
		}},
	}})
}

// verdictOf is the verdict of a Check that must not fail at the gRPC level.
func (s *server) verdictOf(t *testing.T, tok string) verdict {
	t.Helper()
	resp, err := s.call(tok, 5*time.Second)
	if err != nil {
		t.Fatalf("Check failed at the gRPC level (Envoy would drop the answer): %v", err)
	}
	return classify(resp)
}

// until polls cond every 20ms until it holds, failing after limit; it returns how
// long that took.
func until(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func mint(t *testing.T, idp *devidp.IdP, k *devidp.Key) string {
	t.Helper()
	tok, err := idp.MintWith(k, devidp.Claims{"sub": "user-1", "acr": "aal2", "auth_time": time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func newKey(t *testing.T, kid string) *devidp.Key {
	t.Helper()
	k, err := devidp.NewKey(kid, "ES256") // ES256: cheap to generate, unlike RSA
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// statusFault answers every JWKS request with code.
func statusFault(code int) func(http.ResponseWriter) bool {
	return func(w http.ResponseWriter) bool { http.Error(w, "fault", code); return true }
}

// bodyFault answers every JWKS request 200 with body.
func bodyFault(body string) func(http.ResponseWriter) bool {
	return func(w http.ResponseWriter) bool {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
		return true
	}
}

// hangFault holds every JWKS request until release is closed or 5s pass, then
// serves normally.
func hangFault(release <-chan struct{}) func(http.ResponseWriter) bool {
	return func(http.ResponseWriter) bool {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		return false
	}
}

func (s *server) ready() bool {
	resp, err := http.Get("http://" + s.adminAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// metric returns the value of one series in /metrics, 0 when absent.
func (s *server) metric(t *testing.T, series string) float64 {
	t.Helper()
	_, body := s.get(t, "/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// The IdP is down when the server starts: Checks answer 503 temporarily_unavailable
// (never 401, never a gRPC error) until it comes back, and then the server recovers
// by itself: its background retry (1s, doubling) fetches the keys without any Check
// asking for them.
func TestJWKSDownAtStart(t *testing.T) {
	t.Parallel()
	idp := startIdP(t)
	idp.SetJWKSFault(statusFault(http.StatusServiceUnavailable))
	s := launchServer(t, idp, faultConfig("5m", false))
	tok := userToken(t, idp, "aal2", 0)
	until(t, 10*time.Second, "admin port", func() bool { c, _ := s.get2("/healthz"); return c == 200 })
	// Down long enough for the retry backoff to double (fetches at about 0s, 1s, 3s).
	until(t, 20*time.Second, "three failed fetches", func() bool {
		if v := s.verdictOf(t, tok); v != vUnavailable {
			t.Fatalf("with the JWKS down since start: %s, want %s", v, vUnavailable)
		}
		return idp.JWKSHits() >= 3
	})
	idp.SetJWKSFault(nil)
	took := until(t, 20*time.Second, "ready after the JWKS came back", s.ready)
	if v := s.verdictOf(t, tok); v != vAllow {
		t.Fatalf("after recovery: %s", v)
	}
	t.Logf("JWKS down at start: 503 until it came back; ready %v later by the background retry (no Check asked for keys)", took)
	s.stop(t)
}

// get2 is get without a test to fail: for polling before the admin port is up.
func (s *server) get2(path string) (int, string) {
	resp, err := http.Get("http://" + s.adminAddr + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// The IdP goes down after keys were fetched: refreshes fail, cached keys keep
// working for cached and new tokens alike, and readiness holds.
func TestJWKSDownLaterKeepsCachedKeys(t *testing.T) {
	t.Parallel()
	idp := startIdP(t)
	s := startServer(t, idp, faultConfig("1s", false))
	cached := userToken(t, idp, "aal2", 0)
	if v := s.verdictOf(t, cached); v != vAllow {
		t.Fatalf("before the outage: %s", v)
	}
	idp.SetJWKSFault(statusFault(http.StatusInternalServerError))
	hits := idp.JWKSHits()
	until(t, 10*time.Second, "two failed refreshes", func() bool { return idp.JWKSHits() >= hits+2 })
	for _, tok := range []string{cached, userToken(t, idp, "aal3", 0), mint(t, idp, idp.Key("es-1"))} {
		if v := s.verdictOf(t, tok); v != vAllow {
			t.Errorf("during the outage: %s, want allow", v)
		}
	}
	if !s.ready() {
		t.Error("not ready during an outage although keys are cached")
	}
	if n := s.metric(t, `stepup_jwks_fetches_total{issuer="`+idp.Issuer+`",result="error"}`); n < 1 {
		t.Errorf("failed fetches counted: %v", n)
	}
	s.stop(t)
}

// A JWKS endpoint answering garbage, an empty or unusable set, or an error status
// leaves the cached keys in place.
func TestJWKSGarbageKeepsOldKeys(t *testing.T) {
	t.Parallel()
	idp := startIdP(t)
	s := startServer(t, idp, faultConfig("1s", false))
	faults := []struct {
		name   string
		fault  func(http.ResponseWriter) bool
		result string // the stepup_jwks_fetches_total result it is counted as
	}{
		{"not JSON", bodyFault("<html>maintenance</html>"), "invalid"},
		{"truncated JSON", bodyFault(`{"keys":[`), "invalid"},
		{"empty key set", bodyFault(`{"keys":[]}`), "empty"},
		{"no keys member", bodyFault(`{}`), "empty"},
		{"only a symmetric key", bodyFault(`{"keys":[{"kty":"oct","kid":"rs-1","k":"c2VjcmV0"}]}`), "invalid"},
		{"only an RSA key under 2048 bits", bodyFault(`{"keys":[{"kty":"RSA","kid":"rs-1","n":"sXch","e":"AQAB"}]}`), "invalid"},
		{"a body over 1 MiB", bodyFault(`{"keys":[],"pad":"` + strings.Repeat("x", 1<<20) + `"}`), "invalid"},
		{"404", statusFault(http.StatusNotFound), "error"},
		{"500", statusFault(http.StatusInternalServerError), "error"},
		{"304 to an unconditional request", statusFault(http.StatusNotModified), "error"},
	}
	for _, f := range faults {
		series := `stepup_jwks_fetches_total{issuer="` + idp.Issuer + `",result="` + f.result + `"}`
		before := s.metric(t, series)
		idp.SetJWKSFault(f.fault)
		until(t, 10*time.Second, f.name+": a refresh counted as "+f.result, func() bool { return s.metric(t, series) > before })
		if v := s.verdictOf(t, userToken(t, idp, "aal2", 0)); v != vAllow {
			t.Errorf("%s: a new token of a cached key: %s, want allow", f.name, v)
		}
	}
	idp.SetJWKSFault(nil)
	s.stop(t)
}

// A valid key set without a key revokes it: its tokens stop verifying, cached ones
// included, at the next refresh (jwks_refresh_interval: 1s).
func TestRemovedKeyIsRevoked(t *testing.T) {
	t.Parallel()
	idp := startIdP(t)
	s := startServer(t, idp, faultConfig("1s", false))
	rsTok := userToken(t, idp, "aal2", 0) // rs-1 signs by default
	esTok := mint(t, idp, idp.Key("es-1"))
	for range 2 { // the second answer comes from the verified-token cache
		if v := s.verdictOf(t, rsTok); v != vAllow {
			t.Fatalf("before revocation: %s", v)
		}
	}
	idp.SetKeys(idp.Key("es-1"), idp.Key("ed-1"))
	took := until(t, 10*time.Second, "the removed key's token refused", func() bool {
		switch v := s.verdictOf(t, rsTok); v {
		case vAllow:
			return false
		case vInvalid:
			return true
		default:
			t.Fatalf("while revoking: %s", v)
			return false
		}
	})
	if v := s.verdictOf(t, esTok); v != vAllow {
		t.Errorf("a key still in the set: %s", v)
	}
	t.Logf("removed key refused %v after it left the JWKS (refresh interval 1s)", took)
	s.stop(t)
}

// Rotation with the default refresh interval (5m), so only the unknown-kid refetch
// can pick up the new key. The IdP signs with the new key at once, inside the refetch
// rate limit's window (5s per issuer): the new kid is never answered 401, only 503
// (retryable) until the refetch scheduled for the end of the window brings it, then
// it verifies; the old kid keeps working until a later fetch finds it gone.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	idp := startIdP(t)
	s := startServer(t, idp, faultConfig("5m", false))
	// Issued two minutes ago: once a fetch that started later lacks its key, it is
	// refused at once (a token issued after that fetch would wait for the next one).
	old, err := idp.Mint(devidp.Claims{"sub": "user-42", "acr": "aal2", "auth_time": time.Now().Add(-2 * time.Minute).Unix(), "iat": time.Now().Add(-2 * time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if v := s.verdictOf(t, old); v != vAllow {
		t.Fatalf("before rotation: %s", v)
	}
	next := newKey(t, "rs-2")
	idp.SetKeys(next, idp.Key("rs-1"))
	newTok := mint(t, idp, next)
	rotated := time.Now()
	seen := map[verdict]int{}
	took := until(t, 15*time.Second, "the new kid verified", func() bool {
		// A 1s deadline (Envoy's default is 200ms; 1s keeps a loaded test machine from
		// missing it): the Check may wait 800ms for the refetch.
		resp, err := s.call(newTok, time.Second)
		if err != nil {
			t.Fatalf("Check failed at the gRPC level: %v", err)
		}
		v := classify(resp)
		seen[v]++
		switch v {
		case vAllow:
			return true
		case vUnavailable: // the refetch is scheduled for the end of the window
			return false
		default:
			t.Fatalf("new kid inside the refetch window: %s, want %s until the refetch, then allow", v, vUnavailable)
			return false
		}
	})
	t.Logf("new kid answers with a 1s deadline: %v", seen)
	if v := s.verdictOf(t, old); v != vAllow {
		t.Fatalf("the old kid, still published, after rotation: %s", v)
	}
	t.Logf("new kid verified %v after it was published (refetch rate limit 5s)", took)

	idp.SetKeys(next)
	probe := mint(t, idp, newKey(t, "probe")) // an unknown kid makes the server refetch
	took = until(t, 15*time.Second, "the old kid refused", func() bool {
		s.verdictOf(t, probe)
		return s.verdictOf(t, old) == vInvalid
	})
	if v := s.verdictOf(t, newTok); v != vAllow {
		t.Errorf("the new kid after the old one left: %s", v)
	}
	t.Logf("old kid refused %v after it left the set; whole rotation %v", took, time.Since(rotated))
	s.stop(t)
}

// Discovery is re-read on every fetch: when the discovery document names a new
// jwks_uri, keys come from there, and keys only in the old set are revoked.
func TestDiscoveryJWKSURIChange(t *testing.T) {
	t.Parallel()
	idp := startIdP(t)
	other := startIdP(t) // its JWKS becomes idp's new key set
	s := startServer(t, idp, faultConfig("1s", true))
	before := userToken(t, idp, "aal2", 0)
	if v := s.verdictOf(t, before); v != vAllow {
		t.Fatalf("before the change: %s", v)
	}
	after, err := other.MintWith(other.Key("rs-1"), devidp.Claims{"iss": idp.Issuer, "sub": "u", "acr": "aal2", "auth_time": time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if v := s.verdictOf(t, after); v != vInvalid {
		t.Fatalf("a key of the new set before the change: %s", v)
	}
	idp.SetJWKSURI(other.Issuer + "/jwks.json")
	took := until(t, 10*time.Second, "keys from the new jwks_uri", func() bool { return s.verdictOf(t, after) == vAllow })
	if v := s.verdictOf(t, before); v != vInvalid {
		t.Errorf("a key only in the old set: %s, want %s", v, vInvalid)
	}
	if other.JWKSHits() == 0 || idp.DiscoveryHits() < 2 {
		t.Errorf("jwks hits on the new uri %d, discovery hits %d", other.JWKSHits(), idp.DiscoveryHits())
	}
	t.Logf("new jwks_uri followed %v after the discovery document changed", took)
	s.stop(t)
}

// A hanging JWKS endpoint does not hold Checks past the caller's deadline. At start
// (no keys yet) and for an unknown kid (a refetch running), the server answers 503
// temporarily_unavailable before a 1s deadline; tokens of cached keys are not held.
func TestSlowJWKS(t *testing.T) {
	t.Parallel()
	idp := startIdP(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	idp.SetJWKSFault(hangFault(release))
	s := launchServer(t, idp, faultConfig("5m", false))
	tok := userToken(t, idp, "aal2", 0)
	until(t, 10*time.Second, "admin port", func() bool { c, _ := s.get2("/healthz"); return c == 200 })

	timed := func(tok string) (verdict, time.Duration) {
		t.Helper()
		start := time.Now()
		resp, err := s.call(tok, time.Second)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("Check held past its 1s deadline: %v after %v", status.Code(err), took)
		}
		return classify(resp), took
	}
	v, took := timed(tok)
	if v != vUnavailable {
		t.Fatalf("first fetch hanging: %s, want %s", v, vUnavailable)
	}
	t.Logf("JWKS hanging at start, 1s deadline: %s after %v", v, took)

	free()
	until(t, 10*time.Second, "ready once the JWKS answers", s.ready)
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	idp.SetJWKSFault(hangFault(stall))
	if v, took := timed(tok); v != vAllow {
		t.Fatalf("a cached key while the JWKS hangs: %s after %v", v, took)
	}
	unknown := mint(t, idp, newKey(t, "rotated"))
	seen := map[verdict]int{}
	hits := idp.JWKSHits()
	// Inside the refetch window the unknown kid is answered 503 at once (its refetch is
	// scheduled for the window's end, after the deadline); once the refetch runs and
	// hangs, it is answered 503 at 80% of the deadline. Never 401: the key may be in the
	// set that is still being fetched.
	until(t, 15*time.Second, "an unknown kid to wait on the hanging refetch", func() bool {
		v, took := timed(unknown)
		seen[v]++
		if v != vUnavailable {
			t.Fatalf("unknown kid while the JWKS hangs: %s after %v, want %s", v, took, vUnavailable)
		}
		if idp.JWKSHits() > hits {
			t.Logf("unknown kid, refetch hanging, 1s deadline: %s after %v", v, took)
			return took >= 500*time.Millisecond
		}
		return false
	})
	t.Logf("unknown kid answers while waiting for the refetch window and then the hanging fetch: %v", seen)
	s.stop(t)
}

// A flood of tokens with random unknown kids does not make the server hammer the
// JWKS endpoint: at most one refetch per issuer every 5 seconds. Each is answered 401
// unknown_kid once a fetch that started after it arrived found no such key, or 503
// when that fetch could not finish within its deadline (1s here).
func TestUnknownKidFloodIsRateLimited(t *testing.T) {
	t.Parallel()
	idp := startIdP(t)
	s := startServer(t, idp, faultConfig("5m", false))
	ready := time.Now()
	rs := idp.Key("rs-1")
	toks := make([]string, 500)
	for i := range toks {
		k := *rs
		k.ID = fmt.Sprintf("random-%d-%d", i, time.Now().UnixNano())
		toks[i] = mint(t, idp, &k)
	}
	// Start when the rate limit allows a refetch (5s after the first fetch), so the
	// flood does trigger one, and the bound is what holds the rest back.
	until(t, 10*time.Second, "the refetch window to open", func() bool { return time.Since(ready) > 5500*time.Millisecond })
	before := idp.JWKSHits()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[verdict]int{}
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(toks)); i = next.Add(1) - 1 {
				v := vOther
				resp, err := s.call(toks[i], time.Second)
				if err == nil {
					v = classify(resp)
				} else {
					t.Errorf("Check failed at the gRPC level: %v", err)
				}
				mu.Lock()
				seen[v]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	fetches := idp.JWKSHits() - before
	bound := 2 + int64(elapsed/(5*time.Second))
	t.Logf("500 unknown kids in %v: %v; %d JWKS fetches (bound %d)", elapsed, seen, fetches, bound)
	if seen[vInvalid]+seen[vUnavailable] != 500 {
		t.Errorf("answers %v: every unknown kid must be 401 invalid_token or 503 temporarily_unavailable", seen)
	}
	if seen[vInvalid] == 0 {
		t.Errorf("answers %v: no unknown kid was judged by the refetch the flood triggered", seen)
	}
	if fetches < 1 || fetches > bound {
		t.Errorf("%d JWKS fetches for 500 unknown kids in %v, want 1 to %d", fetches, elapsed, bound)
	}
	s.stop(t)
}
