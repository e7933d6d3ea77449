package extauthz

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

// Engine is one configuration of the server, built once by NewEngine and never
// changed: the policy data (settings, routes, the default, each issuer's rules),
// the token pipeline, and the caches that belong to this configuration alone
// (remembered route metadata layers and step-up denials; the pipeline's
// verified-principal cache). A config reload builds a new Engine and swaps it in
// with one pointer (Server.Swap), so nothing learned under an old configuration
// is used under a new one.
type Engine struct {
	cfg       *config.Config
	settings  policy.Settings
	namespace string
	defaults  policy.Layer
	routes    []policy.Route
	// issuers holds each issuer's acr aliases, amr levels and challenge values.
	issuers  map[string]*policy.IssuerRules
	pipeline *token.Pipeline

	// layers remembers route metadata already parsed (see metadataLayer).
	layers memo[string, *policy.Layer]
	// stepUps remembers built step-up denials (see stepUpResponse).
	stepUps stepUpMemo
	// sender holds the DPoP and mTLS settings (sender.go).
	sender *senderState
	// resource is protected_resource (resource.go); nil when not configured.
	resource *protectedResource
}

// EngineOptions tune an Engine; zero values are usable.
type EngineOptions struct {
	// Now is the token pipeline's clock (exp, nbf, iat, the cache); nil means time.Now.
	Now func() time.Time
	// OnIntrospection, when set, is told the result of every introspection
	// (serve counts them; check shows them).
	OnIntrospection func(issuer, result string)
	// Replay remembers used DPoP proofs; pass the same one to every Engine of
	// a process (serve does), so a reload never forgets a used proof. nil
	// gives this Engine stores of its own.
	Replay *ReplayStores
}

// NewEngine builds an Engine from a validated config. Its issuers' key sets come
// from keys, which outlives reloads: an issuer whose jwks_uri and CA bundle did not
// change keeps its cached keys.
func NewEngine(cfg *config.Config, keys *token.KeySets, opts EngineOptions) (*Engine, error) {
	if keys == nil {
		return nil, errors.New("extauthz: NewEngine needs the key sets")
	}
	issuers := make([]token.IssuerConfig, 0, len(cfg.Issuers))
	rules := make(map[string]*policy.IssuerRules, len(cfg.Issuers))
	for i := range cfg.Issuers {
		iss := &cfg.Issuers[i]
		client, err := keys.ClientFor(iss.CAFile)
		if err != nil {
			return nil, fmt.Errorf("issuers[%d].ca_file: %w", i, err)
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
			ClaimNames:      iss.ClaimNames,
		})
		r := iss.Rules()
		rules[iss.Issuer] = &r
	}
	p, err := token.NewPipeline(keys, issuers, token.Options{
		ClockSkew:       cfg.ClockSkew,
		Now:             opts.Now,
		CacheSize:       cfg.TokenCacheSize,
		OnIntrospection: opts.OnIntrospection,
	})
	if err != nil {
		return nil, err
	}
	replayStores := opts.Replay
	if replayStores == nil {
		replayStores = NewReplayStores()
	}
	sender, err := newSenderState(cfg, replayStores)
	if err != nil {
		return nil, err
	}
	return &Engine{
		sender:    sender,
		resource:  newProtectedResource(cfg.ProtectedResource),
		cfg:       cfg,
		settings:  cfg.Settings(),
		namespace: cfg.MetadataNamespace,
		defaults:  cfg.Default,
		routes:    cfg.Routes,
		issuers:   rules,
		pipeline:  p,
	}, nil
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

// Config is the configuration the Engine was built from; it must not be modified.
func (e *Engine) Config() *config.Config { return e.cfg }

// Pipeline is the Engine's token pipeline.
func (e *Engine) Pipeline() *token.Pipeline { return e.pipeline }

// WaitFirstFetch blocks until the first key fetch of every issuer finished,
// successfully or not, or ctx is done.
func (e *Engine) WaitFirstFetch(ctx context.Context) { e.pipeline.WaitFirstFetch(ctx) }

// Status reports the key status of the Engine's issuers, in configuration order.
func (e *Engine) Status() []token.IssuerStatus { return e.pipeline.Status() }

// CacheStats returns the verified-principal cache's hit and miss counts.
func (e *Engine) CacheStats() (hits, misses uint64) { return e.pipeline.CacheStats() }

// Verified returns how many principals each verifier of the pipeline produced.
func (e *Engine) Verified() []token.VerifierCount { return e.pipeline.Verified() }

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
			return policy.Policy{}, nil, fmt.Errorf("route metadata %q: %w", e.namespace, err)
		}
		layers[n] = policy.Sourced{Source: policy.SourceRouteMetadata, Layer: l}
		n++
	}
	if len(a.extensions) > 0 {
		l, err := policy.ParseContextExtensions(a.extensions, e.settings.Levels)
		if err != nil {
			return policy.Policy{}, nil, fmt.Errorf("context_extensions: %w", err)
		}
		if !l.IsZero() {
			layers[n] = policy.Sourced{Source: policy.SourceContextExtensions, Layer: l}
			n++
		}
	}
	route, err := policy.MatchRoute(e.routes, a.routeRequest())
	if err != nil {
		return policy.Policy{}, nil, err
	}
	if route != nil {
		layers[n] = policy.Sourced{Source: policy.SourceConfigRoute, Label: route.Name, Layer: route.Layer}
		n++
	}
	layers[n] = policy.Sourced{Source: policy.SourceDefault, Layer: e.defaults}
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
		if l, ok := e.layers.load()[string(key)]; ok {
			return *l, nil
		}
	}
	l, err := policy.ParseMetadata(md.AsMap(), e.settings.Levels)
	if err == nil && cacheable {
		e.layers.put(string(key), cloneLayer(l))
	}
	return l, err
}

// cloneLayer copies the strings of a layer: those of a request may point into
// its memory (see wire.Codec), which a remembered layer must not keep alive.
func cloneLayer(l policy.Layer) *policy.Layer {
	l.RequiredACR.Value = strings.Clone(l.RequiredACR.Value)
	l.Mode.Value = policy.Mode(strings.Clone(string(l.Mode.Value)))
	l.Name.Value = strings.Clone(l.Name.Value)
	l.ResourcePath.Value = strings.Clone(l.ResourcePath.Value)
	l.MachineScopes.Value = cloneStrings(l.MachineScopes.Value)
	l.RequiredScopes.Value = cloneStrings(l.RequiredScopes.Value)
	return &l
}

func cloneStrings(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.Clone(s)
	}
	return out
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

// noRules are the empty rules; shared, never modified.
var noRules = &policy.IssuerRules{}

// rules returns the issuer's rules, or empty rules for an unknown issuer
// (which cannot happen for a verified token, but must not panic).
func (e *Engine) rules(issuer string) *policy.IssuerRules {
	if r, ok := e.issuers[issuer]; ok {
		return r
	}
	return noRules
}
