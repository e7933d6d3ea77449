package extauthz_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"hash"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

var updateSecurityMD = flag.Bool("update-security-md", false, "rewrite the attack table in ../SECURITY.md from TestAttackTokens")

// attackHarness is the real gRPC server of newHarness, with two configured issuers
// (A: the harness IdP; B: a second IdP with its own audience), an attacker-controlled
// JWKS server on another loopback port that is never configured, and JSON logs to
// read each denial's detail from.
type attackHarness struct {
	*harness
	a, b     *devidp.IdP
	attacker *devidp.IdP
	// attackerURL serves attacker's JWKS (and anything else) and counts every hit.
	attackerURL  string
	attackerHits atomic.Int64
	logs         *lockedBuffer
}

const (
	audienceB = "https://b.example.com"
	// optedIn is an issuer that trusts Envoy's jwt_authn payload and never has keys.
	optedIn = "http://127.0.0.1:1/jwt-authn"
)

const attackConfigYAML = `
issuers:
  - issuer: "{{A}}"
    jwks_uri: "{{A}}/jwks.json"
    audiences: ["https://api.example.com"]
  - issuer: "{{B}}"
    jwks_uri: "{{B}}/jwks.json"
    audiences: ["https://b.example.com"]
  - issuer: "http://127.0.0.1:1/jwt-authn"
    jwks_uri: "http://127.0.0.1:1/jwt-authn/jwks.json"
    audiences: ["https://api.example.com"]
    jwt_authn_payload: jwt_payload
policy:
  default: {}
`

// newAttackHarnessWith starts the attack harness with the key sets tuned by ko.
func newAttackHarnessWith(t *testing.T, ko token.KeySetOptions) *attackHarness {
	t.Helper()
	h := &attackHarness{logs: &lockedBuffer{}}
	serve := func(aud string) *devidp.IdP {
		idp, err := devidp.New(aud)
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(idp.Handler())
		t.Cleanup(hs.Close)
		idp.Issuer = hs.URL
		return idp
	}
	h.a, h.b = serve(audience), serve(audienceB)
	var err error
	if h.attacker, err = devidp.New(audience); err != nil {
		t.Fatal(err)
	}
	ah := h.attacker.Handler()
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.attackerHits.Add(1)
		ah.ServeHTTP(w, r)
	}))
	t.Cleanup(as.Close)
	h.attackerURL = as.URL
	h.attacker.Issuer = h.a.Issuer // the attacker claims to be A

	yaml := strings.NewReplacer("{{A}}", h.a.Issuer, "{{B}}", h.b.Issuer).Replace(attackConfigYAML)
	cfg, err := config.Parse([]byte(yaml), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ks := token.NewKeySets(ko)
	t.Cleanup(ks.Close)
	engine, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(h.logs, nil))
	h.harness = &harness{idp: h.a, client: serveEngine(t, engine, extauthz.Options{Logger: logger})}
	return h
}

// b64 is base64url without padding (RFC 7515 §2).
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64s(s string) string { return b64([]byte(s)) }

