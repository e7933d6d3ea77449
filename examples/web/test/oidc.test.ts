import { test } from "node:test";
import assert from "node:assert/strict";
import { buildAuthorizationRequest, discover, exchangeCode, oidcStepUp, parseAuthorizationResponse, pkceChallenge } from "../src/oidc.js";
import { EmbeddedJWK, jwtVerify } from "jose";
import { createDPoP } from "../src/dpop.js";
import { stepUpFetch } from "../src/stepUpFetch.js";
import type { StepUpPrompt } from "../src/stepUpFetch.js";

const AUTHZ = "https://idp.example.com/oauth2/authorize";
const TOKEN = "https://idp.example.com/oauth2/token";
const REDIRECT = "https://app.example.com/stepup-callback";

test("PKCE S256: RFC 7636 Appendix B", async () => {
  assert.equal(await pkceChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
});

test("the authorization request carries acr_values and max_age (RFC 9470 §4) with code + PKCE", async () => {
  const ar = await buildAuthorizationRequest({
    authorizationEndpoint: AUTHZ + "?tenant=acme",
    clientId: "web",
    redirectUri: REDIRECT,
    acrValues: ["urn:okta:loa:2fa:any", "aal2"],
    maxAge: 300,
    codeVerifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    state: "s1",
    nonce: "n1",
  });
  const u = new URL(ar.url);
  assert.equal(u.origin + u.pathname, AUTHZ);
  assert.deepEqual(Object.fromEntries(u.searchParams), {
    tenant: "acme",
    response_type: "code",
    client_id: "web",
    redirect_uri: REDIRECT,
    scope: "openid",
    state: "s1",
    nonce: "n1",
    code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    code_challenge_method: "S256",
    acr_values: "urn:okta:loa:2fa:any aal2",
    max_age: "300",
  });
  assert.match(ar.url, /acr_values=urn%3Aokta%3Aloa%3A2fa%3Aany(\+|%20)aal2/);
});

test("generated state, nonce and verifier are fresh, URL-safe and long enough", async () => {
  const a = await buildAuthorizationRequest({ authorizationEndpoint: AUTHZ, clientId: "web", redirectUri: REDIRECT });
  const b = await buildAuthorizationRequest({ authorizationEndpoint: AUTHZ, clientId: "web", redirectUri: REDIRECT });
  for (const v of [a.state, a.nonce, a.codeVerifier]) assert.match(v, /^[A-Za-z0-9_-]{20,}$/);
  assert.ok(a.codeVerifier.length >= 43, "RFC 7636: at least 43 characters");
  assert.notEqual(a.state, b.state);
  assert.notEqual(a.codeVerifier, b.codeVerifier);
  const u = new URL(a.url);
  assert.equal(u.searchParams.get("acr_values"), null, "no requirement, no acr_values");
  assert.equal(u.searchParams.get("max_age"), null);
  assert.equal(u.searchParams.get("code_challenge"), await pkceChallenge(a.codeVerifier));
});

test("max_age 0 is sent (a fresh login); negative or fractional is refused", async () => {
  const base = { authorizationEndpoint: AUTHZ, clientId: "web", redirectUri: REDIRECT };
  assert.equal(new URL((await buildAuthorizationRequest({ ...base, maxAge: 0 })).url).searchParams.get("max_age"), "0");
  await assert.rejects(buildAuthorizationRequest({ ...base, maxAge: -1 }), RangeError);
  await assert.rejects(buildAuthorizationRequest({ ...base, maxAge: 1.5 }), RangeError);
});

test("extra parameters cannot override the protocol's; essential acr as a claims request", async () => {
  const ar = await buildAuthorizationRequest({
    authorizationEndpoint: AUTHZ,
    clientId: "web",
    redirectUri: REDIRECT,
    acrValues: ["aal2"],
    essentialAcr: true,
    extraParams: { login_hint: "ada@example.com", client_id: "evil", redirect_uri: "https://evil.example", acr_values: "aal1" },
  });
  const p = new URL(ar.url).searchParams;
  assert.equal(p.get("login_hint"), "ada@example.com");
  assert.equal(p.get("client_id"), "web");
  assert.equal(p.get("redirect_uri"), REDIRECT);
  assert.equal(p.get("acr_values"), "aal2");
  assert.deepEqual(JSON.parse(p.get("claims")!), { id_token: { acr: { essential: true, values: ["aal2"] } } });
});

test("the authorization response: code, user cancel, errors, state and issuer checks", () => {
  assert.deepEqual(parseAuthorizationResponse(`${REDIRECT}?code=c1&state=s1`, "s1"), { kind: "code", code: "c1" });
  assert.deepEqual(parseAuthorizationResponse(`${REDIRECT}#code=c1&state=s1`, "s1"), { kind: "code", code: "c1" });
  assert.deepEqual(parseAuthorizationResponse(`${REDIRECT}?code=c1&state=s2`, "s1"), { kind: "failed", error: "state_mismatch" });
  assert.deepEqual(parseAuthorizationResponse(`${REDIRECT}?code=c1`, "s1"), { kind: "failed", error: "state_mismatch" });
  assert.deepEqual(parseAuthorizationResponse(`${REDIRECT}?error=access_denied&state=s1`, "s1"), { kind: "cancelled", error: "access_denied" });
  assert.deepEqual(parseAuthorizationResponse(`${REDIRECT}?error=unmet_authentication_requirements&error_description=no+factor&state=s1`, "s1"), {
    kind: "failed",
    error: "unmet_authentication_requirements",
    description: "no factor",
  });
  assert.deepEqual(parseAuthorizationResponse(`${REDIRECT}?state=s1`, "s1"), { kind: "failed", error: "missing_code" });
  assert.deepEqual(parseAuthorizationResponse(`${REDIRECT}?code=c1&state=s1&iss=https%3A%2F%2Fevil.example`, "s1", "https://idp.example.com"), {
    kind: "failed",
    error: "issuer_mismatch",
  });
  assert.deepEqual(parseAuthorizationResponse(`${REDIRECT}?code=c1&state=s1&iss=https%3A%2F%2Fidp.example.com`, "s1", "https://idp.example.com"), {
    kind: "code",
    code: "c1",
  });
});

/** A fake IdP token endpoint that checks PKCE against the authorization request it saw. */
function fakeIdP() {
  let lastChallenge = "";
  const exchanges: URLSearchParams[] = [];
  const navigate = async (url: string) => {
    const p = new URL(url).searchParams;
    lastChallenge = p.get("code_challenge")!;
    return `${p.get("redirect_uri")}?code=the-code&state=${encodeURIComponent(p.get("state")!)}`;
  };
  const fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const form = new URLSearchParams(String(init?.body));
    exchanges.push(form);
    if (String(input) !== TOKEN || form.get("code") !== "the-code" || (await pkceChallenge(form.get("code_verifier")!)) !== lastChallenge) {
      return Response.json({ error: "invalid_grant" }, { status: 400 });
    }
    return Response.json({ access_token: "aal2-token", token_type: "Bearer", expires_in: 300, id_token: "id" });
  }) as typeof globalThis.fetch;
  return { navigate, fetch, exchanges, urls: [] as string[] };
}

