package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"go.opentelemetry.io/otel/trace"
)

// Results passed to KeySetOptions.OnFetch, one per fetch attempt.
const (
	FetchOK          = "ok"           // a valid, non-empty key set replaced the cached one
	FetchNotModified = "not_modified" // the server answered 304; cached keys stay
	FetchError       = "error"        // transport failure, non-200 status, discovery unreachable
	FetchInvalid     = "invalid"      // not JSON, no usable key, oversized, bad discovery document
	FetchEmpty       = "empty"        // {"keys":[]} or no keys member
)

const (
	defaultRefreshInterval = 5 * time.Minute
	defaultMinRefetch      = 5 * time.Second
	defaultHTTPTimeout     = 5 * time.Second
	// fetchTimeout bounds one fetch (discovery plus JWKS) even when the caller's
	// http.Client has no timeout.
	fetchTimeout = 10 * time.Second
	// minRSABits follows RFC 7518 §3.3: RSA keys of 2048 bits or larger MUST be used.
	minRSABits = 2048
)

// KeySetOptions configure a KeySets. Zero values select the defaults.
type KeySetOptions struct {
	// RefreshInterval is the background refresh period; 0 means 5m. While an issuer holds
	// no keys, failed fetches are retried sooner (1s, doubling up to RefreshInterval).
	RefreshInterval time.Duration
	// MinRefetch is the least time between two on-demand fetches of one issuer (unknown
	// kid, no keys yet); 0 means 5s.
	MinRefetch time.Duration
	// OnFetch, when set, is called after every fetch attempt with one of the Fetch*
	// results, from the fetching goroutine; it must be safe for concurrent use.
	OnFetch func(issuer, result string)
	// Tracer, when set, traces every fetch (see trace.go); nil traces nothing.
	Tracer trace.Tracer
	// Now is the clock for rate limiting and status; nil means time.Now.
	Now func() time.Time
	// AfterFunc runs f in its own goroutine once d has passed on the Now clock and
	// returns a function that cancels it, as time.AfterFunc does; nil means
	// time.AfterFunc. It schedules the refetch for an unknown kid that arrives while
	// the MinRefetch window is still closed. Tests pair it with Now.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
	// Logger receives fetch failures and key changes; nil discards them.
	Logger *slog.Logger
}

// IssuerStatus is one issuer's key status, for /readyz.
type IssuerStatus struct {
	Issuer string
	// JWKSURI is the URL keys were last fetched from (after discovery); "" until known.
	JWKSURI string
	// Fetched is true once the first fetch finished, successfully or not.
	Fetched bool
	// Keys is the number of usable keys held.
	Keys int
	// Skipped is the number of keys of the latest JWKS document fetched that were
	// refused (see SkippedKeys for the first of them and why); 0 before any document.
	Skipped int
	// SkippedKeys are the first maxSkippedReported refused keys of that document.
	SkippedKeys []SkippedKey
	// LastError is the error of the latest fetch; "" when it succeeded.
	LastError   string
	LastSuccess time.Time
	// Introspection is the issuer's introspection state; nil when it has none.
	Introspection *IntrospectionStatus
}

// Key status states, for /readyz (IssuerStatus.State).
const (
	StateFetching = "fetching" // the first fetch has not finished
	StateOK       = "ok"       // keys held, and the latest fetch succeeded
	StateStale    = "stale"    // keys held, but the latest fetch failed
	StateNoKeys   = "no_keys"  // every fetch so far failed: this issuer's tokens get 503
)

// State is one word for the status: StateFetching, StateOK, StateStale or StateNoKeys.
func (st IssuerStatus) State() string {
	switch {
	case !st.Fetched:
		return StateFetching
	case st.Keys == 0:
		return StateNoKeys
	case st.LastError != "":
		return StateStale
	}
	return StateOK
}

