import { test } from "node:test";
import assert from "node:assert/strict";
import { createStepUpFetch, stepUpFetch, stepUpRequirement } from "../src/stepUpFetch.js";
import type { StepUpPrompt, StepUpResult } from "../src/stepUpFetch.js";

const CHALLENGE =
  'Bearer error="insufficient_user_authentication", error_description="authentication level aal2 required", acr_values="aal2", max_age="300"';
const STEP_UP_BODY = '{"error":"step_up_required","required_acr":"aal2","max_age":300}';

function denial(opts: { body?: string; challenge?: string | null; contentType?: string; status?: number } = {}): Response {
  const headers: Record<string, string> = {
    "content-type": opts.contentType ?? "application/json",
    "cache-control": "no-store",
  };
  const challenge = opts.challenge === undefined ? CHALLENGE : opts.challenge;
  if (challenge !== null) headers["www-authenticate"] = challenge;
  return new Response(opts.body ?? STEP_UP_BODY, { status: opts.status ?? 401, headers });
}

interface Seen {
  url: string;
  method: string;
  auth: string | null;
  contentType: string | null;
  body: string;
}

/** A fake fetch: records what was sent and answers with handler(seen, n). */
function fakeFetch(handler: (s: Seen, n: number) => Response | Promise<Response>) {
  const calls: Seen[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    if (req.signal.aborted) throw new DOMException("This operation was aborted", "AbortError");
    const s: Seen = {
      url: req.url,
      method: req.method,
      auth: req.headers.get("authorization"),
      contentType: req.headers.get("content-type"),
      body: await req.text(),
    };
    calls.push(s);
    return handler(s, calls.length);
  };
  return { fetch: fetch as typeof globalThis.fetch, calls };
}

/** The server: a step-up denial unless the token is "strong". */
const server = (s: Seen) =>
  s.auth === "Bearer strong" ? Response.json({ ok: true, body: s.body }) : denial();

function stepUpSpy(result: StepUpResult | (() => Promise<StepUpResult>)) {
  const prompts: StepUpPrompt[] = [];
  const stepUp = async (p: StepUpPrompt): Promise<StepUpResult> => {
    prompts.push(p);
    return typeof result === "function" ? result() : result;
  };
  return { stepUp, prompts };
}

const U = "https://app.example.com/api/payout-destination";

test("an allowed request goes out once with the bearer token", async () => {
  const f = fakeFetch(() => Response.json({ ok: true }));
  const s = stepUpSpy({ kind: "success", accessToken: "strong" });
  const res = await stepUpFetch(U, { method: "POST", body: "{}" }, { getAccessToken: () => "weak", stepUp: s.stepUp, fetch: f.fetch });
  assert.equal(res.status, 200);
  assert.equal(f.calls.length, 1);
  assert.equal(f.calls[0]!.auth, "Bearer weak");
  assert.equal(s.prompts.length, 0);
});

test("step_up_required: one stepUp with the requirement, one retry with the new token, same body", async () => {
  const f = fakeFetch(server);
  const s = stepUpSpy({ kind: "success", accessToken: "strong" });
  const body = JSON.stringify({ iban: "DE89370400440532013000" });
  const res = await stepUpFetch(
    U,
    { method: "POST", headers: { "Content-Type": "application/json" }, body },
    { getAccessToken: async () => "weak", stepUp: s.stepUp, fetch: f.fetch },
  );
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { ok: true, body });
  assert.deepEqual(
    f.calls.map((c) => [c.auth, c.method, c.contentType, c.body]),
    [
      ["Bearer weak", "POST", "application/json", body],
      ["Bearer strong", "POST", "application/json", body],
    ],
  );
  assert.equal(s.prompts.length, 1);
  const p = s.prompts[0]!;
  assert.equal(p.requiredAcr, "aal2");
  assert.deepEqual(p.acrValues, ["aal2"]);
  assert.equal(p.maxAge, 300);
  assert.deepEqual(p.request, { url: U, method: "POST" });
});

