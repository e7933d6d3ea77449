package extauthz

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

// Verifier turns a raw bearer token into verified claims.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*policy.Claims, error)
	// VerifyEnvoyPayload accepts a token on the strength of the payload Envoy's
	// jwt_authn filter verified; ok is false when that does not apply.
	VerifyEnvoyPayload(raw string, jwtAuthn map[string]any) (c *policy.Claims, ok bool, err error)
}

// Engine is one immutable configuration of the server: a config reload
// builds a new Engine and swaps it in atomically.
type Engine struct {
	Settings  policy.Settings
	Namespace string
	Default   policy.Layer
	Routes    []policy.Route
	// Rules holds each issuer's acr aliases, amr levels and challenge values.
	Rules    map[string]*policy.IssuerRules
	Verifier Verifier

	// layers remembers route metadata already parsed (see metadataLayer).
	layers layerCache
}

// Runtime is what outlives config reloads: the JWKS key sets and the HTTP
// clients that fetch them, so that an unchanged issuer keeps its cached keys.
type Runtime struct {
	KeySets *token.KeySets
	// OnIntrospection, when set, is told the result of every introspection
	// (serve counts them; check shows them).
	OnIntrospection func(issuer, result string)
	mu              sync.Mutex
	clients         map[[32]byte]*http.Client
}

// NewRuntime returns a Runtime around ks.
func NewRuntime(ks *token.KeySets) *Runtime {
	return &Runtime{KeySets: ks, clients: map[[32]byte]*http.Client{}}
}

// NewEngine builds an Engine from a validated config.
func NewEngine(cfg *config.Config, rt *Runtime) (*Engine, *token.Verifier, error) {
	issuers := make([]token.IssuerConfig, 0, len(cfg.Issuers))
	rules := make(map[string]*policy.IssuerRules, len(cfg.Issuers))
	for i := range cfg.Issuers {
		iss := &cfg.Issuers[i]
		client, err := rt.httpClient(iss.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("issuers[%d].ca_file: %w", i, err)
		}
		issuers = append(issuers, token.IssuerConfig{
			Issuer:     iss.Issuer,
			JWKSURI:    iss.JWKSURI,
			Audiences:  iss.Audiences,
			Algorithms: iss.Algorithms,
			RequireTyp: iss.RequireTyp,
			HTTPClient: client,
			// Envoy's jwt_authn stores payloads under its payload_in_metadata name.
			EnvoyPayloadKey: iss.JWTAuthnPayload,
			Introspection:   introspectionConfig(iss.Introspection),
		})
		r := iss.Rules()
		rules[iss.Issuer] = &r
	}
	v, err := token.NewVerifier(rt.KeySets, issuers, token.Options{
		ClockSkew:       cfg.ClockSkew,
		CacheSize:       cfg.TokenCacheSize,
		OnIntrospection: rt.OnIntrospection,
	})
	if err != nil {
		return nil, nil, err
	}
	return &Engine{
		Settings: policy.Settings{
			Levels:      cfg.ACRLevels,
			ClockSkew:   cfg.ClockSkew,
			MachineRule: cfg.MachineTokens,
		},
		Namespace: cfg.MetadataNamespace,
		Default:   cfg.Default,
		Routes:    cfg.Routes,
		Rules:     rules,
		Verifier:  v,
	}, v, nil
}

// introspectionConfig converts issuers[].introspection; nil stays nil.
func introspectionConfig(in *config.Introspection) *token.IntrospectionConfig {
	if in == nil {
		return nil
	}
	return &token.IntrospectionConfig{
		Endpoint:         in.Endpoint,
		ClientID:         in.ClientID,
		ClientSecret:     in.ClientSecret.Reveal(),
		Auth:             in.Auth,
		OpaqueTokens:     in.OpaqueTokens,
		JWT:              in.JWT,
		RequireAudience:  in.RequireAudience,
		CacheTTL:         in.CacheTTL,
		NegativeCacheTTL: in.NegativeCacheTTL,
		MaxInFlight:      in.MaxInFlight,
	}
}

// httpClient returns one client per distinct CA bundle, reused across
// reloads, because key sets are keyed partly by their client.
func (rt *Runtime) httpClient(caFile string) (*http.Client, error) {
	var pem []byte
	if caFile != "" {
		var err error
		if pem, err = os.ReadFile(caFile); err != nil {
			return nil, err
		}
	}
	key := sha256.Sum256(pem)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if c, ok := rt.clients[key]; ok {
		return c, nil
	}
	if caFile == "" {
		c := newClient(nil)
		rt.clients[key] = c
		return c, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", caFile)
	}
	c := newClient(pool)
	rt.clients[key] = c
	return c, nil
}

func newClient(roots *x509.CertPool) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// resolve works out the policy for a request, field by field, most specific
// source first (CONTRACT.md, "Policy"). A value that cannot be understood is
// an error: the caller answers policy_error, never a guess. The provenance is
// only worked out when withProvenance is set (it costs allocations).
func (e *Engine) resolve(a *attributes, withProvenance bool) (policy.Policy, policy.Provenance, error) {
	var layers [4]policy.Sourced
	n := 0
	if a.metadata != nil && len(a.metadata.GetFields()) > 0 {
		l, err := e.metadataLayer(a.metadata)
		if err != nil {
			return policy.Policy{}, nil, fmt.Errorf("route metadata %q: %w", e.Namespace, err)
		}
		layers[n] = policy.Sourced{Source: policy.SourceRouteMetadata, Layer: l}
		n++
	}
	if len(a.extensions) > 0 {
		l, err := policy.ParseContextExtensions(a.extensions, e.Settings.Levels)
		if err != nil {
			return policy.Policy{}, nil, fmt.Errorf("context_extensions: %w", err)
		}
		if !l.IsZero() {
			layers[n] = policy.Sourced{Source: policy.SourceContextExtensions, Layer: l}
			n++
		}
	}
	route, err := policy.MatchRoute(e.Routes, a.routeRequest())
	if err != nil {
		return policy.Policy{}, nil, err
	}
	if route != nil {
		layers[n] = policy.Sourced{Source: policy.SourceConfigRoute, Label: route.Name, Layer: route.Layer}
		n++
	}
	layers[n] = policy.Sourced{Source: policy.SourceDefault, Layer: e.Default}
	n++
	if !withProvenance {
		return policy.Merge(layers[:n]...), nil, nil
	}
	p, prov := policy.Resolve(layers[:n]...)
	return p, prov, nil
}

