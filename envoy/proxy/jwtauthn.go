package proxy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Defaults of the jwt_authn filter (JwtProvider and RemoteJwks protos).
const (
	defaultJWKSCacheDuration = 10 * time.Minute // RemoteJwks.cache_duration
	defaultJWTClockSkew      = 60 * time.Second // JwtProvider.clock_skew_seconds
	maxJWKSBytes             = 1 << 20
)

// jwtAlgorithms are the asymmetric algorithms Envoy's jwt_verify_lib accepts.
// HMAC (oct keys) is left out: no shipped config uses it.
var jwtAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// jwtAuthnFilter is envoy.filters.http.jwt_authn with the requirements the
// shipped YAMLs use: rules with allow_missing_or_failed, or with no
// requirement (source/extensions/filters/http/jwt_authn/*).
type jwtAuthnFilter struct {
	p                   *Proxy
	providers           []*jwtProvider // sorted by name
	rules               []*jwtRule
	bypassCorsPreflight bool
}

type jwtRule struct {
	match *routeMatch
	// verify is true for allow_missing_or_failed; a rule without requires
	// verifies nothing.
	verify bool
}

type jwtLocation struct {
	header, prefix string // from a header, after value_prefix
	param          string // from a query parameter
}

type jwtProvider struct {
	name       string
	issuer     string
	audiences  []string
	forward    bool
	payloadKey string
	headerKey  string
	skew       time.Duration
	requireExp bool
	locations  []jwtLocation
	jwks       *jwksSource
}

// jwksSource holds a provider's keys: inline (local_jwks) or fetched from a
// cluster (remote_jwks) on demand and cached for cache_duration.
type jwksSource struct {
	p             *Proxy
	cluster       *cluster
	uri           *url.URL
	timeout       time.Duration
	cacheDuration time.Duration

	mu      sync.Mutex
	keys    []jwkset.JWK
	fetched time.Time
	static  bool
}

func (p *Proxy) buildJwtAuthn(path string, c *jwtauthnv3.JwtAuthentication) (*jwtAuthnFilter, error) {
	if err := only(path, c, "providers", "rules", "bypass_cors_preflight", "stat_prefix", "strip_failure_response"); err != nil {
		return nil, err
	}
	f := &jwtAuthnFilter{p: p, bypassCorsPreflight: c.GetBypassCorsPreflight()}
	for _, name := range slices.Sorted(maps.Keys(c.GetProviders())) {
		pv, err := p.buildJwtProvider(keyed(join(path, "providers"), name), name, c.GetProviders()[name])
		if err != nil {
			return nil, err
		}
		f.providers = append(f.providers, pv)
	}
	for i, r := range c.GetRules() {
		rp := indexed(join(path, "rules"), i)
		if err := only(rp, r, "match", "requires"); err != nil {
			return nil, err
		}
		m, err := newRouteMatch(join(rp, "match"), r.GetMatch())
		if err != nil {
			return nil, err
		}
		rule := &jwtRule{match: m}
		if req := r.GetRequires(); req != nil {
			// provider_name and the other strict requirements answer 401 from
			// jwt_authn itself, which would bypass stepup-authz's wire format
			// (ENVOY.md §4b); only allow_missing_or_failed is implemented.
			if err := only(join(rp, "requires"), req, "allow_missing_or_failed"); err != nil {
				return nil, err
			}
			rule.verify = true
		}
		f.rules = append(f.rules, rule)
	}
	return f, nil
}

