// The seed's story in a real browser: headless Chromium (Debian's package,
// /usr/bin/chromium, driven by playwright-core) on the demo page that
// `stepup-authz dev` serves through its front proxy.
//
//   Save -> the "Confirm it's you" prompt -> Confirm (a fresh aal2 token from
//   the dev IdP) -> the request is retried -> "Saved."
//
// Screenshots go to a temporary directory printed in the test output.
// Set STEPUP_SKIP_BROWSER=1 to skip on a machine without Chromium; CI
// installs it (.ci/run), so there it must run.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import type { BrowserContext, Page } from "playwright-core";
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
  stack = await startDev(b.bin);
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

/**
 * A fresh session on the demo page (the page keeps its token in memory: a new
 * page is a new password-only sign-in); page errors fail the test.
 */
async function openPage(): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    // The deliberate 401 shows up as a failed-resource console error; anything else is a bug.
    if (m.type() === "error" && !/401 \(Unauthorized\)/.test(m.text())) errors.push(m.text());
  });
  await page.goto(`${stack.proxy}/`);
  await page.getByText("Signed in as user-1 with a password (aal1).").waitFor();
  return { page, errors };
}

test("Save -> confirm it's you -> Saved. (and no second prompt within 5 minutes)", { skip }, async (t) => {
  const { page, errors } = await openPage();
  const requests: string[] = [];
  page.on("response", (r) => {
    if (r.url().endsWith("/api/payout-destination")) requests.push(`${r.request().method()} ${r.status()}`);
  });
  await page.getByLabel("New IBAN:").fill("NL91 ABNA 0417 1643 00");
  await page.getByRole("button", { name: "Save" }).click();

  const dialog = page.getByRole("dialog", { name: "Confirm it's you" });
  await dialog.waitFor();
  const promptShot = join(shots, "1-prompt.png");
  await page.screenshot({ path: promptShot });

  await dialog.getByRole("button", { name: "Confirm" }).click();
  await page.getByText("Saved.", { exact: true }).waitFor();
  const savedShot = join(shots, "2-saved.png");
  await page.screenshot({ path: savedShot });

  assert.deepEqual(requests, ["POST 401", "POST 200"]);
  assert.equal(await page.locator("#session").textContent(), "Signed in as user-1, confirmed with a second factor (aal2) just now.");
  await page.locator("details summary").click();
  const echo = (await page.locator("#echo").textContent()) ?? "";
  assert.match(echo, /^200\n/);
  const body = JSON.parse(echo.slice(4)) as { body: string; stepup_headers: Record<string, string> };
  assert.equal(body.stepup_headers["x-stepup-acr"], "aal2");
  assert.deepEqual(JSON.parse(body.body), { iban: "NL91 ABNA 0417 1643 00" }, "the retry carried the form's body");

  // The seed: "Next time you save (within 5 minutes), no prompt".
  await page.getByRole("button", { name: "Save" }).click();
  for (const deadline = Date.now() + 10_000; requests.length < 3 && Date.now() < deadline; ) await page.waitForTimeout(50);
  await page.getByText("Saved.", { exact: true }).waitFor();
  assert.deepEqual(requests, ["POST 401", "POST 200", "POST 200"]);
  assert.equal(await dialog.isVisible(), false);
  assert.equal(await page.locator("#status").textContent(), "Saved.");
  assert.deepEqual(errors, []);

  t.diagnostic(`screenshots: ${promptShot} ${savedShot}`);
  console.log(`browser test screenshots: ${promptShot} (the prompt) and ${savedShot} ("Saved.")`);
});

test("Save -> Cancel: the original 401 reaches the form: \"Couldn't save. Try again.\"", { skip }, async (t) => {
  const { page, errors } = await openPage();
  await page.getByRole("button", { name: "Save" }).click();
  const dialog = page.getByRole("dialog", { name: "Confirm it's you" });
  await dialog.waitFor();
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await page.getByText("Couldn't save. Try again.", { exact: true }).waitFor();
  const shot = join(shots, "3-cancelled.png");
  await page.screenshot({ path: shot });
  const echo = (await page.locator("#echo").textContent()) ?? "";
  assert.equal(echo, '401\n{"error":"step_up_required","required_acr":"aal2","max_age":300}');
  assert.equal(await page.locator("#session").textContent(), "Signed in as user-1 with a password (aal1).");
  assert.deepEqual(errors, []);
  t.diagnostic(`screenshot: ${shot}`);
  console.log(`browser test screenshot: ${shot} (cancelled)`);
});
