package token

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// DPoP proofs (RFC 9449). A proof is a JWS its client signs with the private key
// of the public key it carries in its own header; this file checks every rule of
// RFC 9449 §4.3 that needs nothing but the proof and the request. What needs
// state (replay of a jti, server nonces) and the binding of the access token to
// the proof's key (cnf.jkt) are the caller's next steps: see Proof.Replay and
// Nonces.

// MaxProofBytes is the longest DPoP header value read (CONTRACT.md): a proof
// carries one public key and a handful of claims, and 8 KiB holds an RSA-4096
// jwk with room to spare.
const MaxProofBytes = 8192

// Detail values of *ProofError, each naming the RFC 9449 §4.3 rule that failed.
const (
	ProofMissing      = "proof_missing"       // no DPoP header
	ProofMultiple     = "proof_multiple"      // two DPoP headers (or one holding a list)
	ProofTooLarge     = "proof_too_large"     // over MaxProofBytes
	ProofMalformed    = "proof_malformed"     // not a compact JWS of JSON objects
	ProofTyp          = "proof_typ"           // typ is not dpop+jwt
	ProofAlg          = "proof_alg"           // alg missing, none, symmetric or not in dpop.algorithms
	ProofCrit         = "proof_crit"          // a crit or b64 header we do not understand
	ProofJWKMissing   = "proof_jwk_missing"   // no jwk header
	ProofJWKPrivate   = "proof_jwk_private"   // jwk holds private key members
	ProofJWKInvalid   = "proof_jwk_invalid"   // jwk is not a usable public key for alg
	ProofBadSignature = "proof_bad_signature" // the signature does not verify with jwk
	ProofClaims       = "proof_claims"        // jti, htm, htu, iat missing or of the wrong type
	ProofHTM          = "proof_htm"           // htm is not the request method
	ProofHTU          = "proof_htu"           // htu is not the request URL
	ProofIATFuture    = "proof_iat_future"    // iat later than now + clock_skew
	ProofIATStale     = "proof_iat_stale"     // iat earlier than now - proof_max_age - clock_skew
	ProofATHMissing   = "proof_ath_missing"   // no ath, but the proof comes with an access token
	ProofATHMismatch  = "proof_ath_mismatch"  // ath is not base64url(SHA-256(access token))
	ProofReplayed     = "proof_replayed"      // this jti was accepted before
	ProofNonceMissing = "nonce_missing"       // nonces are on and the proof has none
	ProofNonceInvalid = "nonce_invalid"       // the nonce is not one of ours, or too old
)

// ProofError is an invalid DPoP proof: 401 invalid_dpop_proof (or, for the two
// nonce details, use_dpop_nonce). Detail is one of the Proof* constants.
type ProofError struct {
	Detail string
	Err    error
}

func (e *ProofError) Error() string {
	if e.Err == nil {
		return "invalid DPoP proof: " + e.Detail
	}
	return "invalid DPoP proof: " + e.Detail + ": " + e.Err.Error()
}

func (e *ProofError) Unwrap() error { return e.Err }

// NonceRequired reports whether the error asks the client to retry with a
// fresh server nonce (RFC 9449 §8: use_dpop_nonce) rather than a new proof.
func (e *ProofError) NonceRequired() bool {
	return e.Detail == ProofNonceMissing || e.Detail == ProofNonceInvalid
}

func proofErr(detail, format string, args ...any) *ProofError {
	return &ProofError{Detail: detail, Err: fmt.Errorf(format, args...)}
}

// Proof is a DPoP proof whose signature verified and whose claims have their
// types. It is not yet judged against a request: see ProofVerifier.Verify.
type Proof struct {
	Alg string
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof's jwk, base64url
	// without padding: what an access token's cnf.jkt names.
	JKT   string
	JTI   string
	HTM   string
	HTU   string
	IAT   time.Time
	ATH   string
	Nonce string
	// HasATH and HasNonce tell an absent claim from an empty one.
	HasATH, HasNonce bool
}

