package extauthz_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
	"github.com/stepup-authz/stepup-authz/internal/dpopproof"
	"github.com/stepup-authz/stepup-authz/internal/redistest"
)

// wireDenial is the exact response of a sender-constrained row: status, body,
// WWW-Authenticate (exact, or its start and end when the description is free
// text), whether a DPoP-Nonce comes with it, and the reason.
type wireDenial struct {
	label          string
	status         int32
	body           string
	challenge      string
	prefix, suffix string // when challenge is "": the challenge's start and end
	nonce          bool
	reason         string
}

func (w *wireDenial) check(t *testing.T, resp *authv3.CheckResponse) {
	t.Helper()
	dr := resp.GetDeniedResponse()
	if dr == nil {
		t.Fatalf("allowed, want %s", w.label)
	}
	headers := map[string]string{}
	for _, h := range dr.GetHeaders() {
		headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if got := int32(dr.GetStatus().GetCode()); got != w.status || dr.GetBody() != w.body {
		t.Errorf("denied %d %s, want %d %s", got, dr.GetBody(), w.status, w.body)
	}
	got := headers["www-authenticate"]
	switch {
	case w.challenge != "" && got != w.challenge:
		t.Errorf("WWW-Authenticate = %s\n                      want %s", got, w.challenge)
	case w.challenge == "" && (!strings.HasPrefix(got, w.prefix) || !strings.HasSuffix(got, w.suffix) || strings.ContainsAny(got, "\r\n")):
		t.Errorf("WWW-Authenticate = %s, want %s...%s", got, w.prefix, w.suffix)
	}
	if _, has := headers["dpop-nonce"]; has != w.nonce {
		t.Errorf("DPoP-Nonce present = %v, want %v", has, w.nonce)
	}
	if headers["content-type"] != "application/json" || headers["cache-control"] != "no-store" {
		t.Errorf("headers %v lack JSON content-type and no-store", headers)
	}
	expectReason(t, resp, "deny", w.reason)
}

const dpopAlgs = `algs="ES256 ES384 EdDSA PS256 RS256"`

func badProof(detail string) expectation {
	return expectation{kind: wireRow, detail: detail, denial: &wireDenial{
		label: "401 `invalid_dpop_proof`", status: 401, body: `{"error":"invalid_dpop_proof"}`,
		prefix: `DPoP error="invalid_dpop_proof", error_description="`, suffix: `", ` + dpopAlgs, reason: "proof_invalid",
	}}
}

func useNonce(detail string) expectation {
	return expectation{kind: wireRow, detail: detail, denial: &wireDenial{
		label: "401 `use_dpop_nonce` + `DPoP-Nonce`", status: 401, body: `{"error":"use_dpop_nonce"}`,
		prefix: `DPoP error="use_dpop_nonce", error_description="`, suffix: `", ` + dpopAlgs, nonce: true, reason: "nonce_required",
	}}
}

func dpopInvalidToken(detail string) expectation {
	return expectation{kind: wireRow, detail: detail, denial: &wireDenial{
		label: "401 `DPoP error=\"invalid_token\"`", status: 401, body: `{"error":"unauthorized"}`,
		challenge: `DPoP error="invalid_token", ` + dpopAlgs, reason: "token_invalid",
	}}
}

func replayStoreDown() expectation {
	return expectation{kind: wireRow, denial: &wireDenial{
		label: "503 `replay_store_unavailable`", status: 503, body: `{"error":"temporarily_unavailable"}`, reason: "replay_store_unavailable",
	}}
}

func senderMissing(challenge string) expectation {
	return expectation{kind: wireRow, detail: "", denial: &wireDenial{
		label: "401 `sender_constraint_missing` (`" + strings.SplitN(challenge, " ", 2)[0] + "`)", status: 401, body: `{"error":"unauthorized"}`,
		challenge: challenge, reason: "sender_constraint_missing",
	}}
}

// senderAttackRows are the DPoP (RFC 9449 §11, CONTRACT.md) and certificate-bound
// (RFC 8705) rows: proofs made by go-jose (dpopproof) or signed by hand for the
// forms no library makes, against servers on a dev IdP's tokens.
func senderAttackRows(t *testing.T) []attack {
	t.Helper()
	idp := newDevIdP(t)
	base := fmt.Sprintf(`
issuers:
  - issuer: %[1]q
    jwks_uri: "%[1]s/jwks.json"
    audiences: [%[2]q]
`, idp.Issuer, audience)
	plain := startIntrospected(t, base+`
policy:
  routes:
    - { name: dpop-only, match: { path: /dpop-only }, sender_constraint: dpop }
    - { name: mtls-only, match: { path: /mtls-only }, sender_constraint: mtls }
    - { name: either, match: { path: /either }, sender_constraint: any }
`)
	on := func(in *introspected) *attackHarness { return &attackHarness{harness: in.harness, logs: in.logs} }
	ph := on(plain)

	key, err := dpopproof.NewKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := dpopproof.NewKey("ES256")
	mint := func(c devidp.Claims) string {
		c["sub"], c["acr"], c["auth_time"] = "victim", "aal3", time.Now().Unix()
		tok, err := idp.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	bound := mint(devidp.Claims{"cnf": map[string]any{"jkt": key.Thumbprint()}})
	unbound := mint(devidp.Claims{})
	const htu = "https://app.example.com/home"
	proof := func(k *dpopproof.Key, tok, nonce string) string {
		p, err := k.Proof("GET", htu, tok, nonce, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	signed := func(c dpopproof.Claims) string {
		p, err := key.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now().Unix()
	claims := func() dpopproof.Claims {
		return dpopproof.Claims{HTM: "GET", HTU: htu, IAT: now, ATH: dpopproof.ATH(bound)}
	}
	// handmade signs any header and claims with the key (for what go-jose refuses to make).
	handmade := func(alg string, signKey any, header map[string]any, c dpopproof.Claims) string {
		hb, _ := json.Marshal(header)
		cb, _ := json.Marshal(c)
		input := b64(hb) + "." + b64(cb)
		var s []byte
		if alg != "none" {
			if s, err = jwt.GetSigningMethod(alg).Sign(input, signKey); err != nil {
				t.Fatal(err)
			}
		} else {
			s = []byte{0}
		}
		return input + "." + b64(s)
	}
	pubJWK := func(k any) map[string]any {
		b, _ := json.Marshal(jose.JSONWebKey{Key: k})
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m
	}
	hdrWith := func(kv ...any) map[string]any {
		m := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": pubJWK(key.Signer.Public())}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	dpopReq := func(tok, p string) req {
		h := map[string]string{"authorization": "DPoP " + tok, "x-forwarded-proto": "https"}
		if p != "" {
			h["dpop"] = p
		}
		return req{path: "/home", headers: h}
	}

	var rows []attack
	add := func(group, name string, r req, want expectation, h *attackHarness) {
		rows = append(rows, attack{group: group, name: name, req: r, want: want, on: h})
	}

	const g = "DPoP (RFC 9449)"
	add(g, "a DPoP-bound token with a valid ES256 proof (control row)", dpopReq(bound, proof(key, bound, "")), accept(), ph)
	edKey, _ := dpopproof.NewKey("EdDSA")
	edBound := mint(devidp.Claims{"cnf": map[string]any{"jkt": edKey.Thumbprint()}})
	add(g, "a DPoP-bound token with a valid EdDSA proof", dpopReq(edBound, proof(edKey, edBound, "")), accept(), ph)
	add(g, "the DPoP-bound token as a `Bearer` token (downgrade)", req{path: "/home", headers: bearer(bound)}, deny(token.DetailBoundAsBearer), ph)
	add(g, "the DPoP-bound token as `Bearer`, with a valid proof beside it", req{path: "/home", headers: map[string]string{"authorization": "Bearer " + bound, "dpop": proof(key, bound, "")}}, deny(token.DetailBoundAsBearer), ph)
	add(g, "an unbound token under the `DPoP` scheme, with a valid proof", dpopReq(unbound, func() string {
		p, _ := key.Proof("GET", htu, unbound, "", time.Now())
		return p
	}()), dpopInvalidToken(token.DetailUnboundAsDPoP), ph)
	add(g, "a valid proof of another key than `cnf.jkt` (thumbprint mismatch)", dpopReq(bound, proof(other, bound, "")), dpopInvalidToken(token.DetailBindingMismatch), ph)
	add(g, "no `DPoP` header under the `DPoP` scheme", dpopReq(bound, ""), badProof(token.ProofMissing), ph)
	twice := proof(key, bound, "")
	add(g, "two `DPoP` headers joined by Envoy with `,`", dpopReq(bound, twice+","+proof(key, bound, "")), badProof(token.ProofMultiple), ph)
	add(g, "two raw `header_map` `DPoP` entries", req{path: "/home", rawHeaders: [][2]string{
		{"authorization", "DPoP " + bound}, {"x-forwarded-proto", "https"}, {":authority", "app.example.com"}, {":path", "/home"}, {":method", "GET"},
		{"dpop", proof(key, bound, "")}, {"DPoP", proof(key, bound, "")}}}, badProof(token.ProofMultiple), ph)
	big := claims()
	big.JTI = strings.Repeat("j", token.MaxProofBytes)
	add(g, "a proof over 8 KiB", dpopReq(bound, signed(big)), badProof(token.ProofTooLarge), ph)
	add(g, "`typ: JWT` instead of `dpop+jwt`", dpopReq(bound, handmade("ES256", key.Signer, hdrWith("typ", "JWT"), claims())), badProof(token.ProofTyp), ph)
	add(g, "`alg: none`", dpopReq(bound, handmade("none", nil, hdrWith("alg", "none"), claims())), badProof(token.ProofAlg), ph)
	add(g, "`alg: HS256` keyed with the jwk's JSON", dpopReq(bound, handmade("HS256", []byte(fmt.Sprint(pubJWK(key.Signer.Public()))), hdrWith("alg", "HS256"), claims())), badProof(token.ProofAlg), ph)
	add(g, "the private key in `jwk`", dpopReq(bound, handmade("ES256", key.Signer, hdrWith("jwk", pubJWK(key.Signer)), claims())), badProof(token.ProofJWKPrivate), ph)
	add(g, "a signature by another key than `jwk`'s", dpopReq(bound, handmade("ES256", other.Signer, hdrWith(), claims())), badProof(token.ProofBadSignature), ph)
	wrongM := claims()
	wrongM.HTM = "POST"
	add(g, "`htm` POST for a GET", dpopReq(bound, signed(wrongM)), badProof(token.ProofHTM), ph)
	wrongU := claims()
	wrongU.HTU = "https://app.example.com/other"
	add(g, "`htu` of another path", dpopReq(bound, signed(wrongU)), badProof(token.ProofHTU), ph)
	wrongH := claims()
	wrongH.HTU = "https://evil.example.com/home"
	add(g, "`htu` of another host", dpopReq(bound, signed(wrongH)), badProof(token.ProofHTU), ph)
	httpU := claims()
	httpU.HTU = "http://app.example.com/home"
	add(g, "`htu` over http when `x-forwarded-proto` is https", dpopReq(bound, signed(httpU)), badProof(token.ProofHTU), ph)
	stale := claims()
	stale.IAT = now - 120
	add(g, "`iat` 120 s old (proof_max_age 60 s + clock_skew 30 s)", dpopReq(bound, signed(stale)), badProof(token.ProofIATStale), ph)
	future := claims()
	future.IAT = now + 120
	add(g, "`iat` 120 s in the future", dpopReq(bound, signed(future)), badProof(token.ProofIATFuture), ph)
	noATH := claims()
	noATH.ATH = ""
	add(g, "no `ath`", dpopReq(bound, signed(noATH)), badProof(token.ProofATHMissing), ph)
	otherATH := claims()
	otherATH.ATH = dpopproof.ATH(unbound)
	add(g, "`ath` of another token", dpopReq(bound, signed(otherATH)), badProof(token.ProofATHMismatch), ph)
	// An opaque token whose introspection answer binds it: the same rules.
	oidp := newDevIdP(t)
	opaque := on(startIntrospected(t, fmt.Sprintf(`
issuers:
  - issuer: %[1]q
    jwks_uri: "%[1]s/jwks.json"
    audiences: [%[2]q]
    introspection:
      client_id: %[3]q
      client_secret_file: "{{SECRET:%[4]s}}"
      opaque_tokens: true
`, oidp.Issuer, audience, devidp.IntrospectionClientID, oidp.IntrospectionSecret())))
	opaqueBound, err := oidp.MintOpaque(devidp.Claims{"sub": "victim", "acr": "aal3", "auth_time": time.Now().Unix(),
		"cnf": map[string]any{"jkt": key.Thumbprint()}})
	if err != nil {
		t.Fatal(err)
	}
	add(g, "an opaque token whose introspection answer binds it (`cnf.jkt`), with its proof", dpopReq(opaqueBound, proof(key, opaqueBound, "")), accept(), opaque)
	add(g, "that opaque token with a proof of another key", dpopReq(opaqueBound, proof(other, opaqueBound, "")), dpopInvalidToken(token.DetailBindingMismatch), opaque)
	used := proof(key, bound, "")
	if resp := ph.check(t, dpopReq(bound, used)); resp.GetOkResponse() == nil {
		t.Fatalf("the proof to replay was not accepted the first time: %v", resp.GetDeniedResponse())
	}
	add(g, "a proof replayed to the same replica", dpopReq(bound, used), badProof(token.ProofReplayed), ph)

	// Server nonces.
	nonces := startIntrospected(t, base+`
dpop:
  nonce: true
  nonce_key_file: "{{SECRET:`+strings.Repeat("k", 40)+`}}"
`)
	nh := on(nonces)
	add(g, "no `nonce` when nonces are on", dpopReq(bound, proof(key, bound, "")), useNonce(token.ProofNonceMissing), nh)
	add(g, "a `nonce` the server never issued", dpopReq(bound, proof(key, bound, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")), useNonce(token.ProofNonceInvalid), nh)

	// Two replicas sharing a Redis, and a Redis that is gone.
	if reason := redistest.SkipReason(); reason != "" {
		add(g, "a proof replayed to another replica sharing the Redis replay store", req{}, badProof(token.ProofReplayed), nil)
		add(g, "the Redis replay store unreachable", req{}, replayStoreDown(), nil)
		rows[len(rows)-1].skip, rows[len(rows)-2].skip = reason, reason
	} else {
		shared := redistest.Start(t, "")
		redisCfg := func(addr string) string {
			return base + "dpop:\n  replay_store: { type: redis, address: \"" + addr + "\" }\n"
		}
		r1, r2 := startIntrospected(t, redisCfg(shared.Addr)), on(startIntrospected(t, redisCfg(shared.Addr)))
		p := proof(key, bound, "")
		if resp := r1.check(t, dpopReq(bound, p)); resp.GetOkResponse() == nil {
			t.Fatalf("replica 1 did not accept the proof: %v", resp.GetDeniedResponse())
		}
		add(g, "a proof replayed to another replica sharing the Redis replay store", dpopReq(bound, p), badProof(token.ProofReplayed), r2)
		gone := redistest.Start(t, "")
		down := on(startIntrospected(t, redisCfg(gone.Addr)))
		gone.Stop()
		add(g, "the Redis replay store unreachable", dpopReq(bound, proof(key, bound, "")), replayStoreDown(), down)
	}

	// Certificate-bound tokens (RFC 8705).
	const gm = "Certificate-bound tokens (RFC 8705)"
	cert, otherCert := clientCertDER(t), clientCertDER(t)
	sum := sha256.Sum256(cert)
	certBound := mint(devidp.Claims{"cnf": map[string]any{"x5t#S256": base64.RawURLEncoding.EncodeToString(sum[:])}})
	peer := func(der []byte) string {
		return url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	}
	add(gm, "a certificate-bound token from the bound client certificate (control row)", req{path: "/home", headers: bearer(certBound), peerCert: peer(cert)}, accept(), ph)
	add(gm, "a certificate-bound token from another client certificate", req{path: "/home", headers: bearer(certBound), peerCert: peer(otherCert)}, deny(token.DetailBindingMismatch), ph)
	add(gm, "a certificate-bound token without a client certificate", req{path: "/home", headers: bearer(certBound)}, deny(token.DetailNoCertificate), ph)
	add(gm, "a forged `x-forwarded-client-cert` while certificates come from the peer", req{path: "/home", headers: map[string]string{
		"authorization": "Bearer " + certBound, "x-forwarded-client-cert": `Cert="` + peer(cert) + `"`}}, deny(token.DetailNoCertificate), ph)
	xfcc := on(startIntrospected(t, base+"mtls: { certificate_from: xfcc }\n"))
	add(gm, "`mtls.certificate_from: xfcc` with the bound certificate in `Cert=`", req{path: "/home", headers: map[string]string{
		"authorization": "Bearer " + certBound, "x-forwarded-client-cert": `Hash=x;Cert="` + peer(cert) + `";Subject="CN=client"`}}, accept(), xfcc)
	add(gm, "`mtls.certificate_from: xfcc` with two elements (a forged one appended)", req{path: "/home", headers: map[string]string{
		"authorization": "Bearer " + certBound, "x-forwarded-client-cert": `Cert="` + peer(otherCert) + `",Cert="` + peer(cert) + `"`}}, deny(token.DetailNoCertificate), xfcc)

	// sender_constraint.
	const gs = "Sender constraint"
	add(gs, "an unbound token on a `sender_constraint: dpop` route", req{path: "/dpop-only", headers: bearer(unbound)}, senderMissing(`DPoP `+dpopAlgs), ph)
	add(gs, "a certificate-bound token on a `sender_constraint: dpop` route", req{path: "/dpop-only", headers: bearer(certBound), peerCert: peer(cert)}, senderMissing(`DPoP `+dpopAlgs), ph)
	add(gs, "an unbound token on a `sender_constraint: mtls` route", req{path: "/mtls-only", headers: bearer(unbound)},
		senderMissing(`Bearer error="invalid_token", error_description="a certificate-bound token is required"`), ph)
	add(gs, "an unbound token on a `sender_constraint: any` route", req{path: "/either", headers: bearer(unbound)}, senderMissing(`DPoP `+dpopAlgs), ph)
	add(gs, "no token on a `sender_constraint: dpop` route", req{path: "/dpop-only"}, expectation{kind: wireRow, denial: &wireDenial{
		label: "401 `Bearer, DPoP algs=...`", status: 401, body: `{"error":"unauthorized"}`, challenge: `Bearer, DPoP ` + dpopAlgs, reason: "token_missing"}}, ph)
	add(gs, "a DPoP-bound token with its proof on a `sender_constraint: dpop` route", func() req {
		r := dpopReq(bound, func() string {
			p, _ := key.Proof("GET", "https://app.example.com/dpop-only", bound, "", time.Now())
			return p
		}())
		r.path = "/dpop-only"
		return r
	}(), accept(), ph)
	return rows
}

// clientCertDER is a fresh self-signed client certificate.
func clientCertDER(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