// Message says in a sentence what the status means for tokens of this issuer and,
// when something is wrong, what to check.
func (st IssuerStatus) Message() string {
	var msg string
	switch st.State() {
	case StateFetching:
		msg = "the first key fetch has not finished; tokens of this issuer wait for it (at most 80% of the Check's deadline), then get 503"
	case StateNoKeys:
		msg = "no keys: no fetch has succeeded yet (see last_error), so tokens of this issuer get 503 temporarily_unavailable; " +
			"check that the jwks_uri (or the issuer's discovery document) is reachable from this server and serves a JWKS with a usable signing key"
	case StateStale:
		msg = fmt.Sprintf("%d keys from the fetch at %s keep verifying tokens, but the latest fetch failed (see last_error), so keys added or removed since are not seen; "+
			"check that the jwks_uri is reachable and serves a valid JWKS", st.Keys, st.LastSuccess.UTC().Format(time.RFC3339))
	default:
		msg = fmt.Sprintf("%d keys, fetched at %s", st.Keys, st.LastSuccess.UTC().Format(time.RFC3339))
	}
	if st.Skipped > 0 {
		msg += fmt.Sprintf("; %d keys of the latest JWKS were refused (see skipped_keys): tokens they signed get 401 invalid_token (detail key_refused)", st.Skipped)
	}
	if in := st.Introspection; in != nil && in.OpaqueTokens {
		if in.Ready {
			msg += "; opaque tokens (not JWTs) go to its introspection endpoint, which is known"
		} else {
			msg += "; opaque tokens (not JWTs) go to its introspection endpoint, which is not known yet (see introspection.last_error)"
		}
	}
	return msg
}

// SkippedKey is a key of a fetched JWKS that is not used for verification, and why.
type SkippedKey struct {
	KID string // "" when the JWK has none
	Kty string // the JWK's kty; "" when absent or unreadable
	Crv string // the JWK's crv, for EC and OKP keys
	// Reason says why the key is not used and, where there is one, what would be accepted.
	Reason string
	// notSigning marks keys published for something else than signatures (use enc,
	// key_ops without verify): routine, so logged at Info rather than Warn.
	notSigning bool
}

// maxSkippedReported bounds the refused keys kept for status and logs, per fetch; a
// JWKS of up to 1 MiB could otherwise hold thousands.
const maxSkippedReported = 16

// KeySets is the registry of per-issuer JWKS caches. It outlives configuration reloads:
// keep one KeySets per process and build a Verifier per configuration. A key set is
// identified by issuer, jwks_uri and HTTP client (IssuerConfig.HTTPClientKey, else the
// *http.Client pointer); a Verifier whose issuer has the same identity reuses the
// running key set and its cached keys. KeySets is safe for concurrent use.
type KeySets struct {
	opts          KeySetOptions
	defaultClient *http.Client
	retryBase     time.Duration

	mu     sync.Mutex
	sets   map[setID]*keySet
	closed bool

	clients caClients // see ClientFor
}

// setID identifies a key set across configuration reloads.
type setID struct {
	issuer    string
	jwksURI   string
	clientKey string
	client    *http.Client // nil when clientKey is set
}

// NewKeySets returns an empty registry; key sets start when a Verifier needs them.
func NewKeySets(opts KeySetOptions) *KeySets {
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = defaultRefreshInterval
	}
	if opts.MinRefetch <= 0 {
		opts.MinRefetch = defaultMinRefetch
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AfterFunc == nil {
		opts.AfterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &KeySets{
		opts:          opts,
		defaultClient: &http.Client{Timeout: defaultHTTPTimeout, Transport: newTransport()},
		retryBase:     time.Second,
		sets:          make(map[setID]*keySet),
	}
}

// newTransport is a transport of our own, so Close can drop its idle connections
// without touching http.DefaultTransport's.
func newTransport() *http.Transport {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		return t.Clone()
	}
	return &http.Transport{Proxy: http.ProxyFromEnvironment, TLSHandshakeTimeout: defaultHTTPTimeout}
}

// acquire returns the running key set for cfg, starting one (first fetch in the
// background) when none matches.
func (k *KeySets) acquire(cfg IssuerConfig) (*keySet, error) {
	id := setID{issuer: cfg.Issuer, jwksURI: cfg.JWKSURI, clientKey: cfg.HTTPClientKey}
	if id.clientKey == "" {
		id.client = cfg.HTTPClient
	}
	client := cfg.HTTPClient
	if client == nil {
		client = k.defaultClient
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, errors.New("key sets are closed")
	}
	if s, ok := k.sets[id]; ok {
		// Same identity: keep the keys, but use the newest client (a reload may have
		// rebuilt it from the same CA bundle).
		s.client.Store(guardedClient(client))
		return s, nil
	}
	s := newKeySet(cfg.Issuer, cfg.JWKSURI, client, k.opts, k.retryBase)
	k.sets[id] = s
	s.start()
	return s, nil
}

