// Package dpopproof makes DPoP proofs (RFC 9449 §4) with go-jose, for the dev
// playground, tests and benchmarks: a client's side, which the server never
// runs on a request.
package dpopproof

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Key is a client's DPoP key.
type Key struct {
	Alg    string
	Signer crypto.Signer
	signer jose.Signer
}

// NewKey makes a fresh key for alg: ES256, ES384, ES512, EdDSA, or RS*/PS* (2048 bits).
func NewKey(alg string) (*Key, error) {
	var s crypto.Signer
	var err error
	switch alg {
	case "ES256":
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		s, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		s, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, s, err = ed25519.GenerateKey(rand.Reader)
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		s, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("dpopproof: unsupported alg %q", alg)
	}
	if err != nil {
		return nil, err
	}
	return FromSigner(alg, s)
}

// FromSigner wraps an existing private key.
func FromSigner(alg string, s crypto.Signer) (*Key, error) {
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt")
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: s}, opts)
	if err != nil {
		return nil, err
	}
	return &Key{Alg: alg, Signer: s, signer: js}, nil
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key, base64url:
// the cnf.jkt of tokens bound to this key.
func (k *Key) Thumbprint() string {
	jwk := jose.JSONWebKey{Key: k.Signer.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		panic(err) // every key NewKey makes has a thumbprint
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// Claims are a proof's claims; zero values are left out, except that Proof
// fills JTI and IAT.
type Claims struct {
	JTI   string `json:"jti,omitempty"`
	HTM   string `json:"htm,omitempty"`
	HTU   string `json:"htu,omitempty"`
	IAT   int64  `json:"iat,omitempty"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

// Proof makes a proof for a request with accessToken (none when "") at iat,
// with a random jti.
func (k *Key) Proof(htm, htu, accessToken, nonce string, iat time.Time) (string, error) {
	c := Claims{HTM: htm, HTU: htu, IAT: iat.Unix(), Nonce: nonce}
	if accessToken != "" {
		c.ATH = ATH(accessToken)
	}
	return k.Sign(c)
}

// Sign signs claims as given, filling a missing JTI with a random one.
func (k *Key) Sign(c Claims) (string, error) {
	if c.JTI == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		c.JTI = base64.RawURLEncoding.EncodeToString(b[:])
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// ATH is base64url(SHA-256(token)), a proof's ath.
func ATH(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
