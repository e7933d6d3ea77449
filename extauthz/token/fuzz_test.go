package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Fuzz targets. Committed seeds live in testdata/fuzz/<target>; CI runs each target
// briefly (.ci/run), e.g.
//
//	go test -run='^$' -fuzz='^FuzzVerify$' -fuzztime=60s ./extauthz/token

// fuzzIssuer is fixed, unlike an httptest URL, so committed seeds keep verifying.
const fuzzIssuer = "https://issuer.fuzz.example"

// fuzzNow is the fuzz verifier's clock: seeds minted for it never expire.
var fuzzNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// fuzzKeys are deterministic, so seeds signed with them stay valid across runs
// (Ed25519 signatures are deterministic too).
func fuzzKeys(t testing.TB) (ed, ec testKey) {
	t.Helper()
	seed := sha256.Sum256([]byte("stepup-authz fuzz ed25519"))
	scalar := sha256.Sum256([]byte("stepup-authz fuzz p256"))
	ecPriv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar[:])
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: "fuzz-ed", alg: "EdDSA", priv: ed25519.NewKeyFromSeed(seed[:])},
		testKey{kid: "fuzz-ec", alg: "ES256", priv: ecPriv}
}

// fuzzVerifier verifies tokens of fuzzIssuer against a JWKS served on loopback.
func fuzzVerifier(f *testing.F) (*testVerifier, testKey, testKey) {
	f.Helper()
	ed, ec := fuzzKeys(f)
	p := newIDP(f, ed, ec)
	// The clock stands still, so an unknown kid's refetch is never rate limited: it
	// would otherwise wait MinRefetch of real time for every such input.
	ks := NewKeySets(KeySetOptions{Now: func() time.Time { return fuzzNow }, MinRefetch: time.Nanosecond})
	f.Cleanup(ks.Close)
	v, err := newTestVerifier(ks, []IssuerConfig{{Issuer: fuzzIssuer, JWKSURI: p.jwksURI(), Audiences: []string{testAudience}}},
		Options{ClockSkew: 30 * time.Second, Now: func() time.Time { return fuzzNow }})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v.WaitFirstFetch(ctx)
	return v, ed, ec
}

func fuzzClaims(over map[string]any) map[string]any {
	c := map[string]any{
		"iss": fuzzIssuer, "aud": testAudience, "sub": "user-1", "acr": "aal2",
		"auth_time": fuzzNow.Unix(), "iat": fuzzNow.Unix(), "exp": fuzzNow.Add(time.Hour).Unix(),
	}
	for k, v := range over {
		c[k] = v
	}
	return c
}

var knownDetails = map[string]bool{
	DetailMalformed: true, DetailTooLarge: true, DetailMultipleCredentials: true, DetailDuplicateClaim: true,
	DetailClaimType: true, DetailMissingExp: true, DetailExpired: true, DetailNotYetValid: true,
	DetailIssuedInFuture: true, DetailUnknownIssuer: true, DetailBadAudience: true, DetailAlgorithmNotAllowed: true,
	DetailWrongTyp: true, DetailCritUnsupported: true, DetailUnknownKid: true, DetailKeyMismatch: true,
	DetailBadSignature: true, DetailInvalidClaims: true, DetailPayloadMismatch: true,
}

// signedByUs reports whether raw's signature verifies with one of our public keys,
// checked here without the verifier's code.
func signedByUs(raw string, ed, ec testKey) bool {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	input := []byte(parts[0] + "." + parts[1])
	if ed25519.Verify(ed.priv.Public().(ed25519.PublicKey), input, sig) {
		return true
	}
	if len(sig) != 64 {
		return false
	}
	d := sha256.Sum256(input)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(ec.priv.Public().(*ecdsa.PublicKey), d[:], r, s)
}

// FuzzVerify: no input panics; an accepted token is one our keys signed, of our
// issuer, unexpired; a refused one says why with a known detail; the verified-token
// cache answers a second time exactly as the first.
func FuzzVerify(f *testing.F) {
	v, ed, ec := fuzzVerifier(f)
	for _, k := range []testKey{ed, ec} {
		f.Add(mint(f, k, nil, fuzzClaims(nil)))
		f.Add(mint(f, k, map[string]any{"kid": absent}, fuzzClaims(map[string]any{"aud": []string{"x", testAudience}})))
	}
	f.Add(mint(f, ed, nil, fuzzClaims(map[string]any{"exp": 1.5e9})))
	f.Add(mint(f, ed, map[string]any{"crit": []string{"b64"}, "b64": false}, fuzzClaims(nil)))
	f.Add(mint(f, ed, map[string]any{"alg": "ES256"}, fuzzClaims(nil)))
	f.Add(mint(f, ed, nil, fuzzClaims(map[string]any{"iss": fuzzIssuer + "/"})))
	f.Add(mint(f, ed, nil, fuzzClaims(map[string]any{"scp": "a b", "amr": []string{"mfa"}, "nbf": fuzzNow.Unix()})))
	// Well-formed, unexpired tokens of our issuer whose signature does not match: only
	// signature verification refuses them.
	for _, k := range []testKey{ed, ec} {
		a := strings.Split(mint(f, k, nil, fuzzClaims(map[string]any{"sub": "a"})), ".")
		b := strings.Split(mint(f, k, nil, fuzzClaims(map[string]any{"sub": "b"})), ".")
		f.Add(a[0] + "." + b[1] + "." + a[2])
	}
	f.Add(seg(`{"alg":"none"}`) + "." + seg(jsonText(f, fuzzClaims(nil))) + ".")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(context.Background(), raw)
		if err != nil {
			if d := InvalidDetail(err); !knownDetails[d] {
				t.Fatalf("error without a known detail (%q): %v", d, err)
			}
			if _, err2 := v.Verify(context.Background(), raw); InvalidDetail(err2) != InvalidDetail(err) && InvalidDetail(err2) != DetailUnknownKid {
				t.Fatalf("second Verify: %v, first: %v", err2, err)
			}
			return
		}
		if !signedByUs(raw, ed, ec) {
			t.Fatalf("accepted a token our keys did not sign: %q", raw)
		}
		if c.Issuer != fuzzIssuer || !c.Expiry.After(fuzzNow.Add(-30*time.Second)) {
			t.Fatalf("accepted claims %+v", c)
		}
		again, err := v.Verify(context.Background(), raw)
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("cached answer differs: %+v %v, first %+v", again, err, c)
		}
	})
}