// js marshals v; map keys come out sorted, which is all the tests need.
func js(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hdr is a JOSE header {"alg": alg, "kid": kid (unless "")} plus extra members.
func hdr(t *testing.T, alg, kid string, extra map[string]any) string {
	t.Helper()
	m := map[string]any{"alg": alg, "typ": "JWT"}
	if kid != "" {
		m["kid"] = kid
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	return js(t, m)
}

// raw is a JSON value written verbatim into a claims set (1e300, 1.5, "text").
type raw = json.RawMessage

// claimsFor is a valid claims set of issuer iss for aud: aal3, authenticated now,
// valid for 10 minutes. Overrides replace claims; nil removes one.
func claimsFor(t *testing.T, iss, aud string, over map[string]any) string {
	t.Helper()
	now := time.Now()
	m := map[string]any{
		"iss": iss, "aud": aud, "sub": "victim", "acr": "aal3",
		"auth_time": now.Unix(), "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
	for k, v := range over {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	return js(t, m)
}

// withMembers inserts raw JSON members at the start of an object's text, for
// forms encoding/json will not produce (duplicate names).
func withMembers(obj, members string) string { return "{" + members + "," + obj[1:] }

// sig signs the JWS signing input with k using alg (golang-jwt's implementation of
// RFC 7518; it does not check that alg and k belong together).
func sig(t *testing.T, k *devidp.Key, alg, input string) string {
	t.Helper()
	m := jwt.GetSigningMethod(alg)
	if m == nil {
		t.Fatalf("no signing method %s", alg)
	}
	s, err := m.Sign(input, k.Private)
	if err != nil {
		t.Fatalf("sign %s with %s: %v", alg, k.ID, err)
	}
	return b64(s)
}

// jws assembles header.payload and signs it with k under alg.
func jws(t *testing.T, k *devidp.Key, alg, header, payload string) string {
	t.Helper()
	input := b64s(header) + "." + b64s(payload)
	return input + "." + sig(t, k, alg, input)
}

// hmacJWS signs header.payload with HMAC using secret, the "public key as HMAC
// secret" confusion of RFC 8725 §2.1.
func hmacJWS(header, payload string, newHash func() hash.Hash, secret []byte) string {
	input := b64s(header) + "." + b64s(payload)
	m := hmac.New(newHash, secret)
	m.Write([]byte(input))
	return input + "." + b64(m.Sum(nil))
}

// publicKeyForms returns the issuer key kid as PEM (PKIX), DER and the exact JWK
// JSON the JWKS endpoint serves: what an attacker could use as an HMAC secret.
func publicKeyForms(t *testing.T, idp *devidp.IdP, kid string) (pemBytes, der, jwk []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(idp.Key(kid).Private.Public())
	if err != nil {
		t.Fatal(err)
	}
	pemBytes = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	set, err := idp.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(set, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range doc.Keys {
		var m struct{ Kid string }
		if json.Unmarshal(k, &m) == nil && m.Kid == kid {
			return pemBytes, der, k
		}
	}
	t.Fatalf("no JWK %s", kid)
	return nil, nil, nil
}

// ecSig is a raw JOSE ECDSA signature r||s for P-256 (RFC 7518 §3.4).
func ecSig(r, s *big.Int) string {
	b := make([]byte, 64)
	r.FillBytes(b[:32])
	s.FillBytes(b[32:])
	return b64(b)
}

// selfSignedCert is an attacker's certificate for its own key, for x5c.
func selfSignedCert(t *testing.T, k *devidp.Key) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idp.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Private.Public(), k.Private)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// sizedToken is a validly signed RS256 token of A of exactly n bytes, padded with a
// "pad" claim; a header member is added when base64 lengths cannot land on n.
func sizedToken(t *testing.T, h *attackHarness, n int) string {
	t.Helper()
	k := h.a.Key("rs-1")
	const sigLen = 342 // RS256 with a 2048-bit key: 256 bytes, unpadded base64url
	for _, extra := range []map[string]any{nil, {"cty": "x"}, {"cty": "xy"}} {
		head := hdr(t, "RS256", "rs-1", extra)
		fixed := len(b64s(head)) + 2 + sigLen
		base := len(claimsFor(t, h.a.Issuer, audience, map[string]any{"pad": ""}))
		want := (n-fixed)*3/4 - base
		for pad := max(0, want-4); pad <= want+4; pad++ {
			p := claimsFor(t, h.a.Issuer, audience, map[string]any{"pad": strings.Repeat("p", pad)})
			if fixed+len(b64s(p)) == n {
				return jws(t, k, "RS256", head, p)
			}
		}
	}
	t.Fatalf("cannot build a token of %d bytes", n)
	return ""
}

// nonCanonical re-spells the last character of an unpadded base64url segment whose
// final character carries unused low bits: same bytes for a lenient decoder, a
// different string (and cache key) for the server, which must refuse it.
func nonCanonical(t *testing.T, seg string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(seg)%4 == 0 {
		t.Fatalf("segment of %d characters has no unused bits", len(seg))
	}
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[i|1])
}

// expectKind is the class of response an attack row expects.
type expectKind int

const (
	accepted expectKind = iota
	invalidToken
	noToken
	// introspectionDown is 503 introspection_unavailable.
	introspectionDown
	// wireRow is an exact denial of a sender-constrained row (attacks_dpop_test.go).
	wireRow
	// servedRow is the protected resource metadata document (attacks_resource_test.go).
	servedRow
)

type expectation struct {
	kind expectKind
	// detail is the token_invalid detail the server logs (never sent to the client).
	detail string
	// denial is the response of a wire row.
	denial *wireDenial
	// resource is the document's resource of a served row.
	resource string
}

func accept() expectation            { return expectation{kind: accepted} }
func deny(detail string) expectation { return expectation{kind: invalidToken, detail: detail} }
func missing() expectation           { return expectation{kind: noToken} }
func (e expectation) String() string {
	switch e.kind {
	case accepted:
		return "**allowed**"
	case noToken:
		return "401 `Bearer` (no token)"
	case introspectionDown:
		return "503 `introspection_unavailable`"
	case wireRow:
		return e.denial.label
	case servedRow:
		return "200 metadata document (`metadata_served`)"
	default:
		return "401 `invalid_token`"
	}
}

// attack is one row of the attack table.
type attack struct {
	group string
	name  string
	req   req
	want  expectation
	// on, when set, is the harness the row is sent to (introspection rows).
	on *attackHarness
	// skip, when set, skips the row with this message (a tool this machine lacks).
	skip string
}

// attackRows builds every attack against h. Each row's request targets /home, whose
// policy (policy.default: {}) allows any valid token, so a denial can only come from
// the token itself.
func attackRows(t *testing.T, h *attackHarness) []attack {
	t.Helper()
	A, B := h.a.Issuer, h.b.Issuer
	rsA, esA, edA := h.a.Key("rs-1"), h.a.Key("es-1"), h.a.Key("ed-1")
	rsB := h.b.Key("rs-1")
	evil, err := devidp.NewKey("attacker-1", "RS256")
	if err != nil {
		t.Fatal(err)
	}
	valid := func() string { return claimsFor(t, A, audience, nil) }
	with := func(over map[string]any) string { return claimsFor(t, A, audience, over) }
	signed := func(payload string) string { return jws(t, rsA, "RS256", hdr(t, "RS256", "rs-1", nil), payload) }
	head := func(extra map[string]any) string { return hdr(t, "RS256", "rs-1", extra) }
	good := signed(valid())
	in := func(tok string) req { return req{path: "/home", headers: bearer(tok)} }
	auth := func(v string) req { return req{path: "/home", headers: map[string]string{"authorization": v}} }

	var rows []attack
	add := func(group, name string, r req, want expectation) {
		rows = append(rows, attack{group: group, name: name, req: r, want: want})
	}

	const g0 = "Control"
	add(g0, "a valid RS256 token of issuer A (control row)", in(good), accept())
	add(g0, "a valid ES256 token of issuer A", in(jws(t, esA, "ES256", hdr(t, "ES256", "es-1", nil), valid())), accept())
	add(g0, "a valid EdDSA token of issuer A", in(jws(t, edA, "EdDSA", hdr(t, "EdDSA", "ed-1", nil), valid())), accept())

	const g1 = "Algorithm"
	noneInput := b64s(hdr(t, "none", "", nil)) + "." + b64s(valid())
	add(g1, "`alg: none` with an empty signature", in(noneInput+"."), deny(token.DetailMalformed))
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		add(g1, fmt.Sprintf("`alg: %s` with a signature", alg),
			in(b64s(hdr(t, alg, "rs-1", nil))+"."+b64s(valid())+"."+strings.Split(good, ".")[2]), deny(token.DetailAlgorithmNotAllowed))
	}
	pemA, derA, jwkA := publicKeyForms(t, h.a, "rs-1")
	for _, hs := range []struct {
		alg string
		h   func() hash.Hash
	}{{"HS256", sha256.New}, {"HS384", sha512.New384}, {"HS512", sha512.New}} {
		for _, secret := range []struct {
			form string
			b    []byte
		}{{"PEM", pemA}, {"DER", derA}, {"JWK JSON", jwkA}} {
			add(g1, fmt.Sprintf("%s signed with the issuer's RSA public key (%s) as the HMAC secret", hs.alg, secret.form),
				in(hmacJWS(hdr(t, hs.alg, "rs-1", nil), valid(), hs.h, secret.b)), deny(token.DetailAlgorithmNotAllowed))
		}
	}
	add(g1, "`alg: RS256` with the kid of the issuer's EC key", in(jws(t, rsA, "RS256", hdr(t, "RS256", "es-1", nil), valid())), deny(token.DetailKeyMismatch))
	add(g1, "`alg: ES256` with the kid of the issuer's RSA key", in(jws(t, esA, "ES256", hdr(t, "ES256", "rs-1", nil), valid())), deny(token.DetailKeyMismatch))
	add(g1, "`alg: EdDSA` with the kid of the issuer's RSA key", in(jws(t, edA, "EdDSA", hdr(t, "EdDSA", "rs-1", nil), valid())), deny(token.DetailKeyMismatch))
	add(g1, "`alg: PS256` over an RS256 signature, with the kid of a key whose JWK says RS256", in(b64s(hdr(t, "PS256", "rs-1", nil))+"."+b64s(valid())+"."+sig(t, rsA, "RS256", b64s(hdr(t, "PS256", "rs-1", nil))+"."+b64s(valid()))), deny(token.DetailKeyMismatch))
	for _, alg := range []string{"RS1", "ES256K", "rs256", "RS256 ", "HS256 "} {
		add(g1, fmt.Sprintf("unsupported or misspelled `alg: %q`", alg), in(b64s(hdr(t, alg, "rs-1", nil))+"."+b64s(valid())+"."+strings.Split(good, ".")[2]), deny(token.DetailAlgorithmNotAllowed))
	}
	add(g1, "`alg` as an array", in(b64s(`{"alg":["RS256"],"kid":"rs-1"}`)+"."+b64s(valid())+"."+strings.Split(good, ".")[2]), deny(token.DetailMalformed))
	add(g1, "no `alg` at all", in(b64s(`{"kid":"rs-1"}`)+"."+b64s(valid())+"."+strings.Split(good, ".")[2]), deny(token.DetailMalformed))

	const g2 = "ECDSA signature values"
	n := elliptic.P256().Params().N
	esInput := b64s(hdr(t, "ES256", "es-1", nil)) + "." + b64s(valid())
	realSig, _ := base64.RawURLEncoding.DecodeString(sig(t, esA, "ES256", esInput))
	r, s := new(big.Int).SetBytes(realSig[:32]), new(big.Int).SetBytes(realSig[32:])
	add(g2, "ES256 with r = s = 0 (CVE-2022-21449)", in(esInput+"."+ecSig(big.NewInt(0), big.NewInt(0))), deny(token.DetailBadSignature))
	add(g2, "ES256 with r = N (the curve order) and a real s", in(esInput+"."+ecSig(n, s)), deny(token.DetailBadSignature))
	add(g2, "ES256 with a real r and s = N", in(esInput+"."+ecSig(r, n)), deny(token.DetailBadSignature))
	ones := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
	add(g2, "ES256 with r = s = 2^256 - 1 (above N)", in(esInput+"."+ecSig(ones, ones)), deny(token.DetailBadSignature))
	derSig, err := ecdsa.SignASN1(rand.Reader, esA.Private.(*ecdsa.PrivateKey), func() []byte { d := sha256.Sum256([]byte(esInput)); return d[:] }())
	if err != nil {
		t.Fatal(err)
	}
	add(g2, "ES256 signature in ASN.1 DER form instead of JOSE r||s", in(esInput+"."+b64(derSig)), deny(token.DetailBadSignature))
	add(g2, "ES256 signature truncated to 63 bytes", in(esInput+"."+b64(realSig[:63])), deny(token.DetailBadSignature))

	const g3 = "Key material in the token"
	evilJWK := map[string]any{"kty": "RSA", "kid": "attacker-1",
		"n": b64(evil.Private.Public().(*rsa.PublicKey).N.Bytes()), "e": "AQAB"}
	add(g3, "embedded `jwk` with the attacker's key and kid", in(jws(t, evil, "RS256", hdr(t, "RS256", "attacker-1", map[string]any{"jwk": evilJWK}), valid())), deny(token.DetailUnknownKid))
	add(g3, "embedded `jwk` with the attacker's key under the issuer's kid", in(jws(t, evil, "RS256", hdr(t, "RS256", "rs-1", map[string]any{"jwk": evilJWK}), valid())), deny(token.DetailBadSignature))
	add(g3, "embedded `jwk` and no kid", in(jws(t, evil, "RS256", hdr(t, "RS256", "", map[string]any{"jwk": evilJWK}), valid())), deny(token.DetailBadSignature))
	add(g3, "`jku` pointing at the attacker's JWKS on another loopback port", in(jws(t, evil, "RS256", hdr(t, "RS256", "attacker-1", map[string]any{"jku": h.attackerURL + "/jwks.json"}), valid())), deny(token.DetailUnknownKid))
	add(g3, "`jku` to the attacker's JWKS with the issuer's kid", in(jws(t, evil, "RS256", hdr(t, "RS256", "rs-1", map[string]any{"jku": h.attackerURL + "/jwks.json"}), valid())), deny(token.DetailBadSignature))
	add(g3, "`x5u` pointing at the attacker's server", in(jws(t, evil, "RS256", hdr(t, "RS256", "attacker-1", map[string]any{"x5u": h.attackerURL + "/cert.pem"}), valid())), deny(token.DetailUnknownKid))
	cert := selfSignedCert(t, evil)
	thumb := sha256.Sum256(cert)
	add(g3, "`x5c` chain with the attacker's self-signed certificate, no kid", in(jws(t, evil, "RS256", hdr(t, "RS256", "", map[string]any{"x5c": []string{base64.StdEncoding.EncodeToString(cert)}}), valid())), deny(token.DetailBadSignature))
	add(g3, "`x5c` and `x5t#S256` of the attacker's certificate with the issuer's kid", in(jws(t, evil, "RS256", hdr(t, "RS256", "rs-1", map[string]any{"x5c": []string{base64.StdEncoding.EncodeToString(cert)}, "x5t#S256": b64(thumb[:])}), valid())), deny(token.DetailBadSignature))

	const g4 = "kid"
	for _, kid := range []struct{ name, kid string }{
		{"path traversal", "../../../../../../etc/passwd"},
		{"an absolute file path", "/dev/null"},
		{"SQL injection", "rs-1' OR '1'='1"},
		{"SQL comment", "rs-1'--"},
		{"a URL", h.attackerURL + "/jwks.json"},
		{"a NUL byte after a real kid", "rs-1\x00"},
		{"a real kid in another case", "RS-1"},
		{"8 KiB", strings.Repeat("k", 8192)},
	} {
		add(g4, "`kid` with "+kid.name+", signed by the issuer's key", in(jws(t, rsA, "RS256", hdr(t, "RS256", kid.kid, nil), valid())), deny(token.DetailUnknownKid))
	}
	add(g4, "`kid` as a number", in(jws(t, rsA, "RS256", `{"alg":"RS256","kid":1}`, valid())), deny(token.DetailMalformed))
	add(g4, "`kid: null`", in(jws(t, rsA, "RS256", `{"alg":"RS256","kid":null}`, valid())), deny(token.DetailMalformed))

	const g5 = "Header extensions"
	add(g5, "unknown `crit` extension", in(jws(t, rsA, "RS256", head(map[string]any{"crit": []string{"urn:example:ext"}, "urn:example:ext": true}), valid())), deny(token.DetailCritUnsupported))
	add(g5, "`crit` naming a registered header (`exp`)", in(jws(t, rsA, "RS256", head(map[string]any{"crit": []string{"exp"}, "exp": 1}), valid())), deny(token.DetailCritUnsupported))
	add(g5, "empty `crit` array", in(jws(t, rsA, "RS256", head(map[string]any{"crit": []string{}}), valid())), deny(token.DetailCritUnsupported))
	add(g5, "`b64: false` with `crit: [\"b64\"]` (RFC 7797), payload still encoded", in(jws(t, rsA, "RS256", head(map[string]any{"b64": false, "crit": []string{"b64"}}), valid())), deny(token.DetailCritUnsupported))
	add(g5, "`b64: false` without `crit`", in(jws(t, rsA, "RS256", head(map[string]any{"b64": false}), valid())), deny(token.DetailCritUnsupported))
	unencodedInput := b64s(head(map[string]any{"b64": false, "crit": []string{"b64"}})) + "." + valid()
	// The JSON's commas make it look like two credentials before anything else.
	add(g5, "`b64: false` with the unencoded JSON payload in the token", in(unencodedInput+"."+sig(t, rsA, "RS256", unencodedInput)), deny(token.DetailMultipleCredentials))

	const g6 = "Structure"
	parts := strings.Split(good, ".")
	other := strings.Split(signed(with(map[string]any{"sub": "attacker"})), ".")
	add(g6, "signature stripped, trailing dot kept", in(parts[0]+"."+parts[1]+"."), deny(token.DetailMalformed))
	add(g6, "signature stripped with its dot", in(parts[0]+"."+parts[1]), deny(token.DetailMalformed))
	add(g6, "payload of another valid token under this token's header and signature", in(parts[0]+"."+other[1]+"."+parts[2]), deny(token.DetailBadSignature))
	add(g6, "signature of another valid token", in(parts[0]+"."+parts[1]+"."+other[2]), deny(token.DetailBadSignature))
	add(g6, "header and payload swapped", in(parts[1]+"."+parts[0]+"."+parts[2]), deny(token.DetailMalformed))
	add(g6, "five parts (JWE compact serialization)", in(parts[0]+"."+parts[1]+".AAAA.AAAA."+parts[2]), deny(token.DetailMalformed))
	add(g6, "four parts", in(good+".AAAA"), deny(token.DetailMalformed))
	add(g6, "a header that is a JSON array", in(b64s(`["RS256"]`)+"."+parts[1]+"."+parts[2]), deny(token.DetailMalformed))
	add(g6, "a payload that is JSON null", in(jws(t, rsA, "RS256", head(nil), `null`)), deny(token.DetailMalformed))
	add(g6, "a payload followed by a second JSON object", in(jws(t, rsA, "RS256", head(nil), valid()+`{"acr":"aal3"}`)), deny(token.DetailMalformed))
	add(g6, "a payload with a UTF-8 byte order mark", in(jws(t, rsA, "RS256", head(nil), "\ufeff"+valid())), deny(token.DetailMalformed))

	const g7 = "Duplicate JSON members"
	add(g7, "payload with `\"acr\":\"aal1\",\"acr\":\"aal3\"`", in(signed(withMembers(with(map[string]any{"acr": nil}), `"acr":"aal1","acr":"aal3"`))), deny(token.DetailDuplicateClaim))
	add(g7, "payload with `acr` twice, once spelled with a \\u escape", in(signed(withMembers(with(map[string]any{"acr": nil}), `"acr":"aal1","a\u0063r":"aal3"`))), deny(token.DetailDuplicateClaim))
	add(g7, "payload with `iss` twice (issuer A, then B)", in(signed(withMembers(with(map[string]any{"iss": nil}), `"iss":"`+A+`","iss":"`+B+`"`))), deny(token.DetailDuplicateClaim))
	add(g7, "payload with `exp` twice (past, then future)", in(signed(withMembers(with(map[string]any{"exp": nil}), fmt.Sprintf(`"exp":%d,"exp":%d`, time.Now().Add(-time.Hour).Unix(), time.Now().Add(time.Hour).Unix())))), deny(token.DetailDuplicateClaim))
	add(g7, "header with `alg` twice (`none`, then RS256)", in(jws(t, rsA, "RS256", `{"alg":"none","alg":"RS256","kid":"rs-1"}`, valid())), deny(token.DetailDuplicateClaim))

	const g8 = "Time claims"
	now := time.Now()
	future := func(d time.Duration) raw { return raw(fmt.Sprint(now.Add(d).Unix())) }
	for _, c := range []struct {
		claim, form string
		v           any
		want        expectation
	}{
		{"exp", "a string of digits", fmt.Sprint(now.Add(time.Hour).Unix()), deny(token.DetailClaimType)},
		{"exp", "a float in the future", raw(fmt.Sprintf("%d.75", now.Add(time.Hour).Unix())), accept()},
		{"exp", "a float in the past", raw(fmt.Sprintf("%d.5", now.Add(-time.Hour).Unix())), deny(token.DetailExpired)},
		{"exp", "1e300", raw("1e300"), deny(token.DetailClaimType)},
		{"exp", "year 10000 (253402300800)", raw("253402300800"), deny(token.DetailClaimType)},
		{"exp", "a 400-digit number", raw(strings.Repeat("9", 400)), deny(token.DetailClaimType)},
		{"exp", "negative", raw("-1"), deny(token.DetailClaimType)},
		{"exp", "null", raw("null"), deny(token.DetailClaimType)},
		{"exp", "true", raw("true"), deny(token.DetailClaimType)},
		{"exp", "absent", nil, deny(token.DetailMissingExp)},
		{"exp", "an hour ago", future(-time.Hour), deny(token.DetailExpired)},
		{"nbf", "a string", fmt.Sprint(now.Add(-time.Hour).Unix()), deny(token.DetailClaimType)},
		{"nbf", "a float in the past", raw(fmt.Sprintf("%d.25", now.Add(-time.Hour).Unix())), accept()},
		{"nbf", "an hour from now", future(time.Hour), deny(token.DetailNotYetValid)},
		{"nbf", "1e300", raw("1e300"), deny(token.DetailClaimType)},
		{"nbf", "negative", raw("-100"), deny(token.DetailClaimType)},
		{"iat", "a string", fmt.Sprint(now.Unix()), deny(token.DetailClaimType)},
		{"iat", "a float", raw(fmt.Sprintf("%d.5", now.Add(-time.Minute).Unix())), accept()},
		{"iat", "an hour from now", future(time.Hour), deny(token.DetailIssuedInFuture)},
		{"iat", "year 9999", raw("253402300799"), deny(token.DetailIssuedInFuture)},
		{"iat", "1e300", raw("1e300"), deny(token.DetailClaimType)},
		{"iat", "negative", raw("-1"), deny(token.DetailClaimType)},
		{"auth_time", "a string", fmt.Sprint(now.Unix()), deny(token.DetailClaimType)},
		{"auth_time", "a float", raw(fmt.Sprintf("%d.5", now.Add(-time.Minute).Unix())), accept()},
		{"auth_time", "an hour from now", future(time.Hour), deny("auth_time_in_future")},
		{"auth_time", "year 9999", raw("253402300799"), deny("auth_time_in_future")},
		{"auth_time", "1e300", raw("1e300"), deny(token.DetailClaimType)},
		{"auth_time", "negative", raw("-1"), deny(token.DetailClaimType)},
	} {
		add(g8, fmt.Sprintf("`%s` as %s", c.claim, c.form), in(signed(with(map[string]any{c.claim: c.v}))), c.want)
	}

	const g9 = "Audience, issuer, acr, subject"
	add(g9, "`aud` as an array that contains ours", in(signed(with(map[string]any{"aud": []string{"https://other.example.com", audience}}))), accept())
	add(g9, "`aud` as an empty array", in(signed(with(map[string]any{"aud": []string{}}))), deny(token.DetailBadAudience))
	add(g9, "`aud` as an object", in(signed(with(map[string]any{"aud": map[string]any{"aud": audience}}))), deny(token.DetailClaimType))
	add(g9, "`aud` as an array holding a number", in(signed(with(map[string]any{"aud": []any{audience, 1}}))), deny(token.DetailClaimType))
	add(g9, "`aud` as the empty string", in(signed(with(map[string]any{"aud": ""}))), deny(token.DetailBadAudience))
	add(g9, "`aud` absent", in(signed(with(map[string]any{"aud": nil}))), deny(token.DetailBadAudience))
	add(g9, "`aud` with a trailing slash", in(signed(with(map[string]any{"aud": audience + "/"}))), deny(token.DetailBadAudience))
	add(g9, "`iss` with a trailing slash", in(signed(with(map[string]any{"iss": A + "/"}))), deny(token.DetailUnknownIssuer))
	add(g9, "`iss` in upper case", in(signed(with(map[string]any{"iss": strings.ToUpper(A)}))), deny(token.DetailUnknownIssuer))
	add(g9, "`iss` absent", in(signed(with(map[string]any{"iss": nil}))), deny(token.DetailUnknownIssuer))
	add(g9, "`iss` as an array", in(signed(with(map[string]any{"iss": []string{A}}))), deny(token.DetailClaimType))
	add(g9, "`acr` as a number", in(signed(with(map[string]any{"acr": 3}))), deny(token.DetailClaimType))
	add(g9, "`acr` as an array", in(signed(with(map[string]any{"acr": []string{"aal3"}}))), deny(token.DetailClaimType))
	add(g9, "`acr: null`", in(signed(with(map[string]any{"acr": raw("null")}))), deny(token.DetailClaimType))
	add(g9, "`acr` with CR LF and a forged header", in(signed(with(map[string]any{"acr": "aal3\r\nx-stepup-sub: admin"}))), deny("unsafe_claim"))
	add(g9, "`sub` with CR LF and a forged header", in(signed(with(map[string]any{"sub": "victim\r\nx-stepup-acr: aal3"}))), deny("unsafe_claim"))
	add(g9, "`amr` as a string", in(signed(with(map[string]any{"amr": "mfa"}))), deny(token.DetailClaimType))

	const g10 = "Issuers"
	add(g10, "a valid token of issuer B for B's audience (control row)", in(jws(t, rsB, "RS256", head(nil), claimsFor(t, B, audienceB, nil))), accept())
	add(g10, "a valid token of issuer B for A's audience", in(jws(t, rsB, "RS256", head(nil), claimsFor(t, B, audience, nil))), deny(token.DetailBadAudience))
	add(g10, "signed by issuer A's key, claiming issuer B (same kid)", in(jws(t, rsA, "RS256", head(nil), claimsFor(t, B, audienceB, nil))), deny(token.DetailBadSignature))
	add(g10, "signed by issuer B's key, claiming issuer A (same kid)", in(jws(t, rsB, "RS256", head(nil), valid())), deny(token.DetailBadSignature))
	add(g10, "an unconfigured issuer serving its own JWKS", in(jws(t, evil, "RS256", hdr(t, "RS256", "attacker-1", nil), claimsFor(t, h.attackerURL, audience, nil))), deny(token.DetailUnknownIssuer))

	const g11 = "Envoy jwt_authn payload"
	optTok := jws(t, evil, "RS256", head(nil), claimsFor(t, optedIn, audience, map[string]any{"sub": "victim"}))
	victim := jws(t, evil, "RS256", head(nil), claimsFor(t, optedIn, audience, map[string]any{"sub": "someone-else"}))
	jwtAuthn := func(tok string) map[string]any {
		var m map[string]any
		b, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		_ = json.Unmarshal(b, &m)
		return map[string]any{"jwt_payload": m}
	}
	withAuthn := func(tok string, md map[string]any) req { r := in(tok); r.jwtAuthn = md; return r }
	add(g11, "opted-in issuer: another user's verified payload paired with a forged token", withAuthn(optTok, jwtAuthn(victim)), deny(token.DetailPayloadMismatch))
	forged := parts[0] + "." + other[1] + "." + parts[2]
	add(g11, "issuer A (not opted in): a forged token with its own payload in jwt_authn metadata", withAuthn(forged, jwtAuthn(forged)), deny(token.DetailBadSignature))
	add(g11, "opted-in issuer: matching payload but `alg: none`", withAuthn(b64s(hdr(t, "none", "", nil))+"."+strings.Split(optTok, ".")[1]+".AAAA", jwtAuthn(optTok)), deny(token.DetailAlgorithmNotAllowed))

	const g12 = "Size and encoding"
	add(g12, "a valid token of exactly 16,384 bytes", in(sizedToken(t, h, token.MaxTokenBytes)), accept())
	add(g12, "a valid token of 16,385 bytes", in(sizedToken(t, h, token.MaxTokenBytes+1)), deny(token.DetailTooLarge))
	add(g12, "a valid token of 64 KiB", in(sizedToken(t, h, 64<<10)), deny(token.DetailTooLarge))
	add(g12, "a valid token of 1 MiB", in(sizedToken(t, h, 1<<20)), deny(token.DetailTooLarge))
	add(g12, "`+` and `/` (base64, not base64url) in the signature", in(parts[0]+"."+parts[1]+"."+strings.NewReplacer("-", "+", "_", "/").Replace(parts[2])+"+/"), deny(token.DetailMalformed))
	add(g12, "`!` in the payload", in(parts[0]+"."+parts[1][:10]+"!"+parts[1][10:]+"."+parts[2]), deny(token.DetailMalformed))
	add(g12, "a non-ASCII letter in the payload", in(parts[0]+"."+parts[1][:10]+"é"+parts[1][10:]+"."+parts[2]), deny(token.DetailMalformed))
	add(g12, "`=` padding after the signature", in(good+"=="), deny(token.DetailMalformed))
	add(g12, "`=` padding inside the header", in(parts[0]+"=."+parts[1]+"."+parts[2]), deny(token.DetailMalformed))
	add(g12, "non-canonical base64url (unused bits set in the signature's last character)", in(parts[0]+"."+parts[1]+"."+nonCanonical(t, parts[2])), deny(token.DetailMalformed))
	add(g12, "a space inside the token", in(parts[0]+". "+parts[1]+"."+parts[2]), deny(token.DetailMalformed))
	add(g12, "a NUL byte inside the token", in(parts[0]+"\x00."+parts[1]+"."+parts[2]), deny(token.DetailMalformed))
	add(g12, "percent-encoded dots", in(parts[0]+"%2E"+parts[1]+"%2E"+parts[2]), deny(token.DetailMalformed))

	const g13 = "Authorization header"
	add(g13, "two Authorization headers joined by Envoy with `,`", auth("Bearer "+good+",Bearer "+good), deny(token.DetailMultipleCredentials))
	add(g13, "a Bearer and a Basic credential joined with `, `", auth("Bearer "+good+", Basic dXNlcjpwYXNz"), deny(token.DetailMultipleCredentials))
	add(g13, "two raw `header_map` entries (encode_raw_headers)", req{path: "/home", rawHeaders: [][2]string{{"authorization", "Bearer " + good}, {"authorization", "Bearer " + good}}}, deny(token.DetailMultipleCredentials))
	add(g13, "raw `header_map` entries `Authorization` and `authorization`", req{path: "/home", rawHeaders: [][2]string{{"Authorization", "Bearer " + good}, {"authorization", "Basic dXNlcjpwYXNz"}}}, deny(token.DetailMultipleCredentials))
	add(g13, "`Bearer` followed by three spaces", auth("Bearer   "+good), accept())
	add(g13, "`Bearer` followed by a tab", auth("Bearer\t"+good), accept())
	add(g13, "blanks around the whole value", auth("  Bearer "+good+"  "), accept())
	add(g13, "lower-case `bearer`", auth("bearer "+good), accept())
	add(g13, "upper-case `BEARER`", auth("BEARER "+good), accept())
	add(g13, "a second word after the token", auth("Bearer "+good+" extra"), deny(token.DetailMalformed))
	add(g13, "no space between `Bearer` and the token", auth("Bearer"+good), missing())
	add(g13, "`Bearer` and nothing else", auth("Bearer "), missing())
	add(g13, "the token without a scheme", auth(good), missing())
	add(g13, "the token under the `Basic` scheme", auth("Basic "+good), missing())
	add(g13, "the token in an `x-authorization` header", req{path: "/home", headers: map[string]string{"x-authorization": "Bearer " + good}}, missing())

	const g14 = "Request shape"
	many := map[string]string{"authorization": "Bearer " + good}
	for i := len(many); i < extauthz.MaxHeaders+1-4; i++ { // 4 more come from the harness
		many[fmt.Sprintf("x-filler-%d", i)] = "v"
	}
	add(g14, fmt.Sprintf("%d headers (more than %d) with a valid token", extauthz.MaxHeaders+1, extauthz.MaxHeaders), req{path: "/home", headers: many}, deny(extauthz.DetailTooManyHeaders))
	return rows
}

// TestAttackTokens sends every attack row over real gRPC to the real server, with
// keys fetched over HTTP, and checks the exact response of CONTRACT.md ("Decisions")
// and the detail logged. Key material named by a token (jku, x5u) is never fetched.
func TestAttackTokens(t *testing.T) {
	// Tokens naming unknown kids are judged only by a fetch that started after they
	// arrived; a short rate-limit window lets each row have one at once.
	h := newAttackHarnessWith(t, token.KeySetOptions{MinRefetch: time.Millisecond})
	rows := attackRows(t, h)
	rows = append(rows, introspectionAttackRows(t)...)
	rows = append(rows, senderAttackRows(t)...)
	rows = append(rows, entraAttackRows(t)...)
	rows = append(rows, resourceAttackRows(t)...)
	invalid := denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			if row.skip != "" {
				t.Skip(row.skip)
			}
			h := h
			if row.on != nil {
				h = row.on
			}
			from := len(h.logs.String())
			resp := h.check(t, row.req)
			switch row.want.kind {
			case accepted:
				set, _ := okHeaders(t, resp)
				if set["x-stepup-sub"] == "" {
					t.Errorf("allowed without x-stepup-sub: %v", set)
				}
				expectReason(t, resp, "allow", "allowed")
			case noToken:
				expectDenied(t, resp, denial{401, `{"error":"unauthorized"}`, "Bearer"})
				expectReason(t, resp, "deny", "token_missing")
			case invalidToken:
				expectDenied(t, resp, invalid)
				expectReason(t, resp, "deny", "token_invalid")
				if got := loggedDetail(t, h.logs.String()[from:]); got != row.want.detail {
					t.Errorf("logged detail %q, want %q", got, row.want.detail)
				}
			case introspectionDown:
				expectDenied(t, resp, denial{503, `{"error":"temporarily_unavailable"}`, ""})
				expectReason(t, resp, "deny", "introspection_unavailable")
			case servedRow:
				if doc := served(t, resp); doc["resource"] != row.want.resource {
					t.Errorf("resource %v, want %s", doc["resource"], row.want.resource)
				}
			case wireRow:
				row.want.denial.check(t, resp)
				if row.want.detail != "" {
					if got := loggedDetail(t, h.logs.String()[from:]); got != row.want.detail {
						t.Errorf("logged detail %q, want %q", got, row.want.detail)
					}
				}
			}
		})
	}
	if n := h.attackerHits.Load(); n != 0 {
		t.Errorf("the attacker's server was fetched %d times; token headers must never name where keys come from", n)
	}
	t.Run("SECURITY.md lists every attack row", func(t *testing.T) { checkSecurityMD(t, rows) })
}

