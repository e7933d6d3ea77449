package token

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultAlgorithms returns the algorithms accepted when an issuer lists none; they are
// also every algorithm an issuer may list (config.issuers[].algorithms refers here).
func DefaultAlgorithms() []string {
	return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
}

// maxKeyTries bounds how many keys a token without kid is tried against.
const maxKeyTries = 8

// IssuerConfig is one trusted token issuer.
type IssuerConfig struct {
	// Issuer must equal the token's iss exactly.
	Issuer string
	// JWKSURI is where the keys are; "" means OIDC discovery at
	// Issuer + "/.well-known/openid-configuration". https, or http on a loopback host.
	JWKSURI string
	// Audiences: the token's aud must contain one of them. At least one is required.
	Audiences []string
	// Algorithms is the allow-list of signature algorithms (case-sensitive, RFC 7518
	// names); empty means DefaultAlgorithms(). HMAC (HS*) and "none" are refused even when listed.
	Algorithms []string
	// RequireTyp, when set, must match the header typ case-insensitively, with or
	// without the "application/" prefix (RFC 7515 §4.1.9, RFC 9068 §2.1).
	RequireTyp string
	// HTTPClient fetches discovery and JWKS; nil means a client with a 5s timeout.
	// Redirects are limited to 5 and must stay on https (or loopback http).
	HTTPClient *http.Client
	// HTTPClientKey, when set, identifies HTTPClient for key set reuse across reloads
	// (e.g. the ca_file path and its content hash), so a rebuilt but equivalent client
	// keeps the cached keys; "" means the *http.Client pointer is the identity.
	HTTPClientKey string
	// EnvoyPayloadKey, when set, trusts the payload Envoy's jwt_authn filter verified
	// for this issuer and stored under this payload_in_metadata key (see
	// JWTAuthnVerifier); "" means this issuer's tokens are always verified here.
	EnvoyPayloadKey string
	// Introspection, when set, asks this issuer's introspection endpoint about
	// opaque tokens and, with JWT, about its JWTs (introspection.go).
	Introspection *IntrospectionConfig
	// ClaimNames maps a claim the server reads (one of RenamableClaims) to the
	// name this issuer's tokens carry it under (claim_names.go); nil reads
	// every claim under its own name.
	ClaimNames map[string]string
}

// JWTVerifier is the local JWT verifier: it verifies JWS-signed tokens against a fixed
// set of issuers with keys from their JWKS. It caches nothing itself (the pipeline's
// cache holds what it verified). Build one per configuration with NewJWTVerifier; it
// is safe for concurrent use.
type JWTVerifier struct {
	issuers map[string]*issuer
	order   []*issuer
	// skew is the clock_skew: a token's iat tells which key fetch could know its key.
	skew time.Duration
	// opaque is the issuer whose introspection takes tokens that are not JWTs
	// (opaque_tokens); nil when none does.
	opaque *issuer
	// intro coalesces and caches introspections (issuers with jwt: true, and the
	// opaque issuer through IntrospectionVerifier).
	intro introspections
}

// issuer is the verification state of one IssuerConfig.
type issuer struct {
	name      string
	algs      []string
	typ       string // normalized RequireTyp; "" means no check
	validator *jwt.Validator
	keys      *keySet
	// envoyKey is IssuerConfig.EnvoyPayloadKey.
	envoyKey string
	// introspect is set when the issuer is introspected (IssuerConfig.Introspection).
	introspect *introspector
	// names is IssuerConfig.ClaimNames.
	names claimNames
}

