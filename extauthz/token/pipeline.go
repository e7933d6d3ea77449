package token

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// Options configure a Pipeline.
type Options struct {
	// ClockSkew is the leeway for exp, nbf and iat.
	ClockSkew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// CacheSize bounds the verified-principal cache: 0 means DefaultCacheSize, and a
	// negative size is refused. The cache cannot be turned off (config's
	// token_cache_size, which states the same contract).
	CacheSize int
	// OnIntrospection, when set, is called once per attempted introspection with
	// the issuer and one of the Introspect* results, for issuers whose
	// IntrospectionConfig has no OnResult; it must be safe for concurrent use.
	OnIntrospection func(issuer, result string)
}

// Pipeline is the token pipeline of one configuration (DESIGN.md, "How a request
// flows", step 3): a credential (ReadCredential) → its principal, from the
// verified-principal cache or else from the first verifier that applies → binding
// → claims validity. Each stage is a small interface; a new way of knowing or
// binding a token is one more Verifier or Binder. A Pipeline is built per
// configuration, so a reload starts with an empty cache; it is safe for concurrent
// use.
type Pipeline struct {
	jwt       *JWTVerifier
	verifiers []*verifierStep
	binders   []Binder
	rules     []ClaimsRule
	cache     *principalCache
	now       func() time.Time
}

// NewPipeline checks the issuer configurations and builds the pipeline for them,
// using ks for keys: Envoy's jwt_authn payloads for issuers that opted in, then
// introspection of opaque tokens when an issuer takes them, then local JWT
// verification (which introspects the JWTs of issuers with jwt: true).
func NewPipeline(ks *KeySets, issuers []IssuerConfig, opts Options) (*Pipeline, error) {
	size := opts.CacheSize
	switch {
	case size == 0:
		size = DefaultCacheSize
	case size < 0:
		return nil, fmt.Errorf("token: cache size %d is negative: 0 selects the default (%d), and the cache cannot be turned off", size, DefaultCacheSize)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.OnIntrospection != nil {
		issuers = slices.Clone(issuers)
		for i := range issuers {
			if ic := issuers[i].Introspection; ic != nil && ic.OnResult == nil {
				withHook := *ic
				withHook.OnResult = opts.OnIntrospection
				issuers[i].Introspection = &withHook
			}
		}
	}
	jwt, err := NewJWTVerifier(ks, issuers, opts.ClockSkew, now)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{
		jwt: jwt,
		// Every pipeline holds bound tokens to their binding (CONTRACT.md).
		binders: []Binder{DPoPBinding{}, CertificateBinding{}},
		rules:   []ClaimsRule{HeaderSafeClaims{}},
		cache:   newPrincipalCache(size),
		now:     now,
	}
	jwt.intro.cache = p.cache
	for _, is := range issuers {
		if is.EnvoyPayloadKey != "" {
			p.verifiers = append(p.verifiers, &verifierStep{name: "jwt_authn", v: NewJWTAuthnVerifier(jwt)})
			break
		}
	}
	if jwt.opaque != nil {
		p.verifiers = append(p.verifiers, &verifierStep{name: "introspection", v: NewIntrospectionVerifier(jwt)})
	}
	p.verifiers = append(p.verifiers, &verifierStep{name: "jwt", v: jwt})
	return p, nil
}

// verifierStep is a verifier of the pipeline, with its name for metrics and the
// number of principals it produced.
type verifierStep struct {
	name     string
	v        Verifier
	verified atomic.Uint64
}

// Principal runs cred through the stages after the credential: principal, binding,
// claims validity. It returns the caller's own copy of the principal (its slices
// are shared and must not be modified), or an *InvalidError when the credential is
// not acceptable, or an error wrapping ErrKeysUnavailable when it cannot be judged
// now. cached reports whether the verified-principal cache held the credential.
// answerBy, when set, bounds the verification of a credential the cache does not
// hold; a cache hit never waits and arms no timer.
func (p *Pipeline) Principal(ctx context.Context, cred *Credential, answerBy time.Time) (pr *Principal, cached bool, err error) {
	pr, cached, err = p.principal(ctx, cred, answerBy)
	if err != nil {
		return nil, cached, err
	}
	if err := p.bind(cred, pr); err != nil {
		return nil, cached, err
	}
	if err := p.validate(pr); err != nil {
		return nil, cached, err
	}
	cp := *pr
	return &cp, cached, nil
}

// principal is the cached principal of cred, or else the first applicable verifier's,
// which is then cached. The token is hashed once and looked up once.
func (p *Pipeline) principal(ctx context.Context, cred *Credential, answerBy time.Time) (*Principal, bool, error) {
	if len(cred.Token) > MaxTokenBytes {
		return nil, false, invalid(DetailTooLarge, "token is %d bytes, limit %d", len(cred.Token), MaxTokenBytes)
	}
	sum := hashToken(cred.Token)
	if pr, refused := p.cache.get(&sum, p.now(), cred); pr != nil || refused != nil {
		return pr, true, refused
	}
	if !answerBy.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, answerBy)
		defer cancel()
	}
	pr, err := p.verify(ctx, cred)
	if err != nil {
		return nil, false, err
	}
	p.cache.put(&sum, pr, p.now())
	return pr, false, nil
}

// verify asks each verifier in turn until one applies.
func (p *Pipeline) verify(ctx context.Context, cred *Credential) (*Principal, error) {
	for _, step := range p.verifiers {
		pr, err := step.v.Verify(ctx, *cred)
		if errors.Is(err, ErrNotApplicable) {
			continue
		}
		if err == nil {
			step.verified.Add(1)
		}
		return pr, err
	}
	// Unreachable while local JWT verification, which applies to every credential,
	// comes last; fail closed all the same.
	return nil, invalid(DetailMalformed, "no verifier applies to a %s credential", cred.Scheme)
}

// bind runs every binding check.
func (p *Pipeline) bind(cred *Credential, pr *Principal) error {
	for _, b := range p.binders {
		if err := b.Bind(*cred, pr); err != nil {
			return err
		}
	}
	return nil
}

// validate runs every claims rule.
func (p *Pipeline) validate(pr *Principal) error {
	for _, r := range p.rules {
		if err := r.Check(pr); err != nil {
			return err
		}
	}
	return nil
}

// JWT is the pipeline's local JWT verifier, whose key sets a reload keeps
// (KeySets.Retain).
func (p *Pipeline) JWT() *JWTVerifier { return p.jwt }

// WaitFirstFetch blocks until the first key fetch of every issuer finished,
// successfully or not, or ctx is done.
func (p *Pipeline) WaitFirstFetch(ctx context.Context) { p.jwt.WaitFirstFetch(ctx) }

// Status reports the key status of the pipeline's issuers, in configuration order.
func (p *Pipeline) Status() []IssuerStatus { return p.jwt.Status() }

// CacheStats returns the verified-principal cache's hit and miss counts.
func (p *Pipeline) CacheStats() (hits, misses uint64) { return p.cache.stats() }

// VerifierCount is how many principals a verifier produced (on cache misses).
type VerifierCount struct {
	Verifier string // "jwt" (local JWT), "jwt_authn" (Envoy's jwt_authn payload), "introspection" (opaque tokens)
	Count    uint64
}

// Verified returns each verifier's count, in the order they are asked.
func (p *Pipeline) Verified() []VerifierCount {
	out := make([]VerifierCount, len(p.verifiers))
	for i, step := range p.verifiers {
		out[i] = VerifierCount{Verifier: step.name, Count: step.verified.Load()}
	}
	return out
}