test("recognised from the JSON body alone (no WWW-Authenticate, as with a CORS response that hides it)", async () => {
  const f = fakeFetch((s) => (s.auth === "Bearer strong" ? Response.json({ ok: true }) : denial({ challenge: null })));
  const s = stepUpSpy({ kind: "success", accessToken: "strong" });
  const res = await stepUpFetch(U, { method: "POST" }, { getAccessToken: () => "weak", stepUp: s.stepUp, fetch: f.fetch });
  assert.equal(res.status, 200);
  assert.equal(s.prompts[0]!.requiredAcr, "aal2");
  assert.deepEqual(s.prompts[0]!.acrValues, ["aal2"]);
  assert.equal(s.prompts[0]!.maxAge, 300);
});

test("recognised from the challenge alone (a body that is not JSON)", async () => {
  const f = fakeFetch((s) =>
    s.auth === "Bearer strong"
      ? Response.json({ ok: true })
      : denial({ body: "Unauthorized", contentType: "text/plain", challenge: 'Basic realm="x", Bearer error="insufficient_user_authentication", max_age="60"' }),
  );
  const s = stepUpSpy({ kind: "success", accessToken: "strong" });
  const res = await stepUpFetch(U, undefined, { getAccessToken: () => "weak", stepUp: s.stepUp, fetch: f.fetch });
  assert.equal(res.status, 200);
  assert.equal(s.prompts[0]!.requiredAcr, undefined);
  assert.deepEqual(s.prompts[0]!.acrValues, []);
  assert.equal(s.prompts[0]!.maxAge, 60);
  assert.equal(s.prompts[0]!.request.method, "GET");
});

test("the challenge's acr_values (the IdP's vocabulary) go to the IdP; required_acr stays our level", async () => {
  const r = await stepUpRequirement(
    denial({ challenge: 'Bearer error="insufficient_user_authentication", acr_values="urn:okta:loa:2fa:any", max_age="300"' }),
  );
  assert.deepEqual(r, { requiredAcr: "aal2", acrValues: ["urn:okta:loa:2fa:any"], maxAge: 300 });
});

test("not a step-up: passed through untouched, no prompt", async () => {
  const cases: Array<[string, () => Response]> = [
    ["no token", () => denial({ body: '{"error":"unauthorized"}', challenge: "Bearer" })],
    ["invalid token", () => denial({ body: '{"error":"unauthorized"}', challenge: 'Bearer error="invalid_token"' })],
    ["machine token", () => denial({ status: 403, body: '{"error":"insufficient_scope"}', challenge: 'Bearer error="insufficient_scope", scope="payouts:write"' })],
    ["step-up body on a 403", () => denial({ status: 403 })],
    ["policy error", () => denial({ status: 500, body: '{"error":"policy_error"}', challenge: null })],
    ["keys unavailable", () => denial({ status: 503, body: '{"error":"temporarily_unavailable"}', challenge: null })],
    ["401 that is not JSON", () => denial({ body: "<html>step_up_required</html>", contentType: "text/html", challenge: null })],
    ["broken JSON", () => denial({ body: '{"error":"step_up_required"', challenge: null })],
    ["JSON null", () => denial({ body: "null", challenge: null })],
    ["other error", () => denial({ body: '{"error":"STEP_UP_REQUIRED"}', challenge: null })],
    ["DPoP invalid token", () => denial({ body: '{"error":"unauthorized"}', challenge: 'DPoP error="invalid_token", algs="ES256"' })],
    ["use_dpop_nonce without a DPoP session", () => denial({ body: '{"error":"use_dpop_nonce"}', challenge: 'DPoP error="use_dpop_nonce", algs="ES256"' })],
    ["a claims challenge on a 403", () => denial({ status: 403, body: "{}", challenge: 'Bearer error="insufficient_claims", claims="e30="' })],
    ["unterminated challenge", () => denial({ body: "{}", challenge: 'Bearer error="insufficient_user_authentication' })],
  ];
  for (const [name, make] of cases) {
    const original = make();
    const f = fakeFetch(() => original);
    const s = stepUpSpy({ kind: "success", accessToken: "strong" });
    const res = await stepUpFetch(U, { method: "POST", body: "x" }, { getAccessToken: () => "weak", stepUp: s.stepUp, fetch: f.fetch });
    assert.equal(res, original, name);
    assert.equal(res.bodyUsed, false, name);
    assert.equal(f.calls.length, 1, name);
    assert.equal(s.prompts.length, 0, name);
  }
});

