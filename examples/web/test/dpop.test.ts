// DPoP (RFC 9449) on the client: the proofs createDPoP makes are checked with an
// independent implementation (jose's jwtVerify with the embedded jwk), and
// stepUpFetch's DPoP mode against a fake server that follows the contract.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, webcrypto } from "node:crypto";
import { EmbeddedJWK, calculateJwkThumbprint, jwtVerify } from "jose";
import type { JWTPayload } from "jose";
import { accessTokenHash, createDPoP } from "../src/dpop.js";
import type { DPoP } from "../src/dpop.js";
import { stepUpFetch } from "../src/stepUpFetch.js";
import type { StepUpPrompt, StepUpResult } from "../src/stepUpFetch.js";

const U = "https://app.example.com/api/payout-destination";
const ALGS = "ES256 ES384 EdDSA PS256 RS256";
const b64url = (b: Buffer) => b.toString("base64url");

interface ProofPayload extends JWTPayload {
  htm: string;
  htu: string;
  ath?: string;
  nonce?: string;
}

/** Verifies a proof the way a resource server would, with jose, and returns its header and claims. */
async function verifyProof(proof: string) {
  const { payload, protectedHeader } = await jwtVerify<ProofPayload>(proof, EmbeddedJWK, { typ: "dpop+jwt", algorithms: ["ES256"] });
  return { payload, header: protectedHeader };
}

test("the key pair: ECDSA P-256, the private key non-extractable, the thumbprint RFC 7638's", async () => {
  const dpop = await createDPoP();
  assert.deepEqual(Object.keys(dpop.publicJwk).sort(), ["crv", "kty", "x", "y"]);
  assert.equal(dpop.publicJwk.kty, "EC");
  assert.equal(dpop.publicJwk.crv, "P-256");
  assert.equal(dpop.thumbprint, await calculateJwkThumbprint(dpop.publicJwk, "sha256"));

  // The key createDPoP makes is generated with extractable: false: check it through a key pair we pass in, made the same way.
  const keyPair = await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
  assert.equal(keyPair.privateKey.extractable, false);
  await assert.rejects(webcrypto.subtle.exportKey("jwk", keyPair.privateKey));
  const given = await createDPoP({ keyPair: keyPair as CryptoKeyPair });
  const { header } = await verifyProof(await given.proof("GET", U));
  assert.equal((header.jwk as { x: string }).x, given.publicJwk.x);
});

test("createDPoP asks WebCrypto for a non-extractable ECDSA P-256 key pair", async () => {
  // generateKey is observed: createDPoP must ask for a non-extractable pair.
  const subtle = globalThis.crypto.subtle;
  const original = subtle.generateKey.bind(subtle);
  const seen: unknown[] = [];
  (subtle as { generateKey: unknown }).generateKey = (alg: unknown, extractable: boolean, usages: unknown) => {
    seen.push({ alg, extractable, usages });
    return original(alg as EcKeyGenParams, extractable, usages as KeyUsage[]);
  };
  try {
    await createDPoP();
  } finally {
    (subtle as { generateKey: unknown }).generateKey = original;
  }
  assert.deepEqual(seen, [{ alg: { name: "ECDSA", namedCurve: "P-256" }, extractable: false, usages: ["sign", "verify"] }]);
});

test("a proof (RFC 9449 §4.2): typ, ES256, the public jwk; jti, htm, htu without query and fragment, iat, ath", async () => {
  const dpop = await createDPoP({ now: () => 1_700_000_000 });
  const proof = await dpop.proof("post", `${U}?next=/a#frag`, { accessToken: "the-token" });
  const { header, payload } = await verifyProof(proof);
  assert.equal(header.typ, "dpop+jwt");
  assert.equal(header.alg, "ES256");
  assert.deepEqual(header.jwk, dpop.publicJwk, "public members only: no d");
  assert.deepEqual(Object.keys(header).sort(), ["alg", "jwk", "typ"]);
  assert.equal(payload.htm, "POST");
  assert.equal(payload.htu, U);
  assert.equal(payload.iat, 1_700_000_000);
  assert.equal(payload.ath, b64url(createHash("sha256").update("the-token").digest()));
  assert.equal(payload.ath, await accessTokenHash("the-token"));
  assert.match(payload.jti ?? "", /^[A-Za-z0-9_-]{22}$/);
  assert.equal(payload.nonce, undefined);
  assert.deepEqual(Object.keys(payload).sort(), ["ath", "htm", "htu", "iat", "jti"]);
});

