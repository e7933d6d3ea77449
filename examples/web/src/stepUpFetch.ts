// stepUpFetch: fetch with a bearer or DPoP-bound token that turns a step-up
// denial into one prompt and one retry. Identity-provider neutral: you supply
// getAccessToken and stepUp; nothing here knows which IdP or SDK is behind them.

import { findStepUpChallenge, parseMaxAge, parseOAuthChallenges } from "./challenge.js";
import type { ClaimsChallenge } from "./challenge.js";
import type { DPoP } from "./dpop.js";

/** A bearer token, or nothing (then no Authorization header is set). */
export type AccessToken = string | null | undefined;

/** What the server asked for, from the 401's body and/or its WWW-Authenticate challenge. */
export interface StepUpRequirement {
  /**
   * The level the route requires: the body's `required_acr` (stepup-authz's level
   * name, e.g. `aal2`), else the first of `acrValues`.
   */
  requiredAcr?: string;
  /**
   * What to send the IdP as `acr_values` (RFC 9470 §4): the challenge's
   * `acr_values` (which stepup-authz may have translated into the IdP's own
   * vocabulary, e.g. `urn:okta:loa:2fa:any`), else `[requiredAcr]`; empty for
   * a claims challenge, which says what it wants in `claims`.
   */
  acrValues: string[];
  /** Seconds: the user must have authenticated at most this long ago (challenge `max_age`, else the body's). */
  maxAge?: number;
  /** The challenge's `error_description`: free text for logs, not for users. */
  errorDescription?: string;
  /**
   * An `insufficient_claims` challenge's `claims` (Microsoft Entra), decoded:
   * pass `claims.json` to the IdP as the `claims` parameter (MSAL: the `claims`
   * option of acquireToken*). Then `acrValues` is empty.
   */
  claims?: ClaimsChallenge;
  /** The challenge's `resource_metadata` (RFC 9728 §5.1): where the resource's metadata is. */
  resourceMetadata?: string;
}

/** What stepUp is called with. */
export interface StepUpPrompt extends StepUpRequirement {
  /** The request that was denied, to word the prompt ("Confirm it's you to change your bank account"). */
  request: { url: string; method: string };
  /** The first caller's abort signal, if it passed one. */
  signal?: AbortSignal;
}

/**
 * stepUp's outcome. On `success`, `accessToken` is the new token; when it is
 * left out, getAccessToken is asked again (an SDK that stores the new token).
 */
export type StepUpResult =
  | { kind: "success"; accessToken?: string }
  | { kind: "cancelled" }
  | { kind: "failed"; error?: unknown };

export interface StepUpFetchOptions {
  /** The current access token (called before every send). */
  getAccessToken: () => AccessToken | Promise<AccessToken>;
  /**
   * Prompts the user to authenticate again at the required level and gets a new
   * token. Calls that hit step-up while a prompt for the same requirement is
   * open share it: one stepUp in flight per stepUp function. A throw counts as
   * `failed`.
   */
  stepUp: (prompt: StepUpPrompt) => StepUpResult | Promise<StepUpResult>;
  /** The fetch to use (default: globalThis.fetch). */
  fetch?: typeof globalThis.fetch;
  /**
   * A DPoP session (createDPoP): tokens go out as `Authorization: DPoP <token>`
   * with a fresh `DPoP` proof per request (RFC 9449 §7.1). getAccessToken and
   * stepUp must return tokens bound to this session's key (cnf.jkt = its
   * thumbprint): ask the IdP for them with a proof from the same session.
   */
  dpop?: DPoP;
}

/**
 * Sends the request with `Authorization: Bearer <token>` (with `dpop`:
 * `Authorization: DPoP <token>` and a `DPoP` proof). On a 401 whose JSON body
 * is `{"error":"step_up_required",...}` or whose WWW-Authenticate has a Bearer
 * or DPoP challenge with `error="insufficient_user_authentication"` (or
 * Entra's `insufficient_claims`), calls stepUp once (shared with concurrent
 * calls) and, on success, retries the request once with the new token. On
 * cancel or failure it returns the original 401 response, unread.
 *
 * With `dpop`, every response's `DPoP-Nonce` is remembered for its origin and
 * goes into the next proof; a 401 `DPoP error="use_dpop_nonce"` that carries a
 * `DPoP-Nonce` is retried once with a proof holding it (RFC 9449 §9), before
 * and after a step-up.
 *
 * Bodies are replayable: a Request is cloned, and a ReadableStream body is
 * tee()'d, before each send. While a send reads a stream, the spare copy
 * buffers it in memory until the response shows whether a retry is needed;
 * then it is sent or released. Strings, Blobs, ArrayBuffers, FormData and
 * URLSearchParams are reused as they are.
 */