// ReplayKey is what a replay store remembers for this proof: the jti scoped to
// the key that signed it, so that no client can use up another's jti values.
func (p *Proof) ReplayKey() [32]byte {
	h := sha256.New()
	h.Write([]byte(p.JKT))
	h.Write([]byte{0})
	h.Write([]byte(p.JTI))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// algEd25519 is RFC 9864's fully-specified JWS algorithm for Ed25519.
const algEd25519 = "Ed25519"

// ProofOptions configure a ProofVerifier.
type ProofOptions struct {
	// Algorithms are the accepted proof algorithms (dpop.algorithms); HS* and
	// none are refused even when listed. EdDSA accepts Ed25519 (RFC 9864) too.
	Algorithms []string
	// MaxAge is proof_max_age: how far in the past iat may be (plus ClockSkew).
	MaxAge time.Duration
	// ClockSkew is the leeway in both directions.
	ClockSkew time.Duration
	// Nonces, when set, requires a current server nonce in every proof.
	Nonces *Nonces
}

// ProofVerifier checks DPoP proofs for one configuration, and is safe for
// concurrent use. Its only changing state is the bounded memory of proof
// headers it accepted (proofHeaders).
type ProofVerifier struct {
	methods map[string]jwt.SigningMethod
	algs    []string
	maxAge  time.Duration
	skew    time.Duration
	nonces  *Nonces
	headers *proofHeaders
}

// NewProofVerifier checks opts and returns a verifier.
func NewProofVerifier(opts ProofOptions) (*ProofVerifier, error) {
	if len(opts.Algorithms) == 0 {
		return nil, errors.New("dpop: no proof algorithms")
	}
	if opts.MaxAge <= 0 || opts.ClockSkew < 0 {
		return nil, fmt.Errorf("dpop: proof max age %v and clock skew %v must be positive", opts.MaxAge, opts.ClockSkew)
	}
	v := &ProofVerifier{methods: map[string]jwt.SigningMethod{}, maxAge: opts.MaxAge, skew: opts.ClockSkew, nonces: opts.Nonces, headers: &proofHeaders{}}
	for _, a := range opts.Algorithms {
		if !slices.Contains(DefaultAlgorithms(), a) {
			return nil, fmt.Errorf("dpop: algorithm %q is not an asymmetric JWS algorithm (one of %s)", a, strings.Join(DefaultAlgorithms(), " "))
		}
		v.methods[a] = jwt.GetSigningMethod(a)
		v.algs = append(v.algs, a)
		if a == "EdDSA" {
			// RFC 9864's fully-specified name for EdDSA over Ed25519, the only
			// curve EdDSA is accepted with; oauth4webapi and jose sign with it.
			v.methods[algEd25519] = v.methods[a]
		}
	}
	return v, nil
}

// Algorithms returns the accepted algorithms in config order (the algs
// parameter of DPoP challenges, RFC 9449 §7.1).
func (v *ProofVerifier) Algorithms() []string { return v.algs }

// Window is how long a proof can be accepted from its iat: MaxAge plus the
// clock skew on both sides. A replay store that remembers a jti this long
// after first use outlives every clock that could still accept it.
func (v *ProofVerifier) Window() time.Duration { return v.maxAge + 2*v.skew }

// ProofRequest is what a proof is judged against.
type ProofRequest struct {
	// Method is the request's HTTP method (:method).
	Method string
	// URL is the request's URL as RequestURL builds it (normalised, no query).
	URL string
	// AccessToken is the token the proof was sent with.
	AccessToken string
}

// Verify checks the DPoP header values of a request against req at now, in
// the order of RFC 9449 §4.3: one header, a well-formed JWS, typ, alg, jwk
// public and verifying the signature, claims present and typed, htm, htu,
// iat, ath, then the server nonce. Any failure is a *ProofError.
func (v *ProofVerifier) Verify(values []string, req ProofRequest, now time.Time) (*Proof, error) {
	raw, err := singleProof(values)
	if err != nil {
		return nil, err
	}
	p, err := v.parse(raw)
	if err != nil {
		return nil, err
	}
	if p.HTM != req.Method {
		// RFC 9110 §9.1: methods are case-sensitive.
		return nil, proofErr(ProofHTM, "htm %q is not the request method %q", p.HTM, req.Method)
	}
	htu, err := NormalizeHTU(p.HTU)
	if err != nil {
		return nil, proofErr(ProofHTU, "htu %q: %v", p.HTU, err)
	}
	if htu != req.URL {
		return nil, proofErr(ProofHTU, "htu %q is not the request URL %q", htu, req.URL)
	}
	switch {
	case p.IAT.After(now.Add(v.skew)):
		return nil, proofErr(ProofIATFuture, "iat is %s in the future (clock_skew %s)", p.IAT.Sub(now).Round(time.Second), v.skew)
	case p.IAT.Before(now.Add(-v.maxAge - v.skew)):
		return nil, proofErr(ProofIATStale, "iat is %s old (proof_max_age %s + clock_skew %s)", now.Sub(p.IAT).Round(time.Second), v.maxAge, v.skew)
	}
	if !p.HasATH {
		return nil, proofErr(ProofATHMissing, "proof sent with an access token has no ath")
	}
	if want := AccessTokenHash(req.AccessToken); subtle.ConstantTimeCompare([]byte(p.ATH), []byte(want)) != 1 {
		return nil, proofErr(ProofATHMismatch, "ath is not the hash of the access token")
	}
	if v.nonces != nil {
		switch {
		case !p.HasNonce:
			return nil, proofErr(ProofNonceMissing, "server nonces are required")
		case !v.nonces.Valid(p.Nonce, now):
			return nil, proofErr(ProofNonceInvalid, "the nonce is not current")
		}
	}
	return p, nil
}

// singleProof applies "exactly one DPoP header": Envoy joins repeated headers
// with a comma, and a compact JWS has none, so a comma means two.
func singleProof(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", proofErr(ProofMissing, "no DPoP header")
	case 1:
	default:
		return "", proofErr(ProofMultiple, "%d DPoP headers", len(values))
	}
	raw := values[0]
	if len(raw) > MaxProofBytes {
		return "", proofErr(ProofTooLarge, "DPoP header is %d bytes, limit %d", len(raw), MaxProofBytes)
	}
	if strings.IndexByte(raw, ',') >= 0 {
		return "", proofErr(ProofMultiple, "DPoP header holds a list")
	}
	raw = strings.Trim(raw, " \t")
	if raw == "" {
		return "", proofErr(ProofMissing, "empty DPoP header")
	}
	return raw, nil
}

