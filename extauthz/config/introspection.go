package config

import (
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strings"
	"time"
)

// Defaults of issuers[].introspection (CONTRACT.md, "Opaque and lightweight
// tokens"). They are referenced from here only.
const (
	DefaultIntrospectionAuth     = AuthClientSecretBasic
	DefaultIntrospectionCacheTTL = 60 * time.Second
	DefaultNegativeCacheTTL      = 5 * time.Second
	DefaultMaxInFlight           = 64
)

// Client authentication methods at the introspection endpoint (RFC 7662 §2.1
// requires one; RFC 6749 §2.3.1 defines both).
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
)

var introspectionKeys = []string{
	"endpoint", "client_id", "client_secret_file", "auth", "opaque_tokens", "jwt",
	"require_audience", "cache_ttl", "negative_cache_ttl", "max_in_flight",
}

// Introspection is issuers[].introspection: how the server asks an issuer
// about tokens it cannot judge alone (RFC 7662; RFC 9470 §6.2).
type Introspection struct {
	// Endpoint is the introspection URL; "" means introspection_endpoint of the
	// issuer's discovery document.
	Endpoint string
	ClientID string
	// ClientSecretFile is where the secret was read from; ClientSecret is its
	// content with the trailing newline trimmed, read on every config load so
	// that a reload picks up a rotated secret.
	ClientSecretFile string
	ClientSecret     Secret
	// Auth is AuthClientSecretBasic or AuthClientSecretPost.
	Auth string
	// OpaqueTokens routes tokens that are not JWTs to this issuer (at most one
	// issuer may set it).
	OpaqueTokens bool
	// JWT introspects this issuer's JWTs after they verified locally
	// (lightweight access tokens that leave acr and auth_time out).
	JWT bool
	// RequireAudience makes an answer without aud invalid (default true).
	RequireAudience bool
	// CacheTTL bounds how long an active answer is reused (never past its exp);
	// NegativeCacheTTL how long an inactive one is remembered. 0 disables each.
	CacheTTL         time.Duration
	NegativeCacheTTL time.Duration
	// MaxInFlight bounds concurrent calls to the endpoint.
	MaxInFlight int
}

// Secret is a credential read from a file. It prints as "[redacted]" with
// every fmt verb, in JSON and in slog, so a config dumped for debugging never
// shows it; Reveal is the one way to the value.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself, for the request that sends it.
func (s Secret) Reveal() string { return string(s) }