export async function stepUpFetch(
  input: RequestInfo | URL,
  init: RequestInit | undefined,
  options: StepUpFetchOptions,
): Promise<Response> {
  const doFetch = options.fetch ?? globalThis.fetch;
  const dpop = options.dpop; // one session for the whole call, sends and retries alike
  const coord = coordinatorFor(options.stepUp);
  const target = describe(input, init);
  // Keep a second copy of the body before anything reads the first.
  const bodies = new ReplayableBody(input, init);
  try {
    // One send with token, and with DPoP at most one more with the nonce the
    // server asked for (RFC 9449 §9: 401 use_dpop_nonce with a DPoP-Nonce).
    const sendWith = async (token: AccessToken): Promise<Response> => {
      const once = async () => {
        const [i, ini] = bodies.take();
        const res = await send(doFetch, i, ini, token, dpop, target);
        dpop?.rememberNonce(target.url, res);
        return res;
      };
      const res = await once();
      if (!dpop || !token || !(await asksForNonce(res))) return res;
      void res.body?.cancel().catch(() => {});
      return once();
    };

    const generation = coord.generation;
    const first = await sendWith(await options.getAccessToken());
    const requirement = await stepUpRequirement(first);
    if (!requirement) return first;

    let token: AccessToken;
    if (coord.generation !== generation) {
      // A step-up finished while this request was on its way: the token it was
      // sent with is stale. Retry with the current one rather than prompting again.
      token = await options.getAccessToken();
    } else {
      const prompt: StepUpPrompt = { ...requirement, request: { url: target.url, method: target.method } };
      if (init?.signal) prompt.signal = init.signal;
      const result = await coord.run(requirementKey(requirement), () => options.stepUp(prompt));
      if (result.kind !== "success") return first;
      token = result.accessToken ?? (await options.getAccessToken());
    }
    return await sendWith(token);
  } finally {
    bodies.release();
  }
}

/**
 * The body of one request, sendable more than once: each take() hands out a
 * copy and keeps another (a Request is cloned, a ReadableStream tee()'d) until
 * release() drops the spare.
 */
class ReplayableBody {
  private input: RequestInfo | URL;
  private init: RequestInit | undefined;

  constructor(input: RequestInfo | URL, init: RequestInit | undefined) {
    this.input = input;
    this.init = init;
  }

  take(): [RequestInfo | URL, RequestInit | undefined] {
    let input = this.input;
    let init = this.init;
    if (typeof Request !== "undefined" && input instanceof Request) {
      this.input = input.clone();
    }
    if (init?.body && typeof ReadableStream !== "undefined" && init.body instanceof ReadableStream) {
      const [a, b] = init.body.tee();
      init = { ...init, body: a };
      this.init = { ...init, body: b };
    }
    return [input, init];
  }

  release(): void {
    if (typeof Request !== "undefined" && this.input instanceof Request) void this.input.body?.cancel().catch(() => {});
    if (typeof ReadableStream !== "undefined" && this.init?.body instanceof ReadableStream) void this.init.body.cancel().catch(() => {});
  }
}

/**
 * A 401 that asks for a DPoP nonce (RFC 9449 §9) and carries one: its DPoP
 * challenge says use_dpop_nonce, or, when CORS hides WWW-Authenticate, its
 * JSON body does (stepup-authz sends `{"error":"use_dpop_nonce"}`).
 */
async function asksForNonce(res: Response): Promise<boolean> {
  if (res.status !== 401 || !res.headers.get("dpop-nonce")) return false;
  const header = res.headers.get("www-authenticate");
  if (header !== null) return parseOAuthChallenges(header).some((c) => c.scheme === "dpop" && c.error === "use_dpop_nonce");
  return (await jsonError(res)) === "use_dpop_nonce";
}

/** The `error` of a JSON body, read from a clone; undefined for anything else. */
async function jsonError(res: Response): Promise<unknown> {
  if (!/\bjson\b/i.test(res.headers.get("content-type") ?? "") || res.body === null || res.bodyUsed) return undefined;
  try {
    const v: unknown = JSON.parse(await res.clone().text());
    return v !== null && typeof v === "object" ? (v as { error?: unknown }).error : undefined;
  } catch {
    return undefined;
  }
}

/** stepUpFetch with its options bound: a drop-in for fetch. */
export function createStepUpFetch(
  options: StepUpFetchOptions,
): (input: RequestInfo | URL, init?: RequestInit) => Promise<Response> {
  return (input, init) => stepUpFetch(input, init, options);
}

/**
 * The step-up requirement a response carries, or undefined when it is not a
 * step-up denial (any status but 401, a plain `unauthorized`, `invalid_token`,
 * a 403 `insufficient_scope`...). Reads a clone of the body, never the body.
 */
