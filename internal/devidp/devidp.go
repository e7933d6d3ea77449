// Package devidp is a development identity provider: it holds signing keys,
// serves them as a JWKS with an OIDC discovery document, and mints access
// tokens with whatever acr and auth_time a test or the playground asks for.
// It is for `stepup-authz dev` and tests only; it authenticates nobody.
package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Key is one signing key the IdP may publish.
type Key struct {
	ID      string
	Alg     string // RS256, ES256, EdDSA, ...
	Private crypto.Signer
}

// NewKey generates a key for alg.
func NewKey(id, alg string) (*Key, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("devidp: unsupported alg %q", alg)
	}
	if err != nil {
		return nil, err
	}
	return &Key{ID: id, Alg: alg, Private: priv}, nil
}

// IdP is a development identity provider.
type IdP struct {
	Issuer   string
	Audience string

	mu            sync.RWMutex
	keys          []*Key // published, in order
	signing       *Key
	jwksHits      atomic.Int64
	discoveryHits atomic.Int64
	jwksFault     atomic.Value // func(w http.ResponseWriter) bool
	jwksURI       atomic.Value // string: the discovery document's jwks_uri; "" means the default
	now           func() time.Time
	// references: opaque tokens, lightweight tokens' claims, revocations
	// (introspection.go); made on first use.
	refsOnce   sync.Once
	references *references
}

// New returns an IdP with one RS256, one ES256 and one EdDSA key; RS256 signs
// by default. Issuer is set by the caller (usually the URL it serves on).
func New(audience string) (*IdP, error) {
	idp := &IdP{Audience: audience, now: time.Now}
	for _, spec := range [][2]string{{"rs-1", "RS256"}, {"es-1", "ES256"}, {"ed-1", "EdDSA"}} {
		k, err := NewKey(spec[0], spec[1])
		if err != nil {
			return nil, err
		}
		idp.keys = append(idp.keys, k)
	}
	idp.signing = idp.keys[0]
	return idp, nil
}

// SetNow overrides the clock used for iat and default auth_time.
func (i *IdP) SetNow(now func() time.Time) { i.now = now }

// Keys returns the published keys.
func (i *IdP) Keys() []*Key {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return append([]*Key(nil), i.keys...)
}

// Key returns the published key with id, or nil.
func (i *IdP) Key(id string) *Key {
	i.mu.RLock()
	defer i.mu.RUnlock()
	for _, k := range i.keys {
		if k.ID == id {
			return k
		}
	}
	return nil
}

// SetKeys replaces the published keys (rotation, revocation); the first key signs.
func (i *IdP) SetKeys(keys ...*Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = keys
	if len(keys) > 0 {
		i.signing = keys[0]
	}
}

// JWKSHits counts JWKS requests served, so tests can bound refetching.
func (i *IdP) JWKSHits() int64 { return i.jwksHits.Load() }

// DiscoveryHits counts discovery document requests served.
func (i *IdP) DiscoveryHits() int64 { return i.discoveryHits.Load() }

// SetJWKSURI changes the jwks_uri the discovery document names (a key rotation that
// moves the set, e.g. to another IdP's /jwks.json); "" restores Issuer + "/jwks.json".
func (i *IdP) SetJWKSURI(uri string) { i.jwksURI.Store(uri) }

// SetJWKSFault makes the JWKS endpoint misbehave: f writes its own reply and
// returns true, or returns false to serve normally. nil clears it.
func (i *IdP) SetJWKSFault(f func(w http.ResponseWriter) bool) {
	i.jwksFault.Store(faultFunc(f))
}

type faultFunc func(w http.ResponseWriter) bool

