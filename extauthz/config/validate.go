package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/extauthz/wire"
	"github.com/stepup-authz/stepup-authz/policy"
)

// Known keys, in schema order (the order problems are reported in).
var (
	topKeys = []string{
		"listen", "issuers", "clock_skew", "acr_levels", "metadata_namespace",
		"machine_tokens", "jwks_refresh_interval", "token_cache_size", "log", "policy",
		"tracing",
		"dpop", "mtls", "protected_resource",
	}
	listenKeys = []string{"grpc", "admin", "reflection", "codec", "tls"}
	tlsKeys    = []string{"cert_file", "key_file", "client_ca_file"}
	issuerKeys = []string{
		"issuer", "jwks_uri", "audiences", "algorithms", "acr_aliases", "amr_levels",
		"require_typ", "challenge_acr_values", "ca_file", "jwt_authn_payload",
		"introspection", "level_claim", "challenge", "claim_names",
	}
	logKeys    = []string{"level", "format"}
	policyKeys = []string{"default", "routes"}
	// policy.default takes the policy fields, name included.
	defaultKeys = policy.Fields
	routeKeys   = []string{
		"name", "match",
		policy.FieldRequiredACR, policy.FieldMaxAge, policy.FieldMachineScopes, policy.FieldMode,
		policy.FieldSenderConstraint, policy.FieldResourcePath, policy.FieldRequiredScopes,
	}
	matchKeys   = []string{"hosts", "path", "path_prefix", "path_regex", "methods"}
	pathMatches = []string{"path", "path_prefix", "path_regex"}
)

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

const loopbackRule = "http is allowed only on loopback hosts: localhost, 127.0.0.0/8, ::1"

// builder carries what later sections need from earlier ones.
type builder struct {
	*walker
	levels policy.Levels
	// levelsOK is false when acr_levels is itself invalid; references to
	// levels are then not checked, to avoid a cascade of follow-on problems.
	levelsOK bool
}

// build validates the decoded document and returns the config it describes.
func build(root map[string]any, w *walker) *Config {
	b := &builder{walker: w}
	cfg := &Config{
		ClockSkew:           DefaultClockSkew,
		MetadataNamespace:   DefaultMetadataNamespace,
		MachineTokens:       policy.MachineRFC9068,
		JWKSRefreshInterval: DefaultJWKSRefreshInterval,
		TokenCacheSize:      DefaultTokenCacheSize,
		Log:                 Log{Level: slog.LevelInfo},
	}
	b.object("", root, topKeys)

	// acr_levels is needed by issuers and policy, but reported in its place.
	lw := &walker{}
	cfg.ACRLevels, b.levelsOK = parseLevels(lw, root["acr_levels"])
	b.levels = cfg.ACRLevels

	cfg.Listen = b.listen(root["listen"])
	cfg.Issuers = b.issuers(root["issuers"])
	if v := root["clock_skew"]; v != nil {
		if d, ok := b.duration("clock_skew", v); ok {
			if d < 0 {
				b.add("clock_skew", "%s is negative", d)
			}
			cfg.ClockSkew = d
		}
	}
	b.probs = append(b.probs, lw.probs...)
	if v := root["metadata_namespace"]; v != nil {
		if s, ok := b.str("metadata_namespace", v); ok {
			if s == "" {
				b.add("metadata_namespace", "must not be empty (default %q)", DefaultMetadataNamespace)
			} else {
				cfg.MetadataNamespace = s
			}
		}
	}
	if v := root["machine_tokens"]; v != nil {
		if s, ok := b.str("machine_tokens", v); ok {
			if r, err := policy.ParseMachineRule(s); err != nil {
				b.add("machine_tokens", "%v", err)
			} else {
				cfg.MachineTokens = r
			}
		}
	}
	if v := root["jwks_refresh_interval"]; v != nil {
		if d, ok := b.duration("jwks_refresh_interval", v); ok {
			if d < MinJWKSRefreshInterval {
				b.add("jwks_refresh_interval", "%s is below the minimum of %s", d, MinJWKSRefreshInterval)
			}
			cfg.JWKSRefreshInterval = d
		}
	}
	if v := root["token_cache_size"]; v != nil {
		cfg.TokenCacheSize = b.cacheSize(v)
	}
	if v := root["log"]; v != nil {
		cfg.Log = b.log(v)
	}
	if v := root["policy"]; v != nil {
		cfg.Default, cfg.Routes = b.policy(v)
	}
	if v := root["tracing"]; v != nil {
		cfg.Tracing = b.tracing(v)
	}
	cfg.DPoP = b.dpop(root["dpop"])
	cfg.MTLS = b.mtls(root["mtls"])
	if v := root["protected_resource"]; v != nil {
		if cfg.ProtectedResource = b.protectedResource(v, cfg.Issuers); cfg.ProtectedResource != nil && root["dpop"] != nil {
			cfg.ProtectedResource.DPoPAlgorithms = cfg.DPoP.Algorithms
		}
	}
	return cfg
}