test("a token request's proof has no ath (RFC 9449 §5); every proof has its own jti", async () => {
  const dpop = await createDPoP();
  const jtis = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const { payload } = await verifyProof(await dpop.proof("POST", "https://idp.example.com/token"));
    assert.equal(payload.ath, undefined);
    jtis.add(payload.jti!);
  }
  assert.equal(jtis.size, 20);
});

test("htu keeps a non-default port, drops a default one, resolves relative URLs against baseUrl", async () => {
  const dpop = await createDPoP({ baseUrl: "http://127.0.0.1:8000/settings/" });
  assert.equal((await verifyProof(await dpop.proof("GET", "/api/x?y=1"))).payload.htu, "http://127.0.0.1:8000/api/x");
  assert.equal((await verifyProof(await dpop.proof("GET", "https://Example.COM:443/p"))).payload.htu, "https://example.com/p");
  assert.equal((await verifyProof(await dpop.proof("GET", new URL("https://a.example:8443/")))).payload.htu, "https://a.example:8443/");
});

test("nonces: remembered per origin from DPoP-Nonce, used in the next proof; null leaves it out; garbage is ignored", async () => {
  const dpop = await createDPoP();
  const res = (nonce: string) => new Response(null, { status: 200, headers: { "dpop-nonce": nonce } });
  dpop.rememberNonce(U, res("n-1"));
  dpop.rememberNonce("https://idp.example.com/token", res("idp-1"));
  assert.equal(dpop.nonce("https://app.example.com/other"), "n-1");
  assert.equal((await verifyProof(await dpop.proof("GET", U))).payload.nonce, "n-1");
  assert.equal((await verifyProof(await dpop.proof("POST", "https://idp.example.com/token"))).payload.nonce, "idp-1");
  assert.equal((await verifyProof(await dpop.proof("GET", U, { nonce: null }))).payload.nonce, undefined);
  assert.equal((await verifyProof(await dpop.proof("GET", U, { nonce: "explicit" }))).payload.nonce, "explicit");
  dpop.rememberNonce(U, res('bad"nonce'));
  dpop.rememberNonce(U, new Response(null));
  assert.equal(dpop.nonce(U), "n-1", "a response without a valid nonce keeps the last one");
  dpop.rememberNonce(U, res("n-2"));
  assert.equal(dpop.nonce(U), "n-2", "the latest nonce wins");
});

// A resource server that follows CONTRACT.md's DPoP rules: it verifies every
// proof with jose (signature, typ, alg, htm, htu, ath, jti once, its nonce),
// asks for a nonce with use_dpop_nonce, hands out a fresh nonce on every
// answer, and asks for step-up unless the token is "strong".
interface Sent {
  auth: string | null;
  body: string;
  payload?: ProofPayload;
  verdict: string;
}

