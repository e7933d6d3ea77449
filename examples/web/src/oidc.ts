// A stepUp for any OpenID Connect provider, without a vendor SDK: the
// authorization code flow with PKCE, asking for the level and freshness the
// challenge named (RFC 9470 §4: `acr_values` and `max_age` in the
// authorization request, as defined by OpenID Connect Core §3.1.2.1).
//
// The IdP must honour acr_values (many treat it as voluntary: set
// `essentialAcr` to send it as an essential claim too, and configure the
// IdP's step-up policy), and put `acr` and `auth_time` in the access token it
// issues, or stepup-authz will keep denying (its loop warning says so).
//
// A claims challenge (`insufficient_claims`, Entra) is passed on as the
// `claims` parameter (OIDC Core §5.5). With a DPoP session, the code is bound
// to its key (`dpop_jkt`, RFC 9449 §10) and the token request carries a proof
// (§5), so the new token is bound to the same key as the old one.

import type { DPoP } from "./dpop.js";
import type { StepUpPrompt, StepUpResult } from "./stepUpFetch.js";

export interface AuthorizationRequestOptions {
  authorizationEndpoint: string;
  clientId: string;
  redirectUri: string;
  /** Default "openid". */
  scope?: string;
  /** RFC 9470 acr_values, most preferred first (from StepUpPrompt.acrValues). */
  acrValues?: string[];
  /** RFC 9470 max_age in seconds (from StepUpPrompt.maxAge). 0 forces a fresh login. */
  maxAge?: number;
  /** Also request acr as an essential ID token claim (OIDC Core §5.5.1.1) with these values. */
  essentialAcr?: boolean;
  /** A claims request (OIDC Core §5.5), e.g. a claims challenge's `claims.value`; essentialAcr is merged in. */
  claims?: Record<string, unknown>;
  /** RFC 9449 §10: binds the authorization code to this DPoP key thumbprint. */
  dpopJkt?: string;
  /** Optional OIDC parameters: login_hint (who to re-authenticate), prompt, ui_locales, ... */
  extraParams?: Record<string, string>;
  /** Normally generated. */
  state?: string;
  nonce?: string;
  codeVerifier?: string;
}

export interface AuthorizationRequest {
  url: string;
  state: string;
  nonce: string;
  codeVerifier: string;
}

/** Builds the authorization request URL (code flow, PKCE S256) with acr_values and max_age. */
export async function buildAuthorizationRequest(o: AuthorizationRequestOptions): Promise<AuthorizationRequest> {
  const state = o.state ?? randomString(16);
  const nonce = o.nonce ?? randomString(16);
  const codeVerifier = o.codeVerifier ?? randomString(32);
  const url = new URL(o.authorizationEndpoint);
  const p = url.searchParams;
  // Caller-supplied extras first, so the protocol parameters below win.
  for (const [k, v] of Object.entries(o.extraParams ?? {})) p.set(k, v);
  p.set("response_type", "code");
  p.set("client_id", o.clientId);
  p.set("redirect_uri", o.redirectUri);
  p.set("scope", o.scope ?? "openid");
  p.set("state", state);
  p.set("nonce", nonce);
  p.set("code_challenge", await pkceChallenge(codeVerifier));
  p.set("code_challenge_method", "S256");
  const acr = (o.acrValues ?? []).filter((v) => v !== "");
  if (acr.length > 0) p.set("acr_values", acr.join(" "));
  if (o.maxAge !== undefined) {
    if (!Number.isSafeInteger(o.maxAge) || o.maxAge < 0) throw new RangeError(`maxAge must be a non-negative integer, got ${o.maxAge}`);
    p.set("max_age", String(o.maxAge));
  }
  const claims: Record<string, unknown> = { ...(o.claims ?? {}) };
  if (o.essentialAcr && acr.length > 0) {
    const idToken = claims["id_token"] !== null && typeof claims["id_token"] === "object" ? (claims["id_token"] as Record<string, unknown>) : {};
    claims["id_token"] = { ...idToken, acr: { essential: true, values: acr } };
  }
  if (Object.keys(claims).length > 0) p.set("claims", JSON.stringify(claims));
  if (o.dpopJkt) p.set("dpop_jkt", o.dpopJkt);
  return { url: url.toString(), state, nonce, codeVerifier };
}