// Retain stops and forgets every key set that none of the given verifiers uses. Call it
// after a reload has switched to a new JWTVerifier, so issuers that left the configuration
// stop being fetched. A JWTVerifier whose key set was dropped keeps its last keys but no
// longer refreshes them.
func (k *KeySets) Retain(keep ...*JWTVerifier) {
	used := make(map[*keySet]bool)
	for _, v := range keep {
		if v == nil {
			continue
		}
		for _, is := range v.order {
			used[is.keys] = true
		}
	}
	var drop []*keySet
	k.mu.Lock()
	for id, s := range k.sets {
		if !used[s] {
			delete(k.sets, id)
			drop = append(drop, s)
		}
	}
	k.mu.Unlock()
	for _, s := range drop {
		s.stop()
	}
}

// Close stops every background fetch and waits for the fetch goroutines to exit. Verify
// keeps working with the keys already held but fetches no more.
func (k *KeySets) Close() {
	k.mu.Lock()
	k.closed = true
	sets := k.sets
	k.sets = make(map[setID]*keySet)
	k.mu.Unlock()
	for _, s := range sets {
		s.stop()
		s.client.Load().CloseIdleConnections()
	}
	k.defaultClient.CloseIdleConnections()
}

// Status reports every running key set, sorted by issuer.
func (k *KeySets) Status() []IssuerStatus {
	k.mu.Lock()
	sets := make([]*keySet, 0, len(k.sets))
	for _, s := range k.sets {
		sets = append(sets, s)
	}
	k.mu.Unlock()
	out := make([]IssuerStatus, 0, len(sets))
	for _, s := range sets {
		out = append(out, s.status())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Issuer != out[j].Issuer {
			return out[i].Issuer < out[j].Issuer
		}
		return out[i].JWKSURI < out[j].JWKSURI
	})
	return out
}

// guardedClient is a copy of c whose redirects obey checkFetchURL.
func guardedClient(c *http.Client) *http.Client {
	cc := *c
	cc.CheckRedirect = checkRedirect
	return &cc
}

// key is one usable public key of a JWKS. Its pointer identity is what the verified-token
// cache remembers: revoked is set when a fetched set no longer contains it.
type key struct {
	kid     string
	alg     string // the JWK's alg; "" when the JWK has none
	pub     crypto.PublicKey
	revoked atomic.Bool
}

// fits reports whether k may verify a token signed with alg: the key type (and curve)
// must match alg, and so must the JWK's own alg when it has one.
func (k *key) fits(alg string) bool {
	return (k.alg == "" || k.alg == alg) && keyFitsAlg(k.pub, alg)
}

// same reports whether o is the same key as k, so a refresh can keep k's identity.
func (k *key) same(o *key) bool {
	if k.kid != o.kid || k.alg != o.alg {
		return false
	}
	eq, ok := k.pub.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(o.pub)
}

// keyFitsAlg reports whether pub is the key type alg needs (RFC 7518 §3.1, RFC 8037 §3.1).
func keyFitsAlg(pub crypto.PublicKey, alg string) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := pub.(*rsa.PublicKey)
		return ok
	case "ES256":
		return ecCurve(pub) == elliptic.P256()
	case "ES384":
		return ecCurve(pub) == elliptic.P384()
	case "ES512":
		return ecCurve(pub) == elliptic.P521()
	case "EdDSA":
		_, ok := pub.(ed25519.PublicKey)
		return ok
	}
	return false
}

func ecCurve(pub crypto.PublicKey) elliptic.Curve {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		return k.Curve
	}
	return nil
}

// jwkSet is an immutable generation of an issuer's keys.
type jwkSet struct {
	keys  []*key
	byKID map[string][]*key
}

func newJWKSet(keys []*key) *jwkSet {
	s := &jwkSet{keys: keys, byKID: make(map[string][]*key, len(keys))}
	for _, k := range keys {
		s.byKID[k.kid] = append(s.byKID[k.kid], k)
	}
	return s
}

// skippedSet is what one fetched JWKS document refused.
type skippedSet struct {
	count int
	first []SkippedKey // the first maxSkippedReported, in document order
	// byKID maps the kid of every refused key to why, so a token naming one is told
	// "key_refused" rather than "unknown_kid", which would point the wrong way.
	byKID map[string]string
}

func (s *skippedSet) add(k SkippedKey) {
	s.count++
	if len(s.first) < maxSkippedReported {
		s.first = append(s.first, k)
	}
	if k.KID != "" {
		if s.byKID == nil {
			s.byKID = make(map[string]string)
		}
		if _, dup := s.byKID[k.KID]; !dup {
			s.byKID[k.KID] = k.Reason
		}
	}
}