// NewJWTVerifier checks the issuer configurations and returns a JWTVerifier using ks for
// keys; skew is the leeway for exp, nbf and iat, now the clock (nil: time.Now). Key
// sets of new issuers start fetching in the background; an issuer whose key set
// already runs in ks (same issuer, jwks_uri and client identity) keeps its keys.
func NewJWTVerifier(ks *KeySets, issuers []IssuerConfig, skew time.Duration, now func() time.Time) (*JWTVerifier, error) {
	if ks == nil {
		return nil, errors.New("token: NewJWTVerifier needs a KeySets")
	}
	if skew < 0 {
		return nil, fmt.Errorf("token: clock skew %v is negative", skew)
	}
	if now == nil {
		now = time.Now
	}
	v := &JWTVerifier{issuers: make(map[string]*issuer, len(issuers)), skew: skew, intro: introspections{now: now}}
	for i, cfg := range issuers {
		if _, dup := v.issuers[cfg.Issuer]; dup {
			return nil, fmt.Errorf("issuers[%d] %q: issuer is configured twice", i, cfg.Issuer)
		}
		is, err := newIssuer(cfg, skew, now)
		if err != nil {
			return nil, fmt.Errorf("issuers[%d] %q: %w", i, cfg.Issuer, err)
		}
		if err := v.addIntrospection(is, cfg, skew, now); err != nil {
			return nil, fmt.Errorf("issuers[%d] %q: %w", i, cfg.Issuer, err)
		}
		v.issuers[cfg.Issuer] = is
		v.order = append(v.order, is)
	}
	// Start key sets only once the whole configuration is known to be valid.
	for i, cfg := range issuers {
		s, err := ks.acquire(cfg)
		if err != nil {
			return nil, fmt.Errorf("issuers[%d] %q: %w", i, cfg.Issuer, err)
		}
		v.order[i].keys = s
	}
	return v, nil
}

func newIssuer(cfg IssuerConfig, skew time.Duration, now func() time.Time) (*issuer, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("issuer is empty")
	}
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("no audiences: a token for any audience would be accepted")
	}
	if slices.Contains(cfg.Audiences, "") {
		return nil, errors.New("audiences: empty audience")
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms()
	}
	for _, a := range algs {
		if signingMethod(a) == nil {
			if strings.HasPrefix(strings.ToUpper(a), "HS") || strings.EqualFold(a, "none") {
				return nil, fmt.Errorf("algorithms: %q is never allowed: only asymmetric signatures are accepted", a)
			}
			return nil, fmt.Errorf("algorithms: %q is not one of %v", a, DefaultAlgorithms())
		}
	}
	if cfg.JWKSURI != "" {
		if err := checkFetchURL(cfg.JWKSURI); err != nil {
			return nil, fmt.Errorf("jwks_uri: %w", err)
		}
	} else if err := checkFetchURL(discoveryURL(cfg.Issuer)); err != nil {
		return nil, fmt.Errorf("no jwks_uri, and discovery is impossible: %w", err)
	}
	names, err := newClaimNames(cfg.ClaimNames)
	if err != nil {
		return nil, err
	}
	return &issuer{
		names:    names,
		name:     cfg.Issuer,
		envoyKey: cfg.EnvoyPayloadKey,
		algs:     slices.Clone(algs),
		typ:      normalizeTyp(cfg.RequireTyp),
		validator: jwt.NewValidator(
			jwt.WithTimeFunc(now),
			jwt.WithLeeway(skew),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audiences...),
		),
	}, nil
}

// signingMethod maps an allowed alg to its jwt method, from a fixed table rather than
// jwt's global registry. HMAC and "none" are absent, so they can never verify.
func signingMethod(alg string) jwt.SigningMethod {
	switch alg {
	case "RS256":
		return jwt.SigningMethodRS256
	case "RS384":
		return jwt.SigningMethodRS384
	case "RS512":
		return jwt.SigningMethodRS512
	case "PS256":
		return jwt.SigningMethodPS256
	case "PS384":
		return jwt.SigningMethodPS384
	case "PS512":
		return jwt.SigningMethodPS512
	case "ES256":
		return jwt.SigningMethodES256
	case "ES384":
		return jwt.SigningMethodES384
	case "ES512":
		return jwt.SigningMethodES512
	case "EdDSA":
		return jwt.SigningMethodEdDSA
	}
	return nil
}

