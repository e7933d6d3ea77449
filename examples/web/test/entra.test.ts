// Entra ID's claims challenge from the real server: `stepup-authz serve` with
// an issuer in the entra dialect (challenge: entra), behind `stepup-authz dev
// --authz-addr` (the dev IdP, the front proxy on envoy/envoy.yaml, the demo
// app), publishing RFC 9728 protected resource metadata. The step-up prompt
// gets the decoded claims and the resource_metadata URL; the retry with a
// stronger token passes. Bearer and DPoP.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createDPoP } from "../src/dpop.js";
import type { DPoP } from "../src/dpop.js";
import { findStepUpChallenge } from "../src/challenge.js";
import { stepUpFetch } from "../src/stepUpFetch.js";
import type { StepUpPrompt, StepUpResult } from "../src/stepUpFetch.js";
import { buildBinary, freePort, mint, startDev, startServe } from "../testlib/devstack.js";
import type { DevStack, Server } from "../testlib/devstack.js";

let stack: DevStack;
let server: Server;
let cleanup = () => {};

before(async () => {
  const b = buildBinary();
  cleanup = b.cleanup;
  // dev's proxy checks with the server started next; the config needs the dev IdP's address.
  const authz = `127.0.0.1:${await freePort()}`;
  stack = await startDev(b.bin, ["--authz-addr", authz]);
  server = await startServe(
    b.bin,
    `issuers:
  - issuer: "${stack.idp}"
    jwks_uri: "${stack.idp}/jwks.json"
    audiences: ["https://api.example.com"]
    challenge: entra
    challenge_acr_values: { aal2: "c1" }
protected_resource: { resource_name: "stepup-authz playground" }
`,
    authz,
  );
});

after(async () => {
  await server?.stop();
  await stack?.stop();
  cleanup();
});

const payout = () => `${stack.proxy}/api/payout-destination`;
const CLAIMS = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}';
// RFC 9728 §3.1: the base (scheme://authority, as the proxy forwards it) + the well-known path.
const metadataURL = () => `${stack.proxy}/.well-known/oauth-protected-resource`;

function session(dpop?: DPoP) {
  let token: string | undefined;
  const prompts: StepUpPrompt[] = [];
  const stepUp = async (p: StepUpPrompt): Promise<StepUpResult> => {
    prompts.push(p);
    // What MSAL would do with p.claims.json; the dev IdP takes the level directly.
    token = await mint(stack.idp, p.requiredAcr ?? "aal2", 0, dpop);
    return { kind: "success", accessToken: token };
  };
  const getAccessToken = async () => (token ??= await mint(stack.idp, "aal1", 0, dpop));
  return dpop ? { getAccessToken, stepUp, prompts, dpop } : { getAccessToken, stepUp, prompts };
}

test("the server's claims challenge, exactly as the contract encodes it", async () => {
  const res = await fetch(payout(), { method: "POST", headers: { Authorization: `Bearer ${await mint(stack.idp, "aal1")}` } });
  assert.equal(res.status, 401);
  const header = res.headers.get("www-authenticate") ?? "";
  assert.match(
    header,
    new RegExp(`^Bearer error="insufficient_claims", error_description="[^"]*", claims="${Buffer.from(CLAIMS).toString("base64")}", resource_metadata="[^"]+"$`),
  );
  const c = findStepUpChallenge(header);
  assert.equal(c?.error, "insufficient_claims");
  assert.equal(c?.claims?.json, CLAIMS);
  assert.equal(c?.resourceMetadata, metadataURL());
  assert.deepEqual(await res.json(), { error: "step_up_required", required_acr: "aal2", max_age: 300 });
});

for (const mode of ["bearer", "dpop"] as const) {
  test(`${mode}: insufficient_claims -> stepUp gets the decoded claims -> retry -> 200`, async () => {
    const s = session(mode === "dpop" ? await createDPoP() : undefined);
    const res = await stepUpFetch(payout(), { method: "POST", body: '{"iban":"x"}' }, s);
    const echo = (await res.json()) as { stepup_headers: Record<string, string> };
    assert.equal(res.status, 200, JSON.stringify(echo));
    assert.equal(s.prompts.length, 1);
    const p = s.prompts[0]!;
    assert.equal(p.claims?.json, CLAIMS);
    assert.deepEqual(p.claims?.value, { access_token: { acrs: { essential: true, value: "c1" } } });
    assert.deepEqual(p.acrValues, []);
    assert.equal(p.requiredAcr, "aal2");
    assert.equal(p.maxAge, 300);
    assert.equal(p.resourceMetadata, metadataURL());
    assert.equal(echo.stepup_headers["x-stepup-acr"], "aal2");
  });
}

test("the resource_metadata URL from the challenge serves the RFC 9728 document", async () => {
  const res = await fetch(payout(), { method: "POST", headers: { Authorization: `Bearer ${await mint(stack.idp, "aal1")}` } });
  const url = findStepUpChallenge(res.headers.get("www-authenticate"))?.resourceMetadata;
  assert.ok(url);
  const doc = await fetch(url);
  assert.equal(doc.status, 200);
  const body = (await doc.json()) as { resource: string; authorization_servers: string[]; resource_name?: string };
  assert.equal(body.resource, stack.proxy, "RFC 9728 §3.3: the resource is the URL the client used");
  assert.deepEqual(body.authorization_servers, [stack.idp]);
  assert.equal(body.resource_name, "stepup-authz playground");
});
