// The demo page of `stepup-authz dev`: the seed's "Change bank account" form
// on stepUpFetch. The page and its API calls go through the front proxy
// (same origin); tokens come from the dev IdP's POST /token, which allows this
// page's origin by CORS. A <dialog> stands in for the MFA prompt.
//
// DPoP mode (?dpop, or the checkbox): the page makes a non-extractable P-256
// key, asks the dev IdP for tokens bound to it (a DPoP proof on the token
// request, RFC 9449 §5) and sends every API call with `Authorization: DPoP`
// and a fresh proof.
//
// Compiled by tsc and copied into cmd/stepup-authz/devui/ (npm run devui).

import { createDPoP } from "../src/dpop.js";
import type { DPoP } from "../src/dpop.js";
import { createStepUpFetch } from "../src/stepUpFetch.js";
import type { StepUpPrompt, StepUpResult } from "../src/stepUpFetch.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const idp = (document.querySelector('meta[name="stepup-dev-idp"]') as HTMLMetaElement).content;

const dpopMode = new URLSearchParams(location.search).has("dpop");
const dpopSwitch = $<HTMLInputElement>("dpop-mode");
dpopSwitch.checked = dpopMode;
// A new mode is a new session: reload with or without ?dpop.
dpopSwitch.addEventListener("change", () => location.assign(dpopSwitch.checked ? "?dpop" : location.pathname));

let dpop: DPoP | undefined;
let token: string | undefined;
let level = "";

/** Asks the dev IdP for a token, as a real IdP would issue one after sign-in or MFA. */
async function mint(acr: string): Promise<string> {
  const headers: Record<string, string> = {};
  if (dpop) headers["DPoP"] = await dpop.proof("POST", `${idp}/token`);
  const res = await fetch(`${idp}/token`, {
    method: "POST",
    headers,
    body: new URLSearchParams({ sub: "user-1", acr, auth_age_seconds: "0" }),
  });
  if (!res.ok) throw new Error(`dev IdP: ${res.status}`);
  const body = (await res.json()) as { access_token: string; token_type?: string };
  if (dpop && body.token_type !== "DPoP") throw new Error(`dev IdP: token_type ${body.token_type}, want DPoP`);
  level = acr;
  showSession();
  return body.access_token;
}

function showSession() {
  $("session").textContent =
    level === "aal1"
      ? "Signed in as user-1 with a password (aal1)."
      : `Signed in as user-1, confirmed with a second factor (${level}) just now.`;
}

/** The session's current token: a password-only (aal1) sign-in to start with. */
async function getAccessToken(): Promise<string> {
  token ??= await mint("aal1");
  return token;
}

/** The MFA prompt: a dialog, then a fresh token at the level the server asked for. */
function stepUp(prompt: StepUpPrompt): Promise<StepUpResult> {
  const dialog = $<HTMLDialogElement>("stepup");
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      async () => {
        if (dialog.returnValue !== "confirm") return resolve({ kind: "cancelled" });
        try {
          token = await mint(prompt.acrValues[0] ?? prompt.requiredAcr ?? "aal2");
          resolve({ kind: "success", accessToken: token });
        } catch (error) {
          resolve({ kind: "failed", error });
        }
      },
      { once: true },
    );
    dialog.returnValue = "";
    dialog.showModal();
  });
}

/** The session: in DPoP mode its key first, then the stepUpFetch that uses it. */
async function startSession() {
  if (dpopMode) {
    dpop = await createDPoP();
    $("mode").textContent = `Tokens are DPoP-bound to a key this page holds (jkt ${dpop.thumbprint.slice(0, 12)}…).`;
  } else {
    $("mode").textContent = "Tokens are bearer tokens.";
  }
  return createStepUpFetch(dpop ? { getAccessToken, stepUp, dpop } : { getAccessToken, stepUp });
}

const session = startSession();

$("change-bank-account").addEventListener("submit", async (e) => {
  e.preventDefault();
  const status = $("status");
  const save = $<HTMLButtonElement>("save");
  save.disabled = true;
  status.className = "status";
  status.textContent = "Saving…";
  try {
    const stepUpFetch = await session;
    const res = await stepUpFetch("/api/payout-destination", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ iban: $<HTMLInputElement>("iban").value }),
    });
    $("echo").textContent = `${res.status}\n${await res.text()}`;
    status.className = res.ok ? "status saved" : "status error";
    status.textContent = res.ok ? "Saved." : "Couldn't save. Try again.";
  } catch (err) {
    status.className = "status error";
    status.textContent = "Couldn't save. Try again.";
    $("echo").textContent = String(err);
  } finally {
    save.disabled = false;
  }
});

session.then(getAccessToken).catch((err) => ($("session").textContent = `Could not sign in: ${err}`));
