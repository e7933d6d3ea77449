import { test } from "node:test";
import assert from "node:assert/strict";
import { createElement } from "react";
import { renderToString } from "react-dom/server";
import { StepUpProvider, useStepUpFetch } from "../src/react.js";
import type { StepUpFetch } from "../src/react.js";
import type { StepUpPrompt, StepUpResult } from "../src/stepUpFetch.js";
import { createDPoP } from "../src/dpop.js";

const denial = () =>
  new Response('{"error":"step_up_required","required_acr":"aal2","max_age":300}', {
    status: 401,
    headers: { "content-type": "application/json" },
  });

/** Renders components that call useStepUpFetch() and hands back what the hook returned. */
function renderHooks(n: number, wrap: (children: ReturnType<typeof createElement>[]) => ReturnType<typeof createElement>) {
  const got: StepUpFetch[] = [];
  function Form() {
    got.push(useStepUpFetch());
    return createElement("form", null, "Change bank account");
  }
  const html = renderToString(wrap(Array.from({ length: n }, (_, i) => createElement(Form, { key: i }))));
  return { got, html };
}

test("useStepUpFetch() under <StepUpProvider>: the seed's hook, step-up and retry included", async () => {
  const seen: string[] = [];
  let current = "aal1-token";
  const fetch = (async (_i: RequestInfo | URL, init?: RequestInit) => {
    const auth = new Headers(init?.headers).get("authorization")!;
    seen.push(auth);
    return auth === "Bearer aal2-token" ? Response.json({ data: { ok: true } }) : denial();
  }) as typeof globalThis.fetch;
  const prompts: StepUpPrompt[] = [];
  const { got, html } = renderHooks(2, (children) =>
    createElement(
      StepUpProvider,
      {
        getAccessToken: () => current,
        // An inline arrow, new on every render: the provider keeps calls sharing one prompt anyway.
        stepUp: async (p: StepUpPrompt): Promise<StepUpResult> => {
          prompts.push(p);
          await new Promise((r) => setTimeout(r, 10));
          current = "aal2-token";
          return { kind: "success" };
        },
        fetch,
      },
      ...children,
    ),
  );
  assert.match(html, /Change bank account/);
  assert.equal(got.length, 2);
  const [a, b] = await Promise.all([
    got[0]!("/api/payout-destination", { method: "POST", body: '{"iban":"x"}' }),
    got[1]!("/api/payout-destination", { method: "POST", body: '{"iban":"y"}' }),
  ]);
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  assert.equal(prompts.length, 1, "two forms under one provider share one prompt");
  assert.deepEqual(prompts[0]!.acrValues, ["aal2"]);
  assert.deepEqual(seen.sort(), ["Bearer aal1-token", "Bearer aal1-token", "Bearer aal2-token", "Bearer aal2-token"]);
});

test("useStepUpFetch(options) works without a provider; cancel returns the original 401", async () => {
  const original = denial();
  const fetch = (async () => original) as typeof globalThis.fetch;
  const options = { getAccessToken: () => "t", stepUp: async (): Promise<StepUpResult> => ({ kind: "cancelled" }), fetch };
  let got: StepUpFetch | undefined;
  function Form() {
    got = useStepUpFetch(options);
    return null;
  }
  renderToString(createElement(Form));
  const res = await got!("/api/payout-destination", { method: "POST" });
  assert.equal(res, original);
  assert.equal(res.bodyUsed, false);
});

test("useStepUpFetch() without a provider or options says what to do", () => {
  function Form() {
    useStepUpFetch();
    return null;
  }
  assert.throws(() => renderToString(createElement(Form)), /StepUpProvider/);
});

test("<StepUpProvider dpop>: requests go out under the DPoP scheme with a proof; without it, Bearer", async () => {
  const dpop = await createDPoP();
  const seen: Array<[string | null, boolean]> = [];
  const fetch = (async (_i: RequestInfo | URL, init?: RequestInit) => {
    const h = new Headers(init?.headers);
    seen.push([h.get("authorization"), h.has("dpop")]);
    return Response.json({ ok: true });
  }) as typeof globalThis.fetch;
  const stepUp = async (): Promise<StepUpResult> => ({ kind: "cancelled" });
  const withDPoP = renderHooks(1, (children) => createElement(StepUpProvider, { getAccessToken: () => "t", stepUp, fetch, dpop }, ...children));
  await withDPoP.got[0]!("https://app.example.com/api/x");
  const bearer = renderHooks(1, (children) => createElement(StepUpProvider, { getAccessToken: () => "t", stepUp, fetch }, ...children));
  await bearer.got[0]!("https://app.example.com/api/x");
  assert.deepEqual(seen, [
    ["DPoP t", true],
    ["Bearer t", false],
  ]);
});
