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
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
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
	// Now is the clock for rate limiting and status; nil means time.Now.
	Now func() time.Time
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
	// LastError is the error of the latest fetch; "" when it succeeded.
	LastError   string
	LastSuccess time.Time
	// Introspection is the issuer's introspection state; nil when it has none.
	Introspection *IntrospectionStatus
}

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
// after a reload has switched to a new Verifier, so issuers that left the configuration
// stop being fetched. A Verifier whose key set was dropped keeps its last keys but no
// longer refreshes them.
func (k *KeySets) Retain(keep ...*Verifier) {
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

// parseJWKS turns a JWKS document into its usable keys. It fails (with the OnFetch
// result) when the document is not a JWKS, has no keys, or has no usable key.
func parseJWKS(body []byte) (keys []*key, skipped []error, err error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, &fetchError{FetchInvalid, fmt.Errorf("not a JWKS: %w", err)}
	}
	if len(doc.Keys) == 0 {
		return nil, nil, &fetchError{FetchEmpty, errors.New("JWKS has no keys")}
	}
	for i, raw := range doc.Keys {
		k, err := parseKey(raw)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("keys[%d]: %w", i, err))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, &fetchError{FetchInvalid, fmt.Errorf("JWKS has no usable key among %d: %w", len(doc.Keys), errors.Join(skipped...))}
	}
	return keys, skipped, nil
}

// parseKey parses one JWK into a public verification key. Symmetric keys, keys for
// another use than "sig" (RFC 7517 §4.2), keys whose key_ops exclude "verify" (§4.3),
// unsupported types and curves, and RSA keys under 2048 bits are refused. Private
// members are ignored: only the public part is ever loaded.
func parseKey(raw json.RawMessage) (*key, error) {
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if m.KTY == jwkset.KtyOct {
		return nil, errors.New("symmetric (oct) keys are never used")
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, fmt.Errorf("kid %q: use is %q, not sig", m.KID, m.USE)
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return nil, fmt.Errorf("kid %q: key_ops %v lack verify", m.KID, m.KEYOPS)
	}
	j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: false}, jwkset.JWKValidateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kid %q: %w", m.KID, err)
	}
	pub := j.Key()
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("kid %q: RSA key of %d bits, need %d", m.KID, p.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		switch p.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, fmt.Errorf("kid %q: unsupported curve", m.KID)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("kid %q: unsupported key type %T", m.KID, pub)
	}
	k := &key{kid: m.KID, alg: string(m.ALG), pub: pub}
	if k.alg != "" && !keyFitsAlg(pub, k.alg) {
		return nil, fmt.Errorf("kid %q: alg %q is not a signature algorithm for this key", m.KID, k.alg)
	}
	return k, nil
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

	mu          sync.Mutex
	inflight    chan struct{} // closed when the running fetch finishes; nil when idle
	lastStart   time.Time     // start of the latest fetch, for MinRefetch
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

// stop cancels fetches and waits for the goroutines to exit. It is idempotent.
func (s *keySet) stop() {
	s.mu.Lock()
	s.cancel()
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
		if done := s.startFetch(true); done != nil {
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
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

// refetch is the on-demand fetch of Verify: it joins a running fetch, or starts one when
// the last started at least MinRefetch ago, and waits for it within ctx. It reports
// whether a fetch finished while it waited.
func (s *keySet) refetch(ctx context.Context) bool {
	done := s.startFetch(false)
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

// startFetch returns the channel of the running fetch, starting a fetch when none runs
// (and, unless force, when MinRefetch has passed since the last start). It returns nil
// when no fetch runs: rate limited or stopped.
func (s *keySet) startFetch(force bool) <-chan struct{} {
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
	s.lastStart = now
	done := make(chan struct{})
	s.inflight = done
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.fetchOnce()
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

// fetchOnce performs one fetch and records its outcome.
func (s *keySet) fetchOnce() {
	ctx, cancel := context.WithTimeout(s.ctx, fetchTimeout)
	defer cancel()
	result, err := s.fetch(ctx)
	if err != nil {
		result = fetchResult(err)
		err = fmt.Errorf("fetch jwks: %w", err) // the issuer is named by whoever reports it
	}
	now := s.opts.Now()
	s.mu.Lock()
	s.fetched = true
	if err != nil {
		s.lastErr = err.Error()
	} else {
		s.lastErr = ""
		s.lastSuccess = now
	}
	s.mu.Unlock()
	if err != nil {
		held := 0
		if cur := s.current(); cur != nil {
			held = len(cur.keys)
		}
		s.opts.Logger.Warn("jwks fetch failed; cached keys stay", "issuer", s.issuer, "result", result, "keys_held", held, "error", err)
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
		if uri, err = discover(ctx, client, s.issuer); err != nil {
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
	if err != nil {
		return "", fmt.Errorf("%s: %w", uri, err)
	}
	for _, e := range skipped {
		// Debug: IdPs routinely publish encryption keys next to signing keys.
		s.opts.Logger.Debug("jwks key skipped", "issuer", s.issuer, "uri", uri, "error", e)
	}
	s.install(keys)
	s.etag, s.lastModified, s.validatorsURI = resp.header.Get("ETag"), resp.header.Get("Last-Modified"), uri
	return FetchOK, nil
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
	st.JWKSURI = s.resolvedURI
	st.Fetched = s.fetched
	st.LastError = s.lastErr
	st.LastSuccess = s.lastSuccess
	return st
}

// lastError is the error of the latest fetch, for messages.
func (s *keySet) lastError() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fetched {
		return "first fetch not finished"
	}
	return s.lastErr
}