for (const [name, result] of [
  ["cancelled", { kind: "cancelled" }],
  ["failed", { kind: "failed", error: new Error("no factor") }],
  ["a throw", async () => Promise.reject(new Error("popup blocked"))],
  ["a nonsense result", { kind: "maybe" } as unknown as StepUpResult],
] as Array<[string, StepUpResult | (() => Promise<StepUpResult>)]>) {
  test(`${name}: the original 401 comes back, unread, and nothing is retried`, async () => {
    const original = denial();
    const f = fakeFetch(() => original);
    const s = stepUpSpy(result);
    const res = await stepUpFetch(U, { method: "POST", body: "x" }, { getAccessToken: () => "weak", stepUp: s.stepUp, fetch: f.fetch });
    assert.equal(s.prompts.length, 1);
    assert.equal(res, original);
    assert.equal(res.bodyUsed, false);
    assert.equal(await res.text(), STEP_UP_BODY);
    assert.equal(res.headers.get("www-authenticate"), CHALLENGE);
    assert.equal(f.calls.length, 1);
  });
}

test("a success without accessToken re-reads getAccessToken (an SDK that stores the new token)", async () => {
  let current = "weak";
  const f = fakeFetch(server);
  const res = await stepUpFetch(U, { method: "DELETE" }, {
    getAccessToken: () => current,
    stepUp: async () => {
      current = "strong";
      return { kind: "success" };
    },
    fetch: f.fetch,
  });
  assert.equal(res.status, 200);
  assert.deepEqual(
    f.calls.map((c) => c.auth),
    ["Bearer weak", "Bearer strong"],
  );
});

test("retries once only: a second denial is returned, not prompted again", async () => {
  const f = fakeFetch(() => denial());
  const s = stepUpSpy({ kind: "success", accessToken: "still-not-enough" });
  const res = await stepUpFetch(U, { method: "POST" }, { getAccessToken: () => "weak", stepUp: s.stepUp, fetch: f.fetch });
  assert.equal(res.status, 401);
  assert.equal(f.calls.length, 2);
  assert.equal(s.prompts.length, 1);
  assert.equal(f.calls[1]!.auth, "Bearer still-not-enough");
});

test("concurrent calls that hit step-up share one stepUp, then all retry", async () => {
  const f = fakeFetch(server);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const s = stepUpSpy(async () => {
    await gate;
    return { kind: "success", accessToken: "strong" };
  });
  const sf = createStepUpFetch({ getAccessToken: () => "weak", stepUp: s.stepUp, fetch: f.fetch });
  const all = Promise.all([0, 1, 2, 3, 4].map((i) => sf(`${U}?i=${i}`, { method: "POST", body: `body-${i}` })));
  // Let every first request come back denied while the prompt is open.
  while (f.calls.length < 5) await new Promise((r) => setTimeout(r, 1));
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(s.prompts.length, 1);
  release();
  const results = await all;
  assert.deepEqual(
    results.map((r) => r.status),
    [200, 200, 200, 200, 200],
  );
  assert.equal(s.prompts.length, 1);
  assert.equal(f.calls.length, 10);
  const retried = f.calls.slice(5).map((c) => `${c.auth} ${c.body}`).sort();
  assert.deepEqual(retried, [0, 1, 2, 3, 4].map((i) => `Bearer strong body-${i}`));
});

test("a cancelled shared prompt returns every caller's own 401", async () => {
  const originals: Response[] = [];
  const f = fakeFetch(() => {
    const r = denial();
    originals.push(r);
    return r;
  });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const s = stepUpSpy(async () => {
    await gate;
    return { kind: "cancelled" };
  });
  const sf = createStepUpFetch({ getAccessToken: () => "weak", stepUp: s.stepUp, fetch: f.fetch });
  const all = Promise.all([sf(U, { method: "POST" }), sf(U, { method: "POST" }), sf(U, { method: "POST" })]);
  while (f.calls.length < 3) await new Promise((r) => setTimeout(r, 1));
  await new Promise((r) => setTimeout(r, 10));
  release();
  const results = await all;
  assert.equal(s.prompts.length, 1);
  assert.equal(f.calls.length, 3);
  assert.deepEqual(new Set(results), new Set(originals));
  for (const r of results) assert.equal(r.bodyUsed, false);
});