function dpopServer(opts: { nonces?: boolean; staleNonceAfterStepUp?: boolean; alwaysNonce?: boolean } = {}) {
  const sent: Sent[] = [];
  const jtis = new Set<string>();
  let nonce = 0;
  const current = () => `nonce-${nonce}`;
  const challenge = (params: string, status = 401, body = '{"error":"unauthorized"}') =>
    new Response(body, {
      status,
      headers: { "content-type": "application/json", "www-authenticate": `DPoP ${params}, algs="${ALGS}"`, "dpop-nonce": current() },
    });
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    const s: Sent = { auth: req.headers.get("authorization"), body: await req.text(), verdict: "" };
    sent.push(s);
    const token = /^DPoP (.+)$/.exec(s.auth ?? "")?.[1];
    const proof = req.headers.get("dpop");
    if (!token || !proof) return ((s.verdict = "no dpop"), challenge(`error="invalid_token"`));
    let payload: ProofPayload;
    try {
      payload = (await verifyProof(proof)).payload;
    } catch (e) {
      return ((s.verdict = `bad proof: ${e}`), challenge(`error="invalid_dpop_proof"`, 401, '{"error":"invalid_dpop_proof"}'));
    }
    s.payload = payload;
    const wantHtu = req.url.replace(/[?#].*$/, "");
    const ok =
      payload.htm === req.method && payload.htu === wantHtu && payload.ath === b64url(createHash("sha256").update(token).digest()) && !jtis.has(payload.jti!);
    jtis.add(payload.jti!);
    if (!ok) return ((s.verdict = "proof rules"), challenge(`error="invalid_dpop_proof"`, 401, '{"error":"invalid_dpop_proof"}'));
    if ((opts.nonces || opts.alwaysNonce) && (opts.alwaysNonce || payload.nonce !== current())) {
      nonce++;
      return ((s.verdict = "use_dpop_nonce"), challenge(`error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`, 401, '{"error":"use_dpop_nonce"}'));
    }
    if (token !== "strong") {
      nonce++;
      const r = challenge(
        `error="insufficient_user_authentication", error_description="authentication level aal2 required", acr_values="aal2", max_age="300"`,
        401,
        '{"error":"step_up_required","required_acr":"aal2","max_age":300}',
      );
      if (opts.staleNonceAfterStepUp) nonce++; // the nonce just sent is stale by the time the retry comes
      s.verdict = "step_up";
      return r;
    }
    nonce++;
    s.verdict = "allow";
    return new Response(JSON.stringify({ ok: true, body: s.body }), { headers: { "content-type": "application/json", "dpop-nonce": current() } });
  };
  return { fetch: fetch as typeof globalThis.fetch, sent };
}

function session(dpop: DPoP, result: StepUpResult = { kind: "success", accessToken: "strong" }) {
  const prompts: StepUpPrompt[] = [];
  return {
    prompts,
    options: {
      dpop,
      getAccessToken: () => "weak",
      stepUp: async (p: StepUpPrompt): Promise<StepUpResult> => (prompts.push(p), result),
    },
  };
}

test("DPoP mode: Authorization DPoP + a proof bound to the token; the DPoP-scheme step-up prompts once and retries", async () => {
  const dpop = await createDPoP();
  const srv = dpopServer();
  const s = session(dpop);
  const res = await stepUpFetch(U, { method: "POST", body: '{"iban":"x"}' }, { ...s.options, fetch: srv.fetch });
  assert.equal(res.status, 200);
  assert.deepEqual(
    srv.sent.map((x) => [x.auth, x.verdict, x.body]),
    [
      ["DPoP weak", "step_up", '{"iban":"x"}'],
      ["DPoP strong", "allow", '{"iban":"x"}'],
    ],
  );
  assert.equal(s.prompts.length, 1);
  assert.equal(s.prompts[0]!.requiredAcr, "aal2");
  assert.deepEqual(s.prompts[0]!.acrValues, ["aal2"]);
  assert.equal(s.prompts[0]!.maxAge, 300);
  assert.notEqual(srv.sent[0]!.payload!.jti, srv.sent[1]!.payload!.jti);
  assert.equal(srv.sent[1]!.payload!.nonce, "nonce-1", "the nonce from the step-up denial went into the retry's proof");
});

test("use_dpop_nonce: retried once with the DPoP-Nonce, same body; then step-up; the allow's nonce serves the next call", async () => {
  const dpop = await createDPoP();
  const srv = dpopServer({ nonces: true });
  const s = session(dpop);
  const stream = new Blob(["streamed body"]).stream();
  const res = await stepUpFetch(U, { method: "PUT", body: stream, duplex: "half" } as RequestInit, { ...s.options, fetch: srv.fetch });
  assert.equal(res.status, 200);
  assert.deepEqual(
    srv.sent.map((x) => [x.auth, x.verdict, x.payload?.nonce ?? null, x.body]),
    [
      ["DPoP weak", "use_dpop_nonce", null, "streamed body"],
      ["DPoP weak", "step_up", "nonce-1", "streamed body"],
      ["DPoP strong", "allow", "nonce-2", "streamed body"],
    ],
  );
  assert.equal(s.prompts.length, 1);
  assert.deepEqual(await res.json(), { ok: true, body: "streamed body" });
  assert.equal(dpop.nonce(U), "nonce-3", "the nonce sent with the allow is remembered");

  const again = await stepUpFetch(U, undefined, { ...s.options, getAccessToken: () => "strong", fetch: srv.fetch });
  assert.equal(again.status, 200);
  assert.deepEqual(srv.sent.slice(3).map((x) => [x.verdict, x.payload?.nonce]), [["allow", "nonce-3"]], "no nonce round trip");
});

test("use_dpop_nonce after the step-up (the nonce went stale meanwhile): one more nonce retry", async () => {
  const dpop = await createDPoP();
  const srv = dpopServer({ nonces: true, staleNonceAfterStepUp: true });
  const s = session(dpop);
  const res = await stepUpFetch(U, { method: "POST", body: "b" }, { ...s.options, fetch: srv.fetch });
  assert.equal(res.status, 200);
  assert.deepEqual(
    srv.sent.map((x) => x.verdict),
    ["use_dpop_nonce", "step_up", "use_dpop_nonce", "allow"],
  );
  assert.ok(srv.sent.every((x) => x.body === "b"));
});

test("use_dpop_nonce is retried only once: a second one reaches the caller, and nothing prompts", async () => {
  const dpop = await createDPoP();
  const srv = dpopServer({ alwaysNonce: true });
  const s = session(dpop);
  const res = await stepUpFetch(U, { method: "POST", body: "b" }, { ...s.options, fetch: srv.fetch });
  assert.equal(res.status, 401);
  assert.deepEqual(await res.json(), { error: "use_dpop_nonce" });
  assert.deepEqual(srv.sent.map((x) => x.verdict), ["use_dpop_nonce", "use_dpop_nonce"]);
  assert.equal(s.prompts.length, 0);
});

test("use_dpop_nonce without a DPoP-Nonce header, or under Bearer: not retried", async () => {
  const dpop = await createDPoP();
  let n = 0;
  const noNonce = (async () => {
    n++;
    return new Response('{"error":"use_dpop_nonce"}', {
      status: 401,
      headers: { "content-type": "application/json", "www-authenticate": `DPoP error="use_dpop_nonce", algs="ES256"` },
    });
  }) as typeof globalThis.fetch;
  const s = session(dpop);
  assert.equal((await stepUpFetch(U, undefined, { ...s.options, fetch: noNonce })).status, 401);
  assert.equal(n, 1);

  n = 0;
  const withNonce = (async () => {
    n++;
    return new Response('{"error":"use_dpop_nonce"}', {
      status: 401,
      headers: { "content-type": "application/json", "www-authenticate": `DPoP error="use_dpop_nonce", algs="ES256"`, "dpop-nonce": "n" },
    });
  }) as typeof globalThis.fetch;
  const { dpop: _d, ...bearer } = s.options;
  assert.equal((await stepUpFetch(U, undefined, { ...bearer, fetch: withNonce })).status, 401);
  assert.equal(n, 1, "a Bearer client has no proof to redo");
});

test("DPoP mode without a token sends neither Authorization nor DPoP", async () => {
  const dpop = await createDPoP();
  const seen: Array<[string | null, string | null]> = [];
  const f = (async (i: RequestInfo | URL, init?: RequestInit) => {
    const r = new Request(i, init);
    seen.push([r.headers.get("authorization"), r.headers.get("dpop")]);
    return new Response(null, { status: 204 });
  }) as typeof globalThis.fetch;
  await stepUpFetch(U, undefined, { dpop, getAccessToken: () => null, stepUp: () => ({ kind: "cancelled" }), fetch: f });
  assert.deepEqual(seen, [[null, null]]);
});

test("Entra's claims challenge and resource_metadata reach stepUp", async () => {
  const json = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}';
  const rm = "https://api.example.com/.well-known/oauth-protected-resource";
  let n = 0;
  const f = (async (i: RequestInfo | URL, init?: RequestInit) => {
    n++;
    if (new Request(i, init).headers.get("authorization") === "Bearer strong") return Response.json({ ok: true });
    return new Response('{"error":"step_up_required","required_acr":"aal2"}', {
      status: 401,
      headers: {
        "content-type": "application/json",
        "www-authenticate": `Bearer error="insufficient_claims", error_description="step-up required", claims="${Buffer.from(json).toString("base64")}", resource_metadata="${rm}"`,
      },
    });
  }) as typeof globalThis.fetch;
  const prompts: StepUpPrompt[] = [];
  const res = await stepUpFetch(U, undefined, {
    getAccessToken: () => "weak",
    stepUp: (p) => (prompts.push(p), { kind: "success", accessToken: "strong" }),
    fetch: f,
  });
  assert.equal(res.status, 200);
  assert.equal(n, 2);
  assert.equal(prompts.length, 1);
  assert.equal(prompts[0]!.claims?.json, json);
  assert.deepEqual(prompts[0]!.claims?.value, { access_token: { acrs: { essential: true, value: "c1" } } });
  assert.equal(prompts[0]!.resourceMetadata, rm);
  assert.equal(prompts[0]!.requiredAcr, "aal2");
  assert.deepEqual(prompts[0]!.acrValues, [], "the level is in claims, in the IdP's vocabulary; aal2 is ours");
  assert.equal(prompts[0]!.maxAge, undefined);
});

