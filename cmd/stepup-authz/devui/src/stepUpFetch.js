// stepUpFetch: fetch with a bearer or DPoP-bound token that turns a step-up
// denial into one prompt and one retry. Identity-provider neutral: you supply
// getAccessToken and stepUp; nothing here knows which IdP or SDK is behind them.
import { findStepUpChallenge, parseMaxAge, parseOAuthChallenges } from "./challenge.js";
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
export async function stepUpFetch(input, init, options) {
    const doFetch = options.fetch ?? globalThis.fetch;
    const dpop = options.dpop; // one session for the whole call, sends and retries alike
    const coord = coordinatorFor(options.stepUp);
    const target = describe(input, init);
    // Keep a second copy of the body before anything reads the first.
    const bodies = new ReplayableBody(input, init);
    try {
        // One send with token, and with DPoP at most one more with the nonce the
        // server asked for (RFC 9449 §9: 401 use_dpop_nonce with a DPoP-Nonce).
        const sendWith = async (token) => {
            const once = async () => {
                const [i, ini] = bodies.take();
                const res = await send(doFetch, i, ini, token, dpop, target);
                dpop?.rememberNonce(target.url, res);
                return res;
            };
            const res = await once();
            if (!dpop || !token || !(await asksForNonce(res)))
                return res;
            void res.body?.cancel().catch(() => { });
            return once();
        };
        const generation = coord.generation;
        const first = await sendWith(await options.getAccessToken());
        const requirement = await stepUpRequirement(first);
        if (!requirement)
            return first;
        let token;
        if (coord.generation !== generation) {
            // A step-up finished while this request was on its way: the token it was
            // sent with is stale. Retry with the current one rather than prompting again.
            token = await options.getAccessToken();
        }
        else {
            const prompt = { ...requirement, request: { url: target.url, method: target.method } };
            if (init?.signal)
                prompt.signal = init.signal;
            const result = await coord.run(requirementKey(requirement), () => options.stepUp(prompt));
            if (result.kind !== "success")
                return first;
            token = result.accessToken ?? (await options.getAccessToken());
        }
        return await sendWith(token);
    }
    finally {
        bodies.release();
    }
}
/**
 * The body of one request, sendable more than once: each take() hands out a
 * copy and keeps another (a Request is cloned, a ReadableStream tee()'d) until
 * release() drops the spare.
 */