func (p *Proxy) buildJwtProvider(path, name string, pc *jwtauthnv3.JwtProvider) (*jwtProvider, error) {
	if err := only(path, pc, "issuer", "audiences", "remote_jwks", "local_jwks", "forward", "from_headers", "from_params",
		"payload_in_metadata", "header_in_metadata", "clock_skew_seconds", "require_expiration", "jwt_cache_config"); err != nil {
		return nil, err
	}
	pv := &jwtProvider{
		name:       name,
		issuer:     pc.GetIssuer(),
		audiences:  pc.GetAudiences(),
		forward:    pc.GetForward(),
		payloadKey: pc.GetPayloadInMetadata(),
		headerKey:  pc.GetHeaderInMetadata(),
		skew:       defaultJWTClockSkew,
		requireExp: pc.GetRequireExpiration(),
	}
	if pc.GetClockSkewSeconds() != 0 {
		pv.skew = time.Duration(pc.GetClockSkewSeconds()) * time.Second
	}
	for i, h := range pc.GetFromHeaders() {
		if err := only(indexed(join(path, "from_headers"), i), h, "name", "value_prefix"); err != nil {
			return nil, err
		}
		pv.locations = append(pv.locations, jwtLocation{header: strings.ToLower(h.GetName()), prefix: h.GetValuePrefix()})
	}
	for _, q := range pc.GetFromParams() {
		pv.locations = append(pv.locations, jwtLocation{param: q})
	}
	if len(pv.locations) == 0 {
		// JwtProvider.from_headers: "If no explicit location is specified, the
		// following default locations are tried in order": Authorization:
		// Bearer <token>, then the access_token query parameter.
		pv.locations = []jwtLocation{{header: "authorization", prefix: "Bearer "}, {param: "access_token"}}
	}

	switch {
	case pc.GetRemoteJwks() != nil:
		rp := join(path, "remote_jwks")
		rj := pc.GetRemoteJwks()
		if err := only(rp, rj, "http_uri", "cache_duration"); err != nil {
			return nil, err
		}
		hu := rj.GetHttpUri()
		if err := only(join(rp, "http_uri"), hu, "uri", "cluster", "timeout"); err != nil {
			return nil, err
		}
		u, err := url.Parse(hu.GetUri())
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%s.http_uri.uri: %q is not an absolute URL", rp, hu.GetUri())
		}
		cl, ok := p.clusters[hu.GetCluster()]
		if !ok {
			return nil, fmt.Errorf("%s.http_uri.cluster: cluster %q is not defined in static_resources.clusters", rp, hu.GetCluster())
		}
		pv.jwks = &jwksSource{
			p:             p,
			cluster:       cl,
			uri:           u,
			timeout:       hu.GetTimeout().AsDuration(),
			cacheDuration: durationOr(rj.GetCacheDuration(), defaultJWKSCacheDuration),
		}
	case pc.GetLocalJwks() != nil:
		lp := join(path, "local_jwks")
		ds := pc.GetLocalJwks()
		if err := only(lp, ds, "inline_string", "inline_bytes", "filename"); err != nil {
			return nil, err
		}
		raw, err := dataSource(ds)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", lp, err)
		}
		keys, err := parseJWKS(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", lp, err)
		}
		pv.jwks = &jwksSource{p: p, keys: keys, static: true}
	default:
		return nil, fmt.Errorf("%s: remote_jwks or local_jwks is required", path)
	}
	return pv, nil
}

func dataSource(ds *corev3.DataSource) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_Filename:
		return os.ReadFile(s.Filename)
	}
	return nil, errors.New("empty data source")
}

// parseJWKS keeps every usable public key; keys the library cannot use are
// skipped, and a set without any usable key is an error.
func parseJWKS(raw []byte) ([]jwkset.JWK, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("jwks: %v", err)
	}
	var keys []jwkset.JWK
	for _, m := range set.Keys {
		k, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks: no usable key")
	}
	return keys, nil
}

// get returns the cached keys, fetching them when missing or expired. A failed
// fetch is not cached, so the next request tries again.
func (j *jwksSource) get(ctx context.Context) ([]jwkset.JWK, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.static || (j.keys != nil && time.Since(j.fetched) < j.cacheDuration) {
		return j.keys, nil
	}
	keys, err := j.fetch(ctx)
	if err != nil {
		return nil, err
	}
	j.keys, j.fetched = keys, time.Now()
	return keys, nil
}

// fetch GETs the JWKS from the cluster's endpoint, with the URI's host as
// Host and its path and query (remote_jwks.http_uri: "cluster" is where the
// request is sent).
func (j *jwksSource) fetch(ctx context.Context) ([]jwkset.JWK, error) {
	if j.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, j.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+j.cluster.addr+j.uri.RequestURI(), nil)
	if err != nil {
		return nil, err
	}
	req.Host = j.uri.Host
	resp, err := (&http.Client{Transport: j.p.transport(j.cluster)}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks fetch %s: %v", j.uri, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks fetch %s: status %d", j.uri, resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes))
	if err != nil {
		return nil, fmt.Errorf("jwks fetch %s: %v", j.uri, err)
	}
	return parseJWKS(raw)
}

func (f *jwtAuthnFilter) perRoute(path string, m proto.Message) (any, error) {
	return nil, unsupported(path, "per-route configuration of jwt_authn")
}

type jwtStream struct{ f *jwtAuthnFilter }

func (f *jwtAuthnFilter) newStream(s *stream) filterStream { return &jwtStream{f: f} }

func (j *jwtStream) encodeHeaders(*stream, *headerMap) {}