/** PKCE S256 code_challenge for a verifier (RFC 7636 §4.2). */
export async function pkceChallenge(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

export type AuthorizationResponse =
  | { kind: "code"; code: string }
  | { kind: "cancelled"; error: string }
  | { kind: "failed"; error: string; description?: string };

/**
 * Reads the redirect back from the IdP. `access_denied` (the user said no) is
 * `cancelled`; any other error, a missing code or a state mismatch is `failed`.
 * With `issuer`, an `iss` parameter (RFC 9207) must equal it.
 */
export function parseAuthorizationResponse(callbackUrl: string, expectedState: string, issuer?: string): AuthorizationResponse {
  const u = new URL(callbackUrl);
  // The code flow answers in the query; a fragment is read too for IdPs that use response_mode=fragment.
  const p = u.searchParams.has("state") || u.searchParams.has("error") ? u.searchParams : new URLSearchParams(u.hash.slice(1));
  if (p.get("state") !== expectedState) return { kind: "failed", error: "state_mismatch" };
  const iss = p.get("iss");
  if (issuer !== undefined && iss !== null && iss !== issuer) return { kind: "failed", error: "issuer_mismatch" };
  const error = p.get("error");
  if (error === "access_denied") return { kind: "cancelled", error };
  if (error !== null) {
    const description = p.get("error_description");
    return description !== null ? { kind: "failed", error, description } : { kind: "failed", error };
  }
  const code = p.get("code");
  if (!code) return { kind: "failed", error: "missing_code" };
  return { kind: "code", code };
}

export interface TokenResponse {
  access_token: string;
  token_type?: string;
  expires_in?: number;
  id_token?: string;
  refresh_token?: string;
  [k: string]: unknown;
}

/**
 * Exchanges an authorization code at the token endpoint (public client, PKCE).
 * With `dpop`, the request carries a DPoP proof (RFC 9449 §5), a 400
 * `use_dpop_nonce` with a DPoP-Nonce is retried once with it (§8), and the
 * answer must be a DPoP token (token_type DPoP, §5.1), never a bearer one.
 */
export async function exchangeCode(o: {
  tokenEndpoint: string;
  clientId: string;
  redirectUri: string;
  code: string;
  codeVerifier: string;
  fetch?: typeof globalThis.fetch;
  dpop?: DPoP;
}): Promise<TokenResponse> {
  const doFetch = o.fetch ?? globalThis.fetch;
  const request = async () => {
    const headers: Record<string, string> = { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" };
    if (o.dpop) headers["DPoP"] = await o.dpop.proof("POST", o.tokenEndpoint);
    const res = await doFetch(o.tokenEndpoint, {
      method: "POST",
      headers,
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: o.code,
        redirect_uri: o.redirectUri,
        client_id: o.clientId,
        code_verifier: o.codeVerifier,
      }),
    });
    o.dpop?.rememberNonce(o.tokenEndpoint, res);
    const body = (await res.json().catch(() => ({}))) as Partial<TokenResponse> & { error?: string };
    return { res, body };
  };
  let { res, body } = await request();
  if (o.dpop && res.status === 400 && body.error === "use_dpop_nonce" && res.headers.get("dpop-nonce")) ({ res, body } = await request());
  if (!res.ok || typeof body.access_token !== "string" || body.access_token === "") {
    throw new Error(`token endpoint: ${res.status}${body.error ? ` ${body.error}` : ""}`);
  }
  // RFC 9449 §5.1: a bearer token here would go out under the DPoP scheme and be refused.
  if (o.dpop && body.token_type?.toLowerCase() !== "dpop") {
    throw new Error(`token endpoint: token_type ${JSON.stringify(body.token_type)}, want DPoP (does the IdP support DPoP for this client?)`);
  }
  return body as TokenResponse;
}

export interface OidcDiscovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  acr_values_supported?: string[];
  [k: string]: unknown;
}

/** Fetches {issuer}/.well-known/openid-configuration and checks its issuer. */
export async function discover(issuer: string, fetchImpl: typeof globalThis.fetch = globalThis.fetch): Promise<OidcDiscovery> {
  const res = await fetchImpl(issuer.replace(/\/$/, "") + "/.well-known/openid-configuration", {
    headers: { Accept: "application/json" },
  });
  if (!res.ok) throw new Error(`discovery: ${res.status}`);
  const doc = (await res.json()) as OidcDiscovery;
  if (doc.issuer !== issuer) throw new Error(`discovery: issuer ${JSON.stringify(doc.issuer)} is not ${JSON.stringify(issuer)}`);
  if (typeof doc.authorization_endpoint !== "string" || typeof doc.token_endpoint !== "string") {
    throw new Error("discovery: no authorization_endpoint or token_endpoint");
  }
  return doc;
}

/**
 * Takes the user to the authorization URL and resolves with the URL the IdP
 * redirected back to, or null when the user closed the window.
 */
export type Navigator = (authorizationUrl: string, signal?: AbortSignal) => Promise<string | null>;

