import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeClaims, findStepUpChallenge, parseMaxAge, parseOAuthChallenges, parseWWWAuthenticate } from "../src/challenge.js";

const plain = (h: string) => parseWWWAuthenticate(h).map((c) => ({ ...c, params: { ...c.params } }));

test("RFC 6750 §3: a bare realm", () => {
  assert.deepEqual(plain('Bearer realm="example"'), [{ scheme: "bearer", params: { realm: "example" } }]);
});

test("RFC 6750 §3: invalid_token with a description is not a step-up", () => {
  const h = 'Bearer realm="example", error="invalid_token", error_description="The access token expired"';
  assert.deepEqual(plain(h), [
    {
      scheme: "bearer",
      params: { realm: "example", error: "invalid_token", error_description: "The access token expired" },
    },
  ]);
  assert.equal(findStepUpChallenge(h), undefined);
});

test("RFC 6750: a scheme alone (our no-token answer)", () => {
  assert.deepEqual(plain("Bearer"), [{ scheme: "bearer", params: {} }]);
  assert.equal(findStepUpChallenge("Bearer"), undefined);
});

test("RFC 9470 §3: acr_values", () => {
  const h =
    'Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="myACR"';
  const s = findStepUpChallenge(h);
  assert.deepEqual(s?.acrValues, ["myACR"]);
  assert.equal(s?.maxAge, undefined);
  assert.equal(s?.errorDescription, "A different authentication level is required");
});

test("RFC 9470 §3: max_age", () => {
  const h =
    'Bearer error="insufficient_user_authentication", error_description="More recent authentication is required", max_age="5"';
  const s = findStepUpChallenge(h);
  assert.deepEqual(s?.acrValues, []);
  assert.equal(s?.maxAge, 5);
});

test("stepup-authz's own challenge (CONTRACT.md Decisions)", () => {
  const h =
    'Bearer error="insufficient_user_authentication", error_description="authentication level aal2 required", acr_values="aal2", max_age="300"';
  const s = findStepUpChallenge(h);
  assert.deepEqual(s?.acrValues, ["aal2"]);
  assert.equal(s?.maxAge, 300);
  // An IdP-specific acr from challenge_acr_values, colons and slashes included.
  const okta = findStepUpChallenge('Bearer error="insufficient_user_authentication", acr_values="urn:okta:loa:2fa:any https://refeds.org/profile/mfa"');
  assert.deepEqual(okta?.acrValues, ["urn:okta:loa:2fa:any", "https://refeds.org/profile/mfa"]);
});

test("RFC 9110 §11.6.1: token values, escaped quotes and a second challenge", () => {
  const h = 'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"';
  assert.deepEqual(plain(h), [
    { scheme: "newauth", params: { realm: "apps", type: "1", title: 'Login to "apps"' } },
    { scheme: "basic", params: { realm: "simple" } },
  ]);
});

test("several challenges in one header: the Bearer step-up one is found", () => {
  const h =
    'Basic realm="r", DPoP algs="ES256 PS256", Bearer error="insufficient_user_authentication", acr_values="aal2  aal3", max_age="60", Negotiate';
  const cs = plain(h);
  assert.deepEqual(
    cs.map((c) => c.scheme),
    ["basic", "dpop", "bearer", "negotiate"],
  );
  const s = findStepUpChallenge(h);
  assert.deepEqual(s?.acrValues, ["aal2", "aal3"]);
  assert.equal(s?.maxAge, 60);
});

test("the first Bearer step-up challenge wins", () => {
  const h =
    'Bearer error="invalid_token", Bearer error="insufficient_user_authentication", acr_values="aal2", Bearer error="insufficient_user_authentication", acr_values="aal3"';
  assert.deepEqual(findStepUpChallenge(h)?.acrValues, ["aal2"]);
});

test("schemes other than Bearer and DPoP never count as step-up", () => {
  for (const scheme of ["Basic", "Newauth", "Bearerx", "XBearer", "DPoPx"]) {
    assert.equal(findStepUpChallenge(`${scheme} error="insufficient_user_authentication", acr_values="aal2"`), undefined, scheme);
  }
});

test("schemes and auth-param names are case-insensitive, values are not", () => {
  const s = findStepUpChallenge('BEARER ERROR="insufficient_user_authentication", ACR_Values="AAL2", Max_Age="300"');
  assert.deepEqual(s?.acrValues, ["AAL2"]);
  assert.equal(s?.maxAge, 300);
  assert.equal(findStepUpChallenge('Bearer error="INSUFFICIENT_USER_AUTHENTICATION"'), undefined);
});

