package extauthz

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

// Metrics are the server's Prometheus series. Labels use the closed reason
// vocabulary, so dashboards and logs speak the same words. Every label's
// values are bounded: decision, cache, result and reason are closed sets;
// issuer comes from the config; policy is bounded as policyLabels says.
type Metrics struct {
	Decisions *prometheus.CounterVec
	// CheckDuration is Check latency by decision (allow, deny, dry_run_deny)
	// and cache (hit, miss, none: no token was verified).
	CheckDuration *prometheus.HistogramVec
	InFlight      prometheus.Gauge
	JWKSFetches   *prometheus.CounterVec
	Reloads       *prometheus.CounterVec
	LoopSuspected *prometheus.CounterVec
	// ConfigGeneration counts configs applied since start (1: the first).
	ConfigGeneration prometheus.Gauge
	// ConfigReloadSuccessTime is when the config in use was applied (Unix
	// seconds); ConfigReloadSuccessful is 1 when the latest attempt succeeded.
	ConfigReloadSuccessTime prometheus.Gauge
	ConfigReloadSuccessful  prometheus.Gauge
	// Introspections counts calls to introspection endpoints by result
	// (token.IntrospectResults).
	Introspections *prometheus.CounterVec

	decisions decisionCounters
	durations [numDecisionLabels][numCacheLabels]prometheus.Observer
	policies  policyLabels
}

// Label values of CheckDuration, indexed without a map on the request path.
const (
	decisionAllow = iota
	decisionDeny
	decisionDryRunDeny
	numDecisionLabels
)

var decisionLabels = [numDecisionLabels]string{"allow", "deny", "dry_run_deny"}

// cacheOutcome says whether a Check's token came from the verified-token
// cache: cacheNone when no token was looked up (none, an unreadable
// Authorization header, mode off, a policy error).
type cacheOutcome uint8

const (
	cacheNone cacheOutcome = iota
	cacheHit
	cacheMiss
	numCacheLabels
)

var cacheLabels = [numCacheLabels]string{"none", "hit", "miss"}

func (c cacheOutcome) String() string { return cacheLabels[c] }

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepup_decisions_total",
			Help: "Check decisions by decision (allow, deny, dry_run_deny), reason and policy name (names beyond the config's are bounded, see README).",
		}, []string{"decision", "reason", "policy"}),
		CheckDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stepup_check_duration_seconds",
			Help:    "Time to answer one Check, from request to response, by decision and verified-token cache outcome (hit, miss, none).",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"decision", "cache"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stepup_checks_in_flight",
			Help: "Checks being answered now.",
		}),
		JWKSFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepup_jwks_fetches_total",
			Help: "JWKS and discovery fetches by issuer and result.",
		}, []string{"issuer", "result"}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepup_config_reloads_total",
			Help: "Config reloads by result (ok, invalid).",
		}, []string{"result"}),
		LoopSuspected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepup_step_up_loop_suspected_total",
			Help: "Freshly issued tokens that still fail the step-up requirement: likely an IdP that leaves acr or auth_time out of access tokens.",
		}, []string{"issuer", "reason"}),
		ConfigGeneration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stepup_config_generation",
			Help: "Configs applied since the process started: 1 after start, +1 per successful reload.",
		}),
		ConfigReloadSuccessTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stepup_config_last_reload_success_timestamp_seconds",
			Help: "When the config in use was applied (at start or by a reload), Unix seconds.",
		}),
		ConfigReloadSuccessful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stepup_config_last_reload_successful",
			Help: "1 when the latest config load or reload succeeded, 0 when it was refused and the previous config still serves.",
		}),
		Introspections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepup_introspection_requests_total",
			Help: "Token introspections (RFC 7662) attempted, by issuer and result: active, inactive, invalid, or why the endpoint could not answer.",
		}, []string{"issuer", "result"}),
	}
	reg.MustRegister(m.Decisions, m.CheckDuration, m.InFlight, m.JWKSFetches, m.Reloads, m.LoopSuspected,
		m.ConfigGeneration, m.ConfigReloadSuccessTime, m.ConfigReloadSuccessful, m.Introspections)
	// Pre-filled: series whose every label value can occur and that alerts
	// divide by or watch for a first increase. Decisions are not: reason ×
	// policy is mostly combinations that never happen.
	for d := range m.durations {
		for c := range m.durations[d] {
			m.durations[d][c] = m.CheckDuration.WithLabelValues(decisionLabels[d], cacheLabels[c])
		}
	}
	m.Reloads.WithLabelValues("ok")
	m.Reloads.WithLabelValues("invalid")
	m.decisions.vec = m.Decisions
	m.policies.init()
	return m
}