// parseJWKS turns a JWKS document into its usable keys and the keys it refused. It
// fails (with the OnFetch result) when the document is not a JWKS, has no keys, or has
// no usable key; skipped is set whenever the document had keys.
func parseJWKS(body []byte) (keys []*key, skipped *skippedSet, err error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, &fetchError{FetchInvalid, fmt.Errorf("not a JWKS: %w", err)}
	}
	if len(doc.Keys) == 0 {
		return nil, nil, &fetchError{FetchEmpty, errors.New("JWKS has no keys")}
	}
	skipped = &skippedSet{}
	for _, raw := range doc.Keys {
		k, refused := parseKey(raw)
		if refused != nil {
			skipped.add(*refused)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		reasons := make([]string, 0, len(skipped.first))
		for _, r := range skipped.first {
			reasons = append(reasons, describeSkipped(r))
		}
		return nil, skipped, &fetchError{FetchInvalid, fmt.Errorf("JWKS has no usable key among %d: %s", len(doc.Keys), strings.Join(reasons, "; "))}
	}
	return keys, skipped, nil
}

// describeSkipped is one refused key in words, for errors.
func describeSkipped(k SkippedKey) string {
	kid := "without kid"
	if k.KID != "" {
		kid = fmt.Sprintf("kid %q", k.KID)
	}
	return fmt.Sprintf("key %s: %s", kid, k.Reason)
}

// Signature curves this server verifies with (RFC 7518 §3.4, RFC 8037 §3.1).
var (
	ecCurves  = []string{"P-256", "P-384", "P-521"}
	okpCurves = []string{"Ed25519"}
)

// parseKey parses one JWK into a public verification key, or says why it is refused:
// symmetric keys, keys for another use than "sig" (RFC 7517 §4.2), keys whose key_ops
// exclude "verify" (§4.3), unsupported types and curves, RSA keys under 2048 bits (RFC
// 7518 §3.3), and keys whose alg does not fit them. Private members are ignored: only
// the public part is ever loaded.
func parseKey(raw json.RawMessage) (*key, *SkippedKey) {
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		// Members of the wrong JSON type: read what can be read for the report.
		var loose struct {
			KID any `json:"kid"`
			KTY any `json:"kty"`
		}
		_ = json.Unmarshal(raw, &loose)
		kid, _ := loose.KID.(string)
		kty, _ := loose.KTY.(string)
		return nil, &SkippedKey{KID: kid, Kty: kty, Reason: "not a JWK: " + err.Error()}
	}
	refuse := func(notSigning bool, format string, args ...any) *SkippedKey {
		return &SkippedKey{KID: m.KID, Kty: string(m.KTY), Crv: string(m.CRV), Reason: fmt.Sprintf(format, args...), notSigning: notSigning}
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, refuse(true, "use is %q: not a signature key", m.USE)
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return nil, refuse(true, "key_ops %v lack \"verify\": not a signature verification key", m.KEYOPS)
	}
	switch m.KTY {
	case jwkset.KtyRSA:
	case jwkset.KtyEC:
		if !slices.Contains(ecCurves, string(m.CRV)) {
			return nil, refuse(false, "EC curve %q is not supported; use %s (ES256, ES384, ES512)", m.CRV, strings.Join(ecCurves, ", "))
		}
	case jwkset.KtyOKP:
		if m.CRV == jwkset.CrvX25519 {
			return nil, refuse(true, "OKP curve X25519 is for key agreement, not signatures; use Ed25519 (EdDSA)")
		}
		if !slices.Contains(okpCurves, string(m.CRV)) {
			return nil, refuse(false, "OKP curve %q is not supported; use Ed25519 (EdDSA)", m.CRV)
		}
	case jwkset.KtyOct:
		return nil, refuse(false, "symmetric (oct) key: tokens are only verified with asymmetric keys (RSA, EC, OKP)")
	default:
		return nil, refuse(false, "key type %q is not supported; use RSA, EC or OKP", m.KTY)
	}
	j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: false}, jwkset.JWKValidateOptions{})
	if err != nil {
		return nil, refuse(false, "unreadable key: %v", err)
	}
	pub := j.Key()
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if n := p.N.BitLen(); n < minRSABits {
			return nil, refuse(false, "RSA key of %d bits; at least %d required (RFC 7518 §3.3)", n, minRSABits)
		}
	case *ecdsa.PublicKey:
		switch p.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, refuse(false, "EC curve %q is not supported; use %s", p.Curve.Params().Name, strings.Join(ecCurves, ", "))
		}
	case ed25519.PublicKey:
	default:
		return nil, refuse(false, "a %T is not a signature key this server uses", pub)
	}
	k := &key{kid: m.KID, alg: string(m.ALG), pub: pub}
	if k.alg != "" && !keyFitsAlg(pub, k.alg) {
		return nil, refuse(false, "alg %q does not fit this %s key; tokens could never verify with it", k.alg, keyKind(m))
	}
	return k, nil
}

