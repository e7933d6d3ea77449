// Package extauthz is the Envoy external-authorization gRPC service:
// CheckRequest in, CheckResponse out, with the wire form of every decision
// (CONTRACT.md, "Decisions" and "Wire details").
package extauthz

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/trace"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

// Server answers Envoy's Check calls with the current Engine.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	engine  atomic.Pointer[Engine]
	loops   loopDetector
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
	tracing Tracing
}

// Options configure a Server; zero values are usable.
type Options struct {
	Metrics *Metrics
	Logger  *slog.Logger
	Now     func() time.Time
	// Tracing, when its Tracer is set, traces every Check (see trace.go).
	Tracing Tracing
}

// NewServer returns a Server answering with e.
func NewServer(e *Engine, opts Options) *Server {
	s := &Server{metrics: opts.Metrics, log: opts.Logger, now: opts.Now, tracing: opts.Tracing}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.engine.Store(e)
	return s
}

// Swap replaces the engine atomically; in-flight Checks finish with the old one.
func (s *Server) Swap(e *Engine) { s.engine.Store(e) }

// Engine returns the engine currently answering.
func (s *Server) Engine() *Engine { return s.engine.Load() }

// Check implements envoy.service.auth.v3.Authorization. It never returns a
// gRPC error for a decision: Envoy would drop our status, body and headers.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	if s.metrics != nil {
		s.metrics.InFlight.Inc()
		defer s.metrics.InFlight.Dec()
	}
	var o evalOptions
	if dl, ok := ctx.Deadline(); ok {
		// Answer while the caller still listens: Envoy drops a late answer and
		// applies its own status_on_error, with no body. Waiting on a key refetch
		// (unknown kid) or an introspection therefore ends at 80% of the
		// caller's deadline. The
		// deadline is armed only where a refetch can happen, for a token the
		// verified-token cache does not hold (Engine.verify).
		o.answerBy = dl.Add(-time.Until(dl) / 5)
	}
	// Tracing off costs one nil check: no context extracted, no span.
	var span trace.Span
	if s.tracing.Tracer != nil {
		ctx, span = s.startCheckSpan(ctx, req)
	}
	r := s.evaluate(ctx, req, o)
	if span != nil {
		s.endCheckSpan(span, &r, req)
	}
	if s.metrics != nil {
		s.metrics.observe(r.decisionLabel(), r.cache, time.Since(start).Seconds())
	}
	return r.Response, nil
}

// Result is one evaluated request: the decision, the policy that applied and
// where each of its fields came from, and the response for Envoy.
type Result struct {
	Decision   policy.Decision
	DryRun     bool
	Provenance policy.Provenance
	Claims     *policy.Claims
	Response   *authv3.CheckResponse

	// cache says whether the token came from the verified-token cache.
	cache cacheOutcome
}

// decisionLabel is the decision label of metrics: allow, deny or dry_run_deny.
func (r *Result) decisionLabel() int {
	switch {
	case r.DryRun:
		return decisionDryRunDeny
	case r.Decision.Allowed():
		return decisionAllow
	}
	return decisionDeny
}

// Evaluate runs the request flow of DESIGN.md: read the attributes, resolve
// the policy, verify the token, decide, write the response. The Response may
// share parts with other responses: read it, never modify it.
func (s *Server) Evaluate(ctx context.Context, req *authv3.CheckRequest) Result {
	return s.evaluate(ctx, req, evalOptions{provenance: true})
}

// evalOptions are what Check and Evaluate do differently.
type evalOptions struct {
	// provenance works out where each policy field came from; only `check`
	// and tests read it, so Check leaves it out.
	provenance bool
	// answerBy, when set, bounds the wait on a key refetch (see Check).
	answerBy time.Time
}

