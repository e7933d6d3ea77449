package devidp

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// IntrospectionClientID is the client the dev IdP's introspection endpoint
// accepts (with IdP.IntrospectionSecret, client_secret_basic or _post).
const IntrospectionClientID = "stepup-authz"

// maxOpaque bounds the opaque tokens the dev IdP remembers.
const maxOpaque = 100000

// references holds what the dev IdP knows beyond a token's own text: the
// claims behind opaque (reference) tokens, the claims a lightweight JWT
// leaves out, and revocations.
type references struct {
	mu          sync.Mutex
	opaque      map[string]Claims // token -> claims
	lightweight map[string]Claims // jti -> the claims the JWT left out
	revoked     map[string]bool   // token -> revoked
	secret      string
	hits        atomic.Int64
	fault       atomic.Value // introspectionFault
}

type introspectionFault func(w http.ResponseWriter, token string) bool

func (i *IdP) refs() *references {
	i.refsOnce.Do(func() {
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		i.references = &references{
			opaque:      map[string]Claims{},
			lightweight: map[string]Claims{},
			revoked:     map[string]bool{},
			secret:      base64.RawURLEncoding.EncodeToString(b),
		}
	})
	return i.references
}

// IntrospectionSecret is the client secret of IntrospectionClientID, random
// per IdP.
func (i *IdP) IntrospectionSecret() string { return i.refs().secret }

// IntrospectionHits counts introspection requests served.
func (i *IdP) IntrospectionHits() int64 { return i.refs().hits.Load() }

// SetIntrospectionFault makes the introspection endpoint misbehave: f writes
// its own reply for a token and returns true, or returns false to answer
// normally. nil clears it.
func (i *IdP) SetIntrospectionFault(f func(w http.ResponseWriter, token string) bool) {
	i.refs().fault.Store(introspectionFault(f))
}

// MintOpaque issues a reference token: a random string that means nothing
// without the IdP, whose claims (filled in as Mint does) only introspection
// returns, as Okta's org authorization server and PingFederate do.
func (i *IdP) MintOpaque(c Claims) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	r := i.refs()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.opaque) >= maxOpaque {
		return "", errors.New("devidp: too many opaque tokens")
	}
	r.opaque[tok] = i.filled(c)
	return tok, nil
}

// MintLightweight signs a JWT that leaves acr, amr and auth_time out (as
// Keycloak's lightweight access tokens do); introspection returns them.
func (i *IdP) MintLightweight(c Claims) (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	jti := base64.RawURLEncoding.EncodeToString(b)
	full := i.filled(c)
	full["jti"] = jti
	left := Claims{}
	slim := Claims{}
	for k, v := range full {
		switch k {
		case "acr", "amr", "auth_time":
			left[k] = v
		default:
			slim[k] = v
		}
	}
	r := i.refs()
	r.mu.Lock()
	if len(r.lightweight) >= maxOpaque {
		r.mu.Unlock()
		return "", errors.New("devidp: too many lightweight tokens")
	}
	r.lightweight[jti] = left
	r.mu.Unlock()
	return i.Mint(slim)
}

// Revoke makes introspection answer active: false for tok (RFC 7009's effect).
func (i *IdP) Revoke(tok string) {
	r := i.refs()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked[tok] = true
}

// filled is c with Mint's defaults (iss, aud, iat, exp) and nil members removed.
func (i *IdP) filled(c Claims) Claims {
	now := i.now()
	out := Claims{"iss": i.Issuer, "aud": i.Audience, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	for k, v := range c {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

// introspect serves POST /introspect (RFC 7662): client authentication by
// client_secret_basic or client_secret_post, then the answer for an opaque
// token it issued, or for a JWT it signed (lightweight ones with the claims
// they left out, as Keycloak answers); anything else is inactive.
func (i *IdP) introspect(w http.ResponseWriter, r *http.Request) {
	refs := i.refs()
	refs.hits.Add(1)
	if err := r.ParseForm(); err != nil {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != IntrospectionClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(refs.secret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="devidp"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	tok := r.PostForm.Get("token")
	if f, _ := refs.fault.Load().(introspectionFault); f != nil && f(w, tok) {
		return
	}
	writeJSON(w, i.answer(tok))
}

// answer is the introspection answer for tok.
func (i *IdP) answer(tok string) map[string]any {
	inactive := map[string]any{"active": false}
	refs := i.refs()
	refs.mu.Lock()
	revoked := refs.revoked[tok]
	c, isOpaque := refs.opaque[tok]
	refs.mu.Unlock()
	if revoked || tok == "" {
		return inactive
	}
	if !isOpaque {
		var ok bool
		if c, ok = i.verifyOwn(tok); !ok {
			return inactive
		}
		if jti, _ := c["jti"].(string); jti != "" {
			refs.mu.Lock()
			left := refs.lightweight[jti]
			refs.mu.Unlock()
			for k, v := range left {
				c[k] = v
			}
		}
	}
	if exp, ok := number(c["exp"]); ok && float64(i.now().Unix()) >= exp {
		return inactive
	}
	out := map[string]any{"active": true, "token_type": "Bearer"}
	for k, v := range c {
		out[k] = v
	}
	return out
}

// verifyOwn returns the claims of a JWT signed with one of the published keys.
func (i *IdP) verifyOwn(tok string) (Claims, bool) {
	if strings.Count(tok, ".") != 2 {
		return nil, false
	}
	c := Claims{}
	_, err := jwt.ParseWithClaims(tok, c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k := i.Key(kid)
		if k == nil || t.Method.Alg() != k.Alg {
			return nil, errors.New("unknown key")
		}
		return k.Private.Public(), nil
	}, jwt.WithoutClaimsValidation())
	return c, err == nil
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	}
	return 0, false
}