test("a token (unquoted) value works like a quoted one", () => {
  const s = findStepUpChallenge("Bearer error=insufficient_user_authentication, acr_values=aal2, max_age=300");
  assert.deepEqual(s?.acrValues, ["aal2"]);
  assert.equal(s?.maxAge, 300);
});

test("bad whitespace around '=' and empty list elements are accepted", () => {
  const s = findStepUpChallenge(' , ,Bearer error = "insufficient_user_authentication" ,, acr_values\t=\t"aal2",');
  assert.deepEqual(s?.acrValues, ["aal2"]);
});

test("token68", () => {
  assert.deepEqual(plain("Basic dXNlcjpwYXNz"), [{ scheme: "basic", params: {}, token68: "dXNlcjpwYXNz" }]);
  assert.deepEqual(plain("Negotiate a87421000492aa874209af8bc028=="), [
    { scheme: "negotiate", params: {}, token68: "a87421000492aa874209af8bc028==" },
  ]);
  const h = 'Bearer abc/+_-.~==, Bearer error="insufficient_user_authentication", acr_values="aal2"';
  assert.deepEqual(
    plain(h).map((c) => c.token68 ?? c.params["error"]),
    ["abc/+_-.~==", "insufficient_user_authentication"],
  );
  assert.deepEqual(findStepUpChallenge(h)?.acrValues, ["aal2"]);
});

test("an unterminated quoted-string drops the challenge in progress and the rest", () => {
  assert.deepEqual(plain('Bearer error="insufficient_user_authentication'), []);
  assert.equal(findStepUpChallenge('Bearer error="insufficient_user_authentication'), undefined);
  const h = 'Basic realm="x", Bearer error="insufficient_user_authentication", acr_values="aal2';
  assert.deepEqual(
    plain(h).map((c) => c.scheme),
    ["basic"],
  );
  assert.equal(findStepUpChallenge(h), undefined);
  // A trailing backslash escapes nothing.
  assert.deepEqual(plain('Bearer error="insufficient_user_authentication\\'), []);
  assert.deepEqual(plain('Bearer error="x\\"'), []);
});

test("escaped quotes cannot smuggle parameters", () => {
  const h =
    'Bearer error_description="say \\"hi\\", acr_values=\\"aal3\\", max_age=\\"0\\"", error="insufficient_user_authentication", acr_values="aal2"';
  const s = findStepUpChallenge(h);
  assert.deepEqual(s?.acrValues, ["aal2"]);
  assert.equal(s?.maxAge, undefined);
  assert.equal(s?.errorDescription, 'say "hi", acr_values="aal3", max_age="0"');
  assert.equal(findStepUpChallenge('Bearer realm="error=\\"insufficient_user_authentication\\""'), undefined);
  // A quoted comma is not a separator.
  assert.deepEqual(findStepUpChallenge('Bearer error_description="a, Bearer b", error="insufficient_user_authentication"')?.acrValues, []);
});

test("a repeated parameter makes the challenge ambiguous: it is dropped, later ones still count", () => {
  assert.equal(findStepUpChallenge('Bearer error="invalid_token", error="insufficient_user_authentication"'), undefined);
  assert.equal(findStepUpChallenge('Bearer error="insufficient_user_authentication", ERROR="invalid_token"'), undefined);
  const h = 'Bearer error="insufficient_user_authentication", acr_values="aal1", acr_values="aal3", Bearer error="insufficient_user_authentication", acr_values="aal2"';
  assert.deepEqual(findStepUpChallenge(h)?.acrValues, ["aal2"]);
});

test("syntax errors stop parsing", () => {
  const cases = [
    'Bearer error="insufficient_user_authentication" acr_values="aal2"', // no comma between params
    'Bearer"error"', // no space after the scheme
    'Bearer error=', // no value
    'Bearer error="insufficient_user_authentication", acr_values="a\u0000b"', // NUL in a quoted-string
    'Bearer error="insufficient_user_authentication", acr_values="a\r\n b"', // CR LF (obs-fold is not accepted)
    '"Bearer" error="insufficient_user_authentication"',
    'Bearer error="insufficient_user_authentication", acr_values="aal2";x',
  ];
  for (const h of cases) assert.equal(findStepUpChallenge(h), undefined, JSON.stringify(h));
  // A challenge completed before the error is kept; the broken list element after it is not.
  assert.deepEqual(
    plain('Bearer error="insufficient_user_authentication", =x, Basic realm="r"').map((c) => c.scheme),
    ["bearer"],
  );
});