func parseLevels(w *walker, v any) (policy.Levels, bool) {
	if v == nil {
		return slices.Clone(policy.DefaultLevels), true
	}
	l, ok := w.strList("acr_levels", v)
	if !ok {
		return policy.Levels(l), false
	}
	levels := policy.Levels(l)
	if err := levels.Validate(); err != nil {
		msg := err.Error()
		// Levels.Validate says "[1] ..." for a bad entry.
		if j := strings.Index(msg, "] "); strings.HasPrefix(msg, "[") && j > 0 {
			w.add("acr_levels"+msg[:j+1], "%s", msg[j+2:])
		} else {
			w.add("acr_levels", "%s", msg)
		}
		return levels, false
	}
	good := true
	for i, lv := range levels {
		if strings.ContainsAny(lv, " \t") {
			w.add(index("acr_levels", i), "%q contains a space, but acr_values is a space-separated list", lv)
			good = false
		}
	}
	return levels, good
}

// checkLevel reports a level that is not on the configured ladder.
func (b *builder) checkLevel(path, what, lv string) {
	if b.levelsOK && b.levels.Rank(lv) < 0 {
		b.add(path, "%s%q is not one of acr_levels %s", what, lv, b.levels)
	}
}

func (b *builder) listen(v any) Listen {
	l := Listen{GRPC: DefaultGRPCAddr, Admin: DefaultAdminAddr, Codec: wire.Default}
	if v == nil {
		return l
	}
	m := b.object("listen", v, listenKeys)
	if m == nil {
		return l
	}
	if x := m["grpc"]; x != nil {
		l.GRPC = b.addr("listen.grpc", x, DefaultGRPCAddr)
	}
	if x := m["admin"]; x != nil {
		l.Admin = b.addr("listen.admin", x, DefaultAdminAddr)
	}
	if x := m["codec"]; x != nil {
		if s, ok := b.str("listen.codec", x); ok {
			if slices.Contains(wire.Names, s) {
				l.Codec = s
			} else {
				b.add("listen.codec", "%q is not one of %s (%s is grpc-go's standard codec)", s, strings.Join(wire.Names, ", "), wire.Proto)
			}
		}
	}
	if l.GRPC == l.Admin && !strings.HasSuffix(l.GRPC, ":0") {
		b.add("listen.admin", "%q is also listen.grpc; the two servers need different addresses", l.Admin)
	}
	if x := m["reflection"]; x != nil {
		if on, ok := x.(bool); ok {
			l.Reflection = on
		} else {
			b.typeErr("listen.reflection", "true or false", x)
		}
	}
	if x := m["tls"]; x != nil {
		l.TLS = b.tls(x)
	}
	return l
}

func (b *builder) addr(path string, v any, def string) string {
	s, ok := b.str(path, v)
	if !ok {
		return def
	}
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		var n int
		n, err = strconv.Atoi(port)
		if err == nil && (n < 0 || n > 65535) {
			err = errors.New("port out of range")
		}
	}
	if err != nil {
		b.add(path, "%q is not a host:port address like %q or \"127.0.0.1%s\"", s, def, def)
		return def
	}
	return s
}

