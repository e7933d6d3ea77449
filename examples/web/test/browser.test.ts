// The seed's story in a real browser: headless Chromium (Debian's package,
// /usr/bin/chromium, driven by playwright-core) on the demo page that
// `stepup-authz dev` serves through its front proxy.
//
//   Save -> the "Confirm it's you" prompt -> Confirm (a fresh aal2 token from
//   the dev IdP) -> the request is retried -> "Saved."
//
// in both of the page's modes: bearer tokens, and DPoP (?dpop: a
// non-extractable key in the page, DPoP-bound tokens, a proof per request,
// which node verifies here with jose; the playground runs with --dpop-nonce,
// so the first call also goes through the use_dpop_nonce retry).
//
// Screenshots go to a temporary directory printed in the test output.
// Set STEPUP_SKIP_BROWSER=1 to skip on a machine without Chromium; CI
// installs it (.ci/run), so there it must run.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { EmbeddedJWK, jwtVerify } from "jose";
import { chromium } from "playwright-core";
import type { BrowserContext, Page, Request } from "playwright-core";
import { buildBinary, startDev } from "../testlib/devstack.js";
import type { DevStack } from "../testlib/devstack.js";

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const skip = process.env["STEPUP_SKIP_BROWSER"] === "1" ? "STEPUP_SKIP_BROWSER=1" : false;

let stack: DevStack;
let browser: BrowserContext;
let profile = "";
let cleanup = () => {};
const shots = mkdtempSync(join(tmpdir(), "stepup-browser-"));