// metadataLayer parses route metadata into a policy layer. Routes carry few
// distinct policies, so layers are remembered by the metadata's content: a
// request whose metadata was seen before costs a key lookup, not a parse.
// Metadata that does not parse is never remembered (its error is worked out
// anew, exactly as ParseMetadata gives it).
func (e *Engine) metadataLayer(md *structpb.Struct) (policy.Layer, error) {
	var buf [256]byte
	key, cacheable := metadataKey(buf[:0], md)
	if cacheable {
		if l, ok := e.layers.get(key); ok {
			return *l, nil
		}
	}
	l, err := policy.ParseMetadata(md.AsMap(), e.Settings.Levels)
	if err == nil && cacheable {
		e.layers.put(string(key), cloneLayer(l))
	}
	return l, err
}

// cloneLayer copies the strings of a layer: those of a request may point into
// its memory (see Codec), which a remembered layer must not keep alive.
func cloneLayer(l policy.Layer) *policy.Layer {
	l.RequiredACR.Value = strings.Clone(l.RequiredACR.Value)
	l.Mode.Value = policy.Mode(strings.Clone(string(l.Mode.Value)))
	l.Name.Value = strings.Clone(l.Name.Value)
	if l.MachineScopes.Value != nil {
		scopes := make([]string, len(l.MachineScopes.Value))
		for i, sc := range l.MachineScopes.Value {
			scopes[i] = strings.Clone(sc)
		}
		l.MachineScopes.Value = scopes
	}
	return &l
}

// metadataKey appends an encoding of md that is equal for two Structs exactly
// when they hold the same fields with the same values: fields in key order,
// each value tagged with its kind, every string length-prefixed. Only flat
// metadata (strings, numbers, booleans, nulls, lists of strings) of up to 8
// fields that fits in buf's capacity is encoded; ok is false otherwise.
func metadataKey(buf []byte, md *structpb.Struct) (key []byte, ok bool) {
	fields := md.GetFields()
	if len(fields) > 8 {
		return nil, false
	}
	var names [8]string
	n := 0
	for k := range fields {
		names[n] = k
		n++
	}
	sorted := names[:n]
	for i := 1; i < len(sorted); i++ {
		for j := i; j > 0 && sorted[j] < sorted[j-1]; j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	limit := cap(buf)
	appendStr := func(s string) bool {
		if len(buf)+binary.MaxVarintLen64+len(s) > limit {
			return false
		}
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
		return true
	}
	for _, k := range sorted {
		if !appendStr(k) || len(buf)+10 > limit {
			return nil, false
		}
		switch v := fields[k].GetKind().(type) {
		case *structpb.Value_StringValue:
			buf = append(buf, 's')
			if !appendStr(v.StringValue) {
				return nil, false
			}
		case *structpb.Value_NumberValue:
			buf = append(buf, 'n')
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v.NumberValue))
		case *structpb.Value_BoolValue:
			buf = append(buf, 'b')
			if v.BoolValue {
				buf = append(buf, 1)
			} else {
				buf = append(buf, 0)
			}
		case *structpb.Value_NullValue:
			buf = append(buf, 'z')
		case *structpb.Value_ListValue:
			items := v.ListValue.GetValues()
			buf = append(buf, 'l')
			buf = binary.AppendUvarint(buf, uint64(len(items)))
			for _, it := range items {
				sv, isString := it.GetKind().(*structpb.Value_StringValue)
				if !isString || !appendStr(sv.StringValue) {
					return nil, false
				}
			}
		default: // nested structs, a Value without a kind
			return nil, false
		}
	}
	return buf, true
}

// maxLayers bounds the remembered route metadata layers.
const maxLayers = 1024

// layerCache is a copy-on-write map read without locking.
type layerCache struct {
	m  atomic.Pointer[map[string]*policy.Layer]
	mu sync.Mutex
}

func (c *layerCache) get(key []byte) (*policy.Layer, bool) {
	m := c.m.Load()
	if m == nil {
		return nil, false
	}
	l, ok := (*m)[string(key)]
	return l, ok
}

func (c *layerCache) put(key string, l *policy.Layer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	size := 0
	if old != nil {
		size = len(*old)
	}
	if size >= maxLayers {
		return
	}
	next := make(map[string]*policy.Layer, size+1)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	next[key] = l
	c.m.Store(&next)
}

// noRules are the empty rules; shared, never modified.
var noRules = &policy.IssuerRules{}

// rules returns the issuer's rules, or empty rules for an unknown issuer
// (which cannot happen for a verified token, but must not panic).
func (e *Engine) rules(issuer string) *policy.IssuerRules {
	if r, ok := e.Rules[issuer]; ok {
		return r
	}
	return noRules
}