test("different requirements at once: prompts one after the other, never two open", async () => {
  const f = fakeFetch((s) => {
    if (s.auth?.startsWith("Bearer strong")) return Response.json({ ok: true });
    return s.url.endsWith("/account")
      ? denial({ challenge: 'Bearer error="insufficient_user_authentication", acr_values="aal2", max_age="60"', body: '{"error":"step_up_required","required_acr":"aal2","max_age":60}' })
      : denial();
  });
  let open = 0;
  let maxOpen = 0;
  const ages: Array<number | undefined> = [];
  const stepUp = async (p: StepUpPrompt): Promise<StepUpResult> => {
    open++;
    maxOpen = Math.max(maxOpen, open);
    ages.push(p.maxAge);
    await new Promise((r) => setTimeout(r, 20));
    open--;
    return { kind: "success", accessToken: `strong-${p.maxAge}` };
  };
  const sf = createStepUpFetch({ getAccessToken: () => "weak", stepUp, fetch: f.fetch });
  const [a, b] = await Promise.all([
    sf("https://app.example.com/api/payout-destination", { method: "POST" }),
    sf("https://app.example.com/api/account", { method: "DELETE" }),
  ]);
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  assert.equal(maxOpen, 1);
  assert.deepEqual(ages.sort(), [300, 60]);
});

test("a request sent before a step-up finished retries with the new token instead of prompting again", async () => {
  let current = "weak";
  let releaseSlow!: () => void;
  const slowGate = new Promise<void>((r) => (releaseSlow = r));
  const f = fakeFetch(async (s) => {
    if (s.url.endsWith("slow") && s.auth === "Bearer weak") await slowGate;
    return server(s);
  });
  const s = stepUpSpy(async () => {
    current = "strong";
    return { kind: "success", accessToken: "strong" };
  });
  const opts = { getAccessToken: () => current, stepUp: s.stepUp, fetch: f.fetch };
  const slow = stepUpFetch(`${U}?slow`, { method: "POST" }, opts);
  const fast = await stepUpFetch(U, { method: "POST" }, opts);
  assert.equal(fast.status, 200);
  releaseSlow();
  assert.equal((await slow).status, 200);
  assert.equal(s.prompts.length, 1);
});

test("replayable bodies: Request input, stream, Blob, URLSearchParams, FormData, ArrayBuffer", async () => {
  const payload = JSON.stringify({ iban: "NL91ABNA0417164300" });
  const bodies: Array<[string, () => [RequestInfo | URL, RequestInit | undefined], string]> = [
    ["a Request with a body", () => [new Request(U, { method: "POST", body: payload, headers: { "content-type": "application/json" } }), undefined], payload],
    [
      "a ReadableStream (duplex: half)",
      () => {
        const chunks = [payload.slice(0, 5), payload.slice(5)];
        const stream = new ReadableStream<Uint8Array>({
          pull(c) {
            const next = chunks.shift();
            if (next === undefined) c.close();
            else c.enqueue(new TextEncoder().encode(next));
          },
        });
        return [U, { method: "POST", body: stream, duplex: "half" } as RequestInit];
      },
      payload,
    ],
    ["a Request with a stream body", () => [new Request(U, { method: "POST", body: new Blob([payload]).stream(), duplex: "half" } as RequestInit), undefined], payload],
    ["a Blob", () => [U, { method: "POST", body: new Blob([payload]) }], payload],
    ["URLSearchParams", () => [U, { method: "POST", body: new URLSearchParams({ iban: "x y" }) }], "iban=x+y"],
    ["an ArrayBuffer", () => [U, { method: "POST", body: new TextEncoder().encode(payload).buffer as ArrayBuffer }], payload],
  ];
  for (const [name, make, expected] of bodies) {
    const f = fakeFetch(server);
    const [input, init] = make();
    const res = await stepUpFetch(input, init, { getAccessToken: () => "weak", stepUp: async () => ({ kind: "success", accessToken: "strong" }), fetch: f.fetch });
    assert.equal(res.status, 200, name);
    assert.deepEqual(
      f.calls.map((c) => [c.auth, c.body]),
      [
        ["Bearer weak", expected],
        ["Bearer strong", expected],
      ],
      name,
    );
  }
  // FormData: the multipart boundary may differ between sends; the fields must not.
  const fd = new FormData();
  fd.set("iban", "DE89");
  const f = fakeFetch(server);
  await stepUpFetch(U, { method: "POST", body: fd }, { getAccessToken: () => "weak", stepUp: async () => ({ kind: "success", accessToken: "strong" }), fetch: f.fetch });
  assert.equal(f.calls.length, 2);
  for (const c of f.calls) assert.match(c.body, /name="iban"\r\n\r\nDE89\r\n/);
});

