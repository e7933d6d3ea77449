// A real, certified OpenID Provider (node-oidc-provider) for stepup-authz's
// interoperability tests, and a relying party built on oauth4webapi (an
// independent OAuth client) that the tests drive over HTTP. Nothing here is
// shipped; nothing here is written to agree with stepup-authz.
//
// It listens on 127.0.0.1 on a free port and prints one JSON line on stdout:
//   {"issuer": "http://127.0.0.1:PORT", "rp": "http://127.0.0.1:PORT/_rp"}
//
// The provider (standard endpoints, discovery at /.well-known/openid-configuration):
//   - clients: "app" (authorization code + PKCE, refresh, client credentials;
//     client_secret_basic), "rs-basic" and "rs-post" (resource servers that
//     introspect, with client_secret_basic and client_secret_post);
//   - features: introspection, DPoP, client credentials, resource indicators,
//     revocation;
//   - resources (RFC 8707 `resource`): see RESOURCES below: opaque access
//     tokens, JWT access tokens (RFC 9068, typ at+jwt), and "lightweight" JWTs
//     that leave acr/amr/auth_time out (as Keycloak's lightweight access
//     tokens do; node-oidc-provider itself refuses to introspect JWT access
//     tokens with unsupported_token_type);
//   - access tokens carry acr, amr and auth_time of the login that issued them
//     (extraTokenClaims: top-level in a JWT, and returned by introspection).
//
// Logins are finished programmatically with the provider's own
// interactionFinished API, so acr, amr and auth_time are the test's: the
// login_hint of the authorization request is a JSON object
//   {"sub": "user-1", "acr": "aal2", "amr": ["pwd","otp"], "age": 0}
// (age: seconds since the user authenticated; acr/amr omitted: none).
//
// The relying party (/_rp/*, JSON in, JSON out), built on oauth4webapi:
//   POST /_rp/login {login_hint fields..., resource, scope, acr_values, max_age,
//                    dpop: "ES256"|"EdDSA"|..., client_auth}
//        → the token endpoint's answer (+ "dpop_key": handle when dpop is set)
//   POST /_rp/client_credentials {resource, scope, dpop}
//   POST /_rp/request {access_token, method, url, dpop_key, headers}
//        → a protected-resource request made by oauth4webapi (DPoP proofs and
//          the use_dpop_nonce retry are oauth4webapi's): {status, headers, body}
//   POST /_rp/introspect {token, client: "rs-basic"|"rs-post"} → the answer
//   POST /_rp/revoke {token}
//   POST /_rp/proof {dpop_key, htm, htu, access_token, nonce} → {"proof": JWS}
//        (made by jose, another independent library)
import http from 'node:http';
import { randomUUID } from 'node:crypto';

import Provider from 'oidc-provider';
import * as oauth from 'oauth4webapi';
import * as jose from 'jose';

const env = process.env;
const accessTokenTTL = Number(env.ACCESS_TOKEN_TTL || 3600);

// Resource servers by RFC 8707 resource indicator.
const RESOURCES = {
  // Opaque (reference) access tokens: only introspection can say what they mean.
  'https://api.example.com': { accessTokenFormat: 'opaque' },
  // RFC 9068 JWT access tokens with acr, amr and auth_time.
  'https://jwt.example.com': { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } },
  // JWTs that leave the authentication claims out (Keycloak's lightweight tokens).
  'https://lightweight.example.com': { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } }, lightweight: true },
};
const SCOPES = 'payouts:write profile:read mcp:tools';

const secrets = { app: 'app-secret', 'rs-basic': 'rs-basic-secret', 'rs-post': 'rs-post-secret' };