// ParseProof checks everything about a single proof that needs no request:
// structure, typ, alg, jwk, signature and claim types. Verify calls it; it is
// exported for the fuzz target and for tools.
func (v *ProofVerifier) ParseProof(raw string) (*Proof, error) {
	if len(raw) > MaxProofBytes {
		return nil, proofErr(ProofTooLarge, "proof is %d bytes, limit %d", len(raw), MaxProofBytes)
	}
	return v.parse(raw)
}

func (v *ProofVerifier) parse(raw string) (*Proof, error) {
	h64, rest, ok1 := strings.Cut(raw, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s64, '.') >= 0 || h64 == "" || p64 == "" || s64 == "" {
		return nil, proofErr(ProofMalformed, "not a compact JWS (want three non-empty dot-separated parts)")
	}
	// A client signs every proof with the same key and so sends the same header
	// (typ, alg, jwk) each time: what the header says is remembered by its exact
	// text. The signature below is checked on every proof all the same.
	sum := hashToken(h64)
	h, ok := v.headers.get(&sum)
	if !ok {
		var err error
		if h, err = v.parseHeader(h64); err != nil {
			return nil, err
		}
		v.headers.put(&sum, h)
	}
	p := &Proof{Alg: h.alg, JKT: h.jkt}

	sig, err := b64.DecodeString(s64)
	if err != nil {
		return nil, proofErr(ProofMalformed, "signature: %v", err)
	}
	if err := h.method.Verify(raw[:len(h64)+1+len(p64)], sig, h.key); err != nil {
		return nil, proofErr(ProofBadSignature, "signature does not verify with the jwk: %v", err)
	}

	pb, err := b64.DecodeString(p64)
	if err != nil {
		return nil, proofErr(ProofMalformed, "payload: %v", err)
	}
	pm, err := decodeObject(pb, "payload")
	if err != nil {
		return nil, proofErr(ProofMalformed, "payload: %v", err)
	}
	for _, c := range []struct {
		name string
		dst  *string
		has  *bool
	}{
		{"jti", &p.JTI, nil}, {"htm", &p.HTM, nil}, {"htu", &p.HTU, nil},
		{"ath", &p.ATH, &p.HasATH}, {"nonce", &p.Nonce, &p.HasNonce},
	} {
		s, present, err := stringMember(pm, c.name, "claim")
		if err != nil {
			return nil, proofErr(ProofClaims, "%v", err)
		}
		if c.has == nil && (!present || s == "") {
			return nil, proofErr(ProofClaims, "claim %q is missing or empty", c.name)
		}
		*c.dst = s
		if c.has != nil {
			*c.has = present
		}
	}
	iat, hasIAT, err := numericDateMember(pm, "iat")
	switch {
	case err != nil:
		return nil, proofErr(ProofClaims, "%v", err)
	case !hasIAT:
		return nil, proofErr(ProofClaims, "claim \"iat\" is missing")
	}
	p.IAT = iat
	return p, nil
}