// normalizeTyp lower-cases a media type and drops "application/" (RFC 7515 §4.1.9).
func normalizeTyp(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}

// WaitFirstFetch blocks until the first key fetch of every issuer finished, successfully
// or not, and every introspection endpoint that comes from discovery was looked up, or
// ctx is done.
func (v *JWTVerifier) WaitFirstFetch(ctx context.Context) {
	for _, is := range v.order {
		select {
		case <-is.keys.firstDone:
		case <-ctx.Done():
			return
		}
	}
	v.discoverIntrospection(ctx)
}

// Status reports the key status of this Verifier's issuers, in configuration order.
func (v *JWTVerifier) Status() []IssuerStatus {
	out := make([]IssuerStatus, 0, len(v.order))
	for _, is := range v.order {
		st := is.keys.status()
		st.Introspection = is.introspectionStatus()
		out = append(out, st)
	}
	return out
}

// Verify checks cred's token: structure, issuer, algorithm, typ, key, signature,
// claims. The error is an *InvalidError when the token is not acceptable, or wraps
// ErrKeysUnavailable when no keys were ever obtained for its issuer. ctx bounds an
// on-demand key refetch (unknown kid). The principal holds while the key that
// verified it stays in its issuer's key set (and, for an issuer that trusts Envoy's
// jwt_authn, while a payload Envoy sends with the token is the token's own).
func (v *JWTVerifier) Verify(ctx context.Context, cred Credential) (*Principal, error) {
	raw := cred.Token
	if len(raw) > MaxTokenBytes {
		return nil, invalid(DetailTooLarge, "token is %d bytes, limit %d", len(raw), MaxTokenBytes)
	}
	t, err := splitCompact(raw)
	if err != nil {
		return nil, err
	}
	is, err := v.issuerOf(t)
	if err != nil {
		return nil, err
	}
	if err := is.names.apply(t); err != nil {
		return nil, err
	}
	if err := is.checkHeader(t); err != nil {
		return nil, err
	}
	k, err := v.verifySignature(ctx, is, t)
	if err != nil {
		return nil, err
	}
	pr, err := is.principal(t.payload)
	if err != nil {
		return nil, err
	}
	if is.introspect != nil && is.introspect.cfg.JWT {
		// jwt: true: the answer has the last word, and the principal stays bound to k.
		return v.intro.introspected(ctx, is, raw, pr, k)
	}
	pr.Hold = k
	if is.envoyKey != "" {
		pr.Hold = &payloadHold{key: k, name: is.envoyKey, own: ownPayload(t)}
	}
	return pr, nil
}

// issuerOf is the configured issuer named by t's iss.
func (v *JWTVerifier) issuerOf(t *compact) (*issuer, error) {
	iss := t.payload.iss
	if is, ok := v.issuers[iss]; ok {
		return is, nil
	}
	if iss == "" {
		return nil, invalid(DetailUnknownIssuer, "token has no iss")
	}
	return nil, invalid(DetailUnknownIssuer, "iss %q is not configured", iss)
}

// Holds: a principal verified with k holds while k is in its issuer's key set.
func (k *key) Holds(Credential) bool { return !k.revoked.Load() }

// principal validates the registered claims of a token whose signature is trusted.
func (is *issuer) principal(p *payload) (*Principal, error) {
	if err := is.validator.Validate(p); err != nil {
		return nil, claimsError(err)
	}
	return &Principal{Until: p.exp, Claims: p.claims(p.iss)}, nil
}

// checkHeader applies the issuer's algorithm allow-list and typ rule.
func (is *issuer) checkHeader(t *compact) error {
	alg := t.header.alg
	if !slices.Contains(is.algs, alg) {
		return invalid(DetailAlgorithmNotAllowed, "alg %q is not allowed for issuer %q", alg, is.name)
	}
	if is.typ != "" && (!t.header.hasTyp || normalizeTyp(t.header.typ) != is.typ) {
		return invalid(DetailWrongTyp, "typ %q, want %q", t.header.typ, is.typ)
	}
	if !t.payload.hasExp {
		return invalid(DetailMissingExp, "token has no exp")
	}
	return nil
}