func (b *builder) tls(v any) *TLS {
	m := b.object("listen.tls", v, tlsKeys)
	if m == nil {
		return nil
	}
	t := &TLS{}
	var cert, key []byte
	file := func(k string, required bool) (string, []byte) {
		p := "listen.tls." + k
		x := m[k]
		if x == nil {
			if required {
				b.add(p, "required when listen.tls is set")
			}
			return "", nil
		}
		s, ok := b.str(p, x)
		if !ok {
			return "", nil
		}
		if s == "" {
			if required {
				b.add(p, "required when listen.tls is set")
			}
			return "", nil
		}
		data, err := readFile(s)
		if err != nil {
			b.add(p, "%v", err)
			return s, nil
		}
		return s, data
	}
	t.CertFile, cert = file("cert_file", true)
	t.KeyFile, key = file("key_file", true)
	if cert != nil && key != nil {
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			b.add("listen.tls", "cannot load cert_file %q with key_file %q: %v", t.CertFile, t.KeyFile, err)
		}
	}
	var ca []byte
	t.ClientCAFile, ca = file("client_ca_file", false)
	if ca != nil {
		b.checkCertPool("listen.tls.client_ca_file", t.ClientCAFile, ca)
	}
	return t
}

// readFile reads a file named in the config, with an error that names it.
func readFile(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read %q: %v", name, err)
	}
	return data, nil
}

func (b *builder) checkCertPool(path, name string, data []byte) {
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		b.add(path, "%q holds no PEM certificate", name)
	}
}

func (b *builder) issuers(v any) []Issuer {
	const required = "required: at least one identity provider (issuer, audiences) whose tokens are accepted"
	if v == nil {
		b.add("issuers", required)
		return nil
	}
	l, ok := v.([]any)
	if !ok {
		b.typeErr("issuers", "a list of issuers", v)
		return nil
	}
	if len(l) == 0 {
		b.add("issuers", required)
		return nil
	}
	out := make([]Issuer, 0, len(l))
	at := make([]int, 0, len(l)) // out[n] is issuers[at[n]]
	seen := map[string]int{}
	for i, e := range l {
		p := index("issuers", i)
		m := b.object(p, e, issuerKeys)
		if m == nil {
			continue
		}
		iss := b.issuer(p, m)
		if iss.Issuer != "" {
			if j, dup := seen[iss.Issuer]; dup {
				b.add(p+".issuer", "%q is already configured by issuers[%d]", iss.Issuer, j)
			} else {
				seen[iss.Issuer] = i
			}
		}
		out = append(out, iss)
		at = append(at, i)
	}
	b.checkOpaqueTokens(out, at)
	return out
}