export async function stepUpRequirement(res: Response): Promise<StepUpRequirement | undefined> {
  if (res.status !== 401) return undefined;
  const challenge = findStepUpChallenge(res.headers.get("www-authenticate"));
  let body: { required_acr?: unknown; max_age?: unknown } | undefined;
  const ct = res.headers.get("content-type") ?? "";
  if (/\bjson\b/i.test(ct) && res.body !== null && !res.bodyUsed) {
    try {
      const v: unknown = JSON.parse(await res.clone().text());
      if (v !== null && typeof v === "object" && (v as { error?: unknown }).error === "step_up_required") {
        body = v as typeof body;
      }
    } catch {
      // not JSON after all: only the header can tell
    }
  }
  if (!challenge && !body) return undefined;

  const req: StepUpRequirement = { acrValues: [] };
  const bodyAcr = typeof body?.required_acr === "string" && body.required_acr !== "" ? body.required_acr : undefined;
  const requiredAcr = bodyAcr ?? challenge?.acrValues[0];
  if (requiredAcr !== undefined) req.requiredAcr = requiredAcr;
  if (challenge && challenge.acrValues.length > 0) req.acrValues = challenge.acrValues;
  // A claims challenge names the level in claims, in the IdP's vocabulary: our level name is not for the IdP.
  else if (bodyAcr && challenge?.error !== "insufficient_claims") req.acrValues = [bodyAcr];
  const maxAge = challenge?.maxAge ?? parseMaxAge(body?.max_age);
  if (maxAge !== undefined) req.maxAge = maxAge;
  if (challenge?.errorDescription !== undefined) req.errorDescription = challenge.errorDescription;
  if (challenge?.claims !== undefined) req.claims = challenge.claims;
  if (challenge?.resourceMetadata !== undefined) req.resourceMetadata = challenge.resourceMetadata;
  return req;
}

async function send(
  doFetch: typeof globalThis.fetch,
  input: RequestInfo | URL,
  init: RequestInit | undefined,
  token: AccessToken,
  dpop: DPoP | undefined,
  target: { url: string; method: string },
): Promise<Response> {
  const base = init?.headers ?? (typeof Request !== "undefined" && input instanceof Request ? input.headers : undefined);
  const headers = new Headers(base);
  if (token && dpop) {
    // RFC 9449 §7.1: the DPoP scheme, and a proof for this very request bound to the token (ath).
    headers.set("Authorization", `DPoP ${token}`);
    headers.set("DPoP", await dpop.proof(target.method, target.url, { accessToken: token }));
  } else if (token) {
    headers.set("Authorization", `Bearer ${token}`);
  }
  return doFetch(input, { ...init, headers });
}

function describe(input: RequestInfo | URL, init: RequestInit | undefined): { url: string; method: string } {
  if (typeof Request !== "undefined" && input instanceof Request) {
    return { url: input.url, method: (init?.method ?? input.method).toUpperCase() };
  }
  return { url: String(input), method: (init?.method ?? "GET").toUpperCase() };
}

function requirementKey(r: StepUpRequirement): string {
  return JSON.stringify([r.requiredAcr ?? null, r.acrValues, r.maxAge ?? null, r.claims?.json ?? null]);
}

/**
 * One per stepUp function: the prompt in flight, and a count of successful
 * step-ups so a request that was sent before one finished retries instead of
 * prompting again.
 */
class Coordinator {
  generation = 0;
  private current: { key: string; promise: Promise<StepUpResult> } | undefined;

  async run(key: string, start: () => StepUpResult | Promise<StepUpResult>): Promise<StepUpResult> {
    // Same requirement: join the open prompt. Another requirement: wait for it
    // to close, so the user never sees two prompts at once.
    for (let cur = this.current; cur; cur = this.current) {
      if (cur.key === key) return cur.promise;
      await cur.promise;
    }
    const entry = { key, promise: undefined as unknown as Promise<StepUpResult> };
    entry.promise = (async (): Promise<StepUpResult> => {
      let r: StepUpResult;
      try {
        r = normalise(await start());
      } catch (error) {
        r = { kind: "failed", error };
      }
      if (this.current === entry) this.current = undefined;
      if (r.kind === "success") this.generation++;
      return r;
    })();
    // Installed before the function above can clear it: it awaits start(),
    // which always yields at least once.
    this.current = entry;
    return entry.promise;
  }
}

function normalise(r: unknown): StepUpResult {
  if (r && typeof r === "object") {
    const k = (r as { kind?: unknown }).kind;
    if (k === "success") {
      const t = (r as { accessToken?: unknown }).accessToken;
      return typeof t === "string" && t !== "" ? { kind: "success", accessToken: t } : { kind: "success" };
    }
    if (k === "cancelled") return { kind: "cancelled" };
    if (k === "failed") return r as StepUpResult;
  }
  return { kind: "failed", error: new Error("stepUp returned no result") };
}

const coordinators = new WeakMap<object, Coordinator>();

function coordinatorFor(stepUp: object): Coordinator {
  let c = coordinators.get(stepUp);
  if (!c) {
    c = new Coordinator();
    coordinators.set(stepUp, c);
  }
  return c;
}