const prompt: StepUpPrompt = { requiredAcr: "aal2", acrValues: ["aal2"], maxAge: 300, request: { url: "/api/payout-destination", method: "POST" } };

test("oidcStepUp: authorization request with the challenge's requirement, code exchange, new token", async () => {
  const idp = fakeIdP();
  let authUrl = "";
  const tokens: unknown[] = [];
  const stepUp = oidcStepUp({
    authorizationEndpoint: AUTHZ,
    tokenEndpoint: TOKEN,
    clientId: "web",
    redirectUri: REDIRECT,
    navigate: (url) => ((authUrl = url), idp.navigate(url)),
    fetch: idp.fetch,
    onTokens: (t) => tokens.push(t),
    extraParams: (p) => ({ login_hint: "ada@example.com", ui_locales: p.request.method === "POST" ? "en" : "de" }),
  });
  assert.deepEqual(await stepUp(prompt), { kind: "success", accessToken: "aal2-token" });
  const p = new URL(authUrl).searchParams;
  assert.equal(p.get("acr_values"), "aal2");
  assert.equal(p.get("max_age"), "300");
  assert.equal(p.get("login_hint"), "ada@example.com");
  assert.equal(idp.exchanges[0]!.get("grant_type"), "authorization_code");
  assert.equal(idp.exchanges[0]!.get("redirect_uri"), REDIRECT);
  assert.equal(idp.exchanges[0]!.get("client_id"), "web");
  assert.equal(tokens.length, 1);
});

