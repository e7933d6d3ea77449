package token

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/stepup-authz/stepup-authz/policy"
)

// ErrIntrospectionUnavailable is wrapped by Verify's error when the issuer's
// introspection endpoint could not say whether a token is active: unreachable,
// too slow, a TLS failure, a non-200 answer, a body that is not a JSON object,
// or no free call slot within the deadline. The token cannot be judged, so the
// caller answers 503 (reason introspection_unavailable), never 401 and never
// an allow.
var ErrIntrospectionUnavailable = errors.New("introspection unavailable")

// DetailInactive is the InvalidError detail of a token the issuer's
// introspection endpoint says is not active (RFC 7662 §2.2).
const DetailInactive = "inactive"

// Results reported to IntrospectionConfig.OnResult, one per introspection the
// server attempted (a cache hit or a caller that joined an identical call in
// flight is not one): the stepup_introspection_requests_total result label.
const (
	IntrospectActive    = "active"     // 200, active: true, claims acceptable
	IntrospectInactive  = "inactive"   // 200, active false, absent or not the JSON value true
	IntrospectInvalid   = "invalid"    // active, but a claim is of the wrong type or does not match (iss, aud, exp, ...)
	IntrospectStatus    = "http_error" // a status other than 200
	IntrospectMalformed = "malformed"  // not a JSON object (an HTML error page, an array, "true", repeated members)
	IntrospectTooLarge  = "too_large"  // a body over MaxIntrospectionBytes
	IntrospectTimeout   = "timeout"    // no answer within the deadline
	IntrospectTLS       = "tls_error"  // the TLS handshake or certificate check failed
	IntrospectRedirect  = "redirect"   // a redirect to another origin (never followed), or one left unfollowed
	IntrospectError     = "error"      // connection refused, reset, DNS failure
	IntrospectThrottled = "throttled"  // no call slot (max_in_flight) freed up within the deadline; no call made
	IntrospectNoEnpoint = "discovery_error"
)

// IntrospectResults lists every result, for metrics that pre-register labels.
var IntrospectResults = []string{
	IntrospectActive, IntrospectInactive, IntrospectInvalid, IntrospectStatus, IntrospectMalformed,
	IntrospectTooLarge, IntrospectTimeout, IntrospectTLS, IntrospectRedirect, IntrospectError,
	IntrospectThrottled, IntrospectNoEnpoint,
}

const (
	// MaxIntrospectionBytes bounds an introspection answer: a larger one is not
	// read to the end and counts as unavailable.
	MaxIntrospectionBytes = 1 << 20
	// defaultIntrospectionTimeout bounds a call whose caller set no deadline.
	defaultIntrospectionTimeout = 10 * time.Second
	// discoveryRetry is the least time between two discovery attempts of an
	// endpoint that is not known yet.
	discoveryRetry = 5 * time.Second
)

// Client authentication methods (RFC 6749 §2.3.1; RFC 7662 §2.1 requires one).
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
)

// IntrospectionConfig is how one issuer is asked about its tokens (RFC 7662).
type IntrospectionConfig struct {
	// Endpoint is the introspection URL; "" means introspection_endpoint of the
	// issuer's OpenID provider metadata.
	Endpoint     string
	ClientID     string
	ClientSecret string
	// Auth is ClientSecretBasic (the default when "") or ClientSecretPost.
	Auth string
	// OpaqueTokens: tokens that are not JWTs go to this issuer.
	OpaqueTokens bool
	// JWT: this issuer's JWTs are introspected after they verified locally.
	JWT bool
	// RequireAudience: an answer without aud is invalid (with JWT it is not:
	// the JWT's own aud was checked).
	RequireAudience bool
	// CacheTTL bounds how long an active answer is served from the cache
	// (never past the token's exp); NegativeCacheTTL how long an inactive one
	// is. 0 disables each.
	CacheTTL         time.Duration
	NegativeCacheTTL time.Duration
	// MaxInFlight bounds concurrent calls to the endpoint; 0 means 64.
	MaxInFlight int
	// OnResult, when set, is called once per attempted introspection with one
	// of the Introspect* results. It must be safe for concurrent use.
	OnResult func(issuer, result string)
}