// JWKS returns the public key set as JSON.
func (i *IdP) JWKS() ([]byte, error) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, k := range i.keys {
		jwk, err := jwkset.NewJWKFromKey(k.Private.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.ID, ALG: jwkset.ALG(k.Alg), USE: jwkset.UseSig},
		})
		if err != nil {
			return nil, fmt.Errorf("devidp: key %s: %w", k.ID, err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	return json.Marshal(set)
}

// Claims is a token's payload.
type Claims = jwt.MapClaims

// Mint signs claims with the signing key. Missing iss, aud, iat and exp are
// filled in (exp: 10 minutes after iat).
func (i *IdP) Mint(c Claims) (string, error) {
	i.mu.RLock()
	k := i.signing
	i.mu.RUnlock()
	return i.MintWith(k, c)
}

// MintWith signs claims with key k, whether or not it is published.
func (i *IdP) MintWith(k *Key, c Claims) (string, error) {
	now := i.now()
	out := Claims{"iss": i.Issuer, "aud": i.Audience, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	for name, v := range c {
		if v == nil {
			delete(out, name) // nil removes a default claim
			continue
		}
		out[name] = v
	}
	t := jwt.NewWithClaims(jwt.GetSigningMethod(k.Alg), out)
	t.Header["kid"] = k.ID
	return t.SignedString(k.Private)
}

// UserToken mints a human token for sub at acr, authenticated age ago.
func (i *IdP) UserToken(sub, acr string, age time.Duration) (string, error) {
	return i.Mint(Claims{"sub": sub, "acr": acr, "auth_time": i.now().Add(-age).Unix()})
}

// Handler serves discovery, the JWKS and a token endpoint:
//
//	GET  /.well-known/openid-configuration
//	GET  /jwks.json
//	POST /token  (form: sub, acr, auth_age_seconds, scope, client_id, dpop_jkt, x5t_s256, and
//	              format: jwt (default), opaque or lightweight; optional DPoP proof header,
//	              RFC 9449 §5, binds the token to its key) -> {"access_token": ..., "token_type": ...}
//	POST /introspect (RFC 7662, client IntrospectionClientID)
//
// A token whose client_id equals its sub is a machine token: it carries
// auth_time only when auth_age_seconds is given (and acr only when acr is).
func (i *IdP) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		i.discoveryHits.Add(1)
		jwksURI, _ := i.jwksURI.Load().(string)
		if jwksURI == "" {
			jwksURI = i.Issuer + "/jwks.json"
		}
		writeJSON(w, map[string]any{
			"issuer":                 i.Issuer,
			"jwks_uri":               jwksURI,
			"token_endpoint":         i.Issuer + "/token",
			"introspection_endpoint": i.Issuer + "/introspect",
			"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
			"acr_values_supported":                          []string{"aal1", "aal2", "aal3"},
			"id_token_signing_alg_values_supported":         []string{"RS256", "ES256", "EdDSA"},
			"dpop_signing_alg_values_supported":             tokenProofAlgorithms(), // RFC 9449 §5.1
		})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		i.jwksHits.Add(1)
		if f, _ := i.jwksFault.Load().(faultFunc); f != nil && f(w) {
			return
		}
		b, err := i.JWKS()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /introspect", i.introspect)
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c := Claims{"sub": r.Form.Get("sub")}
		if c["sub"] == "" {
			c["sub"] = "user-1"
		}
		if acr := r.Form.Get("acr"); acr != "" {
			c["acr"] = acr
		}
		// A machine token (RFC 9068: sub equals client_id) stands for no
		// interactive sign-in, so it gets no auth_time unless one is asked for.
		machine := r.Form.Get("client_id") != "" && r.Form.Get("client_id") == c["sub"]
		if !machine || r.Form.Has("auth_age_seconds") {
			age, _ := strconv.Atoi(r.Form.Get("auth_age_seconds"))
			c["auth_time"] = i.now().Add(-time.Duration(age) * time.Second).Unix()
		}
		if s := strings.TrimSpace(r.Form.Get("scope")); s != "" {
			c["scope"] = s
		}
		if id := r.Form.Get("client_id"); id != "" {
			c["client_id"] = id
		}
		// Sender-constrained tokens: cnf.jkt binds the token to a DPoP key (RFC 9449
		// §6.1), cnf["x5t#S256"] to a client certificate (RFC 8705 §3.1).
		tokenType := "Bearer"
		cnf := map[string]any{}
		jkt := r.Form.Get("dpop_jkt")
		// RFC 9449 §5: a DPoP proof on the token request binds the token to its key.
		switch proofJKT, err := i.tokenProofJKT(r); {
		case errors.Is(err, errNoProof):
		case err != nil:
			writeOAuthError(w, "invalid_dpop_proof", "DPoP proof: "+err.Error())
			return
		case jkt != "" && jkt != proofJKT:
			writeOAuthError(w, "invalid_dpop_proof", "dpop_jkt is not the thumbprint of the DPoP proof's key")
			return
		default:
			jkt = proofJKT
		}
		if jkt != "" {
			cnf["jkt"] = jkt
			tokenType = "DPoP"
		}
		if x5t := r.Form.Get("x5t_s256"); x5t != "" {
			cnf["x5t#S256"] = x5t
		}
		if len(cnf) > 0 {
			c["cnf"] = cnf
		}
		mint := i.Mint
		switch r.Form.Get("format") {
		case "", "jwt":
		case "opaque":
			mint = i.MintOpaque
		case "lightweight":
			mint = i.MintLightweight
		default:
			http.Error(w, "format: not one of jwt, opaque, lightweight", http.StatusBadRequest)
			return
		}
		tok, err := mint(c)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"access_token": tok, "token_type": tokenType, "expires_in": 600})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
