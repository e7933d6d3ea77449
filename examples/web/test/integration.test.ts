// Against the real thing: `stepup-authz dev` (dev IdP, stepup-authz, the
// Envoy-compatible front proxy on envoy/envoy.yaml, the demo app), built from
// this repository and started on free ports, with DPoP server nonces on
// (--dpop-nonce; Bearer tokens are not affected).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { findStepUpChallenge } from "../src/challenge.js";
import { createDPoP } from "../src/dpop.js";
import type { DPoP } from "../src/dpop.js";
import { createStepUpFetch, stepUpFetch } from "../src/stepUpFetch.js";
import type { StepUpPrompt, StepUpResult } from "../src/stepUpFetch.js";
import { buildBinary, mint, repoRoot, startDev } from "../testlib/devstack.js";
import type { DevStack } from "../testlib/devstack.js";

let stack: DevStack;
let cleanup = () => {};

before(async () => {
  const b = buildBinary();
  cleanup = b.cleanup;
  stack = await startDev(b.bin, ["--dpop-nonce"]);
});

after(async () => {
  await stack?.stop();
  cleanup();
});

/** A session: the current token, and a stepUp that mints a fresh token at the asked level from the dev IdP. */
function session(startAcr: string, startAge = 0) {
  let token: string | undefined;
  const prompts: StepUpPrompt[] = [];
  const stepUp = async (p: StepUpPrompt): Promise<StepUpResult> => {
    prompts.push(p);
    token = await mint(stack.idp, p.acrValues[0] ?? "aal2");
    return { kind: "success", accessToken: token };
  };
  const getAccessToken = async () => (token ??= await mint(stack.idp, startAcr, startAge));
  return { getAccessToken, stepUp, prompts };
}

const payout = () => `${stack.proxy}/api/payout-destination`;

test("deny -> stepUp (a fresh aal2 token from the dev IdP) -> retry -> 200", async () => {
  const s = session("aal1");
  const body = JSON.stringify({ iban: "DE89370400440532013000" });
  const res = await stepUpFetch(payout(), { method: "POST", headers: { "Content-Type": "application/json" }, body }, s);
  const echo = (await res.json()) as { method: string; body: string; stepup_headers: Record<string, string> };
  assert.equal(res.status, 200, JSON.stringify(echo));
  assert.equal(s.prompts.length, 1);
  assert.equal(s.prompts[0]!.requiredAcr, "aal2");
  assert.deepEqual(s.prompts[0]!.acrValues, ["aal2"]);
  assert.equal(s.prompts[0]!.maxAge, 300);
  assert.equal(echo.method, "POST");
  assert.equal(echo.body, body, "the retried request carried the same body");
  assert.equal(echo.stepup_headers["x-stepup-acr"], "aal2");
  assert.equal(echo.stepup_headers["x-stepup-sub"], "user-1");
});

test("the server's real 401: both the body and the RFC 9470 challenge are understood", async () => {
  const res = await fetch(payout(), { method: "POST", headers: { Authorization: `Bearer ${await mint(stack.idp, "aal1")}` } });
  assert.equal(res.status, 401);
  assert.deepEqual(await res.json(), { error: "step_up_required", required_acr: "aal2", max_age: 300 });
  const c = findStepUpChallenge(res.headers.get("www-authenticate"));
  assert.deepEqual(c?.acrValues, ["aal2"]);
  assert.equal(c?.maxAge, 300);
});

test("an aal2 sign-in that is too old: freshness step-up (max_age), then 200", async () => {
  const s = session("aal2", 600);
  const res = await stepUpFetch(payout(), { method: "POST", body: "{}" }, s);
  assert.equal(res.status, 200);
  assert.equal(s.prompts.length, 1);
  assert.equal(s.prompts[0]!.maxAge, 300);
});

test("a fresh aal2 token goes straight through: no prompt", async () => {
  const s = session("aal2");
  const res = await stepUpFetch(payout(), { method: "POST", body: "{}" }, s);
  assert.equal(res.status, 200);
  assert.equal(s.prompts.length, 0);
});

test("the DELETE /api/account route asks for max_age 60", async () => {
  const s = session("aal1");
  const res = await stepUpFetch(`${stack.proxy}/api/account`, { method: "DELETE" }, s);
  assert.equal(res.status, 200);
  assert.equal(s.prompts[0]!.maxAge, 60);
});