// introspector asks one issuer's introspection endpoint about tokens. It
// neither caches nor coalesces: the Verifier does both, around it.
type introspector struct {
	issuer    string
	audiences []string
	cfg       IntrospectionConfig
	client    *http.Client
	sem       *semaphore.Weighted
	skew      time.Duration
	now       func() time.Time
	// names are the issuer's claim_names, applied to every answer.
	names claimNames

	// The endpoint, once known (configured, or read from discovery).
	mu            sync.Mutex
	endpoint      string
	discoveryErr  error
	lastDiscovery time.Time
	discovering   chan struct{} // closed when the discovery in progress ends; nil when none runs
}

func newIntrospector(issuer string, audiences []string, cfg IntrospectionConfig, client *http.Client, skew time.Duration, now func() time.Time) (*introspector, error) {
	switch cfg.Auth {
	case "":
		cfg.Auth = ClientSecretBasic
	case ClientSecretBasic, ClientSecretPost:
	default:
		return nil, fmt.Errorf("introspection.auth: %q is not one of %s, %s", cfg.Auth, ClientSecretBasic, ClientSecretPost)
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("introspection: client_id and a client secret are required (RFC 7662 §2.1: the endpoint authenticates its callers)")
	}
	if !cfg.OpaqueTokens && !cfg.JWT {
		return nil, errors.New("introspection: neither opaque_tokens nor jwt is set, so no token would be introspected")
	}
	if cfg.Endpoint != "" {
		if err := checkFetchURL(cfg.Endpoint); err != nil {
			return nil, fmt.Errorf("introspection.endpoint: %w", err)
		}
	} else if err := checkFetchURL(discoveryURL(issuer)); err != nil {
		return nil, fmt.Errorf("introspection: no endpoint, and discovery is impossible: %w", err)
	}
	if cfg.CacheTTL < 0 || cfg.NegativeCacheTTL < 0 {
		return nil, errors.New("introspection: cache TTLs must not be negative")
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	if client == nil {
		client = &http.Client{Timeout: defaultIntrospectionTimeout}
	}
	in := &introspector{
		issuer:    issuer,
		audiences: slices.Clone(audiences),
		cfg:       cfg,
		client:    sameOriginClient(client),
		sem:       semaphore.NewWeighted(int64(cfg.MaxInFlight)),
		skew:      skew,
		now:       now,
		endpoint:  cfg.Endpoint,
	}
	return in, nil
}

// errCrossOrigin stops a redirect to another origin: the client secret and
// the token would follow it to a server the config never named.
var errCrossOrigin = errors.New("redirect to another origin refused")

// sameOriginClient is a copy of c that follows a redirect only within the
// origin (scheme, host and port) it started from, at most maxRedirects times.
func sameOriginClient(c *http.Client) *http.Client {
	cc := *c
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		first := via[0].URL
		if !strings.EqualFold(req.URL.Scheme, first.Scheme) || !strings.EqualFold(req.URL.Host, first.Host) {
			return fmt.Errorf("%w: %s to %s", errCrossOrigin, first.Redacted(), req.URL.Redacted())
		}
		return nil
	}
	return &cc
}

// report counts one attempted introspection.
func (in *introspector) report(result string) {
	if in.cfg.OnResult != nil {
		in.cfg.OnResult(in.issuer, result)
	}
}

// unavailable is the error of an introspection that could not be completed.
func (in *introspector) unavailable(format string, args ...any) error {
	return fmt.Errorf("issuer %q: %w: %s", in.issuer, ErrIntrospectionUnavailable, fmt.Sprintf(format, args...))
}

