// @stepup-authz/web: the frontend half of stepup-authz. No runtime dependencies;
// the React hook is in "./react" (React is a peer dependency), the OIDC stepUp in "./oidc".
export { stepUpFetch, createStepUpFetch, stepUpRequirement } from "./stepUpFetch.js";
export type { AccessToken, StepUpFetchOptions, StepUpPrompt, StepUpRequirement, StepUpResult } from "./stepUpFetch.js";
export { parseWWWAuthenticate, findStepUpChallenge, parseMaxAge } from "./challenge.js";
export type { Challenge, StepUpChallenge } from "./challenge.js";
