package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/stepup-authz/stepup-authz/internal/dpopproof"
)

const (
	proofToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
	proofURL   = "https://api.example.com/payout"
)

var proofTestKey = func() *dpopproof.Key {
	k, err := dpopproof.NewKey("ES256")
	if err != nil {
		panic(err)
	}
	return k
}()

func newProofVerifier(t testing.TB, nonces *Nonces) *ProofVerifier {
	t.Helper()
	v, err := NewProofVerifier(ProofOptions{
		Algorithms: []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"},
		MaxAge:     60 * time.Second, ClockSkew: 30 * time.Second, Nonces: nonces,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// jwkJSON is the public JWK of a key, as a proof header carries it.
func jwkJSON(t testing.TB, pub crypto.PublicKey) map[string]any {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// craft signs any header and claims with key under alg (golang-jwt's signing
// methods), for the proofs dpopproof refuses to make.
func craft(t testing.TB, alg string, key any, header, claims map[string]any) string {
	t.Helper()
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	signing := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	sig, err := jwt.GetSigningMethod(alg).Sign(signing, key)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func goodClaims(now time.Time) map[string]any {
	return map[string]any{"jti": "j-1", "htm": "POST", "htu": proofURL, "iat": now.Unix(), "ath": AccessTokenHash(proofToken)}
}

func goodHeader(t testing.TB) map[string]any {
	return map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": jwkJSON(t, proofTestKey.Signer.Public())}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestProofAccepted(t *testing.T) {
	v := newProofVerifier(t, nil)
	req := ProofRequest{Method: "POST", URL: proofURL, AccessToken: proofToken}
	for _, alg := range []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"} {
		t.Run(alg+" proof made by go-jose verifies", func(t *testing.T) {
			k, err := dpopproof.NewKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			proof, err := k.Proof("POST", proofURL, proofToken, "", t0)
			if err != nil {
				t.Fatal(err)
			}
			p, err := v.Verify([]string{proof}, req, t0)
			if err != nil {
				t.Fatal(err)
			}
			if p.JKT != k.Thumbprint() || p.Alg != alg || p.JTI == "" {
				t.Errorf("proof = %+v, want jkt %s", p, k.Thumbprint())
			}
		})
	}
}

// TestProofRules has one denial per rule of RFC 9449 §4.3 (and CONTRACT.md).
func TestProofRules(t *testing.T) {
	now := t0
	v := newProofVerifier(t, nil)
	req := ProofRequest{Method: "POST", URL: proofURL, AccessToken: proofToken}
	k := proofTestKey
	hdr, clm := goodHeader(t), goodClaims(now)
	sign := func(h, c map[string]any) string { return craft(t, "ES256", k.Signer, h, c) }
	good := sign(hdr, clm)

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	other, _ := dpopproof.NewKey("ES256")
	es512, _ := dpopproof.NewKey("ES512")
	es512Proof, _ := es512.Proof("POST", proofURL, proofToken, "", now)
	privJWK := jwkJSON(t, k.Signer)
	hmacKey := []byte("0123456789abcdef0123456789abcdef")
	hs256 := craft(t, "HS256", hmacKey, with(hdr, "alg", "HS256"), clm)
	noneHeader, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": jwkJSON(t, k.Signer.Public())})
	claimsJSON, _ := json.Marshal(clm)
	algNone := base64.RawURLEncoding.EncodeToString(noneHeader) + "." + base64.RawURLEncoding.EncodeToString(claimsJSON) + ".AA"
	parts := strings.Split(good, ".")
	otherSig := strings.Split(sign(hdr, with(clm, "jti", "j-2")), ".")[2]
	dupPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"a","jti":"b","htm":"POST","htu":"` + proofURL + `","iat":1}`))

	cases := []struct {
		name   string
		values []string
		detail string
	}{
		{"a request without a DPoP header has no proof", nil, ProofMissing},
		{"an empty DPoP header has no proof", []string{""}, ProofMissing},
		{"two DPoP headers are refused", []string{good, good}, ProofMultiple},
		{"two DPoP headers joined by Envoy with a comma are refused", []string{good + "," + good}, ProofMultiple},
		{"a proof over 8 KiB is refused before parsing", []string{good + strings.Repeat("A", MaxProofBytes)}, ProofTooLarge},
		{"two parts are not a JWS", []string{parts[0] + "." + parts[1]}, ProofMalformed},
		{"an empty signature is refused", []string{parts[0] + "." + parts[1] + "."}, ProofMalformed},
		{"a header that is not JSON is refused", []string{"bm90IGpzb24." + parts[1] + "." + parts[2]}, ProofMalformed},
		{"typ JWT is not dpop+jwt", []string{sign(with(hdr, "typ", "JWT"), clm)}, ProofTyp},
		{"a proof without typ is refused", []string{sign(with(hdr, "typ", nil), clm)}, ProofTyp},
		{"typ at+jwt (an access token) is not a proof", []string{sign(with(hdr, "typ", "at+jwt"), clm)}, ProofTyp},
		{"alg none is refused", []string{algNone}, ProofAlg},
		{"alg HS256 is refused", []string{hs256}, ProofAlg},
		{"an alg outside dpop.algorithms is refused", []string{es512Proof}, ProofAlg},
		{"a proof without alg is refused", []string{sign(with(hdr, "alg", nil), clm)}, ProofAlg},
		{"a crit header is refused", []string{sign(with(hdr, "crit", []string{"exp"}, "exp", 1), clm)}, ProofCrit},
		{"a proof without jwk is refused", []string{sign(with(hdr, "jwk", nil), clm)}, ProofJWKMissing},
		{"a private key in jwk is refused", []string{sign(with(hdr, "jwk", privJWK), clm)}, ProofJWKPrivate},
		{"a symmetric key in jwk is refused", []string{sign(with(hdr, "jwk", map[string]any{"kty": "oct", "k": "c2VjcmV0"}), clm)}, ProofJWKPrivate},
		{"a jwk on another curve than alg's is refused", []string{craft(t, "ES384", p384, with(hdr, "jwk", jwkJSON(t, p384.Public())), clm)}, ProofJWKInvalid},
		{"an RSA jwk of 1024 bits is refused", []string{craft(t, "RS256", rsa1024, with(hdr, "alg", "RS256", "jwk", jwkJSON(t, rsa1024.Public())), clm)}, ProofJWKInvalid},
		{"a jwk that is not a key is refused", []string{sign(with(hdr, "jwk", map[string]any{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}), clm)}, ProofJWKInvalid},
		{"a signature by another key than jwk's is refused", []string{craft(t, "ES256", other.Signer, hdr, clm)}, ProofBadSignature},
		{"a signature of other claims is refused", []string{parts[0] + "." + parts[1] + "." + otherSig}, ProofBadSignature},
		{"duplicate claim names are refused", []string{sign(hdr, clm)[:0] + craftRaw(t, k.Signer, hdr, dupPayload)}, ProofMalformed},
		{"a proof without jti is refused", []string{sign(hdr, with(clm, "jti", nil))}, ProofClaims},
		{"an empty jti is refused", []string{sign(hdr, with(clm, "jti", ""))}, ProofClaims},
		{"a jti that is not a string is refused", []string{sign(hdr, with(clm, "jti", 7))}, ProofClaims},
		{"a proof without htm is refused", []string{sign(hdr, with(clm, "htm", nil))}, ProofClaims},
		{"a proof without htu is refused", []string{sign(hdr, with(clm, "htu", nil))}, ProofClaims},
		{"a proof without iat is refused", []string{sign(hdr, with(clm, "iat", nil))}, ProofClaims},
		{"an iat that is a string is refused", []string{sign(hdr, with(clm, "iat", "now"))}, ProofClaims},
		{"htm of another method is refused", []string{sign(hdr, with(clm, "htm", "GET"))}, ProofHTM},
		{"htm compares case-sensitively", []string{sign(hdr, with(clm, "htm", "post"))}, ProofHTM},
		{"htu of another path is refused", []string{sign(hdr, with(clm, "htu", "https://api.example.com/other"))}, ProofHTU},
		{"htu of another host is refused", []string{sign(hdr, with(clm, "htu", "https://evil.example.com/payout"))}, ProofHTU},
		{"htu over http for an https request is refused", []string{sign(hdr, with(clm, "htu", "http://api.example.com/payout"))}, ProofHTU},
		{"htu on another port is refused", []string{sign(hdr, with(clm, "htu", "https://api.example.com:8443/payout"))}, ProofHTU},
		{"an htu that is not a URL is refused", []string{sign(hdr, with(clm, "htu", "/payout"))}, ProofHTU},
		{"an iat beyond clock_skew in the future is refused", []string{sign(hdr, with(clm, "iat", now.Add(31*time.Second).Unix()))}, ProofIATFuture},
		{"an iat older than proof_max_age + clock_skew is refused", []string{sign(hdr, with(clm, "iat", now.Add(-91*time.Second).Unix()))}, ProofIATStale},
		{"a proof without ath is refused", []string{sign(hdr, with(clm, "ath", nil))}, ProofATHMissing},
		{"an ath of another token is refused", []string{sign(hdr, with(clm, "ath", AccessTokenHash("another-token")))}, ProofATHMismatch},
		{"an ath that is the token itself is refused", []string{sign(hdr, with(clm, "ath", proofToken))}, ProofATHMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.values, req, now)
			var pe *ProofError
			if !errors.As(err, &pe) {
				t.Fatalf("Verify = %v, want a ProofError %s", err, tc.detail)
			}
			if pe.Detail != tc.detail {
				t.Errorf("detail = %s (%v), want %s", pe.Detail, err, tc.detail)
			}
			if pe.NonceRequired() {
				t.Errorf("%s asks for a nonce", pe.Detail)
			}
		})
	}

	accepted := []struct {
		name  string
		proof string
	}{
		{"the well-formed proof", good},
		{"typ compares case-insensitively, application/ optional", sign(with(hdr, "typ", "application/DPoP+JWT"), clm)},
		{"htu with a query and fragment is compared without them", sign(hdr, with(clm, "htu", proofURL+"?x=1#f"))},
		{"htu with an upper-case scheme and host", sign(hdr, with(clm, "htu", "HTTPS://API.Example.COM/payout"))},
		{"htu with the default port", sign(hdr, with(clm, "htu", "https://api.example.com:443/payout"))},
		{"htu with a dot segment and an escaped unreserved character", sign(hdr, with(clm, "htu", "https://api.example.com/x/../p%61yout"))},
		{"an iat within clock_skew in the future", sign(hdr, with(clm, "iat", now.Add(30*time.Second).Unix()))},
		{"an iat exactly proof_max_age + clock_skew old", sign(hdr, with(clm, "iat", now.Add(-90*time.Second).Unix()))},
		{"surrounding blanks in the header value", " " + good + " "},
	}
	for _, tc := range accepted {
		t.Run("accepted: "+tc.name, func(t *testing.T) {
			if _, err := v.Verify([]string{tc.proof}, req, now); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// craftRaw signs a header with an already encoded payload.
func craftRaw(t testing.TB, key crypto.Signer, header map[string]any, payload64 string) string {
	t.Helper()
	hb, _ := json.Marshal(header)
	signing := base64.RawURLEncoding.EncodeToString(hb) + "." + payload64
	sig, err := jwt.GetSigningMethod("ES256").Sign(signing, key)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestProofNonces(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	nonces, err := NewNonces(key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v := newProofVerifier(t, nonces)
	req := ProofRequest{Method: "POST", URL: proofURL, AccessToken: proofToken}
	now := t0
	current := nonces.Issue(now)
	previous := nonces.Issue(now.Add(-time.Minute))
	tooOld := nonces.Issue(now.Add(-2 * time.Minute))
	next := nonces.Issue(now.Add(time.Minute))
	otherKey, _ := NewNonces([]byte(strings.Repeat("o", 32)), time.Minute)
	forged := otherKey.Issue(now)

	for _, tc := range []struct {
		name, nonce, detail string
	}{
		{"a proof without a nonce is asked for one", "", ProofNonceMissing},
		{"a nonce two steps old is refused", tooOld, ProofNonceInvalid},
		{"a nonce of a step not yet begun is refused", next, ProofNonceInvalid},
		{"a nonce made with another key is refused", forged, ProofNonceInvalid},
		{"a made-up nonce is refused", "not-a-nonce", ProofNonceInvalid},
		{"the current nonce is accepted", current, ""},
		{"the previous step's nonce is accepted", previous, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proof, err := proofTestKey.Proof("POST", proofURL, proofToken, tc.nonce, now)
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify([]string{proof}, req, now)
			if tc.detail == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var pe *ProofError
			if !errors.As(err, &pe) || pe.Detail != tc.detail || !pe.NonceRequired() {
				t.Fatalf("Verify = %v, want %s asking for a nonce", err, tc.detail)
			}
		})
	}
	start := now.Truncate(time.Minute)
	if current == previous || nonces.Issue(start) != nonces.Issue(start.Add(59*time.Second)) {
		t.Error("a nonce must change with the step and stay the same within one")
	}
}

// TestNonceFormat pins the nonce to HMAC-SHA-256 over the step under the shared
// key, so replicas built from other versions agree on it.
func TestNonceFormat(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	n, _ := NewNonces(key, time.Minute)
	got := n.Issue(time.Unix(600, 0))
	m := hmac.New(sha256.New, key)
	m.Write([]byte("stepup-authz dpop nonce v1\x00"))
	m.Write([]byte{0, 0, 0, 0, 0, 0, 0, 10})
	want := base64.RawURLEncoding.EncodeToString(append([]byte{0, 0, 0, 0, 0, 0, 0, 10}, m.Sum(nil)[:16]...))
	if got != want {
		t.Errorf("nonce = %s, want %s", got, want)
	}
	if _, err := NewNonces([]byte("short"), time.Minute); err == nil {
		t.Error("a nonce key under 32 bytes was accepted")
	}
}

func TestProofReplayKey(t *testing.T) {
	a := &Proof{JKT: "k1", JTI: "j"}
	b := &Proof{JKT: "k2", JTI: "j"}
	c := &Proof{JKT: "k1", JTI: "j"}
	if a.ReplayKey() == b.ReplayKey() {
		t.Error("the same jti under two keys shares a replay key: one client could use up another's jti")
	}
	if a.ReplayKey() != c.ReplayKey() {
		t.Error("the replay key is not stable")
	}
}

func TestNewProofVerifierRefuses(t *testing.T) {
	for _, algs := range [][]string{nil, {"HS256"}, {"none"}, {"ES256", "es384"}} {
		if _, err := NewProofVerifier(ProofOptions{Algorithms: algs, MaxAge: time.Minute}); err == nil {
			t.Errorf("algorithms %q accepted", algs)
		}
	}
}

// TestProofEd25519Alg: RFC 9864 names EdDSA over Ed25519 "Ed25519", which is
// what oauth4webapi signs proofs with; EdDSA in dpop.algorithms accepts it.
func TestProofEd25519Alg(t *testing.T) {
	k, _ := dpopproof.NewKey("EdDSA")
	hdr := map[string]any{"typ": "dpop+jwt", "alg": "Ed25519", "jwk": jwkJSON(t, k.Signer.Public())}
	proof := craft(t, "EdDSA", k.Signer, hdr, goodClaims(t0))
	req := ProofRequest{Method: "POST", URL: proofURL, AccessToken: proofToken}
	p, err := newProofVerifier(t, nil).Verify([]string{proof}, req, t0)
	if err != nil || p.JKT != k.Thumbprint() || p.Alg != "Ed25519" {
		t.Fatalf("Verify = %+v, %v", p, err)
	}
	onlyES, _ := NewProofVerifier(ProofOptions{Algorithms: []string{"ES256"}, MaxAge: time.Minute})
	if _, err := onlyES.Verify([]string{proof}, req, t0); err == nil {
		t.Error("Ed25519 accepted without EdDSA in dpop.algorithms")
	}
	p256 := craft(t, "ES256", proofTestKey.Signer, with(goodHeader(t), "alg", "Ed25519"), goodClaims(t0))
	if _, err := newProofVerifier(t, nil).Verify([]string{p256}, req, t0); err == nil {
		t.Error("alg Ed25519 with a P-256 jwk accepted")
	}
}
