// useStepUpFetch: the seed's hook, identity-provider neutral. React is a peer
// dependency; this file is the only one that imports it.
//
//   <StepUpProvider getAccessToken={auth.getAccessToken} stepUp={auth.stepUp} dpop={dpopSession}>
//     <App />
//   </StepUpProvider>
//
//   const stepUpFetch = useStepUpFetch()
//   const res = await stepUpFetch('/api/payout-destination', { method: 'POST', body })

import { createContext, createElement, useCallback, useContext, useEffect, useLayoutEffect, useRef, useState } from "react";
import type { ReactNode } from "react";
import { stepUpFetch } from "./stepUpFetch.js";
import type { StepUpFetchOptions } from "./stepUpFetch.js";

export type StepUpFetch = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;

const StepUpContext = createContext<StepUpFetchOptions | null>(null);

const useIsomorphicLayoutEffect = typeof window !== "undefined" ? useLayoutEffect : useEffect;

export interface StepUpProviderProps extends StepUpFetchOptions {
  children?: ReactNode;
}

/**
 * Supplies getAccessToken and stepUp (and fetch, dpop) to every useStepUpFetch() below it. The
 * functions may change from render to render (inline arrows are fine): the
 * provider hands out stable wrappers that call the latest ones, so every call
 * under one provider shares one step-up prompt.
 */
export function StepUpProvider(props: StepUpProviderProps) {
  const latest = useRef(props);
  useIsomorphicLayoutEffect(() => {
    latest.current = props;
  });
  const [value] = useState<StepUpFetchOptions>(() => ({
    getAccessToken: () => latest.current.getAccessToken(),
    stepUp: (prompt) => latest.current.stepUp(prompt),
    fetch: (input, init) => (latest.current.fetch ?? globalThis.fetch)(input, init),
    // Read at each call: a DPoP session made after the first render (createDPoP is async) is picked up.
    get dpop() {
      return latest.current.dpop;
    },
  }));
  return createElement(StepUpContext.Provider, { value }, props.children);
}

/**
 * Returns a fetch that adds the bearer token and turns a step-up denial into
 * one prompt and one retry (see stepUpFetch). Options come from the nearest
 * <StepUpProvider>, or from the argument (then pass a stable stepUp, defined
 * outside the component or memoised, so concurrent calls share its prompt).
 */
export function useStepUpFetch(options?: StepUpFetchOptions): StepUpFetch {
  const ctx = useContext(StepUpContext);
  const opts = options ?? ctx;
  if (!opts) throw new Error("useStepUpFetch: render it inside <StepUpProvider>, or pass { getAccessToken, stepUp }");
  return useCallback<StepUpFetch>((input, init) => stepUpFetch(input, init, opts), [opts]);
}
