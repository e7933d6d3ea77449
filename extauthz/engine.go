package extauthz

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

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
}

// Runtime is what outlives config reloads: the JWKS key sets and the HTTP
// clients that fetch them, so that an unchanged issuer keeps its cached keys.
type Runtime struct {
	KeySets *token.KeySets
	mu      sync.Mutex
	clients map[[32]byte]*http.Client
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
		})
		r := iss.Rules()
		rules[iss.Issuer] = &r
	}
	v, err := token.NewVerifier(rt.KeySets, issuers, token.Options{
		ClockSkew: cfg.ClockSkew,
		CacheSize: cfg.TokenCacheSize,
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
// an error: the caller answers policy_error, never a guess.
func (e *Engine) resolve(a *attributes) (policy.Policy, policy.Provenance, error) {
	var layers [4]policy.Sourced
	n := 0
	if a.metadata != nil && len(a.metadata.GetFields()) > 0 {
		l, err := policy.ParseMetadata(a.metadata.AsMap(), e.Settings.Levels)
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
	p, prov := policy.Resolve(layers[:n]...)
	return p, prov, nil
}

// rules returns the issuer's rules, or empty rules for an unknown issuer
// (which cannot happen for a verified token, but must not panic).
func (e *Engine) rules(issuer string) *policy.IssuerRules {
	if r, ok := e.Rules[issuer]; ok {
		return r
	}
	return &policy.IssuerRules{}
}
