package token

import (
	"strings"
	"testing"
	"time"
)

// FuzzProof feeds arbitrary DPoP header values to the proof verifier: it must
// never panic, and whatever it accepts must be a complete proof whose claims
// are judged against the request (a proof for another method or URL, or of
// another token, is never accepted).
func FuzzProof(f *testing.F) {
	good, err := proofTestKey.Proof("POST", proofURL, proofToken, "", t0)
	if err != nil {
		f.Fatal(err)
	}
	hdr, clm := goodHeader(f), goodClaims(t0)
	f.Add(good)
	f.Add(craft(f, "ES256", proofTestKey.Signer, hdr, with(clm, "htu", "HTTPS://API.EXAMPLE.COM:443/payout?q")))
	f.Add(craft(f, "ES256", proofTestKey.Signer, with(hdr, "jwk", jwkJSON(f, proofTestKey.Signer)), clm))
	f.Add(craft(f, "ES256", proofTestKey.Signer, with(hdr, "typ", "JWT"), clm))
	f.Add(good + "," + good)
	f.Add("a.b.c")
	f.Add("")
	f.Add(strings.Repeat("A", MaxProofBytes+1))
	v := newProofVerifier(f, nil)
	req := ProofRequest{Method: "POST", URL: proofURL, AccessToken: proofToken}
	f.Fuzz(func(t *testing.T, proof string) {
		p, err := v.Verify([]string{proof}, req, t0)
		if err != nil {
			if _, ok := err.(*ProofError); !ok {
				t.Fatalf("Verify returned %T, not a *ProofError: %v", err, err)
			}
			return
		}
		if len(p.JKT) != 43 || p.JTI == "" || p.HTM != "POST" || !p.HasATH || p.ATH != AccessTokenHash(proofToken) {
			t.Fatalf("accepted an incomplete proof: %+v", p)
		}
		if htu, err := NormalizeHTU(p.HTU); err != nil || htu != proofURL {
			t.Fatalf("accepted htu %q for %s", p.HTU, proofURL)
		}
		if p.IAT.After(t0.Add(30*time.Second)) || p.IAT.Before(t0.Add(-90*time.Second)) {
			t.Fatalf("accepted iat %v at %v", p.IAT, t0)
		}
		other := req
		other.Method = "GET"
		if _, err := v.Verify([]string{proof}, other, t0); err == nil {
			t.Fatal("a proof for POST was accepted for GET")
		}
		other = req
		other.AccessToken = proofToken + "x"
		if _, err := v.Verify([]string{proof}, other, t0); err == nil {
			t.Fatal("a proof was accepted with another access token")
		}
	})
}

// FuzzXFCC feeds arbitrary x-forwarded-client-cert values to the parser: it
// must never panic, and a thumbprint comes only from exactly one element with
// exactly one Cert.
func FuzzXFCC(f *testing.F) {
	f.Add(`By=spiffe://a;Hash=abc;Cert="-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----%0A";Subject="CN=x,O=y"`)
	f.Add(`Cert=a,Cert=b`)
	f.Add(`Subject="a\"b";Cert="x`)
	f.Add(`;;,;`)
	f.Fuzz(func(t *testing.T, h string) {
		tp, err := XFCCCertificateThumbprint(h)
		if err != nil {
			return
		}
		if len(tp) != 43 {
			t.Fatalf("thumbprint %q", tp)
		}
		elems, perr := parseXFCC(h)
		if perr != nil || len(elems) != 1 {
			t.Fatalf("accepted %q with %d elements (%v)", h, len(elems), perr)
		}
	})
}