// keyKind names a JWK's type and curve for messages: "RSA", "EC P-256", "OKP Ed25519".
func keyKind(m jwkset.JWKMarshal) string {
	if m.CRV != "" {
		return string(m.KTY) + " " + string(m.CRV)
	}
	return string(m.KTY)
}

// keySet is one issuer's JWKS cache: its current keys, the background refresher and
// the single-flight, rate-limited on-demand refetch.
type keySet struct {
	issuer  string
	jwksURI string // as configured; "" means OIDC discovery on every fetch
	client  atomic.Pointer[http.Client]
	opts    KeySetOptions
	retry   time.Duration

	cur atomic.Pointer[jwkSet] // nil until the first successful fetch; never reset to nil

	ctx       context.Context // cancelled by stop
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	firstDone chan struct{} // closed when the first fetch finished, or when stopped before it
	firstOnce sync.Once

	// skipped is what the latest JWKS document refused; nil before the first one.
	skipped atomic.Pointer[skippedSet]
	// waiting counts the Verify calls waiting in findKid (tests watch it).
	waiting atomic.Int32

	mu       sync.Mutex
	inflight chan struct{} // closed when the running fetch finishes; nil when idle
	// next is closed when the scheduled fetch (see findKid) has finished, or when
	// the set is stopped before it ran; nil when none is scheduled. A fetch that
	// starts while one is scheduled, for any reason, is that fetch.
	next   chan struct{}
	nextAt time.Time // when the scheduled fetch starts, on the Now clock
	// nextParent is the trace of the Check that scheduled the fetch, its span's parent.
	nextParent trace.SpanContext
	// nextRefresh is when the background refresher fetches next.
	nextRefresh time.Time
	stopNext    func() bool // cancels the scheduled fetch's timer
	lastStart   time.Time   // start of the latest fetch, for MinRefetch
	// settledAt is when the latest successful fetch started: a key an IdP signed with
	// before then was in the set that fetch got.
	settledAt   time.Time
	fetched     bool
	lastErr     string
	lastSuccess time.Time
	resolvedURI string

	// Conditional-request validators; only the fetch goroutine touches them, and fetches
	// never overlap (inflight), so they need no lock.
	etag, lastModified, validatorsURI string
}

func newKeySet(issuer, jwksURI string, client *http.Client, opts KeySetOptions, retry time.Duration) *keySet {
	ctx, cancel := context.WithCancel(context.Background())
	s := &keySet{
		issuer:    issuer,
		jwksURI:   jwksURI,
		opts:      opts,
		retry:     retry,
		ctx:       ctx,
		cancel:    cancel,
		firstDone: make(chan struct{}),
	}
	s.client.Store(guardedClient(client))
	return s
}

func (s *keySet) start() {
	s.wg.Add(1)
	go s.run()
}

