// @stepup-authz/web: the frontend half of stepup-authz. No runtime dependencies;
// the React hook is in "./react" (React is a peer dependency), the OIDC stepUp in "./oidc".
export { stepUpFetch, createStepUpFetch, stepUpRequirement } from "./stepUpFetch.js";
export type { AccessToken, StepUpFetchOptions, StepUpPrompt, StepUpRequirement, StepUpResult } from "./stepUpFetch.js";
export { parseWWWAuthenticate, parseOAuthChallenges, findStepUpChallenge, decodeClaims, parseMaxAge, STEP_UP_ERRORS } from "./challenge.js";
export type { Challenge, ClaimsChallenge, OAuthChallenge, StepUpChallenge } from "./challenge.js";
export { createDPoP, accessTokenHash, DPOP_ALG } from "./dpop.js";
export type { DPoP, DPoPOptions, ProofOptions } from "./dpop.js";