export interface OidcStepUpOptions {
  authorizationEndpoint: string;
  tokenEndpoint: string;
  clientId: string;
  redirectUri: string;
  scope?: string;
  /** When set, an `iss` in the redirect (RFC 9207) must equal it. */
  issuer?: string;
  essentialAcr?: boolean;
  /** Extra authorization parameters per prompt, e.g. { login_hint: currentUser.email }. */
  extraParams?: (prompt: StepUpPrompt) => Record<string, string>;
  /** How to show the IdP: popupNavigator() in a browser, a fake in tests. */
  navigate: Navigator;
  /** Told about the new tokens, e.g. to store them for getAccessToken. */
  onTokens?: (tokens: TokenResponse) => void;
  fetch?: typeof globalThis.fetch;
  /** The DPoP session stepUpFetch uses: the new token is bound to its key. */
  dpop?: DPoP;
}

/** A stepUp for stepUpFetch that re-authenticates through any OIDC provider. */
export function oidcStepUp(o: OidcStepUpOptions): (prompt: StepUpPrompt) => Promise<StepUpResult> {
  return async (prompt) => {
    try {
      const req: AuthorizationRequestOptions = {
        authorizationEndpoint: o.authorizationEndpoint,
        clientId: o.clientId,
        redirectUri: o.redirectUri,
        acrValues: prompt.acrValues,
      };
      if (o.scope !== undefined) req.scope = o.scope;
      if (prompt.maxAge !== undefined) req.maxAge = prompt.maxAge;
      if (o.essentialAcr !== undefined) req.essentialAcr = o.essentialAcr;
      // Entra's claims challenge: what the resource asked for goes to the IdP verbatim.
      if (prompt.claims) req.claims = prompt.claims.value;
      if (o.dpop) req.dpopJkt = o.dpop.thumbprint;
      if (o.extraParams) req.extraParams = o.extraParams(prompt);
      const ar = await buildAuthorizationRequest(req);
      const back = await o.navigate(ar.url, prompt.signal);
      if (back === null) return { kind: "cancelled" };
      const resp = parseAuthorizationResponse(back, ar.state, o.issuer);
      if (resp.kind === "cancelled") return { kind: "cancelled" };
      if (resp.kind === "failed") return { kind: "failed", error: new Error(resp.error) };
      const ex: Parameters<typeof exchangeCode>[0] = {
        tokenEndpoint: o.tokenEndpoint,
        clientId: o.clientId,
        redirectUri: o.redirectUri,
        code: resp.code,
        codeVerifier: ar.codeVerifier,
      };
      if (o.fetch) ex.fetch = o.fetch;
      if (o.dpop) ex.dpop = o.dpop;
      const tokens = await exchangeCode(ex);
      o.onTokens?.(tokens);
      return { kind: "success", accessToken: tokens.access_token };
    } catch (error) {
      return { kind: "failed", error };
    }
  };
}

const CALLBACK_MESSAGE = "stepup-authz:oidc-callback";

/**
 * A browser Navigator: opens the IdP in a popup and waits for the redirect
 * page (same origin as this one) to call completePopupCallback(). Resolves
 * null when the user closes the popup. Browsers allow window.open only
 * shortly after a click (transient user activation, about 5 s in Chromium
 * and Firefox): if the denied request may take longer, have stepUp show your
 * own "Confirm it's you" dialog and call navigate from its button.
 */
export function popupNavigator(features = "popup,width=480,height=640"): Navigator {
  return (url, signal) =>
    new Promise((resolve) => {
      const popup = window.open(url, "stepup-authz-oidc", features);
      if (!popup) return resolve(null);
      const done = (v: string | null) => {
        window.removeEventListener("message", onMessage);
        clearInterval(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve(v);
      };
      const onMessage = (e: MessageEvent) => {
        if (e.origin !== window.location.origin || e.source !== popup) return;
        const d = e.data as { type?: unknown; url?: unknown } | null;
        if (d && d.type === CALLBACK_MESSAGE && typeof d.url === "string") {
          popup.close();
          done(d.url);
        }
      };
      const onAbort = () => {
        popup.close();
        done(null);
      };
      const timer = setInterval(() => {
        if (popup.closed) done(null);
      }, 500);
      window.addEventListener("message", onMessage);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
}

/** On the redirect_uri page opened by popupNavigator: hands the URL back to the opener. */
export function completePopupCallback(): void {
  if (window.opener) {
    (window.opener as Window).postMessage({ type: CALLBACK_MESSAGE, url: window.location.href }, window.location.origin);
  }
}

function randomString(bytes: number): string {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return base64url(b);
}

function base64url(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