// stop cancels fetches, releases whoever waits on a scheduled fetch, and waits for
// the goroutines to exit. It is idempotent.
func (s *keySet) stop() {
	s.mu.Lock()
	s.cancel()
	if s.next != nil {
		s.stopNext()
		close(s.next)
		s.next, s.stopNext = nil, nil
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// current returns the keys held, or nil when none were ever obtained.
func (s *keySet) current() *jwkSet { return s.cur.Load() }

// run fetches at start and then every RefreshInterval; while no keys are held it
// retries failures sooner, 1s doubling up to RefreshInterval.
func (s *keySet) run() {
	defer s.wg.Done()
	// A set stopped before its first fetch must not leave WaitFirstFetch blocked.
	defer s.firstOnce.Do(func() { close(s.firstDone) })
	backoff := s.retry
	for {
		if done := s.startFetch(true, trace.SpanContext{}); done != nil {
			select {
			case <-done:
			case <-s.ctx.Done():
				return
			}
		}
		wait := s.opts.RefreshInterval
		if s.current() == nil {
			wait = min(backoff, s.opts.RefreshInterval)
			backoff = min(2*backoff, s.opts.RefreshInterval)
		} else {
			backoff = s.retry
		}
		s.mu.Lock()
		s.nextRefresh = s.opts.Now().Add(wait)
		s.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

// refetch is the on-demand fetch of Verify while no keys are held: it joins a running
// fetch, or starts one when the last started at least MinRefetch ago, and waits for it
// within ctx. It reports whether a fetch finished while it waited. (While no keys are
// held, the background refresher retries failures within seconds; a request does not
// wait for the window to open.)
func (s *keySet) refetch(ctx context.Context) bool {
	done := s.startFetch(false, trace.SpanContextFromContext(ctx))
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// findKid answers a token naming a kid the held keys lack (the issuer may have rotated
// keys) with that kid's keys from a fetch that could have seen it, or an error: an
// *InvalidError (unknown_kid, key_refused) when such a fetch lacks it, or one wrapping
// ErrKeysUnavailable when there is no such fetch in time: the token cannot be judged yet,
// and a 401 would send a user whose IdP has just rotated keys back to sign in.
//
// signedBy is the latest moment the token can have been signed, on our clock (its iat
// plus the clock skew allowed; zero when it has no iat).
//
//   - A kid the latest JWKS document published but refused is key_refused at once:
//     fetching again would refuse it again.
//   - A token signed before the latest successful fetch started needs no other: an IdP
//     publishes a key before, or as, it signs with it, so that fetch had the key if the
//     IdP still publishes it. A revoked key's tokens and forged tokens with an old iat
//     are so answered at once.
//   - Otherwise it joins the running fetch, or starts one, or, when the last fetch
//     started less than MinRefetch ago, schedules one for the moment the window ends
//     (still one fetch per window, shared by every waiter), and waits for it within ctx.
func (s *keySet) findKid(ctx context.Context, kid string, signedBy time.Time) ([]*key, error) {
	if err := s.refusedKid(kid); err != nil {
		return nil, err
	}
	if !signedBy.IsZero() {
		s.mu.Lock()
		settled := signedBy.Before(s.settledAt)
		s.mu.Unlock()
		if settled {
			return nil, s.unknownKid(kid)
		}
	}
	done, at := s.nextFetch(trace.SpanContextFromContext(ctx))
	if done == nil {
		return nil, s.errStopped()
	}
	if dl, ok := ctx.Deadline(); ok {
		// No point holding the Check for a fetch that starts after its deadline.
		if wait := at.Sub(s.opts.Now()); wait > 0 && time.Until(dl) < wait {
			return nil, fmt.Errorf("issuer %q: %w: the key refetch for unknown kid %q is rate-limited to one per %v and starts in %v, after this request's deadline; a retry after that will be judged",
				s.issuer, ErrKeysUnavailable, kid, s.opts.MinRefetch, wait.Round(time.Millisecond))
		}
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("issuer %q: %w: the key refetch for unknown kid %q did not finish in time: %v", s.issuer, ErrKeysUnavailable, kid, ctx.Err())
	}
	if s.ctx.Err() != nil {
		return nil, s.errStopped()
	}
	if cands := s.current().byKID[kid]; len(cands) > 0 {
		return cands, nil
	}
	return nil, s.unknownKid(kid)
}

func (s *keySet) errStopped() error {
	return fmt.Errorf("issuer %q: %w: its keys are no longer refreshed (the configuration was reloaded or the server is stopping), so an unknown kid cannot be looked up", s.issuer, ErrKeysUnavailable)
}

// nextFetch returns the channel of the next fetch to finish and when it starts (now,
// for a running or a just started fetch): the running fetch, else one started now when
// MinRefetch has passed, else the scheduled one, scheduling it when needed. It returns
// nil when the set is stopped.
func (s *keySet) nextFetch(parent trace.SpanContext) (<-chan struct{}, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil, time.Time{}
	}
	now := s.opts.Now()
	if s.inflight != nil {
		return s.inflight, now
	}
	if s.next == nil {
		if s.lastStart.IsZero() || now.Sub(s.lastStart) >= s.opts.MinRefetch {
			return s.begin(now, parent), now
		}
		s.next = make(chan struct{})
		s.nextParent = parent
		s.nextAt = s.lastStart.Add(s.opts.MinRefetch)
		s.stopNext = s.opts.AfterFunc(s.nextAt.Sub(now), s.startScheduled)
	}
	// The background refresh, when it comes first, takes the scheduled fetch's place.
	if !s.nextRefresh.IsZero() && s.nextRefresh.Before(s.nextAt) {
		return s.next, s.nextRefresh
	}
	return s.next, s.nextAt
}

// startScheduled starts the scheduled fetch, unless another fetch took its place or
// the set was stopped meanwhile.
func (s *keySet) startScheduled() {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A fetch is never running while one is scheduled: begin takes the schedule over.
	if s.next == nil || s.ctx.Err() != nil {
		return
	}
	s.begin(s.opts.Now(), s.nextParent)
}

// startFetch returns the channel of the running fetch, starting a fetch when none runs
// (and, unless force, when MinRefetch has passed since the last start). It returns nil
// when no fetch runs: rate limited or stopped.
func (s *keySet) startFetch(force bool, parent trace.SpanContext) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil
	}
	if s.inflight != nil {
		return s.inflight
	}
	now := s.opts.Now()
	if !force && !s.lastStart.IsZero() && now.Sub(s.lastStart) < s.opts.MinRefetch {
		return nil
	}
	return s.begin(now, parent)
}

// begin starts a fetch; s.mu is held and no fetch runs. A scheduled fetch is replaced
// by this one: its waiters are released when this one finishes.
func (s *keySet) begin(now time.Time, parent trace.SpanContext) chan struct{} {
	done := s.next
	if done != nil {
		s.stopNext()
		s.next, s.stopNext = nil, nil
	} else {
		done = make(chan struct{})
	}
	s.lastStart = now
	s.inflight = done
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.fetchOnce(now, parent)
		s.mu.Lock()
		s.inflight = nil
		s.mu.Unlock()
		close(done)
		// Only now is the set idle, so whoever WaitFirstFetch releases cannot join
		// this finished fetch in place of a new one.
		s.firstOnce.Do(func() { close(s.firstDone) })
	}()
	return done
}

// signedBy is the latest moment, on our clock, at which p can have been signed: its iat
// plus skew (the IdP's clock may be behind ours); zero when it has no iat.
func (p *payload) signedBy(skew time.Duration) time.Time {
	if !p.hasIat {
		return time.Time{}
	}
	return p.iat.Add(skew)
}

// refusedKid is key_refused when the latest JWKS document had a key with kid that was
// refused (the IdP publishes it, and the fix is on the IdP's side), else nil.
func (s *keySet) refusedKid(kid string) *InvalidError {
	if sk := s.skipped.Load(); sk != nil {
		if reason, ok := sk.byKID[kid]; ok {
			return invalid(DetailKeyRefused, "kid %q of issuer %q is published but refused: %s", kid, s.issuer, reason)
		}
	}
	return nil
}

// unknownKid is the error for a token naming kid when a fetch that could have seen it
// lacks it.
func (s *keySet) unknownKid(kid string) *InvalidError {
	if err := s.refusedKid(kid); err != nil {
		return err
	}
	return invalid(DetailUnknownKid, "kid %q is not in the key set of issuer %q", kid, s.issuer)
}

// fetchOnce performs one fetch, started at start, and records its outcome.
func (s *keySet) fetchOnce(start time.Time, parent trace.SpanContext) {
	ctx, cancel := context.WithTimeout(s.ctx, fetchTimeout)
	defer cancel()
	ctx, span := s.startSpan(ctx, SpanJWKSFetch, parent)
	result, err := s.fetch(ctx)
	if err != nil {
		result = fetchResult(err)
		err = fmt.Errorf("fetch jwks: %w", err) // the issuer is named by whoever reports it
	}
	s.endSpan(span, result, err)
	now := s.opts.Now()
	s.mu.Lock()
	s.fetched = true
	if err != nil {
		s.lastErr = err.Error()
	} else {
		s.lastErr = ""
		s.lastSuccess = now
		s.settledAt = start
	}
	s.mu.Unlock()
	if err != nil {
		s.logFailure(result, err)
	}
	if s.opts.OnFetch != nil {
		s.opts.OnFetch(s.issuer, result)
	}
}

// fetch resolves the JWKS URL (discovery when none is configured, every time, so a
// changed jwks_uri is followed), downloads the set and installs it when it is valid.
func (s *keySet) fetch(ctx context.Context) (string, error) {
	client := s.client.Load()
	uri := s.jwksURI
	if uri == "" {
		var err error
		dctx, span := s.startSpan(ctx, SpanDiscovery, trace.SpanContextFromContext(ctx))
		uri, err = discover(dctx, client, s.issuer)
		s.endSpan(span, "", err)
		if err != nil {
			return "", err
		}
	}
	s.mu.Lock()
	s.resolvedURI = uri
	s.mu.Unlock()

	extra := http.Header{}
	if s.validatorsURI == uri && s.current() != nil {
		if s.etag != "" {
			extra.Set("If-None-Match", s.etag)
		}
		if s.lastModified != "" {
			extra.Set("If-Modified-Since", s.lastModified)
		}
	}
	resp, err := get(ctx, client, uri, extra)
	if err != nil {
		return "", err
	}
	if resp.status == http.StatusNotModified && len(extra) > 0 {
		return FetchNotModified, nil
	}
	if resp.status != http.StatusOK {
		return "", &fetchError{FetchError, fmt.Errorf("GET %s: status %d", uri, resp.status)}
	}
	keys, skipped, err := parseJWKS(resp.body)
	if skipped != nil {
		s.skipped.Store(skipped)
		s.logSkipped(uri, skipped)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", uri, err)
	}
	s.install(keys)
	s.etag, s.lastModified, s.validatorsURI = resp.header.Get("ETag"), resp.header.Get("Last-Modified"), uri
	return FetchOK, nil
}

// logFailure says what a failed fetch leaves: the keys still held, or none (and so
// 503 for this issuer's tokens), and what to check.
func (s *keySet) logFailure(result string, err error) {
	cur := s.current()
	if cur == nil {
		s.opts.Logger.Error("jwks fetch failed and no keys are held for this issuer: its tokens are answered 503 until a fetch succeeds; "+
			"retrying in the background (1s, doubling up to the refresh interval). Check that the jwks_uri (or the discovery document) "+
			"is reachable from this server and serves a JWKS with at least one usable signing key",
			"issuer", s.issuer, "result", result, "error", err)
		return
	}
	s.mu.Lock()
	since := s.lastSuccess
	s.mu.Unlock()
	s.opts.Logger.Warn("jwks fetch failed; the keys held keep verifying tokens until a fetch succeeds, but keys the IdP adds or revokes meanwhile are not seen. "+
		"Check that the jwks_uri (or the discovery document) is reachable and serves a valid JWKS",
		"issuer", s.issuer, "result", result, "keys_held", len(cur.keys), "last_success", since, "error", err)
}

// logSkipped logs each refused key of one fetched document once: at Warn when it looks
// like a signing key this server refuses (its tokens get detail key_refused), at Info
// when it is published for another use (encryption keys routinely sit next to signing
// keys).
func (s *keySet) logSkipped(uri string, sk *skippedSet) {
	for _, k := range sk.first {
		level, msg := slog.LevelWarn, "jwks key refused: tokens it signed are answered 401 invalid_token (detail key_refused) until the IdP signs with a key this server accepts"
		if k.notSigning {
			level, msg = slog.LevelInfo, "jwks key skipped: not a signature key"
		}
		s.opts.Logger.Log(context.Background(), level, msg, "issuer", s.issuer, "uri", uri, "kid", k.KID, "kty", k.Kty, "crv", k.Crv, "reason", k.Reason)
	}
	if more := sk.count - len(sk.first); more > 0 {
		s.opts.Logger.Warn("jwks keys refused: more keys were refused than are logged one by one", "issuer", s.issuer, "uri", uri, "not_logged", more, "refused", sk.count)
	}
}

// install replaces the held keys with keys. A key equal to a held one keeps the held
// object, so verified-token cache entries survive a refresh that changed nothing; a held
// key absent from keys is revoked, which also voids the cache entries it verified.
func (s *keySet) install(keys []*key) {
	old := s.current()
	if old != nil {
		for i, k := range keys {
			for _, o := range old.byKID[k.kid] {
				if o.same(k) && !slices.Contains(keys[:i], o) {
					keys[i] = o
					break
				}
			}
		}
	}
	next := newJWKSet(keys)
	s.cur.Store(next)
	if old == nil {
		s.opts.Logger.Info("jwks keys loaded", "issuer", s.issuer, "keys", len(keys))
		return
	}
	removed := 0
	for _, o := range old.keys {
		if !slices.Contains(keys, o) {
			o.revoked.Store(true)
			removed++
		}
	}
	if added := len(keys) - (len(old.keys) - removed); added != 0 || removed != 0 {
		s.opts.Logger.Info("jwks keys changed", "issuer", s.issuer, "keys", len(keys), "added", added, "removed", removed)
	}
}

func (s *keySet) status() IssuerStatus {
	st := IssuerStatus{Issuer: s.issuer}
	if cur := s.current(); cur != nil {
		st.Keys = len(cur.keys)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sk := s.skipped.Load(); sk != nil {
		st.Skipped = sk.count
		st.SkippedKeys = slices.Clone(sk.first)
	}
	st.JWKSURI = s.resolvedURI
	st.Fetched = s.fetched
	st.LastError = s.lastErr
	st.LastSuccess = s.lastSuccess
	return st
}

// lastError says why no keys are held, for the error of a token that cannot be judged.
func (s *keySet) lastError() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fetched {
		return "no keys held: the first key fetch has not finished"
	}
	return "no keys held: no key fetch has succeeded yet; the latest failed: " + s.lastErr
}