test("oidcStepUp: closed window is cancelled; access_denied is cancelled; a tampered state or a failed exchange is failed", async () => {
  const idp = fakeIdP();
  const base = { authorizationEndpoint: AUTHZ, tokenEndpoint: TOKEN, clientId: "web", redirectUri: REDIRECT, fetch: idp.fetch };
  assert.deepEqual(await oidcStepUp({ ...base, navigate: async () => null })(prompt), { kind: "cancelled" });
  const denied = oidcStepUp({
    ...base,
    navigate: async (url) => `${REDIRECT}?error=access_denied&state=${new URL(url).searchParams.get("state")}`,
  });
  assert.deepEqual(await denied(prompt), { kind: "cancelled" });
  const tampered = await oidcStepUp({ ...base, navigate: async () => `${REDIRECT}?code=the-code&state=attacker` })(prompt);
  assert.equal(tampered.kind, "failed");
  const badCode = await oidcStepUp({
    ...base,
    navigate: async (url) => `${REDIRECT}?code=other&state=${new URL(url).searchParams.get("state")}`,
  })(prompt);
  assert.equal(badCode.kind, "failed");
  const thrown = await oidcStepUp({ ...base, navigate: async () => Promise.reject(new Error("popup blocked")) })(prompt);
  assert.equal(thrown.kind, "failed");
});

test("oidcStepUp drives stepUpFetch: deny -> IdP -> retry -> 200", async () => {
  const idp = fakeIdP();
  const api = (async (_input: RequestInfo | URL, init?: RequestInit) =>
    new Headers(init?.headers).get("authorization") === "Bearer aal2-token"
      ? Response.json({ ok: true })
      : new Response('{"error":"step_up_required","required_acr":"aal2","max_age":300}', {
          status: 401,
          headers: { "content-type": "application/json", "www-authenticate": 'Bearer error="insufficient_user_authentication", acr_values="aal2", max_age="300"' },
        })) as typeof globalThis.fetch;
  const res = await stepUpFetch("https://app.example.com/api/payout-destination", { method: "POST", body: "{}" }, {
    getAccessToken: () => "aal1-token",
    stepUp: oidcStepUp({ authorizationEndpoint: AUTHZ, tokenEndpoint: TOKEN, clientId: "web", redirectUri: REDIRECT, navigate: idp.navigate, fetch: idp.fetch }),
    fetch: api,
  });
  assert.equal(res.status, 200);
});

test("exchangeCode reports the token endpoint's error", async () => {
  const fetch = (async () => Response.json({ error: "invalid_grant" }, { status: 400 })) as typeof globalThis.fetch;
  await assert.rejects(
    exchangeCode({ tokenEndpoint: TOKEN, clientId: "web", redirectUri: REDIRECT, code: "c", codeVerifier: "v", fetch }),
    /400 invalid_grant/,
  );
});

test("discovery checks the issuer", async () => {
  const doc = { issuer: "https://idp.example.com", authorization_endpoint: AUTHZ, token_endpoint: TOKEN };
  const fetch = (async (input: RequestInfo | URL) => {
    assert.equal(String(input), "https://idp.example.com/.well-known/openid-configuration");
    return Response.json(doc);
  }) as typeof globalThis.fetch;
  assert.equal((await discover("https://idp.example.com", fetch)).token_endpoint, TOKEN);
  const evil = (async () => Response.json({ ...doc, issuer: "https://evil.example" })) as typeof globalThis.fetch;
  await assert.rejects(discover("https://idp.example.com", evil), /issuer/);
});

test("a claims request (OIDC Core §5.5) is sent as claims, with essentialAcr merged in; dpop_jkt binds the code (RFC 9449 §10)", async () => {
  const ar = await buildAuthorizationRequest({
    authorizationEndpoint: AUTHZ,
    clientId: "web",
    redirectUri: REDIRECT,
    acrValues: ["aal2"],
    essentialAcr: true,
    claims: { access_token: { acrs: { essential: true, value: "c1" } }, id_token: { auth_time: { essential: true } } },
    dpopJkt: "jkt-1",
  });
  const p = new URL(ar.url).searchParams;
  assert.deepEqual(JSON.parse(p.get("claims")!), {
    access_token: { acrs: { essential: true, value: "c1" } },
    id_token: { auth_time: { essential: true }, acr: { essential: true, values: ["aal2"] } },
  });
  assert.equal(p.get("dpop_jkt"), "jkt-1");
});