func (b *builder) issuer(p string, m map[string]any) Issuer {
	var iss Issuer
	// optString reads a string that may be absent or "".
	optString := func(k string) string {
		if x := m[k]; x != nil {
			s, _ := b.str(p+"."+k, x)
			return s
		}
		return ""
	}

	iss.JWKSURI = optString("jwks_uri")
	switch x := m["issuer"]; {
	case x == nil:
		b.add(p+".issuer", "required: the exact iss of the tokens this identity provider issues")
	default:
		s, ok := b.str(p+".issuer", x)
		if !ok {
			break
		}
		iss.Issuer = s
		u, err := url.Parse(s)
		switch {
		case s == "":
			b.add(p+".issuer", "required: the exact iss of the tokens this identity provider issues")
		case err != nil || !u.IsAbs():
			b.add(p+".issuer", "%q is not an absolute URL like \"https://idp.example.com\"", s)
		case u.Host == "":
			b.add(p+".issuer", "%q has no host: an issuer is a URL like \"https://idp.example.com\", exactly as its tokens' iss", s)
		case iss.JWKSURI == "" && !fetchable(u):
			b.add(p+".issuer", "%q must use https: without jwks_uri, keys are found through %s/.well-known/openid-configuration (%s)",
				s, strings.TrimSuffix(s, "/"), loopbackRule)
		case iss.JWKSURI == "" && (u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.Contains(s, "#")):
			b.add(p+".issuer", "%q has a query or fragment, so discovery cannot be derived from it; set jwks_uri", s)
		}
	}
	if iss.JWKSURI != "" {
		const example = "https://idp.example.com/jwks.json"
		u, err := url.Parse(iss.JWKSURI)
		switch {
		case err != nil || !u.IsAbs():
			b.add(p+".jwks_uri", "%q is not an absolute URL; write it like %q", iss.JWKSURI, example)
		case !strings.EqualFold(u.Scheme, "https") && !strings.EqualFold(u.Scheme, "http"):
			// file:, data: and the like: the rule is about the scheme, not about
			// the URL being absolute (it is).
			b.add(p+".jwks_uri", "%q must use https (%s); keys are fetched from the identity provider over the network, not read from a %s: URL",
				iss.JWKSURI, loopbackRule, strings.ToLower(u.Scheme))
		case u.Host == "":
			b.add(p+".jwks_uri", "%q has no host; write it like %q", iss.JWKSURI, example)
		case !fetchable(u):
			b.add(p+".jwks_uri", "%q must use https (%s)", iss.JWKSURI, loopbackRule)
		}
	}

	const audRequired = "required: the token's aud must contain one of them"
	if x := m["audiences"]; x == nil {
		b.add(p+".audiences", audRequired)
	} else if auds, ok := b.strList(p+".audiences", x); ok {
		if len(auds) == 0 {
			b.add(p+".audiences", audRequired)
		}
		for j, a := range auds {
			if a == "" {
				b.add(index(p+".audiences", j), "must not be empty")
			}
		}
		iss.Audiences = auds
	}

	iss.Algorithms = token.DefaultAlgorithms()
	if x := m["algorithms"]; x != nil {
		if algs, ok := b.strList(p+".algorithms", x); ok {
			if len(algs) == 0 {
				b.add(p+".algorithms", "must name at least one algorithm, or be left out to allow %s", strings.Join(token.DefaultAlgorithms(), " "))
			} else {
				iss.Algorithms = algs
			}
			for j, a := range algs {
				b.algorithm(index(p+".algorithms", j), a)
			}
		}
	}

	if x := m["acr_aliases"]; x != nil {
		iss.ACRAliases = b.strMap(p+".acr_aliases", x, func(kp, k, val string) {
			if k == "" {
				b.add(kp, "an acr value cannot be empty")
			}
			b.checkLevel(kp, "", val)
		})
	}
	if x := m["amr_levels"]; x != nil {
		iss.AMRLevels = b.strMap(p+".amr_levels", x, func(kp, k, val string) {
			if k == "" {
				b.add(kp, "an amr value cannot be empty")
			}
			b.checkLevel(kp, "", val)
		})
	}
	iss.RequireTyp = optString("require_typ")
	iss.JWTAuthnPayload = optString("jwt_authn_payload")
	if x := m["challenge_acr_values"]; x != nil {
		iss.ChallengeACRValues = b.strMap(p+".challenge_acr_values", x, func(kp, k, val string) {
			b.checkLevel(kp, "key ", k)
			if strings.TrimSpace(val) == "" {
				b.add(kp, "must not be empty (leave the level out to send its own name)")
			} else if err := policy.CheckHeaderSafe(val); err != nil {
				b.add(kp, "%q %v", val, err)
			}
		})
	}
	if x := m["introspection"]; x != nil {
		iss.Introspection = b.introspection(p+".introspection", x, &iss)
	}
	b.dialect(p, m, &iss)
	if iss.CAFile = optString("ca_file"); iss.CAFile != "" {
		if data, err := readFile(iss.CAFile); err != nil {
			b.add(p+".ca_file", "%v", err)
		} else {
			b.checkCertPool(p+".ca_file", iss.CAFile, data)
		}
	}
	return iss
}

// fetchable reports whether keys may be fetched from u: the key fetcher's own
// rule (token.FetchableURL), so that validate never passes a URL the fetcher
// refuses, nor the other way round.
func fetchable(u *url.URL) bool { return token.FetchableURL(u) }

func (b *builder) algorithm(path, a string) {
	all := token.DefaultAlgorithms()
	allowed := strings.Join(all, " ")
	switch up := strings.ToUpper(a); {
	case slices.Contains(all, a):
	case strings.HasPrefix(up, "HS"):
		b.add(path, "%q is refused: HMAC verifies with a shared secret, which a JWKS cannot publish and which would let anyone holding it mint tokens; use one of %s", a, allowed)
	case up == "NONE":
		b.add(path, "%q is refused: it means an unsigned token, which anyone can forge; use one of %s", a, allowed)
	default:
		for _, d := range all {
			if strings.EqualFold(a, d) {
				b.add(path, "%q is not one of %s (names are case-sensitive: %q)", a, allowed, d)
				return
			}
		}
		b.add(path, "%q is not one of %s", a, allowed)
	}
}

