package token

import (
	"crypto"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/stepup-authz/stepup-authz/internal/dpopproof"
)

// BenchmarkProof breaks a DPoP proof's cost down: the whole Verify of a proof
// from a key seen before (its header remembered: signature, claims, htu, iat,
// ath) and from a new key (header parsed, jwk thumbprinted), the jwk parse and
// RFC 7638 thumbprint alone, and the bare signature verification alone, for
// ES256 and EdDSA proofs.
//
//	go test -run='^$' -bench=Proof -benchmem ./extauthz/token
func BenchmarkProof(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		k, err := dpopproof.NewKey(alg)
		if err != nil {
			b.Fatal(err)
		}
		proof, err := k.Proof("GET", proofURL, proofToken, "", t0)
		if err != nil {
			b.Fatal(err)
		}
		v := newProofVerifier(b, nil)
		req := ProofRequest{Method: "GET", URL: proofURL, AccessToken: proofToken}
		b.Run("alg="+alg+"/part=verify", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify([]string{proof}, req, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
		// A client's first proof (or one from a key not seen before): its
		// header is parsed and its jwk thumbprinted, then remembered.
		b.Run("alg="+alg+"/part=verify_new_key", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				fresh := newProofVerifier(b, nil)
				b.StartTimer()
				if _, err := fresh.Verify([]string{proof}, req, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
		rawJWK, _ := json.Marshal(jose.JSONWebKey{Key: k.Signer.Public()})
		b.Run("alg="+alg+"/part=jwk_thumbprint", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := proofKey(rawJWK, alg); err != nil {
					b.Fatal(err)
				}
			}
		})
		parts := strings.Split(proof, ".")
		sig, _ := b64.DecodeString(parts[2])
		m := jwt.GetSigningMethod(alg)
		var pub crypto.PublicKey = k.Signer.Public()
		b.Run("alg="+alg+"/part=signature", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Verify(parts[0]+"."+parts[1], sig, pub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