test("without WebCrypto (an http page that is not localhost) createDPoP says why", async () => {
  const desc = Object.getOwnPropertyDescriptor(globalThis, "crypto")!;
  Object.defineProperty(globalThis, "crypto", { value: {}, configurable: true });
  try {
    await assert.rejects(createDPoP(), /crypto\.subtle is missing; browsers offer WebCrypto only in secure contexts/);
  } finally {
    Object.defineProperty(globalThis, "crypto", desc);
  }
  assert.ok(globalThis.crypto.subtle, "restored");
});

test("use_dpop_nonce told by the JSON body alone (CORS hides WWW-Authenticate): retried once with the nonce", async () => {
  const dpop = await createDPoP();
  const nonces: unknown[] = [];
  const f = (async (i: RequestInfo | URL, init?: RequestInit) => {
    const { payload } = await verifyProof(new Request(i, init).headers.get("dpop")!);
    nonces.push(payload.nonce);
    if (payload.nonce !== "n-1") {
      return new Response('{"error":"use_dpop_nonce"}', { status: 401, headers: { "content-type": "application/json", "dpop-nonce": "n-1" } });
    }
    return Response.json({ ok: true });
  }) as typeof globalThis.fetch;
  const s = session(dpop);
  const res = await stepUpFetch(U, undefined, { ...s.options, fetch: f });
  assert.equal(res.status, 200);
  assert.deepEqual(nonces, [undefined, "n-1"]);

  // Another 401 body (here: unauthorized) with a nonce is not a nonce request.
  let n = 0;
  const other = (async () => (
    n++, new Response('{"error":"unauthorized"}', { status: 401, headers: { "content-type": "application/json", "dpop-nonce": "n-2" } })
  )) as typeof globalThis.fetch;
  assert.equal((await stepUpFetch(U, undefined, { ...s.options, fetch: other })).status, 401);
  assert.equal(n, 1);
});