before(async () => {
  if (skip) return;
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (or STEPUP_SKIP_BROWSER=1)`);
  const b = buildBinary();
  cleanup = b.cleanup;
  stack = await startDev(b.bin, ["--dpop-nonce"]);
  profile = mkdtempSync(join(tmpdir(), "stepup-chromium-profile-"));
  // A fresh profile directory for every run (launchPersistentContext passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    viewport: { width: 720, height: 640 },
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  cleanup();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

type Mode = "bearer" | "dpop";

/**
 * A fresh session on the demo page (the page keeps its token in memory: a new
 * page is a new password-only sign-in); page errors fail the test.
 */
async function openPage(mode: Mode): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    // The deliberate 401 shows up as a failed-resource console error; anything else is a bug.
    if (m.type() === "error" && !/401 \(Unauthorized\)/.test(m.text())) errors.push(m.text());
  });
  await page.goto(`${stack.proxy}/${mode === "dpop" ? "?dpop" : ""}`);
  await page.getByText("Signed in as user-1 with a password (aal1).").waitFor();
  const modeText = (await page.locator("#mode").textContent()) ?? "";
  assert.match(modeText, mode === "dpop" ? /^Tokens are DPoP-bound to a key this page holds/ : /^Tokens are bearer tokens\.$/);
  return { page, errors };
}

/**
 * Checks an API request the page sent in DPoP mode as the resource server
 * would, with jose: the DPoP scheme, one proof whose signature verifies with
 * its embedded public jwk, htm/htu of this request, ath of this token. Returns
 * the proof's jwk thumbprint input (x) and its nonce.
 */
async function checkDPoPRequest(r: Request): Promise<{ x: string; nonce: unknown; jti: unknown }> {
  const h = await r.allHeaders();
  const token = /^DPoP (.+)$/.exec(h["authorization"] ?? "")?.[1];
  assert.ok(token, `Authorization is ${h["authorization"]}, want the DPoP scheme`);
  const { payload, protectedHeader } = await jwtVerify(h["dpop"] ?? "", EmbeddedJWK, { typ: "dpop+jwt", algorithms: ["ES256"] });
  assert.equal(payload["htm"], "POST");
  assert.equal(payload["htu"], `${stack.proxy}/api/payout-destination`);
  assert.equal(payload["ath"], createHash("sha256").update(token).digest("base64url"));
  const jwk = protectedHeader.jwk as Record<string, string>;
  assert.deepEqual(Object.keys(jwk).sort(), ["crv", "kty", "x", "y"], "the proof carries the public key only");
  return { x: jwk["x"]!, nonce: payload["nonce"], jti: payload["jti"] };
}

for (const mode of ["bearer", "dpop"] as const) {
  test(`${mode}: Save -> confirm it's you -> Saved. (and no second prompt within 5 minutes)`, { skip }, async (t) => {
    const { page, errors } = await openPage(mode);
    const requests: string[] = [];
    const sent: Request[] = [];
    page.on("response", (r) => {
      if (r.url().endsWith("/api/payout-destination")) requests.push(`${r.request().method()} ${r.status()}`);
    });
    page.on("request", (r) => {
      if (r.url().endsWith("/api/payout-destination")) sent.push(r);
    });
    await page.getByLabel("New IBAN:").fill("NL91 ABNA 0417 1643 00");
    await page.getByRole("button", { name: "Save" }).click();

    const dialog = page.getByRole("dialog", { name: "Confirm it's you" });
    await dialog.waitFor();
    const promptShot = join(shots, `${mode}-1-prompt.png`);
    await page.screenshot({ path: promptShot });

    await dialog.getByRole("button", { name: "Confirm" }).click();
    await page.getByText("Saved.", { exact: true }).waitFor();
    const savedShot = join(shots, `${mode}-2-saved.png`);
    await page.screenshot({ path: savedShot });

    // DPoP: the first proof has no nonce yet, so the server asks for one (use_dpop_nonce) before the step-up.
    const firstSave = mode === "dpop" ? ["POST 401", "POST 401", "POST 200"] : ["POST 401", "POST 200"];
    assert.deepEqual(requests, firstSave);
    assert.equal(await page.locator("#session").textContent(), "Signed in as user-1, confirmed with a second factor (aal2) just now.");
    await page.locator("details summary").click();
    const echo = (await page.locator("#echo").textContent()) ?? "";
    assert.match(echo, /^200\n/);
    const body = JSON.parse(echo.slice(4)) as { body: string; stepup_headers: Record<string, string> };
    assert.equal(body.stepup_headers["x-stepup-acr"], "aal2");
    assert.deepEqual(JSON.parse(body.body), { iban: "NL91 ABNA 0417 1643 00" }, "the retry carried the form's body");

    // The seed: "Next time you save (within 5 minutes), no prompt".
    await page.getByRole("button", { name: "Save" }).click();
    for (const deadline = Date.now() + 10_000; requests.length < firstSave.length + 1 && Date.now() < deadline; ) await page.waitForTimeout(50);
    await page.getByText("Saved.", { exact: true }).waitFor();
    assert.deepEqual(requests, [...firstSave, "POST 200"], "no prompt, and with DPoP no nonce round trip: the allow's DPoP-Nonce was remembered");
    assert.equal(await dialog.isVisible(), false);
    assert.equal(await page.locator("#status").textContent(), "Saved.");

    if (mode === "dpop") {
      const proofs = await Promise.all(sent.map(checkDPoPRequest));
      assert.equal(proofs.length, 4);
      assert.equal(new Set(proofs.map((p) => p.x)).size, 1, "one key for the whole session");
      assert.equal(new Set(proofs.map((p) => p.jti)).size, 4, "a fresh proof per request");
      assert.equal(proofs[0]!.nonce, undefined);
      assert.ok(proofs.slice(1).every((p) => typeof p.nonce === "string" && p.nonce !== ""), "every later proof carries the server's nonce");
    } else {
      for (const r of sent) {
        const h = await r.allHeaders();
        assert.match(h["authorization"] ?? "", /^Bearer /);
        assert.equal(h["dpop"], undefined);
      }
    }
    assert.deepEqual(errors, []);

    t.diagnostic(`screenshots: ${promptShot} ${savedShot}`);
    console.log(`browser test screenshots (${mode}): ${promptShot} (the prompt) and ${savedShot} ("Saved.")`);
  });

  test(`${mode}: Save -> Cancel: the original 401 reaches the form: "Couldn't save. Try again."`, { skip }, async (t) => {
    const { page, errors } = await openPage(mode);
    await page.getByRole("button", { name: "Save" }).click();
    const dialog = page.getByRole("dialog", { name: "Confirm it's you" });
    await dialog.waitFor();
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await page.getByText("Couldn't save. Try again.", { exact: true }).waitFor();
    const shot = join(shots, `${mode}-3-cancelled.png`);
    await page.screenshot({ path: shot });
    const echo = (await page.locator("#echo").textContent()) ?? "";
    assert.equal(echo, '401\n{"error":"step_up_required","required_acr":"aal2","max_age":300}');
    assert.equal(await page.locator("#session").textContent(), "Signed in as user-1 with a password (aal1).");
    assert.deepEqual(errors, []);
    t.diagnostic(`screenshot: ${shot}`);
    console.log(`browser test screenshot (${mode}): ${shot} (cancelled)`);
  });
}

test("the DPoP switch reloads the page in DPoP mode, and back", { skip }, async () => {
  const { page, errors } = await openPage("bearer");
  await page.getByLabel("DPoP mode (RFC 9449)").check();
  await page.getByText("Tokens are DPoP-bound to a key this page holds", { exact: false }).waitFor();
  assert.equal(new URL(page.url()).search, "?dpop");
  assert.equal(await page.getByLabel("DPoP mode (RFC 9449)").isChecked(), true);
  await page.getByLabel("DPoP mode (RFC 9449)").uncheck();
  await page.getByText("Tokens are bearer tokens.", { exact: true }).waitFor();
  assert.equal(new URL(page.url()).search, "");
  assert.deepEqual(errors, []);
});