test("a stream body that needs no retry is sent once and its spare copy released", async () => {
  let pulls = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      pulls++;
      if (pulls > 3) c.close();
      else c.enqueue(new TextEncoder().encode(`chunk${pulls}`));
    },
  });
  const f = fakeFetch(() => Response.json({ ok: true }));
  const res = await stepUpFetch(U, { method: "POST", body: stream, duplex: "half" } as RequestInit, {
    getAccessToken: () => "t",
    stepUp: async () => ({ kind: "cancelled" }),
    fetch: f.fetch,
  });
  assert.equal(res.status, 200);
  assert.equal(f.calls[0]!.body, "chunk1chunk2chunk3");
});

test("headers given as a Headers object, an array or a Request are kept; Authorization is ours", async () => {
  const inits: Array<[RequestInfo | URL, RequestInit | undefined]> = [
    [U, { headers: new Headers({ "Content-Type": "application/json", Authorization: "Bearer stale" }) }],
    [U, { headers: [["content-type", "application/json"]] }],
    [U, { headers: { "content-type": "application/json" } }],
    [new Request(U, { headers: { "content-type": "application/json" } }), undefined],
  ];
  for (const [input, init] of inits) {
    const f = fakeFetch(server);
    await stepUpFetch(input, init, { getAccessToken: () => "weak", stepUp: async () => ({ kind: "success", accessToken: "strong" }), fetch: f.fetch });
    assert.deepEqual(
      f.calls.map((c) => [c.auth, c.contentType]),
      [
        ["Bearer weak", "application/json"],
        ["Bearer strong", "application/json"],
      ],
    );
  }
});

test("no token: no Authorization header, and a plain 401 passes through", async () => {
  const f = fakeFetch(() => denial({ body: '{"error":"unauthorized"}', challenge: "Bearer" }));
  const res = await stepUpFetch(U, undefined, { getAccessToken: () => null, stepUp: async () => ({ kind: "success", accessToken: "x" }), fetch: f.fetch });
  assert.equal(res.status, 401);
  assert.equal(f.calls[0]!.auth, null);
});

test("the caller's abort signal reaches stepUp; an aborted retry rejects like fetch", async () => {
  const ac = new AbortController();
  const f = fakeFetch(server);
  let seen: AbortSignal | undefined;
  const p = stepUpFetch(U, { method: "POST", signal: ac.signal }, {
    getAccessToken: () => "weak",
    stepUp: async (prompt) => {
      seen = prompt.signal;
      ac.abort();
      return { kind: "success", accessToken: "strong" };
    },
    fetch: f.fetch,
  });
  await assert.rejects(p, { name: "AbortError" });
  assert.equal(seen, ac.signal);
});

test("network errors reject, as fetch does", async () => {
  const fetch = (async () => {
    throw new TypeError("fetch failed");
  }) as typeof globalThis.fetch;
  await assert.rejects(stepUpFetch(U, undefined, { getAccessToken: () => "t", stepUp: async () => ({ kind: "cancelled" }), fetch }), TypeError);
});