// ConfigApplied records cfg going into service at t, at start and after
// every successful reload: the generation, the time, and the names and
// issuers its series are bounded by (see KnownPolicies).
func (m *Metrics) ConfigApplied(cfg *config.Config, t time.Time) {
	m.ConfigGeneration.Inc()
	m.ConfigReloadSuccessTime.Set(float64(t.UnixNano()) / 1e9)
	m.ConfigReloadSuccessful.Set(1)
	names := make([]string, 0, len(cfg.Routes)+1)
	for _, r := range cfg.Routes {
		names = append(names, r.Name)
	}
	if cfg.Default.Name.Set {
		names = append(names, cfg.Default.Name.Value)
	}
	issuers := make([]string, 0, len(cfg.Issuers))
	for _, iss := range cfg.Issuers {
		issuers = append(issuers, iss.Issuer)
	}
	m.KnownPolicies(names, issuers)
	// Every result can occur for an introspected issuer: pre-filled, so the
	// first failure of its endpoint shows as an increase.
	for _, iss := range cfg.Issuers {
		if iss.Introspection != nil {
			for _, r := range token.IntrospectResults {
				m.Introspections.WithLabelValues(iss.Issuer, r)
			}
		}
	}
}

// ConfigRefused records a reload that was refused.
func (m *Metrics) ConfigRefused() {
	m.Reloads.WithLabelValues("invalid").Inc()
	m.ConfigReloadSuccessful.Set(0)
}

// KnownPolicies declares the policy names of a config (its routes' names and
// policy.default's name): they are always counted under their own name. The
// step-up loop series of its issuers are pre-filled, so the first suspected
// loop shows as an increase.
func (m *Metrics) KnownPolicies(names, issuers []string) {
	m.policies.setKnown(names)
	for _, iss := range issuers {
		for _, r := range policy.Reasons {
			if policy.OutcomeOf(r) == policy.StepUp {
				m.LoopSuspected.WithLabelValues(iss, string(r))
			}
		}
	}
}

// RegisterKeySets exports each configured issuer's key freshness, read from
// status at every scrape: when keys were last fetched (or confirmed
// unchanged) successfully, how long ago that was, how many keys are held,
// and the refresh interval they are meant to be fetched at.
func (m *Metrics) RegisterKeySets(reg prometheus.Registerer, status func() []token.IssuerStatus, refresh time.Duration, now func() time.Time) {
	reg.MustRegister(&keySetCollector{status: status, refresh: refresh, now: now,
		lastSuccess: prometheus.NewDesc("stepup_jwks_last_success_timestamp_seconds",
			"When the issuer's JWKS was last fetched or confirmed unchanged (304), Unix seconds; 0 if never.", []string{"issuer"}, nil),
		age: prometheus.NewDesc("stepup_jwks_keys_age_seconds",
			"Seconds since the issuer's keys were last fetched or confirmed unchanged; absent until the first success.", []string{"issuer"}, nil),
		keys: prometheus.NewDesc("stepup_jwks_keys",
			"Usable keys held for the issuer; 0 means its tokens are denied keys_unavailable.", []string{"issuer"}, nil),
		interval: prometheus.NewDesc("stepup_jwks_refresh_interval_seconds",
			"The configured background JWKS refresh interval (jwks_refresh_interval).", nil, nil),
	})
}

type keySetCollector struct {
	status                           func() []token.IssuerStatus
	refresh                          time.Duration
	now                              func() time.Time
	lastSuccess, age, keys, interval *prometheus.Desc
}

func (c *keySetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lastSuccess
	ch <- c.age
	ch <- c.keys
	ch <- c.interval
}

func (c *keySetCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.interval, prometheus.GaugeValue, c.refresh.Seconds())
	now := c.now()
	for _, st := range c.status() {
		ts := 0.0
		if !st.LastSuccess.IsZero() {
			ts = float64(st.LastSuccess.UnixNano()) / 1e9
			ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, max(0, now.Sub(st.LastSuccess).Seconds()), st.Issuer)
		}
		ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, ts, st.Issuer)
		ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(st.Keys), st.Issuer)
	}
}

// observe records one Check's latency.
func (m *Metrics) observe(decision int, cache cacheOutcome, seconds float64) {
	m.durations[decision][cache].Observe(seconds)
}

// decided counts one decision. It is Decisions.WithLabelValues(...).Inc()
// without its per-call label hashing, slice and lock: the counters already
// seen are found in a copy-on-write map read without locking. Label values
// are copied before the counter keeps them, so no string of a request (whose
// memory the codec shares) outlives it.
func (m *Metrics) decided(decision, reason, policy string) {
	m.decisions.inc(decisionKey{decision, reason, policy}, &m.policies)
}

type decisionKey struct{ decision, reason, policy string }

