package extauthz

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stepup-authz/stepup-authz/policy"
)

// Metrics are the server's Prometheus series. Labels use the closed reason
// vocabulary, so dashboards and logs speak the same words.
type Metrics struct {
	Decisions     *prometheus.CounterVec
	CheckDuration prometheus.Histogram
	JWKSFetches   *prometheus.CounterVec
	Reloads       *prometheus.CounterVec
	LoopSuspected *prometheus.CounterVec

	decisions decisionCounters
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepup_decisions_total",
			Help: "Check decisions by decision (allow, deny, dry_run_deny), reason and policy name.",
		}, []string{"decision", "reason", "policy"}),
		CheckDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stepup_check_duration_seconds",
			Help:    "Time to answer one Check, from request to response.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
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
	}
	reg.MustRegister(m.Decisions, m.CheckDuration, m.JWKSFetches, m.Reloads, m.LoopSuspected)
	for _, r := range policy.Reasons {
		decision := "deny"
		if policy.OutcomeOf(r) == policy.Allow {
			decision = "allow"
		}
		m.Decisions.WithLabelValues(decision, string(r), "")
	}
	m.Reloads.WithLabelValues("ok")
	m.Reloads.WithLabelValues("invalid")
	m.decisions.vec = m.Decisions
	return m
}

// decided counts one decision. It is Decisions.WithLabelValues(...).Inc()
// without its per-call label hashing, slice and lock: the counters already
// seen are found in a copy-on-write map read without locking. Label values
// are copied before the counter keeps them, so no string of a request (whose
// memory the codec shares) outlives it.
func (m *Metrics) decided(decision, reason, policy string) {
	m.decisions.inc(decisionKey{decision, reason, policy})
}

type decisionKey struct{ decision, reason, policy string }

// maxDecisionCounters bounds the lock-free map; beyond it (many policy names
// from route metadata) counting falls back to the CounterVec.
const maxDecisionCounters = 1024

type decisionCounters struct {
	vec *prometheus.CounterVec
	m   atomic.Pointer[map[decisionKey]prometheus.Counter]
	mu  sync.Mutex
}

func (d *decisionCounters) inc(k decisionKey) {
	if m := d.m.Load(); m != nil {
		if c, ok := (*m)[k]; ok {
			c.Inc()
			return
		}
	}
	k = decisionKey{strings.Clone(k.decision), strings.Clone(k.reason), strings.Clone(k.policy)}
	c := d.vec.WithLabelValues(k.decision, k.reason, k.policy)
	c.Inc()
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.m.Load()
	if old != nil && len(*old) >= maxDecisionCounters {
		return
	}
	next := make(map[decisionKey]prometheus.Counter, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	next[k] = c
	d.m.Store(&next)
}

func lenOf(m *map[decisionKey]prometheus.Counter) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// RegisterTokenCache exports the verified-token cache's hit and miss counts.
// The verifier is replaced on every reload, so counts of retired verifiers
// are carried forward to keep the counter monotonic.
func (m *Metrics) RegisterTokenCache(reg prometheus.Registerer, current func() CacheStatser) {
	c := &cacheCollector{current: current,
		desc: prometheus.NewDesc("stepup_token_cache_requests_total",
			"Verified-token cache lookups by result (hit, miss).", []string{"result"}, nil)}
	reg.MustRegister(c)
}

// CacheStatser is a verifier that counts its cache hits and misses.
type CacheStatser interface {
	CacheStats() (hits, misses uint64)
}

type cacheCollector struct {
	desc    *prometheus.Desc
	current func() CacheStatser
	mu      sync.Mutex
	last    CacheStatser
	base    [2]uint64
	seen    [2]uint64
}

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.current()
	if v != c.last {
		c.base[0] += c.seen[0]
		c.base[1] += c.seen[1]
		c.seen = [2]uint64{}
		c.last = v
	}
	if v != nil {
		h, m := v.CacheStats()
		c.seen = [2]uint64{h, m}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(c.base[0]+c.seen[0]), "hit")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(c.base[1]+c.seen[1]), "miss")
}
