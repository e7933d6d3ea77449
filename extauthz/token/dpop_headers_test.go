package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestProofHeaderMemory: a remembered header spares the jwk parse, never the
// signature, and a refused header is never remembered.
func TestProofHeaderMemory(t *testing.T) {
	now := time.Now()
	v := newProofVerifier(t, nil)
	req := ProofRequest{Method: "POST", URL: proofURL, AccessToken: proofToken}
	hdr := goodHeader(t)
	good := craft(t, "ES256", proofTestKey.Signer, hdr, goodClaims(now))
	if _, err := v.Verify([]string{good}, req, now); err != nil {
		t.Fatalf("good proof: %v", err)
	}
	if n := v.headers.len(); n != 1 {
		t.Fatalf("after one accepted proof %d headers are remembered, want 1", n)
	}
	h64 := good[:strings.IndexByte(good, '.')]

	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	payload := func(claims map[string]any) string {
		p := craft(t, "ES256", proofTestKey.Signer, hdr, claims)
		return strings.Split(p, ".")[1]
	}
	goodSig := strings.Split(good, ".")[2]
	for _, tc := range []struct {
		name  string
		proof string
	}{
		// Someone who saw the victim's proof copies its header (the victim's
		// jwk, so the victim's thumbprint) and signs new claims with their own key.
		{"the remembered header with the victim's jwk, signed by another key", craftRaw(t, attacker, hdr, payload(with(goodClaims(now), "jti", "j-2")))},
		// The victim's signature over other claims.
		{"the remembered header and signature over changed claims", h64 + "." + payload(with(goodClaims(now), "jti", "j-3")) + "." + goodSig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.HasPrefix(tc.proof, h64+".") {
				t.Fatal("the proof does not reuse the remembered header")
			}
			_, err := v.Verify([]string{tc.proof}, req, now)
			var pe *ProofError
			if !errors.As(err, &pe) || pe.Detail != ProofBadSignature {
				t.Fatalf("got %v, want %s", err, ProofBadSignature)
			}
		})
	}

	t.Run("a refused header is refused every time and not remembered", func(t *testing.T) {
		bad := craft(t, "ES256", proofTestKey.Signer, with(hdr, "typ", "JWT"), goodClaims(now))
		for range 2 {
			_, err := v.Verify([]string{bad}, req, now)
			var pe *ProofError
			if !errors.As(err, &pe) || pe.Detail != ProofTyp {
				t.Fatalf("got %v, want %s", err, ProofTyp)
			}
		}
		if n := v.headers.len(); n != 1 {
			t.Fatalf("%d headers remembered after refusals, want 1", n)
		}
	})

	t.Run("another verifier's algorithms judge the same header afresh", func(t *testing.T) {
		other, err := NewProofVerifier(ProofOptions{Algorithms: []string{"EdDSA"}, MaxAge: time.Minute, ClockSkew: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_, err = other.Verify([]string{good}, req, now)
		var pe *ProofError
		if !errors.As(err, &pe) || pe.Detail != ProofAlg {
			t.Fatalf("got %v, want %s", err, ProofAlg)
		}
	})
}

// TestProofHeaderMemoryBound: however many distinct headers arrive, at most
// proofHeaderCacheSize are held.
func TestProofHeaderMemoryBound(t *testing.T) {
	var c proofHeaders
	h := &proofHeader{alg: "ES256"}
	for i := range 3 * proofHeaderCacheSize {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		sum := sha256.Sum256([]byte(base64.RawURLEncoding.EncodeToString(b[:])))
		c.put(&sum, h)
	}
	if n := c.len(); n > proofHeaderCacheSize || n < proofHeaderCacheSize/2 {
		t.Fatalf("%d headers held after %d distinct ones, want at most %d (and most of them)", n, 3*proofHeaderCacheSize, proofHeaderCacheSize)
	}
}