// decisionCounters are the counters of Decisions already seen, in a memo: past
// its bound (many policy names from route metadata) counting falls back to the
// CounterVec.
type decisionCounters struct {
	vec *prometheus.CounterVec
	m   memo[decisionKey, prometheus.Counter]
}

func (d *decisionCounters) inc(k decisionKey, names *policyLabels) {
	if c, ok := d.m.get(k); ok {
		c.Inc()
		return
	}
	k = decisionKey{strings.Clone(k.decision), strings.Clone(k.reason), strings.Clone(k.policy)}
	// The map remembers the counter under the name as sent; the series is
	// labelled with the bounded name.
	c := d.vec.WithLabelValues(k.decision, k.reason, names.label(k.policy))
	c.Inc()
	d.m.put(k, c)
}

// MaxExtraPolicyNames bounds the policy label's values beyond the config's
// own names. Route metadata and context extensions name policies too; those
// names come from Envoy's config, not from clients, but a misconfigured Envoy
// (a name templated per tenant, say) could send without end. The first
// MaxExtraPolicyNames such names are counted under their own name for the
// process's life; any later one is counted as OtherPolicy.
const MaxExtraPolicyNames = 100

// OtherPolicy is the policy label of names beyond MaxExtraPolicyNames.
const OtherPolicy = "_other"

// policyLabels bounds the policy label: names known from the config, plus
// at most MaxExtraPolicyNames others.
type policyLabels struct {
	mu     sync.Mutex
	known  map[string]bool // the current config's names
	extras map[string]bool // other names admitted, for the process's life
}

func (p *policyLabels) init() {
	p.known = map[string]bool{}
	p.extras = map[string]bool{}
}

func (p *policyLabels) setKnown(names []string) {
	known := make(map[string]bool, len(names))
	for _, n := range names {
		known[n] = true
	}
	p.mu.Lock()
	p.known = known
	p.mu.Unlock()
}

// label returns the label value for name. It is called once per new series
// (decisionCounters remembers the answer), never per request once warm.
func (p *policyLabels) label(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case name == "" || p.known[name] || p.extras[name]:
		return name
	case len(p.extras) < MaxExtraPolicyNames:
		p.extras[name] = true
		return name
	}
	return OtherPolicy
}

// RegisterTokenCache exports the verified-principal cache's hit and miss
// counts, and how many principals each verifier produced on a miss. The Engine,
// and its pipeline, is replaced on every reload, so counts of retired Engines
// are carried forward to keep the counters monotonic.
func (m *Metrics) RegisterTokenCache(reg prometheus.Registerer, current func() CacheStatser) {
	c := &cacheCollector{current: current,
		desc: prometheus.NewDesc("stepup_token_cache_requests_total",
			"Verified-token cache lookups by result (hit, miss).", []string{"result"}, nil),
		verifiedDesc: prometheus.NewDesc("stepup_token_verifications_total",
			"Tokens verified on a cache miss, by the verifier that accepted them (jwt: locally, jwt_authn: on the strength of Envoy's jwt_authn payload).", []string{"verifier"}, nil),
		base: map[string]uint64{}, seen: map[string]uint64{}}
	reg.MustRegister(c)
}

// CacheStatser is the token pipeline's counts: an Engine gives them.
type CacheStatser interface {
	CacheStats() (hits, misses uint64)
	Verified() []token.VerifierCount
}

type cacheCollector struct {
	desc, verifiedDesc *prometheus.Desc
	current            func() CacheStatser
	mu                 sync.Mutex
	last               CacheStatser
	// base holds the retired pipelines' counts, seen the current one's, by
	// "hit", "miss" and "verifier:<name>".
	base, seen map[string]uint64
}

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.verifiedDesc
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.current()
	if v != c.last {
		for k, n := range c.seen {
			c.base[k] += n
		}
		clear(c.seen)
		c.last = v
	}
	if v != nil {
		c.seen["hit"], c.seen["miss"] = v.CacheStats()
		for _, vc := range v.Verified() {
			c.seen["verifier:"+vc.Verifier] = vc.Count
		}
	}
	total := func(k string) float64 { return float64(c.base[k] + c.seen[k]) }
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, total("hit"), "hit")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, total("miss"), "miss")
	// Both verifiers are always reported, so a dashboard sees jwt_authn at 0
	// rather than no series.
	names := map[string]bool{"verifier:jwt": true, "verifier:jwt_authn": true}
	for k := range c.base {
		names[k] = true
	}
	for k := range c.seen {
		names[k] = true
	}
	for k := range names {
		if name, ok := strings.CutPrefix(k, "verifier:"); ok {
			ch <- prometheus.MustNewConstMetric(c.verifiedDesc, prometheus.CounterValue, total(k), name)
		}
	}
}