async function signingKeys() {
  const keys = [];
  for (const [alg, kid] of [['RS256', 'rs-1'], ['ES256', 'es-1']]) {
    const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
    keys.push({ ...(await jose.exportJWK(privateKey)), kid, alg, use: 'sig' });
  }
  return keys;
}

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(base, {
  jwks: { keys: await signingKeys() },
  clients: [
    {
      client_id: 'app',
      client_secret: secrets.app,
      redirect_uris: [`${base}/_rp/callback`],
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    { client_id: 'rs-basic', client_secret: secrets['rs-basic'], redirect_uris: [], grant_types: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic' },
    { client_id: 'rs-post', client_secret: secrets['rs-post'], redirect_uris: [], grant_types: [], response_types: [], token_endpoint_auth_method: 'client_secret_post' },
  ],
  acrValues: ['aal1', 'aal2', 'aal3'],
  claims: { openid: ['sub'], acr: null, amr: null, auth_time: null },
  scopes: ['openid', 'offline_access', ...SCOPES.split(' ')],
  pkce: { required: () => true },
  ttl: { AccessToken: accessTokenTTL, ClientCredentials: accessTokenTTL },
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        const rs = RESOURCES[resource];
        if (!rs) throw new Provider.errors.InvalidTarget(`unknown resource ${resource}`);
        return { scope: SCOPES, audience: resource, accessTokenTTL, accessTokenFormat: rs.accessTokenFormat, jwt: rs.jwt };
      },
    },
  },
  // The authentication facts of the login behind the grant, on the access token.
  extraTokenClaims: (ctx, token) => {
    const from = ctx.oidc.entities.AuthorizationCode || ctx.oidc.entities.RefreshToken;
    if (!from || token.kind !== 'AccessToken') return undefined;
    const extra = {};
    if (from.acr) extra.acr = from.acr;
    if (from.amr) extra.amr = from.amr;
    if (from.authTime) extra.auth_time = from.authTime;
    return extra;
  },
  formats: {
    customizers: {
      jwt: (ctx, token, jwt) => {
        if (RESOURCES[jwt.payload.aud]?.lightweight) {
          delete jwt.payload.acr;
          delete jwt.payload.amr;
          delete jwt.payload.auth_time;
        }
      },
    },
  },
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError: (ctx, out) => { ctx.type = 'json'; ctx.body = out; },
});
provider.proxy = false;