// verifySignature finds the issuer's key for t and checks the signature with it,
// returning the key that verified. Only keys of t's issuer are ever tried.
func (v *JWTVerifier) verifySignature(ctx context.Context, is *issuer, t *compact) (*key, error) {
	set := is.keys.current()
	if set == nil {
		// No keys yet: join the first fetch or refetch (rate limited), then decide.
		is.keys.refetch(ctx)
		if set = is.keys.current(); set == nil {
			return nil, fmt.Errorf("issuer %q: %w: %s", is.name, ErrKeysUnavailable, is.keys.lastError())
		}
	}
	h := t.header
	method := signingMethod(h.alg)
	if h.hasKID {
		cands := set.byKID[h.kid]
		if len(cands) == 0 {
			// Unknown kid: the issuer may have rotated keys. Only a fetch that could
			// have seen the key judges the token (see findKid).
			var err error
			if cands, err = is.keys.findKid(ctx, h.kid, t.payload.signedBy(v.skew)); err != nil {
				return nil, err
			}
		}
		k, fitting := tryKeys(cands, h.alg, method, t)
		switch {
		case k != nil:
			return k, nil
		case fitting == 0:
			return nil, invalid(DetailKeyMismatch, "key %q does not fit alg %q", h.kid, h.alg)
		default:
			return nil, invalid(DetailBadSignature, "signature does not verify with key %q", h.kid)
		}
	}
	k, fitting := tryKeys(set.keys, h.alg, method, t)
	if k == nil {
		// No kid and no key verifies: a key may have been added since the last fetch.
		if is.keys.refetch(ctx) {
			if next := is.keys.current(); next != set {
				k, fitting = tryKeys(next.keys, h.alg, method, t)
			}
		} else if err := ctx.Err(); err != nil {
			return nil, refetchUnfinished(is, err)
		}
	}
	switch {
	case k != nil:
		return k, nil
	case fitting == 0:
		return nil, invalid(DetailUnknownKid, "token has no kid and issuer %q has no key for alg %q", is.name, h.alg)
	default:
		return nil, invalid(DetailBadSignature, "token has no kid and no key of issuer %q verifies it", is.name)
	}
}

// refetchUnfinished is the error for a token whose key may be in a key set still
// being fetched when ctx ended: it cannot be judged, which is not the same as invalid
// (a 401 would send a user with a freshly rotated key to sign in again, in a loop).
func refetchUnfinished(is *issuer, err error) error {
	return fmt.Errorf("issuer %q: %w: the key refetch for an unknown key did not finish in time: %v", is.name, ErrKeysUnavailable, err)
}

// tryKeys verifies t with the keys that fit alg, at most maxKeyTries of them, and
// returns the first key that verifies and how many keys fitted.
func tryKeys(keys []*key, alg string, method jwt.SigningMethod, t *compact) (*key, int) {
	fitting := 0
	for _, k := range keys {
		if !k.fits(alg) {
			continue
		}
		if fitting++; fitting > maxKeyTries {
			break
		}
		if method.Verify(t.signed, t.signature, k.pub) == nil {
			return k, fitting
		}
	}
	return nil, fitting
}

// claimsError maps a jwt Validator error to an *InvalidError.
func claimsError(err error) *InvalidError {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return &InvalidError{Detail: DetailExpired, Err: err}
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return &InvalidError{Detail: DetailNotYetValid, Err: err}
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return &InvalidError{Detail: DetailIssuedInFuture, Err: err}
	case errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// exp presence is checked before, and iss selected the issuer, so the only
		// required claim left to miss is aud (absent, "", or []).
		return &InvalidError{Detail: DetailBadAudience, Err: err}
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return &InvalidError{Detail: DetailUnknownIssuer, Err: err}
	default:
		return &InvalidError{Detail: DetailInvalidClaims, Err: err}
	}
}