/** A token endpoint for DPoP (RFC 9449 §5, §8): checks each proof with jose and can ask for a nonce first. */
function dpopTokenEndpoint(opts: { nonce?: boolean; tokenType?: string }) {
  const proofs: Array<Record<string, unknown>> = [];
  const fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const proof = new Headers(init?.headers).get("dpop");
    if (!proof) return Response.json({ error: "invalid_dpop_proof" }, { status: 400 });
    const { payload } = await jwtVerify(proof, EmbeddedJWK, { typ: "dpop+jwt", algorithms: ["ES256"] });
    proofs.push(payload);
    assert.equal(String(input), TOKEN);
    if (opts.nonce && payload["nonce"] !== "server-nonce") {
      return Response.json({ error: "use_dpop_nonce" }, { status: 400, headers: { "DPoP-Nonce": "server-nonce" } });
    }
    return Response.json({ access_token: "bound", token_type: opts.tokenType ?? "DPoP" });
  }) as typeof globalThis.fetch;
  return { fetch, proofs };
}

const exchange = { tokenEndpoint: TOKEN, clientId: "web", redirectUri: REDIRECT, code: "c", codeVerifier: "v" };

test("exchangeCode with DPoP: a proof without ath; use_dpop_nonce is retried once with the nonce", async () => {
  const dpop = await createDPoP();
  const ep = dpopTokenEndpoint({ nonce: true });
  const t = await exchangeCode({ ...exchange, fetch: ep.fetch, dpop });
  assert.equal(t.access_token, "bound");
  assert.equal(ep.proofs.length, 2);
  for (const p of ep.proofs) {
    assert.equal(p["htm"], "POST");
    assert.equal(p["htu"], TOKEN);
    assert.equal(p["ath"], undefined);
  }
  assert.equal(ep.proofs[0]!["nonce"], undefined);
  assert.equal(ep.proofs[1]!["nonce"], "server-nonce");
});

test("exchangeCode with DPoP refuses a bearer token, and a second use_dpop_nonce", async () => {
  const dpop = await createDPoP();
  await assert.rejects(exchangeCode({ ...exchange, fetch: dpopTokenEndpoint({ tokenType: "Bearer" }).fetch, dpop }), /token_type "Bearer", want DPoP/);
  const stubborn = (async () => Response.json({ error: "use_dpop_nonce" }, { status: 400, headers: { "DPoP-Nonce": "n" } })) as typeof globalThis.fetch;
  let calls = 0;
  const counted = ((i: RequestInfo | URL, init?: RequestInit) => (calls++, stubborn(i, init))) as typeof globalThis.fetch;
  await assert.rejects(exchangeCode({ ...exchange, fetch: counted, dpop }), /400 use_dpop_nonce/);
  assert.equal(calls, 2);
});

test("oidcStepUp with DPoP and Entra's claims challenge: claims and dpop_jkt in the authorization request, a bound token back", async () => {
  const dpop = await createDPoP();
  const ep = dpopTokenEndpoint({});
  let authUrl = "";
  const stepUp = oidcStepUp({
    authorizationEndpoint: AUTHZ,
    tokenEndpoint: TOKEN,
    clientId: "web",
    redirectUri: REDIRECT,
    dpop,
    navigate: async (url) => {
      authUrl = url;
      return `${REDIRECT}?code=c&state=${new URL(url).searchParams.get("state")}`;
    },
    fetch: ep.fetch,
  });
  const json = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}';
  const r = await stepUp({ requiredAcr: "aal2", acrValues: [], claims: { json, value: JSON.parse(json) as Record<string, unknown> }, request: { url: "/x", method: "POST" } });
  assert.deepEqual(r, { kind: "success", accessToken: "bound" });
  const p = new URL(authUrl).searchParams;
  assert.equal(p.get("claims"), json, "the challenge's claims, byte for byte");
  assert.equal(p.get("acr_values"), null);
  assert.equal(p.get("dpop_jkt"), dpop.thumbprint);
  assert.equal(ep.proofs.length, 1);
});
