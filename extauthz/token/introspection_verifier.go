package token

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/stepup-authz/stepup-authz/policy"
)

// addIntrospection sets up is's introspection from cfg, and makes is the
// receiver of opaque tokens when cfg says so (at most one issuer may).
func (v *JWTVerifier) addIntrospection(is *issuer, cfg IssuerConfig, skew time.Duration, now func() time.Time) error {
	if cfg.Introspection == nil {
		return nil
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: defaultIntrospectionTimeout}
	}
	in, err := newIntrospector(cfg.Issuer, cfg.Audiences, *cfg.Introspection, client, skew, now)
	if err != nil {
		return err
	}
	if cfg.Introspection.OpaqueTokens {
		if v.opaque != nil {
			return fmt.Errorf("introspection.opaque_tokens: issuer %q already receives the tokens that are not JWTs; at most one issuer may", v.opaque.name)
		}
		v.opaque = is
	}
	in.names = is.names
	is.introspect = in
	return nil
}

// IntrospectionVerifier knows opaque tokens (anything that is not a compact JWS)
// by asking the introspection endpoint of the issuer configured with
// opaque_tokens (RFC 7662). A JWT is not its business: the JWT verifier
// introspects the JWTs of issuers with jwt: true itself, once their signature
// verified.
type IntrospectionVerifier struct {
	jwt *JWTVerifier
}

// NewIntrospectionVerifier introspects opaque tokens for jwt's opaque_tokens
// issuer; it applies to nothing when there is none.
func NewIntrospectionVerifier(jwt *JWTVerifier) *IntrospectionVerifier {
	return &IntrospectionVerifier{jwt: jwt}
}

// Verify implements Verifier.
func (v *IntrospectionVerifier) Verify(ctx context.Context, cred Credential) (*Principal, error) {
	is := v.jwt.opaque
	if is == nil || isCompactJWS(cred.Token) {
		return nil, ErrNotApplicable
	}
	return v.jwt.intro.introspected(ctx, is, cred.Token, nil, nil)
}

// isCompactJWS reports whether raw has the shape of a JWS in compact
// serialization (three dot-separated parts). Such a token names its issuer
// and is verified locally (and refused as malformed when it does not parse);
// anything else is an opaque token, whose meaning only introspection knows.
func isCompactJWS(raw string) bool {
	return strings.Count(raw, ".") == 2
}

// introspections coalesces identical concurrent introspections and settles their
// answers into the pipeline's cache (set by NewPipeline; nil caches nothing).
type introspections struct {
	flights singleflight.Group
	cache   *principalCache
	now     func() time.Time
}

// introspected asks is's introspection endpoint about raw. local, when set, is
// the principal of a JWT that verified with key k (jwt: true): the answer's
// claims then take precedence over its claims, and the cached principal stays
// bound to k.
//
// Identical concurrent calls share one HTTP call, and the answer is cached
// before the call is forgotten, so a caller that arrives just after it finds
// the answer rather than calling again. The call is bounded by the first
// caller's deadline, not by its cancellation (a request that went away must
// not fail the others waiting on the same call); every caller waits at most
// until its own ctx ends, then the token is unavailable, not invalid.
func (in *introspections) introspected(ctx context.Context, is *issuer, raw string, local *Principal, k *key) (*Principal, error) {
	sum := hashToken(raw)
	// The token may point into the request's memory, and the call may outlive
	// the request.
	raw = strings.Clone(raw)
	dl, hasDeadline := ctx.Deadline()
	ch := in.flights.DoChan(string(sum[:]), func() (any, error) {
		if in.cache != nil {
			if p, refused := in.cache.peek(&sum, in.now()); p != nil || refused != nil {
				return p, refused
			}
		}
		cctx := context.WithoutCancel(ctx)
		var cancel context.CancelFunc
		if hasDeadline {
			cctx, cancel = context.WithDeadline(cctx, dl)
		} else {
			cctx, cancel = context.WithTimeout(cctx, defaultIntrospectionTimeout)
		}
		defer cancel()
		a, err := is.introspect.introspect(cctx, raw)
		return in.settle(is, &sum, a, err, local, k)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Principal), nil
	case <-ctx.Done():
		// The call itself (if this caller started it) reports its own result.
		return nil, is.introspect.unavailable("no answer before the deadline: %v", ctx.Err())
	}
}