test("cancel: the server's original 401 comes back unread", async () => {
  const s = session("aal1");
  const res = await stepUpFetch(payout(), { method: "POST", body: "{}" }, { getAccessToken: s.getAccessToken, stepUp: async () => ({ kind: "cancelled" }) });
  assert.equal(res.status, 401);
  assert.equal(res.bodyUsed, false);
  assert.deepEqual(await res.json(), { error: "step_up_required", required_acr: "aal2", max_age: 300 });
  assert.match(res.headers.get("www-authenticate") ?? "", /insufficient_user_authentication/);
});

test("concurrent calls share one stepUp against the real server", async () => {
  const s = session("aal1");
  const sf = createStepUpFetch(s);
  const results = await Promise.all(
    [1, 2, 3, 4].map((i) => sf(payout(), { method: "POST", body: JSON.stringify({ i }) }).then(async (r) => [r.status, ((await r.json()) as { body: string }).body])),
  );
  assert.deepEqual(results, [1, 2, 3, 4].map((i) => [200, JSON.stringify({ i })]));
  assert.equal(s.prompts.length, 1);
});

test("no token, and a machine token without the scope: not step-up, no prompt", async () => {
  let prompts = 0;
  const stepUp = async (): Promise<StepUpResult> => (prompts++, { kind: "success", accessToken: "x" });
  const none = await stepUpFetch(payout(), { method: "POST" }, { getAccessToken: () => null, stepUp });
  assert.equal(none.status, 401);
  assert.deepEqual(await none.json(), { error: "unauthorized" });
  const machineRes = await fetch(`${stack.idp}/token`, { method: "POST", body: new URLSearchParams({ sub: "svc", client_id: "svc" }) });
  const machine = ((await machineRes.json()) as { access_token: string }).access_token;
  const denied = await stepUpFetch(payout(), { method: "POST" }, { getAccessToken: () => machine, stepUp });
  assert.equal(denied.status, 403);
  assert.equal(prompts, 0);
});

test("the demo page and its scripts are served through the proxy without a token; the embedded scripts are the compiled ones", async () => {
  const page = await fetch(`${stack.proxy}/`);
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /Change bank account/);
  assert.match(html, /New IBAN:/);
  assert.match(html, new RegExp(`content="${stack.idp}"`), "the page is told where the dev IdP is");
  for (const f of ["src/stepUpFetch.js", "src/challenge.js", "src/dpop.js", "demo/page.js"]) {
    const r = await fetch(`${stack.proxy}/devui/${f}`);
    assert.equal(r.status, 200, f);
    assert.match(r.headers.get("content-type") ?? "", /javascript/, f);
    assert.equal(await r.text(), readFileSync(join(repoRoot, "examples", "web", "dist", f), "utf8"), `${f} is stale: run npm run devui in examples/web`);
  }
  // Only the page is open: the API still needs a token.
  assert.equal((await fetch(`${stack.proxy}/api/orders`)).status, 401);
  assert.equal((await fetch(`${stack.proxy}/devui/x`, { method: "POST" })).status, 401);
});

test("the dev IdP's token endpoint allows the page's origin by CORS, and no other", async () => {
  const ask = (origin: string) => fetch(`${stack.idp}/token`, { method: "POST", headers: { Origin: origin }, body: new URLSearchParams({ acr: "aal1" }) });
  assert.equal((await ask(stack.proxy)).headers.get("access-control-allow-origin"), stack.proxy);
  assert.equal((await ask("https://evil.example")).headers.get("access-control-allow-origin"), null);
});

/** A DPoP session: tokens from the dev IdP bound to the session's key. */
async function dpopSession(startAcr: string) {
  const dpop = await createDPoP();
  let token: string | undefined;
  const prompts: StepUpPrompt[] = [];
  const stepUp = async (p: StepUpPrompt): Promise<StepUpResult> => {
    prompts.push(p);
    token = await mint(stack.idp, p.acrValues[0] ?? "aal2", 0, dpop);
    return { kind: "success", accessToken: token };
  };
  const getAccessToken = async () => (token ??= await mint(stack.idp, startAcr, 0, dpop));
  return { dpop, getAccessToken, stepUp, prompts };
}

