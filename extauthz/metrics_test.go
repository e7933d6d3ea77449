package extauthz_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

func checksObserved(t *testing.T, m *extauthz.Metrics, decision, cache string) uint64 {
	t.Helper()
	var out dto.Metric
	if err := m.CheckDuration.WithLabelValues(decision, cache).(prometheus.Histogram).Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetHistogram().GetSampleCount()
}

// The latency histogram tells which decision was made and whether the token
// came from the verified-token cache.
func TestCheckLatencyByDecisionAndCache(t *testing.T) {
	h, m, _ := observed(t)
	tok := h.user(t, "aal2", time.Minute)
	h.check(t, req{method: "POST", path: "/api/payout-destination", headers: bearer(tok)}) // verified: miss
	h.check(t, req{method: "POST", path: "/api/payout-destination", headers: bearer(tok)}) // cached: hit
	h.check(t, req{method: "POST", path: "/api/payout-destination"})                       // no token: none
	h.check(t, req{path: "/api/reports/q3", headers: bearer(h.user(t, "aal1", 0))})        // dry run, verified
	h.check(t, req{path: "/public/x"})                                                     // mode off

	for _, tc := range []struct {
		decision, cache string
		want            uint64
	}{
		{"allow", "miss", 1}, {"allow", "hit", 1}, {"allow", "none", 1},
		{"deny", "none", 1}, {"deny", "hit", 0}, {"deny", "miss", 0},
		{"dry_run_deny", "miss", 1}, {"dry_run_deny", "hit", 0}, {"dry_run_deny", "none", 0},
	} {
		if got := checksObserved(t, m, tc.decision, tc.cache); got != tc.want {
			t.Errorf("decision=%s cache=%s: %d Checks, want %d", tc.decision, tc.cache, got, tc.want)
		}
	}
	if got := testutil.ToFloat64(m.InFlight); got != 0 {
		t.Errorf("in flight after every Check answered: %v", got)
	}
}

// Pre-filled series are those whose every label value can occur; decisions
// by reason and policy appear when they happen, never with a blank policy
// that nothing had.
func TestPrefilledSeries(t *testing.T) {
	m := extauthz.NewMetrics(prometheus.NewRegistry())
	if n := testutil.CollectAndCount(m.CheckDuration); n != 9 {
		t.Errorf("latency series = %d, want 9 (3 decisions x 3 cache outcomes)", n)
	}
	if n := testutil.CollectAndCount(m.Decisions); n != 0 {
		t.Errorf("decision series before any decision = %d, want 0", n)
	}
	if n := testutil.CollectAndCount(m.Reloads); n != 2 {
		t.Errorf("reload series = %d, want 2 (ok, invalid)", n)
	}
	m.KnownPolicies([]string{"payouts"}, []string{"https://a.example", "https://b.example"})
	if n := testutil.CollectAndCount(m.LoopSuspected); n != 8 {
		t.Errorf("loop series = %d, want 8 (2 issuers x 4 step-up reasons)", n)
	}
}

// Policy names not in the config are bounded: the first
// MaxExtraPolicyNames count as themselves, later ones as OtherPolicy; the
// config's own names always count as themselves.
func TestPolicyLabelIsBounded(t *testing.T) {
	h, m, _ := observed(t)
	m.KnownPolicies([]string{"payout-destination", "public"}, nil)
	for i := range extauthz.MaxExtraPolicyNames + 5 {
		h.check(t, req{path: "/x", metadata: map[string]any{"name": fmt.Sprintf("tenant-%d", i), "mode": "off"}})
	}
	h.check(t, req{path: "/public/x"})
	series := map[string]float64{}
	ch := make(chan prometheus.Metric, 1000)
	m.Decisions.Collect(ch)
	close(ch)
	for mt := range ch {
		var d dto.Metric
		if err := mt.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "policy" {
				series[l.GetValue()] += d.GetCounter().GetValue()
			}
		}
	}
	if len(series) != extauthz.MaxExtraPolicyNames+2 {
		t.Errorf("%d policy label values, want %d extra names + %s + public", len(series), extauthz.MaxExtraPolicyNames, extauthz.OtherPolicy)
	}
	if series[extauthz.OtherPolicy] != 5 || series["tenant-0"] != 1 || series["public"] != 1 {
		t.Errorf("_other=%v tenant-0=%v public=%v; want 5, 1, 1", series[extauthz.OtherPolicy], series["tenant-0"], series["public"])
	}
	if _, ok := series[fmt.Sprintf("tenant-%d", extauthz.MaxExtraPolicyNames)]; ok {
		t.Errorf("a name beyond the bound got its own series")
	}
}

