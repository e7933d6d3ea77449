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
		// caller's deadline. The token pipeline arms it only where a wait can
		// happen, for a credential the verified-principal cache does not hold.
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
// the policy, run the token pipeline, decide, write the response. The Response
// may share parts with other responses: read it, never modify it.
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

// evaluate is Evaluate with options. It reads as DESIGN.md's flow: attributes →
// policy → token pipeline (credential → principal) → decision → response, each
// stage a named function.
func (s *Server) evaluate(ctx context.Context, req *authv3.CheckRequest, opts evalOptions) Result {
	e := s.engine.Load()
	a := readAttributes(req, e.namespace)
	o := outcome{rules: noRules, stepUps: &e.stepUps}
	var prov policy.Provenance
	var cache cacheOutcome

	// RFC 9728 §3: the metadata document is answered whatever the route's
	// policy, before it is resolved (a policy error must not hide it).
	if e.resource != nil {
		if o.document = e.resource.document(&a); o.document != nil {
			o.decision = policy.Decision{Reason: policy.ReasonMetadataServed}
			s.report(ctx, &o, &a)
			return Result{Decision: o.decision, Response: buildResponse(&o, &a), cache: cacheNone}
		}
	}

	p, prov, err := e.resolve(&a, opts.provenance)
	switch {
	case err != nil:
		o.decision = policy.Deny(policy.ReasonPolicyError, err.Error(), policy.Policy{})
	case p.EffectiveMode() == policy.ModeOff:
		o.decision = policy.Decision{Reason: policy.ReasonModeOff, Policy: p}
	default:
		o.decision, o.claims, o.rules, cache = s.judge(ctx, e, &a, &p, opts.answerBy)
		o.dryRun = p.EffectiveMode() == policy.ModeDryRun && !o.decision.Allowed()
		o.dpop = e.sender.outcome(a.authScheme, &o.decision, s.now())
	}
	if e.resource != nil && !o.decision.Allowed() && !o.dryRun {
		o.resource = e.resource
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

// judge runs the token pipeline and decides on the principal's claims with its
// issuer's rules (looked up once), which it also returns for the response, with
// whether the verified-principal cache held the token.
func (s *Server) judge(ctx context.Context, e *Engine, a *attributes, p *policy.Policy, answerBy time.Time) (policy.Decision, *policy.Claims, *policy.IssuerRules, cacheOutcome) {
	cred, err := credential(a)
	a.authScheme = cred.Scheme
	if err != nil {
		return tokenDenial(err, *p), nil, noRules, cacheNone
	}
	// Under DPoP the proof is part of the credential, checked before the token
	// (RFC 9449 §4.3); the binding stage then holds cnf to it and to the client
	// certificate, for every token.
	if cred.Scheme == token.SchemeDPoP {
		if cred.DPoP, err = e.sender.verifyProof(a, cred.Token, s.now()); err != nil {
			return tokenDenial(err, *p), nil, noRules, cacheNone
		}
	}
	cred.ClientCert = e.sender.clientCert(a)
	pr, cached, err := e.pipeline.Principal(ctx, &cred, answerBy)
	cache := cacheMiss
	if cached {
		cache = cacheHit
	}
	if err != nil {
		return tokenDenial(err, *p), nil, noRules, cache
	}
	// The proof is used up last, once everything else about the credential held.
	if cred.DPoP != nil {
		if err := e.sender.use(ctx, cred.DPoP, answerBy); err != nil {
			return tokenDenial(err, *p), nil, noRules, cache
		}
	}
	rules := e.rules(pr.Claims.Issuer)
	return policy.Decide(&pr.Claims, p, rules, &e.settings, s.now()), &pr.Claims, rules, cache
}

// credential is the first stage of the token pipeline: the Authorization header,
// read only from a request of at most MaxHeaders entries, with Envoy's jwt_authn
// payloads when it sent them.
func credential(a *attributes) (token.Credential, error) {
	if a.headerCount > MaxHeaders {
		return token.Credential{}, &token.InvalidError{Detail: DetailTooManyHeaders}
	}
	var buf [1]string
	cred, err := token.ReadCredential(a.authValues(&buf))
	if err != nil {
		return cred, err
	}
	if a.jwtAuthn != nil && len(a.jwtAuthn.GetFields()) > 0 {
		cred.JWTAuthn = jwtAuthnPayloads{a.jwtAuthn}
	}
	return cred, nil
}

// tokenDenial maps a credential or pipeline error to its reason: an invalid or
// missing token is a 401; an introspection endpoint that did not answer is
// introspection_unavailable; anything else (no keys for the issuer, a refetch
// that did not finish in time, an error not understood) fails closed with 503
// keys_unavailable, never a 401 that would send the user into a pointless
// sign-in loop.
func tokenDenial(err error, p policy.Policy) policy.Decision {
	var invalid *token.InvalidError
	var proof *token.ProofError
	switch {
	case errors.As(err, &proof) && proof.NonceRequired():
		return policy.Deny(policy.ReasonNonceRequired, proof.Detail, p)
	case errors.As(err, &proof):
		return policy.Deny(policy.ReasonProofInvalid, proof.Detail, p)
	case errors.Is(err, errReplayStore):
		return policy.Deny(policy.ReasonReplayStoreUnavailable, err.Error(), p)
	case errors.Is(err, token.ErrNoToken):
		return policy.Deny(policy.ReasonTokenMissing, "", p)
	case errors.As(err, &invalid):
		return policy.Deny(policy.ReasonTokenInvalid, invalid.Detail, p)
	case errors.Is(err, token.ErrIntrospectionUnavailable):
		return policy.Deny(policy.ReasonIntrospectionUnavailable, err.Error(), p)
	default:
		return policy.Deny(policy.ReasonKeysUnavailable, err.Error(), p)
	}
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
				loopHint(o.rules),
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

// loopHint is what a suspected step-up loop most likely means for the issuer's
// dialect (README, "Identity-provider dialects").
func loopHint(r *policy.IssuerRules) string {
	if r.Challenge == policy.ChallengeEntra {
		return "check that acr_aliases maps the authentication context Entra ID puts in acrs, that challenge_acr_values names it, " +
			"and that the policy has no max_age (Entra ID access tokens carry no auth_time)"
	}
	return "check that the IdP honours acr_values/max_age and puts acr (or amr) and auth_time in access tokens"
}
