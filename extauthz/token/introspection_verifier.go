package token

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/stepup-authz/stepup-authz/policy"
)

// addIntrospection sets up is's introspection from cfg, and makes is the
// receiver of opaque tokens when cfg says so (at most one issuer may).
func (v *Verifier) addIntrospection(is *issuer, cfg IssuerConfig, opts Options, now func() time.Time) error {
	if cfg.Introspection == nil {
		return nil
	}
	ic := *cfg.Introspection
	if ic.OnResult == nil {
		ic.OnResult = opts.OnIntrospection
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: defaultIntrospectionTimeout}
	}
	in, err := newIntrospector(cfg.Issuer, cfg.Audiences, ic, client, opts.ClockSkew, now)
	if err != nil {
		return err
	}
	if ic.OpaqueTokens {
		if v.opaque != nil {
			return fmt.Errorf("introspection.opaque_tokens: issuer %q already receives the tokens that are not JWTs; at most one issuer may", v.opaque.name)
		}
		v.opaque = is
	}
	is.introspect = in
	return nil
}

// introspects reports whether any issuer is introspected.
func (v *Verifier) introspects() bool {
	for _, is := range v.order {
		if is.introspect != nil {
			return true
		}
	}
	return false
}

// isCompactJWS reports whether raw has the shape of a JWS in compact
// serialization (three dot-separated parts). Such a token names its issuer
// and is verified locally (and refused as malformed when it does not parse);
// anything else is an opaque token, whose meaning only introspection knows.
func isCompactJWS(raw string) bool {
	return strings.Count(raw, ".") == 2
}

// introspected asks is's introspection endpoint about raw, whose SHA-256 is
// sum. local, when set, holds the claims of a JWT that verified with key k
// (jwt: true): the answer's claims then take precedence over them, and the
// cache entry stays bound to k.
//
// Identical concurrent calls share one HTTP call, and the answer is cached
// before the call is forgotten, so a caller that arrives just after it finds
// the answer rather than calling again. The call is bounded by the first
// caller's deadline, not by its cancellation (a request that went away must
// not fail the others waiting on the same call); every caller waits at most
// until its own ctx ends, then the token is unavailable, not invalid.
func (v *Verifier) introspected(ctx context.Context, is *issuer, raw string, sum [sha256.Size]byte, local *policy.Claims, k *key) (*policy.Claims, error) {
	// The token may point into the request's memory, and the call may outlive
	// the request.
	raw = strings.Clone(raw)
	dl, hasDeadline := ctx.Deadline()
	ch := v.flights.DoChan(string(sum[:]), func() (any, error) {
		if v.cache != nil {
			if c, denial := v.cache.lookup(&sum, v.now()); c != nil || denial != nil {
				return c, denial
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
		return v.settle(is, &sum, a, err, local, k)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		cp := *r.Val.(*policy.Claims)
		return &cp, nil
	case <-ctx.Done():
		// The call itself (if this caller started it) reports its own result.
		return nil, is.introspect.unavailable("no answer before the deadline: %v", ctx.Err())
	}
}

// settle turns an introspection outcome into claims and caches it: an active
// answer until min(now + cache_ttl, exp), an inactive or unacceptable one for
// negative_cache_ttl. Unavailability is never cached.
func (v *Verifier) settle(is *issuer, sum *[sha256.Size]byte, a *answer, err error, local *policy.Claims, k *key) (*policy.Claims, error) {
	cfg := &is.introspect.cfg
	now := v.now()
	if err != nil {
		var inv *InvalidError
		if errors.As(err, &inv) && v.cache != nil && cfg.NegativeCacheTTL > 0 {
			v.cache.putEntry(sum, cacheEntry{exp: now.Add(cfg.NegativeCacheTTL), denial: err}, now)
		}
		return nil, err
	}
	c := a.claims
	until := now.Add(cfg.CacheTTL)
	if local != nil {
		c = merge(local, a)
		if local.Expiry.Before(until) {
			until = local.Expiry
		}
	}
	if a.hasExp && a.claims.Expiry.Before(until) {
		until = a.claims.Expiry
	}
	if v.cache != nil && cfg.CacheTTL > 0 {
		v.cache.putEntry(sum, cacheEntry{claims: &c, exp: until, key: k}, now)
	}
	return &c, nil
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
	return c
}

// discoverIntrospection reads the introspection endpoints that come from
// discovery, so that readiness can report them; it returns when every one is
// known or failed, or ctx ends.
func (v *Verifier) discoverIntrospection(ctx context.Context) {
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