// evaluate is Evaluate with options.
func (s *Server) evaluate(ctx context.Context, req *authv3.CheckRequest, opts evalOptions) Result {
	e := s.engine.Load()
	a := readAttributes(req, e.Namespace)
	o := outcome{rules: noRules}
	var prov policy.Provenance
	var cache cacheOutcome

	p, prov, err := e.resolve(&a, opts.provenance)
	switch {
	case err != nil:
		o.decision = policy.Deny(policy.ReasonPolicyError, err.Error(), policy.Policy{})
	case p.EffectiveMode() == policy.ModeOff:
		o.decision = policy.Decision{Reason: policy.ReasonModeOff, Policy: p}
	default:
		o.decision, o.claims, cache = s.judge(ctx, e, &a, &p, opts.answerBy)
		if o.claims != nil {
			o.rules = e.rules(o.claims.Issuer)
		}
		o.dryRun = p.EffectiveMode() == policy.ModeDryRun && !o.decision.Allowed()
	}

	s.report(ctx, &o, &a)
	return Result{
		Decision:   o.decision,
		DryRun:     o.dryRun,
		Provenance: prov,
		Claims:     o.claims,
		Response:   buildResponse(&o, &a),
		cache:      cache,
	}
}

// judge verifies the bearer token and decides on its claims.
func (s *Server) judge(ctx context.Context, e *Engine, a *attributes, p *policy.Policy, answerBy time.Time) (policy.Decision, *policy.Claims, cacheOutcome) {
	if a.headerCount > MaxHeaders {
		return policy.Deny(policy.ReasonTokenInvalid, DetailTooManyHeaders, *p), nil, cacheNone
	}
	var buf [1]string
	raw, err := token.Bearer(a.authValues(&buf))
	if err != nil {
		return tokenDenial(err, *p), nil, cacheNone
	}
	claims, cache, err := e.verify(ctx, raw, a, answerBy)
	if err != nil {
		return tokenDenial(err, *p), nil, cache
	}
	if !headerSafe(claims.Subject) || (claims.HasACR && !headerSafe(claims.ACR)) {
		// These go upstream as header values; a CR or LF there is an injection.
		return policy.Deny(policy.ReasonTokenInvalid, "unsafe_claim", *p), nil, cache
	}
	return policy.Decide(claims, p, e.rules(claims.Issuer), &e.Settings, s.now()), claims, cache
}

// verify trusts Envoy's jwt_authn payload where the token's issuer opted in and
// the payload is the bearer token's own; otherwise it verifies the token itself.
// A token in the verified-token cache is answered at once; for any other,
// answerBy (when set) bounds the verification, which may wait on a key refetch.
func (e *Engine) verify(ctx context.Context, raw string, a *attributes, answerBy time.Time) (*policy.Claims, cacheOutcome, error) {
	if a.jwtAuthn != nil && len(a.jwtAuthn.GetFields()) > 0 {
		if c, ok, err := e.Verifier.VerifyEnvoyPayload(raw, a.jwtAuthn.AsMap()); ok {
			return c, cacheNone, err
		}
	}
	if cv, ok := e.Verifier.(cachedVerifier); ok {
		if c, hit := cv.Cached(raw); hit {
			return c, cacheHit, nil
		}
	}
	if !answerBy.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, answerBy)
		defer cancel()
	}
	c, err := e.Verifier.Verify(ctx, raw)
	return c, cacheMiss, err
}

// cachedVerifier answers tokens it verified before without a context (and so
// without a deadline timer): token.Verifier does.
type cachedVerifier interface {
	Cached(raw string) (*policy.Claims, bool)
}

// tokenDenial maps a bearer or verification error to its reason. Anything
// not understood fails closed with 503, never a 401 that would send the user
// into a pointless sign-in loop.
func tokenDenial(err error, p policy.Policy) policy.Decision {
	var invalid *token.InvalidError
	switch {
	case errors.Is(err, token.ErrNoToken):
		return policy.Deny(policy.ReasonTokenMissing, "", p)
	case errors.As(err, &invalid):
		return policy.Deny(policy.ReasonTokenInvalid, invalid.Detail, p)
	case errors.Is(err, token.ErrKeysUnavailable):
		return policy.Deny(policy.ReasonKeysUnavailable, err.Error(), p)
	case errors.Is(err, token.ErrIntrospectionUnavailable):
		return policy.Deny(policy.ReasonIntrospectionUnavailable, err.Error(), p)
	default:
		return policy.Deny(policy.ReasonKeysUnavailable, err.Error(), p)
	}
}

