package token

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// keyring is the set of keys the standard test IdP publishes.
type keyring struct {
	rs     testKey // RSA, JWK without alg, tokens use RS256
	ps     testKey // the same RSA key, tokens use PS256
	pinned testKey // RSA whose JWK says alg RS256
	ec     testKey // P-256
	ec384  testKey // P-384
	ed     testKey // Ed25519
}

func newKeyring(t testing.TB) keyring {
	rs := newRSA(t, "rs", "RS256")
	ps := rs
	ps.alg = "PS256"
	pinned := newRSA(t, "pinned", "RS256")
	pinned.jwkExtra = map[string]any{"alg": "RS256"}
	return keyring{
		rs:     rs,
		ps:     ps,
		pinned: pinned,
		ec:     newEC(t, "ec", elliptic.P256(), "ES256"),
		ec384:  newEC(t, "ec384", elliptic.P384(), "ES384"),
		ed:     newEd(t, "ed"),
	}
}

func (k keyring) all() []testKey { return []testKey{k.rs, k.pinned, k.ec, k.ec384, k.ed} }

// hmacToken signs header and payload with HMAC alg and secret, as an attacker would.
func hmacToken(t testing.TB, alg, header, payload string, secret []byte) string {
	t.Helper()
	var m jwt.SigningMethod
	switch alg {
	case "HS256":
		m = jwt.SigningMethodHS256
	case "HS384":
		m = jwt.SigningMethodHS384
	case "HS512":
		m = jwt.SigningMethodHS512
	}
	signed := seg(header) + "." + seg(payload)
	sig, err := m.Sign(signed, secret)
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func jsonText(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVerify(t *testing.T) {
	keys := newKeyring(t)
	pubPEM := func(t testing.TB) []byte {
		der, err := x509.MarshalPKIXPublicKey(keys.rs.pub())
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	requireATJWT := func(c *IssuerConfig, _ *Options) { c.RequireTyp = "at+jwt" }
	tests := []struct {
		name   string
		mod    func(*IssuerConfig, *Options)
		token  func(t testing.TB, f *fixture) string
		detail string // "" means accepted
	}{
		// Accepted.
		{name: "an RS256 token signed by a key of the configured JWKS is accepted",
			token: func(t testing.TB, f *fixture) string { return f.token(t, keys.rs, nil) }},
		{name: "a PS256 token is accepted",
			token: func(t testing.TB, f *fixture) string { return f.token(t, keys.ps, nil) }},
		{name: "an ES256 token is accepted",
			token: func(t testing.TB, f *fixture) string { return f.token(t, keys.ec, nil) }},
		{name: "an ES384 token is accepted",
			token: func(t testing.TB, f *fixture) string { return f.token(t, keys.ec384, nil) }},
		{name: "an EdDSA token is accepted",
			token: func(t testing.TB, f *fixture) string { return f.token(t, keys.ed, nil) }},
		{name: "an RS256 token naming a key whose JWK alg is RS256 is accepted",
			token: func(t testing.TB, f *fixture) string { return f.token(t, keys.pinned, nil) }},
		{name: "a token without kid is accepted when a key of its issuer verifies it",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.ec384, map[string]any{"kid": absent}, f.claims(nil))
			}},
		{name: "an aud array containing our audience is accepted",
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"aud": []string{"other", testAudience}})
			}},
		{name: "an aud equal to the second configured audience is accepted",
			mod: func(c *IssuerConfig, _ *Options) { c.Audiences = []string{"first", "second"} },
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"aud": "second"})
			}},
		{name: "a token expired less than the clock skew ago is accepted",
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"exp": f.clock.Now().Add(-20 * time.Second).Unix()})
			}},
		{name: "a token whose nbf is within the clock skew is accepted",
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"nbf": f.clock.Now().Add(20 * time.Second).Unix()})
			}},
		{name: "a token issued less than the clock skew in the future is accepted",
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"iat": f.clock.Now().Add(20 * time.Second).Unix()})
			}},
		{name: "fractional NumericDates are accepted",
			token: func(t testing.TB, f *fixture) string {
				now := float64(f.clock.Now().Unix())
				return f.token(t, keys.rs, map[string]any{"iat": now - 0.5, "exp": now + 60.25, "auth_time": now - 1.75})
			}},
		{name: "typ at+jwt is accepted when at+jwt is required", mod: requireATJWT,
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"typ": "at+jwt"}, f.claims(nil))
			}},
		{name: "typ application/at+jwt is accepted when at+jwt is required", mod: requireATJWT,
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"typ": "application/at+jwt"}, f.claims(nil))
			}},
		{name: "typ AT+JWT is accepted case-insensitively", mod: requireATJWT,
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"typ": "AT+JWT"}, f.claims(nil))
			}},
		{name: "any typ is accepted when none is required",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"typ": "something/else"}, f.claims(nil))
			}},
		{name: "a token without typ is accepted when none is required",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"typ": absent}, f.claims(nil))
			}},
		{name: "a token of exactly 16384 bytes is accepted",
			token: func(t testing.TB, f *fixture) string { return tokenOfSize(t, f, keys.rs, MaxTokenBytes) }},
		{name: "unknown header members such as x5t are ignored",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"x5t": "abc", "cty": "JWT"}, f.claims(nil))
			}},

		// Algorithm rules.
		{name: "alg none with an empty signature is refused",
			token: func(t testing.TB, f *fixture) string {
				return seg(`{"alg":"none","kid":"rs"}`) + "." + seg(jsonText(t, f.claims(nil))) + "."
			}, detail: DetailMalformed},
		{name: "alg none with a signature is refused",
			token: func(t testing.TB, f *fixture) string {
				return seg(`{"alg":"none"}`) + "." + seg(jsonText(t, f.claims(nil))) + "." + seg("sig")
			}, detail: DetailAlgorithmNotAllowed},
		{name: "alg None is refused",
			token: func(t testing.TB, f *fixture) string {
				return seg(`{"alg":"None"}`) + "." + seg(jsonText(t, f.claims(nil))) + "." + seg("sig")
			}, detail: DetailAlgorithmNotAllowed},
		{name: "alg NONE is refused",
			token: func(t testing.TB, f *fixture) string {
				return seg(`{"alg":"NONE"}`) + "." + seg(jsonText(t, f.claims(nil))) + "." + seg("sig")
			}, detail: DetailAlgorithmNotAllowed},
		{name: "an HS256 token whose secret is the issuer's public key PEM is refused",
			token: func(t testing.TB, f *fixture) string {
				return hmacToken(t, "HS256", `{"alg":"HS256","kid":"rs"}`, jsonText(t, f.claims(nil)), pubPEM(t))
			}, detail: DetailAlgorithmNotAllowed},
		{name: "an HS384 token is refused",
			token: func(t testing.TB, f *fixture) string {
				return hmacToken(t, "HS384", `{"alg":"HS384"}`, jsonText(t, f.claims(nil)), []byte("secret"))
			}, detail: DetailAlgorithmNotAllowed},
		{name: "an HS512 token is refused",
			token: func(t testing.TB, f *fixture) string {
				return hmacToken(t, "HS512", `{"alg":"HS512","kid":"rs"}`, jsonText(t, f.claims(nil)), pubPEM(t))
			}, detail: DetailAlgorithmNotAllowed},
		{name: "an alg outside the issuer's allow-list is refused",
			mod:    func(c *IssuerConfig, _ *Options) { c.Algorithms = []string{"ES256"} },
			token:  func(t testing.TB, f *fixture) string { return f.token(t, keys.rs, nil) },
			detail: DetailAlgorithmNotAllowed},
		{name: "alg names are case-sensitive, so rs256 is refused",
			token: func(t testing.TB, f *fixture) string {
				return mintRaw(t, keys.rs, "RS256", `{"alg":"rs256","kid":"rs"}`, jsonText(t, f.claims(nil)))
			}, detail: DetailAlgorithmNotAllowed},
		{name: "an ES256 token naming an RSA key is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.ec, map[string]any{"kid": "rs"}, f.claims(nil))
			}, detail: DetailKeyMismatch},
		{name: "an ES256 token naming a P-384 key is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.ec, map[string]any{"kid": "ec384"}, f.claims(nil))
			}, detail: DetailKeyMismatch},
		{name: "an EdDSA token naming an RSA key is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.ed, map[string]any{"kid": "rs"}, f.claims(nil))
			}, detail: DetailKeyMismatch},
		{name: "a correctly signed PS256 token naming a key whose JWK alg is RS256 is refused",
			token: func(t testing.TB, f *fixture) string {
				k := keys.pinned
				k.alg = "PS256"
				return f.token(t, k, nil)
			}, detail: DetailKeyMismatch},

		// Keys.
		{name: "a token naming an unknown kid is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"kid": "nope"}, f.claims(nil))
			}, detail: DetailUnknownKid},
		{name: "a token without kid signed by an unknown key is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, newEC(t, "x", elliptic.P256(), "ES256"), map[string]any{"kid": absent}, f.claims(nil))
			}, detail: DetailBadSignature},
		{name: "a token without kid whose alg no key fits is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, newEC(t, "x", elliptic.P521(), "ES512"), map[string]any{"kid": absent}, f.claims(nil))
			}, detail: DetailUnknownKid},
		{name: "a token whose payload changed after signing is refused",
			token: func(t testing.TB, f *fixture) string {
				a := strings.Split(f.token(t, keys.rs, nil), ".")
				b := strings.Split(f.token(t, keys.rs, map[string]any{"sub": "admin"}), ".")
				return a[0] + "." + b[1] + "." + a[2]
			}, detail: DetailBadSignature},
		{name: "a token signed by another key under a known kid is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, newEC(t, "ec", elliptic.P256(), "ES256"), nil, f.claims(nil))
			}, detail: DetailBadSignature},

		// Header rules.
		{name: "a crit header is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"crit": []string{"exp"}, "exp": 1}, f.claims(nil))
			}, detail: DetailCritUnsupported},
		{name: "b64 false with crit is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"crit": []string{"b64"}, "b64": false}, f.claims(nil))
			}, detail: DetailCritUnsupported},
		{name: "b64 false without crit is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"b64": false}, f.claims(nil))
			}, detail: DetailCritUnsupported},
		{name: "a wrong typ is refused when at+jwt is required", mod: requireATJWT,
			token:  func(t testing.TB, f *fixture) string { return f.token(t, keys.rs, nil) },
			detail: DetailWrongTyp},
		{name: "a missing typ is refused when at+jwt is required", mod: requireATJWT,
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"typ": absent}, f.claims(nil))
			}, detail: DetailWrongTyp},
		{name: "a header without alg is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"alg": absent}, f.claims(nil))
			}, detail: DetailMalformed},
		{name: "a numeric kid is refused",
			token: func(t testing.TB, f *fixture) string {
				return mint(t, keys.rs, map[string]any{"kid": 7}, f.claims(nil))
			}, detail: DetailMalformed},
		{name: "a duplicate header member is refused",
			token: func(t testing.TB, f *fixture) string {
				return mintRaw(t, keys.rs, "RS256", `{"alg":"RS256","kid":"rs","kid":"rs"}`, jsonText(t, f.claims(nil)))
			}, detail: DetailDuplicateClaim},

		// Claims.
		{name: "a token without exp is refused",
			token:  func(t testing.TB, f *fixture) string { return f.token(t, keys.rs, map[string]any{"exp": absent}) },
			detail: DetailMissingExp},
		{name: "a token expired beyond the clock skew is refused",
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"exp": f.clock.Now().Add(-31 * time.Second).Unix()})
			}, detail: DetailExpired},
		{name: "a token whose nbf is beyond the clock skew is refused",
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"nbf": f.clock.Now().Add(31 * time.Second).Unix()})
			}, detail: DetailNotYetValid},
		{name: "a token issued beyond the clock skew in the future is refused",
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"iat": f.clock.Now().Add(31 * time.Second).Unix()})
			}, detail: DetailIssuedInFuture},
		{name: "with no clock skew a token is refused at its exp",
			mod: func(_ *IssuerConfig, o *Options) { o.ClockSkew = 0 },
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"exp": f.clock.Now().Unix()})
			}, detail: DetailExpired},
		{name: "a token for another audience is refused",
			token:  func(t testing.TB, f *fixture) string { return f.token(t, keys.rs, map[string]any{"aud": "other"}) },
			detail: DetailBadAudience},
		{name: "an aud array without our audience is refused",
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"aud": []string{"a", "b"}})
			}, detail: DetailBadAudience},
		{name: "an empty aud array is refused",
			token:  func(t testing.TB, f *fixture) string { return f.token(t, keys.rs, map[string]any{"aud": []string{}}) },
			detail: DetailBadAudience},
		{name: "an empty aud string is refused",
			token:  func(t testing.TB, f *fixture) string { return f.token(t, keys.rs, map[string]any{"aud": ""}) },
			detail: DetailBadAudience},
		{name: "a token without aud is refused",
			token:  func(t testing.TB, f *fixture) string { return f.token(t, keys.rs, map[string]any{"aud": absent}) },
			detail: DetailBadAudience},
		{name: "a token of an unconfigured issuer is refused",
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"iss": "https://evil.example.com"})
			}, detail: DetailUnknownIssuer},
		{name: "an iss differing only by a trailing slash is refused",
			token: func(t testing.TB, f *fixture) string {
				return f.token(t, keys.rs, map[string]any{"iss": f.idp.issuer() + "/"})
			}, detail: DetailUnknownIssuer},
		{name: "a token without iss is refused",
			token:  func(t testing.TB, f *fixture) string { return f.token(t, keys.rs, map[string]any{"iss": absent}) },
			detail: DetailUnknownIssuer},
		{name: "a duplicate acr claim is refused",
			token: func(t testing.TB, f *fixture) string {
				c := jsonText(t, f.claims(map[string]any{"acr": absent}))
				return mintRaw(t, keys.rs, "RS256", `{"alg":"RS256","kid":"rs"}`, `{"acr":"aal1",`+c[1:len(c)-1]+`,"acr":"aal3"}`)
			}, detail: DetailDuplicateClaim},
		{name: "a duplicate claim spelled with a JSON escape is refused",
			token: func(t testing.TB, f *fixture) string {
				c := jsonText(t, f.claims(nil))
				return mintRaw(t, keys.rs, "RS256", `{"alg":"RS256","kid":"rs"}`, `{"acr":"aal1",`+c[1:len(c)-1]+`,"a\u0063r":"aal3"}`)
			}, detail: DetailDuplicateClaim},

		// Structure.
		{name: "a token longer than 16384 bytes is refused",
			token:  func(t testing.TB, f *fixture) string { return tokenOfSize(t, f, keys.rs, MaxTokenBytes+1) },
			detail: DetailTooLarge},
		{name: "a token of two parts is refused",
			token: func(t testing.TB, f *fixture) string { return "abc.def" }, detail: DetailMalformed},
		{name: "a token of four parts is refused",
			token: func(t testing.TB, f *fixture) string { return f.token(t, keys.rs, nil) + ".x" }, detail: DetailMalformed},
		{name: "a JWE-shaped token of five parts is refused",
			token: func(t testing.TB, f *fixture) string { return "a.b.c.d.e" }, detail: DetailMalformed},
		{name: "a header that is not base64url is refused",
			token: func(t testing.TB, f *fixture) string { return "!!!." + seg("{}") + ".c2ln" }, detail: DetailMalformed},
		{name: "a padded base64 segment is refused",
			token: func(t testing.TB, f *fixture) string {
				return base64.URLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"rs"}`)) + "." + seg("{}") + ".c2ln"
			}, detail: DetailMalformed},
		{name: "a header that is a JSON array is refused",
			token:  func(t testing.TB, f *fixture) string { return seg(`["alg"]`) + "." + seg("{}") + ".c2ln" },
			detail: DetailMalformed},
		{name: "a payload with data after the JSON object is refused",
			token: func(t testing.TB, f *fixture) string {
				return mintRaw(t, keys.rs, "RS256", `{"alg":"RS256","kid":"rs"}`, jsonText(t, f.claims(nil))+`{}`)
			}, detail: DetailMalformed},
		{name: "a payload that is not JSON is refused",
			token: func(t testing.TB, f *fixture) string {
				return mintRaw(t, keys.rs, "RS256", `{"alg":"RS256","kid":"rs"}`, `not json`)
			}, detail: DetailMalformed},
		{name: "a signature that is not base64url is refused",
			token: func(t testing.TB, f *fixture) string {
				a := strings.Split(f.token(t, keys.rs, nil), ".")
				return a[0] + "." + a[1] + ".@@@"
			}, detail: DetailMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, keys.all(), tt.mod)
			raw := tt.token(t, f)
			c, err := f.v.Verify(context.Background(), raw)
			wantDetail(t, err, tt.detail)
			if tt.detail == "" && c.Issuer != f.idp.issuer() {
				t.Fatalf("claims issuer %q, want %q", c.Issuer, f.idp.issuer())
			}
			if tt.detail != "" && c != nil {
				t.Fatalf("claims returned with an error: %+v", c)
			}
		})
	}
}

// tokenOfSize mints a valid token of exactly size bytes by padding a claim and, since
// unpadded base64 never has length 4n+1, a header member.
func tokenOfSize(t testing.TB, f *fixture, k testKey, size int) string {
	t.Helper()
	claims := f.claims(map[string]any{"pad": ""})
	for h := range 4 {
		hdr := map[string]any{"pad": strings.Repeat("h", h)}
		claims["pad"] = ""
		base := len(mint(t, k, hdr, claims))
		// Each 3 payload bytes add 4 base64 characters; search around the estimate.
		for n := max(0, (size-base)*3/4-8); n < (size-base)*3/4+8; n++ {
			claims["pad"] = strings.Repeat("x", n)
			if tok := mint(t, k, hdr, claims); len(tok) == size {
				return tok
			}
		}
	}
	t.Fatalf("cannot build a token of %d bytes", size)
	return ""
}

func TestVerifyClaimTypes(t *testing.T) {
	keys := newKeyring(t)
	f := newFixture(t, keys.all(), nil)
	tests := []struct {
		claim string
		value any
	}{
		{"exp", "2000000000"}, {"exp", true}, {"exp", nil}, {"exp", 1e300}, {"exp", -1},
		{"exp", json.RawMessage("1e400")}, {"exp", 253402300800},
		{"nbf", "0"}, {"iat", []int{1}}, {"auth_time", "1700000000"}, {"auth_time", map[string]any{}},
		{"acr", 2}, {"acr", nil}, {"acr", []string{"aal2"}},
		{"aud", 1}, {"aud", []any{testAudience, 1}}, {"aud", map[string]any{"a": 1}}, {"aud", nil},
		{"amr", "mfa"}, {"amr", []any{"pwd", 1}}, {"amr", []any{nil}},
		{"acrs", "c1"}, {"acrs", []any{"c1", 2}}, {"acrs", nil}, {"acrs", map[string]any{"c1": true}},
		{"scope", []string{"a"}}, {"scp", 1}, {"scp", []any{1}},
		{"sub", 1}, {"client_id", false}, {"gty", []string{"x"}}, {"iss", 1},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("a %s of %s makes the token invalid", tt.claim, jsonText(t, tt.value))
		t.Run(name, func(t *testing.T) {
			_, err := f.v.Verify(context.Background(), f.token(t, keys.rs, map[string]any{tt.claim: tt.value}))
			wantDetail(t, err, DetailClaimType)
		})
	}
}

func TestVerifyFillsClaims(t *testing.T) {
	keys := newKeyring(t)
	f := newFixture(t, keys.all(), nil)
	now := f.clock.Now()
	tests := []struct {
		name      string
		overrides map[string]any
		want      func(now time.Time) policyClaimsCheck
	}{
		{
			name: "every supported claim is copied",
			overrides: map[string]any{
				"sub": "user-1", "client_id": "app", "gty": "client-credentials",
				"acr": "aal2", "amr": []string{"pwd", "otp"}, "auth_time": float64(now.Unix()) - 90.5,
				"scope": "read  write", "scp": []string{"ignored"},
			},
			want: func(now time.Time) policyClaimsCheck {
				return policyClaimsCheck{
					Subject: "user-1", ClientID: "app", Gty: "client-credentials", ACR: "aal2", HasACR: true,
					AMR: []string{"pwd", "otp"}, AuthTime: now.Add(-90*time.Second - 500*time.Millisecond),
					Scopes: []string{"read", "write"},
				}
			},
		},
		{
			name:      "scopes come from scp when scope is absent",
			overrides: map[string]any{"scp": []string{"a", "b"}},
			want: func(time.Time) policyClaimsCheck {
				return policyClaimsCheck{Subject: "user-1", Scopes: []string{"a", "b"}}
			},
		},
		{
			name:      "a space-separated scp string is split",
			overrides: map[string]any{"scp": "a b"},
			want: func(time.Time) policyClaimsCheck {
				return policyClaimsCheck{Subject: "user-1", Scopes: []string{"a", "b"}}
			},
		},
		{
			name:      "an empty acr is present",
			overrides: map[string]any{"acr": ""},
			want:      func(time.Time) policyClaimsCheck { return policyClaimsCheck{Subject: "user-1", HasACR: true} },
		},
		{
			name:      "absent acr and auth_time stay zero",
			overrides: nil,
			want:      func(time.Time) policyClaimsCheck { return policyClaimsCheck{Subject: "user-1"} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := f.v.Verify(context.Background(), f.token(t, keys.rs, tt.overrides))
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want(now)
			got := policyClaimsCheck{
				Subject: c.Subject, ClientID: c.ClientID, Gty: c.Gty, ACR: c.ACR, HasACR: c.HasACR,
				AMR: c.AMR, AuthTime: c.AuthTime, Scopes: c.Scopes,
			}
			if !got.equal(want) {
				t.Fatalf("claims\n got %+v\nwant %+v", got, want)
			}
			if c.Issuer != f.idp.issuer() || !c.IssuedAt.Equal(now) || !c.Expiry.Equal(now.Add(time.Hour)) {
				t.Fatalf("iss/iat/exp = %q %v %v", c.Issuer, c.IssuedAt, c.Expiry)
			}
		})
	}
}

// policyClaimsCheck is the comparable part of policy.Claims.
type policyClaimsCheck struct {
	Subject, ClientID, Gty, ACR string
	HasACR                      bool
	AMR                         []string
	AuthTime                    time.Time
	Scopes                      []string
}

func (a policyClaimsCheck) equal(b policyClaimsCheck) bool {
	return a.Subject == b.Subject && a.ClientID == b.ClientID && a.Gty == b.Gty && a.ACR == b.ACR &&
		a.HasACR == b.HasACR && slices.Equal(a.AMR, b.AMR) && a.AuthTime.Equal(b.AuthTime) &&
		slices.Equal(a.Scopes, b.Scopes)
}

// TestVerifyNeverUsesTokenKeys pins that key material named by the token itself (jku,
// x5u, jwk, x5c) is never fetched or used.
func TestVerifyNeverUsesTokenKeys(t *testing.T) {
	keys := newKeyring(t)
	f := newFixture(t, keys.all(), nil)
	evil := newEC(t, "evil", elliptic.P256(), "ES256")
	attacker := newIDP(t, evil)
	cert := selfSigned(t, evil)
	tests := []struct {
		name   string
		header map[string]any
		detail string
	}{
		{"a jku header pointing at the attacker's JWKS is not fetched", map[string]any{"jku": attacker.jwksURI()}, DetailUnknownKid},
		{"an x5u header pointing at the attacker is not fetched", map[string]any{"x5u": attacker.jwksURI()}, DetailUnknownKid},
		{"an embedded jwk header is not used", map[string]any{"jwk": evil.jwk(t, nil)}, DetailUnknownKid},
		{"an embedded jwk header without kid is not used", map[string]any{"jwk": evil.jwk(t, nil), "kid": absent}, DetailBadSignature},
		{"an x5c header is not used", map[string]any{"x5c": []string{cert}, "kid": absent}, DetailBadSignature},
		{"a jku header with the kid of a configured key is not used", map[string]any{"jku": attacker.jwksURI(), "kid": "ec"}, DetailBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Advance(time.Minute) // let the unknown kid refetch run, from the configured JWKS only
			_, err := f.v.Verify(context.Background(), mint(t, evil, tt.header, f.claims(nil)))
			wantDetail(t, err, tt.detail)
			if n := attacker.jwksHits.Load() + attacker.discoveryHits.Load(); n != 0 {
				t.Fatalf("attacker server got %d requests", n)
			}
		})
	}
}

// selfSigned returns a base64 DER certificate for k, as an x5c member carries it.
func selfSigned(t testing.TB, k testKey) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "evil"},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.pub(), k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// TestVerifyIssuerIsolation pins that a token is checked only with its own issuer's
// keys: a key of issuer A never verifies a token claiming issuer B.
func TestVerifyIssuerIsolation(t *testing.T) {
	a := newEC(t, "k1", elliptic.P256(), "ES256")
	b := newEC(t, "k1", elliptic.P256(), "ES256") // same kid, other key
	onlyA := newEC(t, "only-a", elliptic.P256(), "ES256")
	idpA, idpB := newIDP(t, a, onlyA), newIDP(t, b)
	clk := newClock()
	ks := NewKeySets(KeySetOptions{Now: clk.Now, AfterFunc: clk.AfterFunc})
	t.Cleanup(ks.Close)
	v, err := newTestVerifier(ks, []IssuerConfig{
		{Issuer: idpA.issuer(), JWKSURI: idpA.jwksURI(), Audiences: []string{testAudience}},
		{Issuer: idpB.issuer(), JWKSURI: idpB.jwksURI(), Audiences: []string{testAudience}},
	}, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	v.WaitFirstFetch(context.Background())
	claims := func(iss string) map[string]any {
		return map[string]any{"iss": iss, "aud": testAudience, "exp": clk.Now().Add(time.Hour).Unix()}
	}
	tests := []struct {
		name   string
		token  string
		detail string
	}{
		{"a token of issuer A signed by A's key is accepted", mint(t, a, nil, claims(idpA.issuer())), ""},
		{"a token of issuer B signed by B's key is accepted", mint(t, b, nil, claims(idpB.issuer())), ""},
		{"a token claiming issuer B signed by A's key under a shared kid is refused", mint(t, a, nil, claims(idpB.issuer())), DetailBadSignature},
		{"a token claiming issuer B naming a kid only A has is refused", mint(t, onlyA, nil, claims(idpB.issuer())), DetailUnknownKid},
		{"a token claiming issuer B without kid signed by A's key is refused", mint(t, a, map[string]any{"kid": absent}, claims(idpB.issuer())), DetailBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tt.token)
			wantDetail(t, err, tt.detail)
		})
	}
}

func TestVerifyKidlessTriesAtMostEightKeys(t *testing.T) {
	var published []testKey
	for i := range 10 {
		published = append(published, newEC(t, fmt.Sprintf("k%d", i), elliptic.P256(), "ES256"))
	}
	f := newFixture(t, published, nil)
	tests := []struct {
		name   string
		signer testKey
		detail string
	}{
		{"a token without kid signed by the eighth key is accepted", published[7], ""},
		{"a token without kid signed by the ninth key is refused", published[8], DetailBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.v.Verify(context.Background(), mint(t, tt.signer, map[string]any{"kid": absent}, f.claims(nil)))
			wantDetail(t, err, tt.detail)
		})
	}
}

func TestNewVerifierRefusesBadConfig(t *testing.T) {
	ks := NewKeySets(KeySetOptions{})
	t.Cleanup(ks.Close)
	good := IssuerConfig{Issuer: "https://idp.example.com", JWKSURI: "https://idp.example.com/jwks", Audiences: []string{"api"}}
	with := func(mod func(*IssuerConfig)) []IssuerConfig {
		c := good
		mod(&c)
		return []IssuerConfig{c}
	}
	tests := []struct {
		name    string
		ks      *KeySets
		issuers []IssuerConfig
		opts    Options
		wantErr string // substring; "" means accepted
	}{
		{name: "a valid issuer is accepted", ks: ks, issuers: []IssuerConfig{good}},
		{name: "discovery on an https issuer is accepted", ks: ks, issuers: with(func(c *IssuerConfig) { c.JWKSURI = "" })},
		{name: "http on localhost is accepted", ks: ks, issuers: with(func(c *IssuerConfig) { c.JWKSURI = "http://localhost:8080/jwks" })},
		{name: "http on ::1 is accepted", ks: ks, issuers: with(func(c *IssuerConfig) { c.JWKSURI = "http://[::1]:8080/jwks" })},
		{name: "HS256 in the allow-list is refused", ks: ks, issuers: with(func(c *IssuerConfig) { c.Algorithms = []string{"RS256", "HS256"} }), wantErr: `"HS256" is never allowed`},
		{name: "none in the allow-list is refused", ks: ks, issuers: with(func(c *IssuerConfig) { c.Algorithms = []string{"none"} }), wantErr: "never allowed"},
		{name: "an unknown algorithm is refused", ks: ks, issuers: with(func(c *IssuerConfig) { c.Algorithms = []string{"rs256"} }), wantErr: `"rs256" is not one of`},
		{name: "an issuer without audiences is refused", ks: ks, issuers: with(func(c *IssuerConfig) { c.Audiences = nil }), wantErr: "no audiences"},
		{name: "an empty audience is refused", ks: ks, issuers: with(func(c *IssuerConfig) { c.Audiences = []string{""} }), wantErr: "empty audience"},
		{name: "an empty issuer is refused", ks: ks, issuers: with(func(c *IssuerConfig) { c.Issuer = "" }), wantErr: "issuer is empty"},
		{name: "a duplicate issuer is refused", ks: ks, issuers: []IssuerConfig{good, good}, wantErr: "configured twice"},
		{name: "an http jwks_uri on a public host is refused naming the issuer", ks: ks, issuers: with(func(c *IssuerConfig) { c.JWKSURI = "http://idp.example.com/jwks" }), wantErr: `"https://idp.example.com": jwks_uri`},
		{name: "discovery on an http issuer on a public host is refused", ks: ks, issuers: with(func(c *IssuerConfig) { c.Issuer, c.JWKSURI = "http://idp.example.com", "" }), wantErr: "discovery is impossible"},
		{name: "an issuer that is no URL needs a jwks_uri", ks: ks, issuers: with(func(c *IssuerConfig) { c.Issuer, c.JWKSURI = "idp", "" }), wantErr: "discovery is impossible"},
		{name: "an ftp jwks_uri is refused", ks: ks, issuers: with(func(c *IssuerConfig) { c.JWKSURI = "ftp://idp.example.com/jwks" }), wantErr: "scheme must be https"},
		{name: "a negative clock skew is refused", ks: ks, issuers: []IssuerConfig{good}, opts: Options{ClockSkew: -time.Second}, wantErr: "negative"},
		{name: "a nil KeySets is refused", ks: nil, issuers: []IssuerConfig{good}, wantErr: "needs a KeySets"},
		{name: "a negative cache size is refused: the cache cannot be turned off", ks: ks, issuers: []IssuerConfig{good}, opts: Options{CacheSize: -1}, wantErr: "cannot be turned off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newTestVerifier(tt.ks, tt.issuers, tt.opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyIsSafeForConcurrentUse(t *testing.T) {
	keys := newKeyring(t)
	f := newFixture(t, keys.all(), nil)
	tokens := []string{f.token(t, keys.rs, nil), f.token(t, keys.ec, nil), f.token(t, keys.ed, nil)}
	bad := mint(t, keys.rs, map[string]any{"kid": "nope"}, f.claims(nil))
	errs := make(chan error, 32)
	for g := range 32 {
		go func() {
			for i := range 50 {
				raw := tokens[(g+i)%len(tokens)]
				if i%10 == 0 {
					if _, err := f.v.Verify(context.Background(), bad); InvalidDetail(err) != DetailUnknownKid {
						errs <- fmt.Errorf("bad token: %v", err)
						return
					}
					continue
				}
				if _, err := f.v.Verify(context.Background(), raw); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 32 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyErrorKinds(t *testing.T) {
	keys := newKeyring(t)
	f := newFixture(t, keys.all(), nil)
	_, err := f.v.Verify(context.Background(), "a.b")
	if errors.Is(err, ErrKeysUnavailable) || errors.Is(err, ErrNoToken) {
		t.Fatalf("an invalid token must only be invalid: %v", err)
	}
	if InvalidDetail(err) != DetailMalformed {
		t.Fatalf("detail %q", InvalidDetail(err))
	}
}