// answer is an active introspection answer whose claims passed the JWT rules.
type answer struct {
	claims policy.Claims
	// present says which claims the answer carried, so that with jwt: true a
	// claim of the answer takes precedence over the JWT's and an absent one
	// does not erase it.
	present claimSet
	// hasExp: the answer carried exp (claims.Expiry is then set).
	hasExp bool
}

// introspect asks the endpoint about raw: it waits for a call slot and the
// endpoint (discovery) within ctx, then makes one HTTP call bounded by ctx.
// The error is an *InvalidError (inactive, or a claim that fails the rules) or
// wraps ErrIntrospectionUnavailable. Every outcome is reported once.
func (in *introspector) introspect(ctx context.Context, raw string) (*answer, error) {
	if err := in.sem.Acquire(ctx, 1); err != nil {
		in.report(IntrospectThrottled)
		return nil, in.unavailable("no call slot of %d (max_in_flight) freed up in time: %v", in.cfg.MaxInFlight, err)
	}
	defer in.sem.Release(1)
	endpoint, err := in.endpointURL(ctx)
	if err != nil {
		in.report(IntrospectNoEnpoint)
		return nil, in.unavailable("%v", err)
	}
	a, result, err := in.call(ctx, endpoint, raw)
	in.report(result)
	return a, err
}