// settle turns an introspection outcome into a principal and caches it: an
// active answer until min(now + cache_ttl, exp), an inactive or unacceptable one
// for negative_cache_ttl. Unavailability is never cached.
func (in *introspections) settle(is *issuer, sum *[sha256.Size]byte, a *answer, err error, local *Principal, k *key) (*Principal, error) {
	cfg := &is.introspect.cfg
	now := in.now()
	if err != nil {
		var inv *InvalidError
		if errors.As(err, &inv) && in.cache != nil && cfg.NegativeCacheTTL > 0 {
			in.cache.putRefusal(sum, err, now.Add(cfg.NegativeCacheTTL), now)
		}
		return nil, err
	}
	pr := &Principal{Claims: a.claims, Until: now.Add(cfg.CacheTTL)}
	if local != nil {
		pr.Claims = merge(&local.Claims, a)
		if local.Until.Before(pr.Until) {
			pr.Until = local.Until
		}
	}
	if a.hasExp && a.claims.Expiry.Before(pr.Until) {
		pr.Until = a.claims.Expiry
	}
	if k != nil {
		pr.Hold = k
	}
	if in.cache != nil && cfg.CacheTTL > 0 {
		in.cache.put(sum, pr, now)
	}
	return pr, nil
}

// merge is a JWT's claims with those of its introspection answer on top: a
// claim the answer carries takes precedence (CONTRACT.md: jwt: true), one it
// leaves out keeps the JWT's value.
func merge(local *policy.Claims, a *answer) policy.Claims {
	c := *local
	ac := &a.claims
	has := a.present
	if has&hasSub != 0 {
		c.Subject = ac.Subject
	}
	if has&hasClientID != 0 {
		c.ClientID = ac.ClientID
	}
	if has&hasGty != 0 {
		c.Gty = ac.Gty
	}
	if has&hasACR != 0 {
		c.ACR, c.HasACR = ac.ACR, ac.HasACR
	}
	if has&hasAMR != 0 {
		c.AMR = ac.AMR
	}
	if has&hasACRS != 0 {
		c.ACRS = ac.ACRS
	}
	if has&hasAuthTime != 0 {
		c.AuthTime = ac.AuthTime
	}
	if has&hasIat != 0 {
		c.IssuedAt = ac.IssuedAt
	}
	if has&hasExp != 0 {
		c.Expiry = ac.Expiry
	}
	if has&hasScope != 0 {
		c.Scopes = ac.Scopes
	}
	if has&hasCNF != 0 {
		c.Confirmation = ac.Confirmation
	}
	return c
}

// discoverIntrospection reads the introspection endpoints that come from
// discovery, so that readiness can report them; it returns when every one is
// known or failed, or ctx ends.
func (v *JWTVerifier) discoverIntrospection(ctx context.Context) {
	for _, is := range v.order {
		if is.introspect != nil {
			_, _ = is.introspect.endpointURL(ctx)
		}
	}
}

// IntrospectionStatus is one introspected issuer's state, for /readyz.
type IntrospectionStatus struct {
	// Endpoint is the introspection URL ("" until discovery read it).
	Endpoint string
	// OpaqueTokens: this issuer receives the tokens that are not JWTs.
	OpaqueTokens bool
	// Ready: the endpoint is known, so tokens can be introspected.
	Ready     bool
	LastError string
}

// introspectionStatus reports is's introspection, or nil when it has none.
func (is *issuer) introspectionStatus() *IntrospectionStatus {
	if is.introspect == nil {
		return nil
	}
	e, ok, lastErr := is.introspect.status()
	return &IntrospectionStatus{Endpoint: e, OpaqueTokens: is.introspect.cfg.OpaqueTokens, Ready: ok, LastError: lastErr}
}