func (b *builder) cacheSize(v any) int {
	const path = "token_cache_size"
	f, ok := v.(float64)
	if !ok {
		b.typeErr(path, "a whole number", v)
		return DefaultTokenCacheSize
	}
	switch {
	case f != float64(int64(f)) || f > 1<<53:
		b.add(path, "%s is not a whole number", formatNumber(f))
	case f < 0:
		b.add(path, "%s is negative: give how many verified tokens to keep, or 0 for the default (%d); the cache cannot be turned off", formatNumber(f), DefaultTokenCacheSize)
	case f == 0:
	default:
		return int(f)
	}
	return DefaultTokenCacheSize
}

func (b *builder) log(v any) Log {
	l := Log{Level: slog.LevelInfo}
	m := b.object("log", v, logKeys)
	if m == nil {
		return l
	}
	if x := m["level"]; x != nil {
		if s, ok := b.str("log.level", x); ok {
			if lv, ok := logLevels[strings.ToLower(s)]; ok {
				l.Level = lv
			} else {
				b.add("log.level", "%q is not one of debug, info, warn, error", s)
			}
		}
	}
	if x := m["format"]; x != nil {
		if s, ok := b.str("log.format", x); ok {
			switch strings.ToLower(s) {
			case "text":
			case "json":
				l.JSON = true
			default:
				b.add("log.format", "%q is not one of text, json", s)
			}
		}
	}
	return l
}

func (b *builder) policy(v any) (policy.Layer, []policy.Route) {
	var def policy.Layer
	m := b.object("policy", v, policyKeys)
	if m == nil {
		return def, nil
	}
	if x := m["default"]; x != nil {
		if dm := b.object("policy.default", x, defaultKeys); dm != nil {
			def = b.layer("policy.default", dm, defaultKeys)
		}
	}
	x := m["routes"]
	if x == nil {
		return def, nil
	}
	l, ok := x.([]any)
	if !ok {
		b.typeErr("policy.routes", "a list of routes", x)
		return def, nil
	}
	routes := make([]policy.Route, 0, len(l))
	names := map[string]int{}
	catchAll := -1
	for i, e := range l {
		p := index("policy.routes", i)
		rm := b.object(p, e, routeKeys)
		if rm == nil {
			continue
		}
		r := policy.Route{}
		switch nv := rm["name"]; {
		case nv == nil:
			b.add(p+".name", "required: routes are named in logs and metrics")
		default:
			s, ok := b.str(p+".name", nv)
			switch {
			case !ok:
			case strings.TrimSpace(s) == "":
				b.add(p+".name", "required: routes are named in logs and metrics")
			case strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
				b.add(p+".name", "%q contains a control character", s)
			default:
				if j, dup := names[s]; dup {
					b.add(p+".name", "%q is already used by policy.routes[%d]", s, j)
				} else {
					names[s] = i
				}
				r.Name = s
			}
		}
		if catchAll >= 0 {
			b.add(p, "unreachable: policy.routes[%d] has no match conditions, matches every request and comes first", catchAll)
		}
		var empty bool
		r.Match, empty = b.match(p+".match", rm["match"])
		if empty && catchAll < 0 {
			catchAll = i
		}
		r.Layer = b.layer(p, rm, routeKeys[2:])
		if r.Name != "" {
			r.Layer.Name = policy.Field[string]{Set: true, Value: r.Name}
		}
		routes = append(routes, r)
	}
	return def, routes
}