// call makes the RFC 7662 §2.1 request and judges the answer.
func (in *introspector) call(ctx context.Context, endpoint, raw string) (*answer, string, error) {
	// Errors are logged: they show the endpoint without any userinfo or query.
	shown := endpoint
	if u, err := url.Parse(endpoint); err == nil {
		u.User, u.RawQuery = nil, ""
		shown = u.String()
	}
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	if in.cfg.Auth == ClientSecretPost {
		form.Set("client_id", in.cfg.ClientID)
		form.Set("client_secret", in.cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, IntrospectError, in.unavailable("POST %s: %v", shown, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "stepup-authz")
	if in.cfg.Auth == ClientSecretBasic {
		// RFC 6749 §2.3.1: client_id and secret are form-urlencoded before
		// they are joined and base64-encoded.
		cred := url.QueryEscape(in.cfg.ClientID) + ":" + url.QueryEscape(in.cfg.ClientSecret)
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	}
	resp, err := in.client.Do(req)
	if err != nil {
		return nil, transportResult(ctx, err), in.unavailable("POST %s: %v", shown, scrub(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxIntrospectionBytes+1))
	switch {
	case err != nil:
		return nil, transportResult(ctx, err), in.unavailable("POST %s: read the answer: %v", shown, scrub(err))
	case len(body) > MaxIntrospectionBytes:
		return nil, IntrospectTooLarge, in.unavailable("POST %s: the answer is larger than %d bytes", shown, MaxIntrospectionBytes)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, IntrospectRedirect, in.unavailable("POST %s: status %d (a redirect, not followed)", shown, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, IntrospectStatus, in.unavailable("POST %s: status %d", shown, resp.StatusCode)
	}
	return in.judge(body)
}

// judge reads an answer body (RFC 7662 §2.2) with the claim rules of a JWT.
func (in *introspector) judge(body []byte) (*answer, string, error) {
	m, err := decodeObject(body, "introspection answer")
	if err != nil {
		// Not a JSON object, or one with a repeated member ({"active":false,
		// "active":true} means different things to different readers): the
		// endpoint did not give an answer we can rely on either way.
		return nil, IntrospectMalformed, in.unavailable("the answer is not a JSON object without repeated members (%s)", describeBody(body))
	}
	// RFC 7662 §2.2: active is a boolean; only the JSON value true means active.
	if string(m["active"]) != "true" {
		what := "false"
		if raw, ok := m["active"]; !ok {
			what = "absent"
		} else if string(raw) != "false" {
			what = jsonKind(raw) + " " + truncate(string(raw), 16)
		}
		return nil, IntrospectInactive, invalid(DetailInactive, "issuer %q: introspection says active is %s", in.issuer, what)
	}
	// The answer speaks in the issuer's claim names, as its JWTs do.
	m = in.names.members(m)
	p, err := payloadOf(m)
	if err != nil {
		return nil, IntrospectInvalid, err
	}
	if err := in.checkClaims(p); err != nil {
		return nil, IntrospectInvalid, err
	}
	a := &answer{
		// An answer's cnf binds the token as a JWT's does (CONTRACT.md).
		claims:  p.claims(in.issuer),
		present: presentClaims(m),
		hasExp:  p.hasExp,
	}
	if a.present&hasSub == 0 && p.clientID != "" {
		// RFC 7662 §2.2: sub names the resource owner, so an answer without one
		// (node-oidc-provider's, for a client-credentials token) speaks for the
		// client alone. Its subject is the client, as RFC 9068 §2.2 writes a
		// client-credentials JWT: a machine token under the default rule. With
		// jwt: true, present stays unset and the JWT's own sub is kept.
		a.claims.Subject = p.clientID
	}
	return a, IntrospectActive, nil
}

// claimSet is a set of the claims that merge carries over, one bit each.
type claimSet uint16

const (
	hasSub claimSet = 1 << iota
	hasClientID
	hasGty
	hasACR
	hasAMR
	hasAuthTime
	hasIat
	hasExp
	hasScope // scope or scp
	hasCNF
	hasACRS
)

func presentClaims(m map[string]json.RawMessage) claimSet {
	var s claimSet
	for _, c := range [...]struct {
		name string
		bit  claimSet
	}{
		{"sub", hasSub}, {"client_id", hasClientID}, {"gty", hasGty}, {"acr", hasACR}, {"amr", hasAMR},
		{"auth_time", hasAuthTime}, {"iat", hasIat}, {"exp", hasExp}, {"scope", hasScope}, {"scp", hasScope}, {"cnf", hasCNF}, {"acrs", hasACRS},
	} {
		if _, ok := m[c.name]; ok {
			s |= c.bit
		}
	}
	return s
}

// checkClaims applies the JWT rules to an active answer (CONTRACT.md, "Opaque
// and lightweight tokens"): iss, when present, is the issuer; aud contains
// one of the audiences (absent: only with require_audience false, or for a
// JWT whose own aud was checked); exp, nbf and iat hold within clock_skew.
func (in *introspector) checkClaims(p *payload) error {
	if p.iss != "" && p.iss != in.issuer {
		return invalid(DetailUnknownIssuer, "introspection answer of issuer %q names iss %q", in.issuer, p.iss)
	}
	switch {
	case p.aud == nil && (in.cfg.RequireAudience && !in.cfg.JWT):
		return invalid(DetailBadAudience, "introspection answer has no aud (set require_audience: false to accept that)")
	case p.aud != nil && !slices.ContainsFunc(p.aud, func(a string) bool { return slices.Contains(in.audiences, a) }):
		return invalid(DetailBadAudience, "introspection answer aud %q contains none of %q", p.aud, in.audiences)
	}
	now := in.now()
	switch {
	case p.hasExp && now.Sub(p.exp) > in.skew:
		return invalid(DetailExpired, "introspection answer exp %s has passed", p.exp.UTC().Format(time.RFC3339))
	case p.hasNbf && p.nbf.Sub(now) > in.skew:
		return invalid(DetailNotYetValid, "introspection answer nbf %s is in the future", p.nbf.UTC().Format(time.RFC3339))
	case p.hasIat && p.iat.Sub(now) > in.skew:
		return invalid(DetailIssuedInFuture, "introspection answer iat %s is in the future", p.iat.UTC().Format(time.RFC3339))
	}
	return nil
}

// transportResult names a failed call: the deadline, TLS, a refused
// redirect, or any other transport error.
func transportResult(ctx context.Context, err error) string {
	var (
		certErr    *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		recordErr  tls.RecordHeaderError
		alertErr   tls.AlertError
	)
	switch {
	case errors.Is(err, errCrossOrigin):
		return IntrospectRedirect
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return IntrospectTimeout
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &invalidErr), errors.As(err, &recordErr), errors.As(err, &alertErr):
		return IntrospectTLS
	}
	return IntrospectError
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// scrub keeps the URL of a *url.Error (which may carry a query) but never a
// request body: the token and the secret travel in the body only, so an error
// from net/http cannot contain them. It exists to keep that so.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// describeBody names what came back instead of a JSON object, for logs: the
// start of an HTML page, or the JSON kind.
func describeBody(b []byte) string {
	s := strings.TrimSpace(string(b))
	switch {
	case s == "":
		return "empty body"
	case s[0] == '<':
		return "an HTML or XML page"
	case s[0] == '{':
		return "a JSON object that does not parse or repeats a member"
	default:
		return jsonKind(json.RawMessage(s)) + " " + truncate(s, 16)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// endpointURL returns the introspection endpoint, reading it from discovery
// when it is not configured. A failed discovery is retried at most every
// discoveryRetry; callers in between get its error at once.
func (in *introspector) endpointURL(ctx context.Context) (string, error) {
	for {
		in.mu.Lock()
		if in.endpoint != "" {
			e := in.endpoint
			in.mu.Unlock()
			return e, nil
		}
		if wait := in.discovering; wait != nil {
			in.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return "", fmt.Errorf("discovery of the introspection endpoint did not finish in time: %w", ctx.Err())
			}
		}
		if in.discoveryErr != nil && in.now().Sub(in.lastDiscovery) < discoveryRetry {
			err := in.discoveryErr
			in.mu.Unlock()
			return "", err
		}
		done := make(chan struct{})
		in.discovering = done
		in.mu.Unlock()

		e, err := discoverIntrospection(ctx, in.client, in.issuer)
		in.mu.Lock()
		in.endpoint, in.discoveryErr, in.lastDiscovery = e, err, in.now()
		in.discovering = nil
		close(done)
		in.mu.Unlock()
		return e, err
	}
}

// status reports the endpoint and whether it is known, for /readyz.
func (in *introspector) status() (endpoint string, known bool, lastErr string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.discoveryErr != nil {
		lastErr = in.discoveryErr.Error()
	}
	return in.endpoint, in.endpoint != "", lastErr
}

// discoverIntrospection reads introspection_endpoint (RFC 8414 §2, also in
// OpenID provider metadata) from issuer's discovery document, whose issuer
// must be ours exactly (OpenID Connect Discovery 1.0 §4.3).
func discoverIntrospection(ctx context.Context, client *http.Client, issuer string) (string, error) {
	uri := discoveryURL(issuer)
	resp, err := get(ctx, client, uri, nil)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if resp.status != http.StatusOK {
		return "", fmt.Errorf("discovery: GET %s: status %d", uri, resp.status)
	}
	var doc struct {
		Issuer   *string `json:"issuer"`
		Endpoint *string `json:"introspection_endpoint"`
	}
	if err := json.Unmarshal(resp.body, &doc); err != nil {
		return "", fmt.Errorf("discovery: %s: %w", uri, err)
	}
	if doc.Issuer == nil || *doc.Issuer != issuer {
		return "", fmt.Errorf("discovery: %s: issuer is not %q", uri, issuer)
	}
	if doc.Endpoint == nil || *doc.Endpoint == "" {
		return "", fmt.Errorf("discovery: %s: no introspection_endpoint; set issuers[].introspection.endpoint", uri)
	}
	if err := checkFetchURL(*doc.Endpoint); err != nil {
		return "", fmt.Errorf("discovery: %s: introspection_endpoint: %w", uri, err)
	}
	return *doc.Endpoint, nil
}