// FuzzBearer: ReadCredential never panics; a token it returns is one RFC 6750
// b64token of at most MaxTokenBytes taken from a single "Bearer" credential; two
// header values are always refused as multiple credentials.
func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer  x", "Basic dXNlcjpwYXNz", "Bearer a,Bearer b",
		"Bearer", "Bearer ", " \tBearer\tabc== ", "Bearer a b", "Bearer abc=def", "BEARER ~+/", ""} {
		f.Add(s, "Bearer x")
	}
	f.Fuzz(func(t *testing.T, v1, v2 string) {
		cred, err := ReadCredential([]string{v1})
		tok := cred.Token
		switch {
		case errors.Is(err, ErrNoToken):
		case err != nil:
			if d := InvalidDetail(err); d != DetailMalformed && d != DetailTooLarge && d != DetailMultipleCredentials {
				t.Fatalf("%q: unexpected error %v", v1, err)
			}
		default:
			if cred.Scheme != SchemeBearer || tok == "" || len(tok) > MaxTokenBytes || !isB64Token(tok) || strings.ContainsAny(v1, ",") {
				t.Fatalf("%q -> token %q", v1, tok)
			}
			scheme := strings.TrimLeft(v1, " \t")
			if len(scheme) < 7 || !strings.EqualFold(scheme[:6], "bearer") || !strings.HasSuffix(strings.TrimRight(v1, " \t"), tok) {
				t.Fatalf("%q -> token %q not from a Bearer credential", v1, tok)
			}
		}
		if _, err := ReadCredential([]string{v1, v2}); InvalidDetail(err) != DetailMultipleCredentials {
			t.Fatalf("two values %q, %q: %v, want multiple_credentials", v1, v2, err)
		}
	})
}

// FuzzClaims compares the claim parser with encoding/json: whatever it accepts is a
// JSON object whose claims read the same with encoding/json, and every type rule of
// CONTRACT.md holds (NumericDates are numbers in range, acr a string, aud a string or
// an array of strings, amr an array of strings).
func FuzzClaims(f *testing.F) {
	for _, s := range []string{
		`{"iss":"i","aud":["a","b"],"exp":1.5,"acr":"aal2","amr":["pwd"],"scp":"a b"}`,
		`{"acr":"aal1","acr":"aal3"}`, `{"a\u0063r":"x","acr":"y"}`, `{"exp":"1"}`, `{"exp":1e300}`,
		`{"exp":-0}`, `{"aud":{}}`, `{"aud":[1]}`, `{"scp":["a",null]}`, `{} {}`, `[]`, `{"exp":9999999999999999999999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := parseHeader(b); err == nil {
			var m map[string]any
			if json.Unmarshal(b, &m) != nil || m["alg"] != h.alg {
				t.Fatalf("header %q accepted with alg %q; encoding/json says %v", b, h.alg, m["alg"])
			}
		}
		p, err := parsePayload(b)
		if err != nil {
			if d := InvalidDetail(err); d != DetailMalformed && d != DetailClaimType && d != DetailDuplicateClaim {
				t.Fatalf("payload %q: detail %q", b, d)
			}
			return
		}
		// UseNumber: claims we ignore may hold numbers beyond float64 (1E700).
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil || dec.More() {
			t.Fatalf("payload %q accepted but encoding/json refuses it: %v", b, err)
		}
		for name, got := range map[string]string{"iss": p.iss, "sub": p.sub, "acr": p.acr, "client_id": p.clientID, "gty": p.gty} {
			if v, ok := m[name]; ok && v != got {
				t.Fatalf("%s: parser %q, encoding/json %v", name, got, v)
			}
		}
		for name, got := range map[string]time.Time{"exp": p.exp, "nbf": p.nbf, "iat": p.iat, "auth_time": p.authTime} {
			v, ok := m[name]
			if !ok {
				continue
			}
			num, isNum := v.(json.Number)
			n, nerr := num.Float64()
			if !isNum || nerr != nil || n < 0 || n > maxNumericDate {
				t.Fatalf("%s = %v accepted", name, v)
			}
			// Unix + Nanosecond, not UnixNano: UnixNano overflows after 2262, well before year 9999.
			if d := math.Abs(float64(got.Unix()) + float64(got.Nanosecond())/1e9 - n); d > 1e-6*math.Max(1, n) {
				t.Fatalf("%s: parser %v, encoding/json %v", name, got, n)
			}
		}
		if v, ok := m["aud"]; ok {
			var want []string
			switch x := v.(type) {
			case string:
				want = []string{x}
			case []any:
				for _, e := range x {
					want = append(want, e.(string))
				}
			}
			if !reflect.DeepEqual(want, []string(p.aud)) && !(len(want) == 0 && len(p.aud) == 0) {
				t.Fatalf("aud: parser %q, encoding/json %v", p.aud, v)
			}
		}
		if v, ok := m["amr"]; ok {
			if _, isList := v.([]any); !isList {
				t.Fatalf("amr %v accepted", v)
			}
		}
	})
}