// proofHeader is what an accepted proof header says: the algorithm, its
// verification method, the public key of the jwk and its thumbprint.
type proofHeader struct {
	alg    string
	method jwt.SigningMethod
	key    any
	jkt    string
}

// parseHeader checks a proof's header (base64url h64) in the order of RFC 9449
// §4.3: a JSON object, typ, alg, no crit or b64, a public jwk fitting alg.
func (v *ProofVerifier) parseHeader(h64 string) (*proofHeader, error) {
	hb, err := b64.DecodeString(h64)
	if err != nil {
		return nil, proofErr(ProofMalformed, "header: %v", err)
	}
	hm, err := decodeObject(hb, "header")
	if err != nil {
		return nil, proofErr(ProofMalformed, "header: %v", err)
	}
	typ, _, err := stringMember(hm, "typ", "header")
	if err != nil {
		return nil, proofErr(ProofMalformed, "%v", err)
	}
	// RFC 7515 §4.1.9: typ compares case-insensitively, "application/" optional.
	if !strings.EqualFold(strings.TrimPrefix(strings.ToLower(typ), "application/"), "dpop+jwt") {
		return nil, proofErr(ProofTyp, "typ %q is not dpop+jwt", typ)
	}
	alg, hasAlg, err := stringMember(hm, "alg", "header")
	switch {
	case err != nil:
		return nil, proofErr(ProofMalformed, "%v", err)
	case !hasAlg:
		return nil, proofErr(ProofAlg, "no alg")
	}
	method, allowed := v.methods[alg]
	if !allowed {
		return nil, proofErr(ProofAlg, "alg %q is not one of dpop.algorithms %s", alg, strings.Join(v.algs, " "))
	}
	// RFC 7515 §4.1.11: a crit extension we do not understand must be refused;
	// b64 (RFC 7797) would change what is signed.
	if _, ok := hm["crit"]; ok {
		return nil, proofErr(ProofCrit, "header has crit; no extensions are supported")
	}
	if _, ok := hm["b64"]; ok {
		return nil, proofErr(ProofCrit, "header has b64; unencoded payloads are not supported")
	}
	rawJWK, ok := hm["jwk"]
	if !ok {
		return nil, proofErr(ProofJWKMissing, "no jwk header")
	}
	keyAlg := alg
	if alg == algEd25519 {
		keyAlg = "EdDSA"
	}
	key, jkt, err := proofKey(rawJWK, keyAlg)
	if err != nil {
		return nil, err
	}
	return &proofHeader{alg: alg, method: method, key: key, jkt: jkt}, nil
}

// privateMembers are the JWK members that only a private or symmetric key has
// (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// proofKey parses the proof's jwk header with go-jose and returns the public
// key for alg's verification and its RFC 7638 thumbprint. The key must match
// alg: the curve of ES256/384/512, Ed25519 for EdDSA, RSA of at least 2048
// bits for RS*/PS*.
func proofKey(raw json.RawMessage, alg string) (any, string, error) {
	members, err := decodeObject(raw, "jwk")
	if err != nil {
		return nil, "", proofErr(ProofJWKInvalid, "jwk is not a JSON object: %v", err)
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return nil, "", proofErr(ProofJWKPrivate, "jwk has the private member %q (RFC 9449 §4.3: a public key only)", m)
		}
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return nil, "", proofErr(ProofJWKInvalid, "jwk: %v", err)
	}
	if !jwk.Valid() || !jwk.IsPublic() {
		return nil, "", proofErr(ProofJWKInvalid, "jwk is not a public key")
	}
	if err := proofKeyFits(jwk.Key, alg); err != nil {
		return nil, "", proofErr(ProofJWKInvalid, "%v", err)
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, "", proofErr(ProofJWKInvalid, "thumbprint: %v", err)
	}
	return jwk.Key, base64.RawURLEncoding.EncodeToString(tp), nil
}

// proofKeyFits applies the issuer keys' rule (keyFitsAlg: the key type and
// curve alg needs) and RFC 7518 §3.3's minimum RSA size.
func proofKeyFits(key any, alg string) error {
	if !keyFitsAlg(key, alg) {
		return fmt.Errorf("a %T key cannot verify %s", key, alg)
	}
	if k, ok := key.(*rsa.PublicKey); ok && k.N.BitLen() < minRSABits {
		return fmt.Errorf("RSA key of %d bits is below %d (RFC 7518 §3.3)", k.N.BitLen(), minRSABits)
	}
	return nil
}

// AccessTokenHash is a proof's ath for token (RFC 9449 §4.2): base64url
// without padding of the SHA-256 of the token's ASCII bytes.
func AccessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