// layer parses the policy fields of m (those in fields) with
// policy.ParseMetadata, so the file and Envoy route metadata accept exactly
// the same values.
func (b *builder) layer(path string, m map[string]any, fields []string) policy.Layer {
	sub := map[string]any{}
	for _, f := range fields {
		if x, ok := m[f]; ok {
			sub[f] = x
		}
	}
	if s, ok := sub[policy.FieldRequiredACR].(string); ok && !b.levelsOK && s != "" {
		// acr_levels is broken and already reported.
		delete(sub, policy.FieldRequiredACR)
	}
	l, err := policy.ParseMetadata(sub, b.levels)
	if err == nil {
		return l
	}
	var fes policy.Errors
	if !errors.As(err, &fes) {
		b.add(path, "%v", err)
		return l
	}
	fes = slices.Clone(fes)
	slices.SortStableFunc(fes, func(x, y *policy.FieldError) int {
		return slices.Index(policy.Fields, x.Field) - slices.Index(policy.Fields, y.Field)
	})
	for _, fe := range fes {
		fp, msg := join(path, fe.Field), fe.Problem
		// policy says "[1] must be a string" for a list element.
		if j := strings.Index(msg, "] "); strings.HasPrefix(msg, "[") && j > 0 {
			fp, msg = fp+msg[:j+1], msg[j+2:]
		}
		if !b.levelsOK {
			// The ladder is broken and reported already; don't print it here.
			msg = strings.Replace(msg, " acr_levels "+b.levels.String(), " acr_levels", 1)
		}
		if _, isBool := sub[fe.Field].(bool); isBool {
			msg += typeHint(true, "")
		}
		b.add(fp, "%s", msg)
	}
	return l
}

// match parses a route's match; empty reports a match without conditions.
func (b *builder) match(path string, v any) (policy.RouteMatch, bool) {
	var rm policy.RouteMatch
	if v == nil {
		return rm, true
	}
	m := b.object(path, v, matchKeys)
	if m == nil {
		return rm, false
	}
	if x := m["hosts"]; x != nil {
		if hosts, ok := b.strList(path+".hosts", x); ok {
			if len(hosts) == 0 {
				b.add(path+".hosts", "must name at least one host, or be left out to match any host")
			}
			for i, h := range hosts {
				if err := checkHost(h); err != nil {
					b.add(index(path+".hosts", i), "%q %v", h, err)
					continue
				}
				rm.Hosts = append(rm.Hosts, policy.NormalizeHost(h))
			}
		}
	}
	var given []string
	for _, k := range pathMatches {
		x := m[k]
		if x == nil {
			continue
		}
		p := path + "." + k
		s, ok := b.str(p, x)
		if !ok {
			continue
		}
		given = append(given, k)
		if s == "" {
			b.add(p, "must not be empty (leave it out to match every path)")
			continue
		}
		switch k {
		case "path":
			if err := policy.ValidateMatch(policy.RouteMatch{Path: s}); err != nil {
				b.add(p, "%v", err)
			}
			rm.Path = s
		case "path_prefix":
			if err := policy.ValidateMatch(policy.RouteMatch{PathPrefix: s}); err != nil {
				b.add(p, "%v", err)
			}
			rm.PathPrefix = s
		case "path_regex":
			// Compile the expression alone first: wrapped in the anchors, an
			// unbalanced one such as "/a)|(.*" would compile to something
			// unanchored.
			if _, err := regexp.Compile(s); err != nil {
				b.add(p, "%v", err)
				continue
			}
			re, err := policy.CompileRegex(s)
			if err != nil {
				b.add(p, "%v", err)
				continue
			}
			rm.PathRegex = re
		}
	}
	for _, k := range given[min(1, len(given)):] {
		b.add(path+"."+k, "cannot be combined with %s: path, path_prefix and path_regex are alternatives, as in Envoy's route match; set at most one", given[0])
	}
	if x := m["methods"]; x != nil {
		if methods, ok := b.strList(path+".methods", x); ok {
			if len(methods) == 0 {
				b.add(path+".methods", "must name at least one method, or be left out to match any method")
			}
			for i, meth := range methods {
				if !isToken(meth) {
					b.add(index(path+".methods", i), "%q is not an HTTP method (a token like GET or POST)", meth)
					continue
				}
				rm.Methods = append(rm.Methods, strings.ToUpper(meth))
			}
		}
	}
	return rm, m["hosts"] == nil && m["methods"] == nil && len(given) == 0
}

// checkHost refuses what cannot be a host in :authority, and wildcards,
// which route matching does not support.
func checkHost(h string) error {
	switch {
	case h == "":
		return errors.New("is empty")
	case strings.Contains(h, "*"):
		return errors.New("is a wildcard; hosts match exactly, so list each host")
	case strings.ContainsAny(h, " \t/\\?#@\"") || strings.IndexFunc(h, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return errors.New("is not a host name (a name like app.example.com, optionally with :port)")
	}
	return nil
}

// isToken reports an RFC 9110 token (tchar), which methods are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