// Format implements fmt.Formatter: %v, %s, %q, %#v all print [redacted].
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalText keeps the secret out of JSON and YAML.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue keeps the secret out of slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// introspection validates issuers[i].introspection. iss is the issuer built so
// far (its URL decides whether discovery can find the endpoint).
func (b *builder) introspection(p string, v any, iss *Issuer) *Introspection {
	m := b.object(p, v, introspectionKeys)
	if m == nil {
		return nil
	}
	in := &Introspection{
		Auth:             DefaultIntrospectionAuth,
		RequireAudience:  true,
		CacheTTL:         DefaultIntrospectionCacheTTL,
		NegativeCacheTTL: DefaultNegativeCacheTTL,
		MaxInFlight:      DefaultMaxInFlight,
	}
	str := func(k string) string {
		if x := m[k]; x != nil {
			s, _ := b.str(p+"."+k, x)
			return s
		}
		return ""
	}
	boolean := func(k string, def bool) bool {
		x := m[k]
		if x == nil {
			return def
		}
		bv, ok := x.(bool)
		if !ok {
			b.typeErr(p+"."+k, "true or false", x)
			return def
		}
		return bv
	}

	if in.Endpoint = str("endpoint"); in.Endpoint != "" {
		u, err := url.Parse(in.Endpoint)
		switch {
		case err != nil || !u.IsAbs():
			b.add(p+".endpoint", "%q is not an absolute URL like \"https://idp.example.com/oauth2/introspect\"", in.Endpoint)
		case u.Host == "" && (strings.EqualFold(u.Scheme, "https") || strings.EqualFold(u.Scheme, "http")):
			b.add(p+".endpoint", "%q has no host; write it like \"https://idp.example.com/oauth2/introspect\"", in.Endpoint)
		case !fetchable(u):
			b.add(p+".endpoint", "%q must use https: the token and the client secret travel in the request (%s)", in.Endpoint, loopbackRule)
		}
	} else if u, err := url.Parse(iss.Issuer); iss.Issuer != "" && err == nil && u.IsAbs() && !fetchable(u) {
		b.add(p+".endpoint", "required: issuer %q is not https, so its discovery document (introspection_endpoint) cannot be read (%s)", iss.Issuer, loopbackRule)
	}

	if in.ClientID = str("client_id"); strings.TrimSpace(in.ClientID) == "" {
		b.add(p+".client_id", "required: the client_id this server authenticates with at the introspection endpoint")
	}
	switch in.ClientSecretFile = str("client_secret_file"); in.ClientSecretFile {
	case "":
		b.add(p+".client_secret_file", "required: a file holding the client secret (its trailing newline is trimmed)")
	default:
		data, err := readFile(in.ClientSecretFile)
		if err != nil {
			b.add(p+".client_secret_file", "%v", err)
			break
		}
		s := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
		switch {
		case strings.TrimSpace(s) == "":
			b.add(p+".client_secret_file", "%q is empty", in.ClientSecretFile)
		case strings.ContainsAny(s, "\r\n"):
			// Never quote the content: it is the secret.
			b.add(p+".client_secret_file", "%q holds more than one line; it must hold only the secret", in.ClientSecretFile)
		default:
			in.ClientSecret = Secret(s)
		}
	}
	if x := m["auth"]; x != nil {
		if s, ok := b.str(p+".auth", x); ok {
			switch s {
			case AuthClientSecretBasic, AuthClientSecretPost:
				in.Auth = s
			default:
				b.add(p+".auth", "%q is not one of %s, %s", s, AuthClientSecretBasic, AuthClientSecretPost)
			}
		}
	}
	in.OpaqueTokens = boolean("opaque_tokens", false)
	in.JWT = boolean("jwt", false)
	in.RequireAudience = boolean("require_audience", true)
	if !in.OpaqueTokens && !in.JWT {
		b.add(p, "says neither opaque_tokens: true (tokens that are not JWTs go to this issuer) nor jwt: true (this issuer's JWTs are introspected too), so no token would ever be introspected")
	}
	ttl := func(k string, def time.Duration) time.Duration {
		x := m[k]
		if x == nil {
			return def
		}
		d, ok := b.duration(p+"."+k, x)
		if !ok {
			return def
		}
		if d < 0 {
			b.add(p+"."+k, "%s is negative (0 turns the cache off)", d)
			return def
		}
		return d
	}
	in.CacheTTL = ttl("cache_ttl", DefaultIntrospectionCacheTTL)
	in.NegativeCacheTTL = ttl("negative_cache_ttl", DefaultNegativeCacheTTL)
	if x := m["max_in_flight"]; x != nil {
		f, ok := x.(float64)
		switch {
		case !ok:
			b.typeErr(p+".max_in_flight", "a whole number", x)
		case f != math.Trunc(f) || f < 1 || f > 1<<20:
			b.add(p+".max_in_flight", "%s is not a whole number from 1 to %d", formatNumber(f), 1<<20)
		default:
			in.MaxInFlight = int(f)
		}
	}
	return in
}

// checkOpaqueTokens reports every issuer after the first that sets
// opaque_tokens: a token that is not a JWT names no issuer, so exactly one
// may receive them.
func (b *builder) checkOpaqueTokens(issuers []Issuer, index []int) {
	first := -1
	for n, iss := range issuers {
		if iss.Introspection == nil || !iss.Introspection.OpaqueTokens {
			continue
		}
		if first < 0 {
			first = n
			continue
		}
		b.add(fmt.Sprintf("issuers[%d].introspection.opaque_tokens", index[n]),
			"issuers[%d] (%q) and issuers[%d] (%q) both set it, but tokens that are not JWTs name no issuer, so at most one issuer may receive them",
			index[first], issuers[first].Issuer, index[n], iss.Issuer)
	}
}