test("hostile max_age values are ignored, acr_values still count", () => {
  for (const v of ["-1", "1e3", "300s", "", " 300", "3.5", "0x10", "99999999999999999999", "٣٠٠"]) {
    const s = findStepUpChallenge(`Bearer error="insufficient_user_authentication", acr_values="aal2", max_age="${v}"`);
    assert.equal(s?.maxAge, undefined, v);
    assert.deepEqual(s?.acrValues, ["aal2"], v);
  }
  assert.equal(findStepUpChallenge('Bearer error="insufficient_user_authentication", max_age="0"')?.maxAge, 0);
  assert.equal(parseMaxAge(300), 300);
  assert.equal(parseMaxAge(-1), undefined);
  assert.equal(parseMaxAge(1.5), undefined);
  assert.equal(parseMaxAge("300"), 300);
  assert.equal(parseMaxAge(null), undefined);
});

test("a parameter named __proto__ is data, not a prototype", () => {
  const [c] = parseWWWAuthenticate('Bearer __proto__="x", error="insufficient_user_authentication"');
  assert.equal(Object.getPrototypeOf(c!.params), Object.prototype);
  assert.equal(Object.getOwnPropertyDescriptor(c!.params, "__proto__")?.value, "x");
  assert.equal(findStepUpChallenge('Bearer constructor="x"'), undefined);
});

test("empty, null and undefined headers", () => {
  assert.deepEqual(parseWWWAuthenticate(""), []);
  assert.deepEqual(parseWWWAuthenticate(null), []);
  assert.deepEqual(parseWWWAuthenticate(undefined), []);
  assert.deepEqual(parseWWWAuthenticate(" , "), []);
});

test("linear time on large hostile headers", () => {
  const big = [
    "Basic, ".repeat(40_000),
    "Bearer " + "a=b, ".repeat(40_000),
    'Bearer x="' + '\\"'.repeat(100_000),
    "Bearer " + "a".repeat(200_000),
    "Bearer " + "=".repeat(200_000),
  ];
  for (const h of big) {
    const t0 = performance.now();
    parseWWWAuthenticate(h);
    findStepUpChallenge(h + ', Bearer error="insufficient_user_authentication"');
    assert.ok(performance.now() - t0 < 2000, `took ${performance.now() - t0} ms on ${h.slice(0, 20)}...`);
  }
});

// CONTRACT.md "Identity-provider dialects": Entra's claims challenge. C is the
// standard base64 (padded) of exactly these bytes, no spaces.
const ENTRA_JSON = '{"access_token":{"acrs":{"essential":true,"value":"aal2"}}}';
const ENTRA_C = "eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYWFsMiJ9fX0=";
const ALGS = "ES256 ES384 EdDSA PS256 RS256";
const RM = "https://api.example.com/.well-known/oauth-protected-resource/mcp";

test("Entra's insufficient_claims: the claims, decoded, as text and as an object", () => {
  assert.equal(Buffer.from(ENTRA_C, "base64").toString(), ENTRA_JSON, "the fixture is the contract's encoding");
  const h = `Bearer error="insufficient_claims", error_description="authentication level aal2 required", claims="${ENTRA_C}"`;
  const s = findStepUpChallenge(h);
  assert.equal(s?.scheme, "bearer");
  assert.equal(s?.error, "insufficient_claims");
  assert.equal(s?.errorDescription, "authentication level aal2 required");
  assert.equal(s?.claims?.json, ENTRA_JSON);
  assert.deepEqual(s?.claims?.value, { access_token: { acrs: { essential: true, value: "aal2" } } });
  // The contract: exactly those parameters, no acr_values and no max_age.
  assert.deepEqual(s?.acrValues, []);
  assert.equal(s?.maxAge, undefined);
  assert.equal(s?.resourceMetadata, undefined);
});