class ReplayableBody {
    input;
    init;
    constructor(input, init) {
        this.input = input;
        this.init = init;
    }
    take() {
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
    release() {
        if (typeof Request !== "undefined" && this.input instanceof Request)
            void this.input.body?.cancel().catch(() => { });
        if (typeof ReadableStream !== "undefined" && this.init?.body instanceof ReadableStream)
            void this.init.body.cancel().catch(() => { });
    }
}
/**
 * A 401 that asks for a DPoP nonce (RFC 9449 §9) and carries one: its DPoP
 * challenge says use_dpop_nonce, or, when CORS hides WWW-Authenticate, its
 * JSON body does (stepup-authz sends `{"error":"use_dpop_nonce"}`).
 */
async function asksForNonce(res) {
    if (res.status !== 401 || !res.headers.get("dpop-nonce"))
        return false;
    const header = res.headers.get("www-authenticate");
    if (header !== null)
        return parseOAuthChallenges(header).some((c) => c.scheme === "dpop" && c.error === "use_dpop_nonce");
    return (await jsonError(res)) === "use_dpop_nonce";
}
/** The `error` of a JSON body, read from a clone; undefined for anything else. */
async function jsonError(res) {
    if (!/\bjson\b/i.test(res.headers.get("content-type") ?? "") || res.body === null || res.bodyUsed)
        return undefined;
    try {
        const v = JSON.parse(await res.clone().text());
        return v !== null && typeof v === "object" ? v.error : undefined;
    }
    catch {
        return undefined;
    }
}
/** stepUpFetch with its options bound: a drop-in for fetch. */
export function createStepUpFetch(options) {
    return (input, init) => stepUpFetch(input, init, options);
}
/**
 * The step-up requirement a response carries, or undefined when it is not a
 * step-up denial (any status but 401, a plain `unauthorized`, `invalid_token`,
 * a 403 `insufficient_scope`...). Reads a clone of the body, never the body.
 */
export async function stepUpRequirement(res) {
    if (res.status !== 401)
        return undefined;
    const challenge = findStepUpChallenge(res.headers.get("www-authenticate"));
    let body;
    const ct = res.headers.get("content-type") ?? "";
    if (/\bjson\b/i.test(ct) && res.body !== null && !res.bodyUsed) {
        try {
            const v = JSON.parse(await res.clone().text());
            if (v !== null && typeof v === "object" && v.error === "step_up_required") {
                body = v;
            }
        }
        catch {
            // not JSON after all: only the header can tell
        }
    }
    if (!challenge && !body)
        return undefined;
    const req = { acrValues: [] };
    const bodyAcr = typeof body?.required_acr === "string" && body.required_acr !== "" ? body.required_acr : undefined;
    const requiredAcr = bodyAcr ?? challenge?.acrValues[0];
    if (requiredAcr !== undefined)
        req.requiredAcr = requiredAcr;
    if (challenge && challenge.acrValues.length > 0)
        req.acrValues = challenge.acrValues;
    // A claims challenge names the level in claims, in the IdP's vocabulary: our level name is not for the IdP.
    else if (bodyAcr && challenge?.error !== "insufficient_claims")
        req.acrValues = [bodyAcr];
    const maxAge = challenge?.maxAge ?? parseMaxAge(body?.max_age);
    if (maxAge !== undefined)
        req.maxAge = maxAge;
    if (challenge?.errorDescription !== undefined)
        req.errorDescription = challenge.errorDescription;
    if (challenge?.claims !== undefined)
        req.claims = challenge.claims;
    if (challenge?.resourceMetadata !== undefined)
        req.resourceMetadata = challenge.resourceMetadata;
    return req;
}
async function send(doFetch, input, init, token, dpop, target) {
    const base = init?.headers ?? (typeof Request !== "undefined" && input instanceof Request ? input.headers : undefined);
    const headers = new Headers(base);
    if (token && dpop) {
        // RFC 9449 §7.1: the DPoP scheme, and a proof for this very request bound to the token (ath).
        headers.set("Authorization", `DPoP ${token}`);
        headers.set("DPoP", await dpop.proof(target.method, target.url, { accessToken: token }));
    }
    else if (token) {
        headers.set("Authorization", `Bearer ${token}`);
    }
    return doFetch(input, { ...init, headers });
}
function describe(input, init) {
    if (typeof Request !== "undefined" && input instanceof Request) {
        return { url: input.url, method: (init?.method ?? input.method).toUpperCase() };
    }
    return { url: String(input), method: (init?.method ?? "GET").toUpperCase() };
}
function requirementKey(r) {
    return JSON.stringify([r.requiredAcr ?? null, r.acrValues, r.maxAge ?? null, r.claims?.json ?? null]);
}
/**
 * One per stepUp function: the prompt in flight, and a count of successful
 * step-ups so a request that was sent before one finished retries instead of
 * prompting again.
 */
class Coordinator {
    generation = 0;
    current;
    async run(key, start) {
        // Same requirement: join the open prompt. Another requirement: wait for it
        // to close, so the user never sees two prompts at once.
        for (let cur = this.current; cur; cur = this.current) {
            if (cur.key === key)
                return cur.promise;
            await cur.promise;
        }
        const entry = { key, promise: undefined };
        entry.promise = (async () => {
            let r;
            try {
                r = normalise(await start());
            }
            catch (error) {
                r = { kind: "failed", error };
            }
            if (this.current === entry)
                this.current = undefined;
            if (r.kind === "success")
                this.generation++;
            return r;
        })();
        // Installed before the function above can clear it: it awaits start(),
        // which always yields at least once.
        this.current = entry;
        return entry.promise;
    }
}
function normalise(r) {
    if (r && typeof r === "object") {
        const k = r.kind;
        if (k === "success") {
            const t = r.accessToken;
            return typeof t === "string" && t !== "" ? { kind: "success", accessToken: t } : { kind: "success" };
        }
        if (k === "cancelled")
            return { kind: "cancelled" };
        if (k === "failed")
            return r;
    }
    return { kind: "failed", error: new Error("stepUp returned no result") };
}
const coordinators = new WeakMap();
function coordinatorFor(stepUp) {
    let c = coordinators.get(stepUp);
    if (!c) {
        c = new Coordinator();
        coordinators.set(stepUp, c);
    }
    return c;
}