// finishInteraction completes a login or consent prompt without a browser.
async function finishInteraction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (env.DEBUG_RP) console.error("prompt", details.prompt.name, JSON.stringify(details.prompt.reasons));
  let result;
  if (details.prompt.name === 'login') {
    const hint = JSON.parse(details.params.login_hint || '{}');
    const now = Math.floor(Date.now() / 1000);
    result = {
      login: {
        accountId: hint.sub || 'user-1',
        acr: hint.acr,
        amr: hint.amr,
        ts: now - (hint.age || 0),
      },
    };
  } else if (details.prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const d = details.prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    throw new Error(`unexpected prompt ${details.prompt.name}`);
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

// ---- the relying party (oauth4webapi) ----

const insecure = { [oauth.allowInsecureRequests]: true };
let as;
async function authorizationServer() {
  if (!as) {
    as = await oauth.processDiscoveryResponse(new URL(base), await oauth.discoveryRequest(new URL(base), insecure));
  }
  return as;
}
const dpopKeys = new Map(); // handle -> { keyPair, alg, handle (oauth4webapi DPoP) }

async function newDPoP(client, alg) {
  const keyPair = await oauth.generateKeyPair(alg);
  const id = randomUUID();
  const entry = { keyPair, alg, handle: oauth.DPoP(client, keyPair) };
  dpopKeys.set(id, entry);
  return [id, entry];
}

// browse follows the provider's redirects with a cookie jar until it reaches
// the callback, finishing interactions on the way; it returns the callback URL.
async function browse(start) {
  const jar = new Map();
  let url = new URL(start);
  for (let i = 0; i < 12; i++) {
    if (url.pathname === '/_rp/callback') return url;
    if (env.DEBUG_RP) console.error("browse", url.href);
    const res = await fetch(url, {
      redirect: 'manual',
      headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') },
    });
    if (env.DEBUG_RP) console.error("  set-cookie", res.headers.getSetCookie());
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    const loc = res.headers.get('location');
    if (!loc) throw new Error(`no redirect from ${url.pathname}: ${res.status} ${await res.text()}`);
    url = new URL(loc, url);
  }
  throw new Error('too many redirects');
}

const rp = {
  async login(body) {
    const as = await authorizationServer();
    const client = { client_id: 'app' };
    const verifier = oauth.generateRandomCodeVerifier();
    const authz = new URL(as.authorization_endpoint);
    const params = {
      client_id: 'app',
      response_type: 'code',
      redirect_uri: `${base}/_rp/callback`,
      scope: body.scope ?? 'openid payouts:write',
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      login_hint: JSON.stringify({ sub: body.sub, acr: body.acr, amr: body.amr, age: body.age }),
    };
    if (body.resource) params.resource = body.resource;
    if (body.acr_values) params.acr_values = body.acr_values;
    if (body.max_age !== undefined) params.max_age = String(body.max_age);
    for (const [k, v] of Object.entries(params)) authz.searchParams.set(k, v);
    const callback = oauth.validateAuthResponse(as, client, await browse(authz), oauth.expectNoState);
    const options = { ...insecure };
    let dpopID;
    if (body.dpop) {
      let entry;
      [dpopID, entry] = await newDPoP(client, body.dpop);
      options.DPoP = entry.handle;
    }
    if (body.resource) options.additionalParameters = { resource: body.resource };
    const grant = () => oauth.authorizationCodeGrantRequest(as, client, oauth.ClientSecretBasic(secrets.app),
      callback, `${base}/_rp/callback`, verifier, options);
    let res = await grant();
    let tokens;
    try {
      tokens = await oauth.processAuthorizationCodeResponse(as, client, res);
    } catch (err) {
      if (!oauth.isDPoPNonceError(err)) throw err;
      tokens = await oauth.processAuthorizationCodeResponse(as, client, await grant());
    }
    return { ...tokens, dpop_key: dpopID };
  },

  async client_credentials(body) {
    const as = await authorizationServer();
    const client = { client_id: 'app' };
    const options = { ...insecure };
    let dpopID;
    if (body.dpop) {
      let entry;
      [dpopID, entry] = await newDPoP(client, body.dpop);
      options.DPoP = entry.handle;
    }
    const params = { scope: body.scope ?? 'payouts:write' };
    if (body.resource) params.resource = body.resource;
    const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(secrets.app), params, options);
    return { ...(await oauth.processClientCredentialsResponse(as, client, res)), dpop_key: dpopID };
  },

  async request(body) {
    const options = { ...insecure };
    if (body.dpop_key) options.DPoP = dpopKeys.get(body.dpop_key).handle;
    const headers = new Headers(body.headers || {});
    const send = () => oauth.protectedResourceRequest(body.access_token, body.method || 'GET', new URL(body.url), headers, null, options);
    let res;
    try {
      res = await send();
    } catch (err) {
      // oauth4webapi throws on a use_dpop_nonce challenge after caching the nonce: retry once, as its docs say.
      if (!oauth.isDPoPNonceError(err)) throw err;
      res = await send();
    }
    return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
  },

  async introspect(body) {
    const as = await authorizationServer();
    const id = body.client || 'rs-basic';
    const auth = id === 'rs-post' ? oauth.ClientSecretPost(secrets[id]) : oauth.ClientSecretBasic(secrets[id]);
    const res = await oauth.introspectionRequest(as, { client_id: id }, auth, body.token, insecure);
    return oauth.processIntrospectionResponse(as, { client_id: id }, res);
  },

  async revoke(body) {
    const as = await authorizationServer();
    const res = await oauth.revocationRequest(as, { client_id: 'app' }, oauth.ClientSecretBasic(secrets.app), body.token, insecure);
    await oauth.processRevocationResponse(res);
    return {};
  },

  async proof(body) {
    const entry = dpopKeys.get(body.dpop_key);
    if (!entry) throw new Error(`unknown dpop_key ${body.dpop_key}`);
    const jwk = await jose.exportJWK(entry.keyPair.publicKey);
    const claims = { htm: body.htm, htu: body.htu, jti: randomUUID() };
    if (body.access_token) {
      const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(body.access_token));
      claims.ath = jose.base64url.encode(new Uint8Array(digest));
    }
    if (body.nonce) claims.nonce = body.nonce;
    const proof = await new jose.SignJWT(claims)
      .setProtectedHeader({ typ: 'dpop+jwt', alg: entry.alg, jwk })
      .setIssuedAt()
      .sign(entry.keyPair.privateKey);
    return { proof, jkt: await jose.calculateJwkThumbprint(jwk, 'sha256') };
  },
};

async function readJSON(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {};
}

const callback = provider.callback();
server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, base);
    if (url.pathname.startsWith('/interaction/')) {
      await finishInteraction(req, res);
      return;
    }
    if (url.pathname.startsWith('/_rp/') && req.method === 'POST') {
      const op = rp[url.pathname.slice('/_rp/'.length)];
      if (!op) { res.writeHead(404).end(); return; }
      const out = await op(await readJSON(req));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out));
      return;
    }
    callback(req, res);
  } catch (err) {
    res.writeHead(500, { 'content-type': 'application/json' })
      .end(JSON.stringify({ error: err.name, message: err.message, cause: err.cause && String(err.cause.error || err.cause) }));
  }
});

process.stdout.write(`${JSON.stringify({ issuer: base, rp: `${base}/_rp` })}\n`);
// Exit with the test process: stdin closes when the Go side goes away.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
