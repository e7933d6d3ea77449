// An MCP client's discovery and scope step-up, done by oauth4webapi (an
// independent OAuth client library) against a protected resource behind
// stepup-authz (RFC 9728, CONTRACT.md). Driven by Go tests
// (oidcprovider.MCPClient): MCP_URL is the URL the client connects to,
// TOKEN_WITHOUT_SCOPE and TOKEN_WITH_SCOPE are access tokens for it. It prints
// one JSON line of what it learnt, or exits non-zero saying which step failed.
import * as oauth from "oauth4webapi";
import assert from "node:assert/strict";

const insecure = { [oauth.allowInsecureRequests]: true }; // loopback http in tests
const resource = new URL(process.env.MCP_URL);

// 1. Connect with a token the server does not accept: the challenge names the
// metadata document (RFC 9728 §5.1), parsed by the library.
async function challenge(token) {
  try {
    const res = await oauth.protectedResourceRequest(token, "GET", resource, new Headers(), null, insecure);
    return { status: res.status };
  } catch (err) {
    if (!(err instanceof oauth.WWWAuthenticateChallengeError)) throw err;
    const bearer = err.cause.find((c) => c.scheme === "bearer");
    assert.ok(bearer, `no Bearer challenge in ${JSON.stringify(err.cause)}`);
    return { status: err.status, ...bearer.parameters };
  }
}
const invalid = await challenge("not-a-token");
assert.equal(invalid.status, 401, "an unaccepted token");
assert.equal(invalid.error, "invalid_token");
assert.ok(invalid.resource_metadata, "the 401 challenge has no resource_metadata");

// Without any token the challenge names it too.
const bare = await fetch(resource);
assert.equal(bare.status, 401);
assert.match(bare.headers.get("www-authenticate") ?? "", /resource_metadata="([^"]+)"/);

// 2. RFC 9728 discovery: the library inserts the well-known path itself and
// must land on the URL the challenge named.
const discovery = await oauth.resourceDiscoveryRequest(resource, insecure);
assert.equal(discovery.url, invalid.resource_metadata, "resource_metadata is not RFC 9728 §3.1's well-known URL of the resource");

// 3. §3.3: the document's resource must be the URL the client connected to.
const rs = await oauth.processResourceDiscoveryResponse(resource, discovery);
assert.ok(Array.isArray(rs.authorization_servers) && rs.authorization_servers.length > 0, "no authorization_servers");

// 4. On to the authorization server, as an MCP client does next.
const issuer = new URL(rs.authorization_servers[0]);
const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure));

// 5. A token without the scope: 403 insufficient_scope naming it; 6. with it: allowed.
const step = await challenge(process.env.TOKEN_WITHOUT_SCOPE);
assert.equal(step.status, 403, "a token without the scope");
assert.equal(step.error, "insufficient_scope");
assert.equal(step.resource_metadata, invalid.resource_metadata);
const ok = await challenge(process.env.TOKEN_WITH_SCOPE);
assert.equal(ok.status, 200, "a token with the scope");

console.log(JSON.stringify({
  resource_metadata: invalid.resource_metadata,
  resource: rs.resource,
  authorization_servers: rs.authorization_servers,
  scopes_supported: rs.scopes_supported,
  issuer: as.issuer,
  scope: step.scope,
  allowed: ok.status,
}));