func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// report logs and counts the decision: one line per denial at the default
// level, never the token itself.
func (s *Server) report(ctx context.Context, o *outcome, a *attributes) {
	d := &o.decision
	decision := "allow"
	switch {
	case o.dryRun:
		decision = "dry_run_deny"
	case !d.Allowed():
		decision = "deny"
	}
	if s.metrics != nil {
		s.metrics.decided(decision, string(d.Reason), d.Policy.Name)
	}
	// Attributes are built in a buffer on the stack and logged with LogAttrs,
	// which copies them: no []any and no boxing of each attribute.
	var buf [14]slog.Attr
	if decision == "allow" {
		s.loops.allowed(o.claims, &d.Policy)
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.LogAttrs(ctx, slog.LevelDebug, "allowed", traceAttrs(s.logAttrs(buf[:0], o, a), ctx)...)
		}
		return
	}
	msg := "denied"
	if o.dryRun {
		msg = "dry run: would have denied"
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, msg, traceAttrs(s.logAttrs(buf[:0], o, a), ctx)...)

	if d.Outcome() == policy.StepUp && !o.dryRun && o.claims != nil {
		if ev, loop := s.loops.stepUpDenied(o.claims, &d.Policy, s.now()); loop {
			s.log.LogAttrs(ctx, slog.LevelWarn, "step-up loop suspected: this user was asked to step up, authenticated again after that, and the new token still fails the same requirement; "+
				"check that the IdP honours acr_values/max_age and puts acr (or amr) and auth_time in access tokens",
				traceAttrs([]slog.Attr{slog.String("issuer", o.claims.Issuer), slog.String("sub", o.claims.Subject), slog.String("reason", string(d.Reason)),
					slog.String("required_acr", d.Policy.RequiredACR), slog.String("acr", d.Level),
					slog.Time("denied_at", ev.deniedAt), slog.Time("authenticated_at", ev.authAt), slog.String("policy", d.Policy.Name)}, ctx)...)
			if s.metrics != nil {
				s.metrics.LoopSuspected.WithLabelValues(o.claims.Issuer, string(d.Reason)).Inc()
			}
		}
	}
}

func (s *Server) logAttrs(attrs []slog.Attr, o *outcome, a *attributes) []slog.Attr {
	d := &o.decision
	attrs = append(attrs,
		slog.String("reason", string(d.Reason)),
		slog.String("method", a.method),
		slog.String("host", a.host),
		slog.String("path", pathOnly(a.path)),
	)
	if d.Detail != "" {
		attrs = append(attrs, slog.String("detail", d.Detail))
	}
	if d.Policy.Name != "" {
		attrs = append(attrs, slog.String("policy", d.Policy.Name))
	}
	if d.Policy.RequiredACR != "" {
		attrs = append(attrs, slog.String("required_acr", d.Policy.RequiredACR))
	}
	if d.Policy.HasMaxAge {
		attrs = append(attrs, slog.Int64("max_age", int64(d.Policy.MaxAge.Seconds())))
	}
	if c := o.claims; c != nil {
		attrs = append(attrs, slog.String("iss", c.Issuer), slog.String("sub", c.Subject))
		if d.Level != "" {
			attrs = append(attrs, slog.String("acr", d.Level))
		}
	}
	if a.requestID != "" {
		attrs = append(attrs, slog.String("request_id", a.requestID))
	}
	return attrs
}

// pathOnly drops the query string, which may carry secrets.
func pathOnly(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' {
			return p[:i]
		}
	}
	return p
}