// loggedDetail is the detail of the one denial logged in out (JSON lines).
func loggedDetail(t *testing.T, out string) string {
	t.Helper()
	var details []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec struct{ Msg, Reason, Detail string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "denied" {
			details = append(details, rec.Detail)
		}
	}
	if len(details) != 1 {
		t.Fatalf("%d denial log lines, want 1:\n%s", len(details), out)
	}
	return details[0]
}

const (
	tableBegin = "<!-- BEGIN ATTACK TABLE: generated by `go test ./extauthz -run TestAttackTokens -update-security-md` -->"
	tableEnd   = "<!-- END ATTACK TABLE -->"
)

// renderAttackTable is the SECURITY.md table for rows.
func renderAttackTable(rows []attack) string {
	var b strings.Builder
	b.WriteString("| # | attack | expected response | logged detail |\n|---|---|---|---|\n")
	group := ""
	for i, r := range rows {
		name := r.name
		if r.group != group {
			group = r.group
			name = "**" + group + ":** " + name
		}
		detail := ""
		if r.want.detail != "" {
			detail = "`" + r.want.detail + "`"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", i+1, strings.ReplaceAll(name, "|", "\\|"), r.want, detail)
	}
	return b.String()
}

// checkSecurityMD keeps the table in SECURITY.md equal to the rows that ran.
func checkSecurityMD(t *testing.T, rows []attack) {
	const path = "../SECURITY.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(doc, []byte(tableBegin))
	end := bytes.Index(doc, []byte(tableEnd))
	if start < 0 || end < start {
		t.Fatalf("%s lacks the markers %q and %q", path, tableBegin, tableEnd)
	}
	want := tableBegin + "\n" + renderAttackTable(rows) + tableEnd
	got := string(doc[start : end+len(tableEnd)])
	if got == want {
		return
	}
	if *updateSecurityMD {
		out := append(append(append([]byte{}, doc[:start]...), want...), doc[end+len(tableEnd):]...)
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the attack table in %s is out of date; run go test ./extauthz -run TestAttackTokens -update-security-md", path)
}