test("Entra's insufficient_claims with resource_metadata (an IdP-specific value, unpadded)", () => {
  const c = "eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19";
  const h = `Bearer error="insufficient_claims", error_description="step-up", claims="${c}", resource_metadata="${RM}"`;
  const s = findStepUpChallenge(h);
  assert.equal(s?.claims?.json, '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}');
  assert.equal(s?.resourceMetadata, RM);
});

test("claims: standard base64 with + and / and UTF-8; the URL-safe alphabet is tolerated", () => {
  const json = '{"access_token":{"acrs":{"essential":true,"value":"ü?>~"}}}';
  assert.equal(decodeClaims("eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiw7w/Pn4ifX19")?.json, json);
  assert.equal(decodeClaims("eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiw7w_Pn4ifX19")?.json, json);
});

test("claims that are not base64 of a JSON object are left out; the step-up challenge still counts", () => {
  const b64 = (s: string) => Buffer.from(s, "latin1").toString("base64");
  const bad: Array<[string, string]> = [
    ["not base64", "%%%"],
    ["base64 with a space", "e30 ="],
    ["an impossible length", "e30=A"],
    ["JSON array", b64("[]")],
    ["JSON string", b64('"x"')],
    ["JSON null", b64("null")],
    ["not JSON", b64("{access_token}")],
    ["not UTF-8", b64('{"a":"\xff"}')],
    ["empty", ""],
  ];
  for (const [name, v] of bad) {
    assert.equal(decodeClaims(v), undefined, name);
    const s = findStepUpChallenge(`Bearer error="insufficient_claims", claims="${v}"`);
    assert.equal(s?.error, "insufficient_claims", name);
    assert.equal(s?.claims, undefined, name);
  }
});

test("RFC 9470 with resource_metadata (RFC 9728 §5.1)", () => {
  const h = `Bearer error="insufficient_user_authentication", error_description="authentication level aal2 required", acr_values="aal2", max_age="300", resource_metadata="${RM}"`;
  const s = findStepUpChallenge(h);
  assert.deepEqual(s?.acrValues, ["aal2"]);
  assert.equal(s?.maxAge, 300);
  assert.equal(s?.resourceMetadata, RM);
});

test("the DPoP-scheme step-up (CONTRACT.md: under DPoP, with algs), with and without resource_metadata", () => {
  const h = `DPoP error="insufficient_user_authentication", error_description="authentication level aal2 required", acr_values="aal2", max_age="300", algs="${ALGS}"`;
  const s = findStepUpChallenge(h);
  assert.equal(s?.scheme, "dpop");
  assert.deepEqual(s?.acrValues, ["aal2"]);
  assert.equal(s?.maxAge, 300);
  assert.deepEqual(s?.algs, ["ES256", "ES384", "EdDSA", "PS256", "RS256"]);
  assert.equal(s?.resourceMetadata, undefined);
  const withRM = findStepUpChallenge(
    `DPoP error="insufficient_user_authentication", error_description="x", acr_values="aal2", max_age="300", resource_metadata="${RM}", algs="${ALGS}"`,
  );
  assert.equal(withRM?.resourceMetadata, RM);
  assert.equal(withRM?.scheme, "dpop");
});

test("parseOAuthChallenges: Bearer and DPoP challenges with their parameters; other schemes skipped", () => {
  const strip = (h: string) => parseOAuthChallenges(h).map(({ challenge: _c, ...o }) => o);
  // RFC 9449 §7.2: no credentials on a route that wants DPoP.
  assert.deepEqual(strip(`Bearer, DPoP algs="${ALGS}"`), [
    { scheme: "bearer", scope: [], algs: [] },
    { scheme: "dpop", scope: [], algs: ALGS.split(" ") },
  ]);
  assert.deepEqual(strip(`Basic realm="x", Bearer error="insufficient_scope", scope="payouts:write admin", resource_metadata="${RM}"`), [
    { scheme: "bearer", error: "insufficient_scope", scope: ["payouts:write", "admin"], algs: [], resourceMetadata: RM },
  ]);
  assert.deepEqual(strip(`DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof", algs="ES256"`), [
    { scheme: "dpop", error: "use_dpop_nonce", errorDescription: "Resource server requires nonce in DPoP proof", scope: [], algs: ["ES256"] },
  ]);
  assert.equal(findStepUpChallenge(`DPoP error="use_dpop_nonce", algs="ES256"`), undefined);
  assert.equal(findStepUpChallenge(`DPoP error="invalid_dpop_proof", algs="ES256"`), undefined);
});