/** fetch that records each answer's status and WWW-Authenticate. */
function recordingFetch() {
  const seen: Array<{ status: number; challenge: string | null; nonce: string | null }> = [];
  const f = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const res = await fetch(input, init);
    seen.push({ status: res.status, challenge: res.headers.get("www-authenticate"), nonce: res.headers.get("dpop-nonce") });
    return res;
  }) as typeof globalThis.fetch;
  return { f, seen };
}

test("DPoP: use_dpop_nonce -> retry with the nonce -> DPoP-scheme step-up -> a bound aal2 token -> 200", async () => {
  const s = await dpopSession("aal1");
  const r = recordingFetch();
  const body = JSON.stringify({ iban: "DE89370400440532013000" });
  const res = await stepUpFetch(payout(), { method: "POST", headers: { "Content-Type": "application/json" }, body }, { ...s, fetch: r.f });
  const echo = (await res.json()) as { body: string; stepup_headers: Record<string, string> };
  assert.equal(res.status, 200, JSON.stringify(echo));
  assert.deepEqual(
    r.seen.map((x) => [x.status, /^DPoP error="(\w+)"/.exec(x.challenge ?? "")?.[1] ?? null]),
    [
      [401, "use_dpop_nonce"],
      [401, "insufficient_user_authentication"],
      [200, null],
    ],
  );
  assert.ok(r.seen.every((x) => x.nonce), "every answer to a DPoP request carries a DPoP-Nonce");
  assert.equal(s.dpop.nonce(payout()), r.seen[2]!.nonce, "the allow's nonce is the one remembered");
  assert.equal(s.prompts.length, 1);
  assert.equal(s.prompts[0]!.requiredAcr, "aal2");
  assert.equal(s.prompts[0]!.maxAge, 300);
  assert.equal(echo.body, body);
  assert.equal(echo.stepup_headers["x-stepup-acr"], "aal2");

  // The next call reuses the remembered nonce: no round trip, no prompt.
  const again = await stepUpFetch(payout(), { method: "POST", body: "{}" }, { ...s, fetch: r.f });
  assert.equal(again.status, 200);
  assert.equal(r.seen.length, 4);
  assert.equal(s.prompts.length, 1);
});

test("DPoP: the server's DPoP-scheme step-up challenge carries algs and is understood", async () => {
  const dpop: DPoP = await createDPoP();
  const token = await mint(stack.idp, "aal1", 0, dpop);
  const send = async () =>
    fetch(payout(), { method: "POST", headers: { Authorization: `DPoP ${token}`, DPoP: await dpop.proof("POST", payout(), { accessToken: token }) } });
  let res = await send();
  assert.equal(res.status, 401);
  assert.deepEqual(await res.json(), { error: "use_dpop_nonce" });
  dpop.rememberNonce(payout(), res);
  res = await send();
  assert.equal(res.status, 401);
  assert.deepEqual(await res.json(), { error: "step_up_required", required_acr: "aal2", max_age: 300 });
  const c = findStepUpChallenge(res.headers.get("www-authenticate"));
  assert.equal(c?.scheme, "dpop");
  assert.deepEqual(c?.acrValues, ["aal2"]);
  assert.equal(c?.maxAge, 300);
  assert.ok(c?.algs.includes("ES256"), `algs ${c?.algs}`);
});

test("DPoP-bound token sent as Bearer (no DPoP session): refused as invalid_token, no prompt", async () => {
  const dpop = await createDPoP();
  const token = await mint(stack.idp, "aal2", 0, dpop);
  let prompts = 0;
  const res = await stepUpFetch(payout(), { method: "POST" }, { getAccessToken: () => token, stepUp: () => (prompts++, { kind: "cancelled" }) });
  assert.equal(res.status, 401);
  assert.match(res.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
  assert.equal(prompts, 0);
});

test("DPoP: a token bound to another key is refused, no prompt", async () => {
  const mine = await createDPoP();
  const theirs = await createDPoP();
  const token = await mint(stack.idp, "aal2", 0, theirs);
  let prompts = 0;
  const res = await stepUpFetch(payout(), { method: "POST" }, { dpop: mine, getAccessToken: () => token, stepUp: () => (prompts++, { kind: "cancelled" }) });
  assert.equal(res.status, 401);
  assert.match(res.headers.get("www-authenticate") ?? "", /^DPoP error="invalid_token"/);
  assert.equal(prompts, 0);
});