// decodeHeaders finds the first rule matching the request; with
// allow_missing_or_failed every token found is verified, a verified payload
// goes into dynamic metadata, and the request always continues.
func (j *jwtStream) decodeHeaders(s *stream) *localReply {
	f := j.f
	h := s.headers
	if f.bypassCorsPreflight && h.value(":method") == http.MethodOptions && h.value("origin") != "" && h.value("access-control-request-method") != "" {
		return nil
	}
	var rule *jwtRule
	for _, r := range f.rules {
		if r.match.match(h) {
			rule = r
			break
		}
	}
	if rule == nil || !rule.verify {
		return nil
	}

	out := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	type candidate struct {
		loc   jwtLocation
		token string
	}
	var seen []candidate
	for _, pv := range f.providers {
		for _, loc := range pv.locations {
			tok, ok := extractToken(h, loc)
			if !ok || slices.Contains(seen, candidate{loc, tok}) {
				continue
			}
			seen = append(seen, candidate{loc, tok})
			verifier := f.providerFor(tok, loc)
			if verifier == nil {
				continue
			}
			payload, header, err := verifier.verify(s.r.Context(), tok, time.Now())
			if err != nil {
				s.p.log.Debug("jwt_authn: verification failed (allow_missing_or_failed)", "provider", verifier.name, "error", err)
				continue
			}
			if verifier.payloadKey != "" {
				out.Fields[verifier.payloadKey] = structpb.NewStructValue(payload)
			}
			if verifier.headerKey != "" {
				out.Fields[verifier.headerKey] = structpb.NewStructValue(header)
			}
			if !verifier.forward && loc.header != "" {
				// forward: false removes the JWT after a successful
				// verification (a query parameter is left in place, as
				// Envoy's JwtParamLocation::removeJwt does).
				h.remove(loc.header)
			}
		}
	}
	if len(out.Fields) > 0 {
		// The namespace is the filter's canonical name whatever its
		// http_filters name (ENVOY.md §4b).
		s.setMetadata(jwtAuthnNamespace, out)
	}
	return nil
}

// providerFor picks the provider whose issuer matches the token's iss (an
// empty issuer matches any) and that reads tokens from loc.
func (f *jwtAuthnFilter) providerFor(tok string, loc jwtLocation) *jwtProvider {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		return nil
	}
	iss, _ := claims["iss"].(string)
	for _, pv := range f.providers {
		if (pv.issuer == "" || pv.issuer == iss) && slices.Contains(pv.locations, loc) {
			return pv
		}
	}
	return nil
}

func extractToken(h *headerMap, loc jwtLocation) (string, bool) {
	if loc.header != "" {
		v, ok := h.get(loc.header)
		if !ok || !strings.HasPrefix(v, loc.prefix) {
			return "", false
		}
		tok := strings.TrimSpace(strings.TrimPrefix(v, loc.prefix))
		return tok, tok != ""
	}
	_, q := splitQuery(h.value(":path"))
	vals, err := url.ParseQuery(strings.TrimPrefix(q, "?"))
	if err != nil {
		return "", false
	}
	tok := vals.Get(loc.param)
	return tok, tok != ""
}

// verify checks the signature with the provider's JWKS and the time, issuer
// and audience constraints as jwt_verify_lib does: exp and nbf with
// clock_skew_seconds, iss equal to the provider's issuer when set, and aud
// containing one of the provider's audiences when any are set.
func (pv *jwtProvider) verify(ctx context.Context, tok string, now time.Time) (*structpb.Struct, *structpb.Struct, error) {
	keys, err := pv.jwks.get(ctx)
	if err != nil {
		return nil, nil, err
	}
	parser := jwt.NewParser(jwt.WithValidMethods(jwtAlgorithms), jwt.WithoutClaimsValidation())
	claims := jwt.MapClaims{}
	t, err := parser.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		alg, _ := t.Header["alg"].(string)
		var set jwt.VerificationKeySet
		for _, k := range keys {
			m := k.Marshal()
			if kid != "" && m.KID != kid {
				continue
			}
			if m.ALG != "" && string(m.ALG) != alg {
				continue
			}
			set.Keys = append(set.Keys, k.Key())
		}
		if len(set.Keys) == 0 {
			return nil, errors.New("no JWKS key matches the token's kid and alg")
		}
		return set, nil
	})
	if err != nil {
		return nil, nil, err
	}
	if pv.issuer != "" && claims["iss"] != pv.issuer {
		return nil, nil, fmt.Errorf("iss %v is not %q", claims["iss"], pv.issuer)
	}
	if len(pv.audiences) > 0 && !audienceMatches(claims["aud"], pv.audiences) {
		return nil, nil, fmt.Errorf("aud %v matches none of %v", claims["aud"], pv.audiences)
	}
	if exp, ok := claims["exp"].(float64); ok {
		if now.After(time.Unix(int64(exp), 0).Add(pv.skew)) {
			return nil, nil, errors.New("jwt is expired")
		}
	} else if pv.requireExp {
		return nil, nil, errors.New("jwt has no exp")
	}
	if nbf, ok := claims["nbf"].(float64); ok {
		if now.Add(pv.skew).Before(time.Unix(int64(nbf), 0)) {
			return nil, nil, errors.New("jwt is not yet valid")
		}
	}
	payload, err := segmentStruct(strings.Split(tok, ".")[1])
	if err != nil {
		return nil, nil, err
	}
	header, err := structpb.NewStruct(t.Header)
	if err != nil {
		return nil, nil, err
	}
	return payload, header, nil
}

// segmentStruct decodes a JWT segment to a Struct; JSON numbers become
// float64 number values, as in Envoy's metadata.
func segmentStruct(seg string) (*structpb.Struct, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return structpb.NewStruct(m)
}

func audienceMatches(aud any, want []string) bool {
	switch a := aud.(type) {
	case string:
		return slices.Contains(want, a)
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok && slices.Contains(want, s) {
				return true
			}
		}
	}
	return false
}