func TestConfigMetrics(t *testing.T) {
	m := extauthz.NewMetrics(prometheus.NewRegistry())
	cfg, err := config.Parse([]byte(`
issuers: [{issuer: "https://idp.example", audiences: [api]}]
policy:
  default: { name: baseline }
  routes: [{name: payouts, match: {path_prefix: /pay}, required_acr: aal2}]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	m.ConfigApplied(cfg, time.Unix(1_700_000_000, 500_000_000))
	m.ConfigRefused()
	if g, ts, ok := testutil.ToFloat64(m.ConfigGeneration), testutil.ToFloat64(m.ConfigReloadSuccessTime), testutil.ToFloat64(m.ConfigReloadSuccessful); g != 1 || ts != 1_700_000_000.5 || ok != 0 {
		t.Errorf("after start and a refused reload: generation %v, applied at %v, successful %v; want 1, 1700000000.5, 0", g, ts, ok)
	}
	if got := testutil.ToFloat64(m.Reloads.WithLabelValues("invalid")); got != 1 {
		t.Errorf("invalid reloads = %v", got)
	}
	m.ConfigApplied(cfg, time.Unix(1_700_000_100, 0))
	if g, ok := testutil.ToFloat64(m.ConfigGeneration), testutil.ToFloat64(m.ConfigReloadSuccessful); g != 2 || ok != 1 {
		t.Errorf("after a good reload: generation %v, successful %v; want 2, 1", g, ok)
	}
	if n := testutil.CollectAndCount(m.LoopSuspected); n != 4 {
		t.Errorf("loop series for the config's one issuer = %d, want 4", n)
	}
}

func TestKeySetMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := extauthz.NewMetrics(reg)
	now := time.Unix(1_700_000_600, 0)
	m.RegisterKeySets(reg, func() []token.IssuerStatus {
		return []token.IssuerStatus{
			{Issuer: "https://up.example", Fetched: true, Keys: 2, LastSuccess: time.Unix(1_700_000_000, 0)},
			{Issuer: "https://down.example", Fetched: true, LastError: "connection refused"},
		}
	}, 5*time.Minute, func() time.Time { return now })
	want := `
# HELP stepup_jwks_keys Usable keys held for the issuer; 0 means its tokens are denied keys_unavailable.
# TYPE stepup_jwks_keys gauge
stepup_jwks_keys{issuer="https://down.example"} 0
stepup_jwks_keys{issuer="https://up.example"} 2
# HELP stepup_jwks_keys_age_seconds Seconds since the issuer's keys were last fetched or confirmed unchanged; absent until the first success.
# TYPE stepup_jwks_keys_age_seconds gauge
stepup_jwks_keys_age_seconds{issuer="https://up.example"} 600
# HELP stepup_jwks_last_success_timestamp_seconds When the issuer's JWKS was last fetched or confirmed unchanged (304), Unix seconds; 0 if never.
# TYPE stepup_jwks_last_success_timestamp_seconds gauge
stepup_jwks_last_success_timestamp_seconds{issuer="https://down.example"} 0
stepup_jwks_last_success_timestamp_seconds{issuer="https://up.example"} 1.7e+09
# HELP stepup_jwks_refresh_interval_seconds The configured background JWKS refresh interval (jwks_refresh_interval).
# TYPE stepup_jwks_refresh_interval_seconds gauge
stepup_jwks_refresh_interval_seconds 300
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"stepup_jwks_keys", "stepup_jwks_keys_age_seconds", "stepup_jwks_last_success_timestamp_seconds", "stepup_jwks_refresh_interval_seconds"); err != nil {
		t.Error(err)
	}
}

func TestChecksInFlight(t *testing.T) {
	m := extauthz.NewMetrics(prometheus.NewRegistry())
	// The IdP answers its first JWKS fetch; every later one waits for release,
	// so a Check whose token has an unknown kid is held in its key refetch.
	idp, err := devidp.New("https://api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	entered, release := make(chan struct{}, 1), make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) > 1 {
			entered <- struct{}{}
			<-release
		}
		idp.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	idp.Issuer = hs.URL
	cfg, err := config.Parse([]byte("issuers:\n  - issuer: "+strconv.Quote(hs.URL)+"\n    jwks_uri: "+strconv.Quote(hs.URL+"/jwks.json")+
		"\n    audiences: [\"https://api.example.com\"]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ks := token.NewKeySets(token.KeySetOptions{MinRefetch: time.Nanosecond})
	t.Cleanup(ks.Close)
	e, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.WaitFirstFetch(context.Background())
	unpublished, err := devidp.NewKey("not-published", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := idp.MintWith(unpublished, devidp.Claims{"sub": "u"})
	if err != nil {
		t.Fatal(err)
	}
	s := extauthz.NewServer(e, extauthz.Options{Metrics: m})
	done := make(chan *authv3.CheckResponse)
	go func() {
		r, _ := s.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/", Host: "app.example.com", Headers: bearer(tok)}}}})
		done <- r
	}()
	<-entered
	if got := testutil.ToFloat64(m.InFlight); got != 1 {
		t.Errorf("in flight while a Check waits on verification = %v, want 1", got)
	}
	close(release)
	if r := <-done; r.GetDeniedResponse() == nil {
		t.Errorf("the Check was not denied: %v", r)
	}
	if got := testutil.ToFloat64(m.InFlight); got != 0 {
		t.Errorf("in flight after the answer = %v, want 0", got)
	}
}
