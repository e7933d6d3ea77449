// DPoP (RFC 9449): proof-of-possession for access tokens, in the browser and
// in node, with WebCrypto only.
//
// One key pair per session. Its private key is made non-extractable, so no
// script (an XSS payload included) can copy it out of the page: a stolen
// DPoP-bound token is useless without it. The identity provider binds the
// tokens it issues to the public key's thumbprint (cnf.jkt, RFC 9449 §6.1),
// and every request carries a fresh proof signed with the private key.

/** What a DPoP session offers stepUpFetch, a token request, or your own fetch. */
export interface DPoP {
  /** The public key as a JWK (kty, crv, x, y): the `jwk` header of every proof. */
  readonly publicJwk: { kty: "EC"; crv: "P-256"; x: string; y: string };
  /** RFC 7638 SHA-256 thumbprint of the public key, base64url: the `cnf.jkt` of tokens bound to this key. */
  readonly thumbprint: string;
  /**
   * A proof for one request (RFC 9449 §4.2). `accessToken` adds `ath` (send it
   * with a resource request, leave it out of a token request); `nonce` is the
   * server's DPoP-Nonce (default: the latest this origin sent, see rememberNonce).
   */
  proof(method: string, url: string | URL, options?: ProofOptions): Promise<string>;
  /** The latest DPoP-Nonce the origin of `url` sent, if any (RFC 9449 §8, §9). */
  nonce(url: string | URL): string | undefined;
  /** Remembers `res`'s DPoP-Nonce, if it has one, as the current nonce of `url`'s origin. */
  rememberNonce(url: string | URL, res: Response): void;
}

export interface ProofOptions {
  /** The access token the proof goes with: its hash becomes `ath`. */
  accessToken?: string;
  /** The nonce to put in the proof; undefined: the origin's remembered nonce. null: none. */
  nonce?: string | null;
}

export interface DPoPOptions {
  /**
   * The session's key pair: ECDSA P-256. Default: a new one, private key
   * non-extractable. Pass one to keep a session's key across page loads (a
   * non-extractable CryptoKey can be stored in IndexedDB and stays non-extractable).
   */
  keyPair?: CryptoKeyPair;
  /** Seconds since the epoch, for `iat` (default: the system clock). */
  now?: () => number;
  /** Where relative URLs are resolved (default: the page's location, in a browser). */
  baseUrl?: string;
}

/** The one algorithm this client signs with: ES256 (ECDSA P-256, SHA-256). */
export const DPOP_ALG = "ES256";

/**
 * Makes a DPoP session: a non-extractable ECDSA P-256 key pair (unless one is
 * given), its public JWK and thumbprint, proofs, and the nonces servers sent.
 */
export async function createDPoP(options: DPoPOptions = {}): Promise<DPoP> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) {
    throw new TypeError("DPoP: crypto.subtle is missing; browsers offer WebCrypto only in secure contexts (https, or http://localhost)");
  }
  const keyPair =
    options.keyPair ??
    // extractable: false applies to the private key; a public key is always exportable.
    (await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]));
  const exported = await subtle.exportKey("jwk", keyPair.publicKey);
  if (exported.kty !== "EC" || exported.crv !== "P-256" || !exported.x || !exported.y) {
    throw new TypeError(`DPoP: the key pair must be ECDSA P-256 (got kty ${exported.kty}, crv ${exported.crv})`);
  }
  // Public members only: what a proof's jwk must hold (RFC 9449 §4.2), in
  // RFC 7638's member order so the thumbprint input is this object's JSON.
  const publicJwk = { crv: "P-256", kty: "EC", x: exported.x, y: exported.y } as const;
  const thumbprint = base64url(new Uint8Array(await subtle.digest("SHA-256", utf8(JSON.stringify(publicJwk)))));
  const now = options.now ?? (() => Math.floor(Date.now() / 1000));
  const baseUrl = options.baseUrl ?? (typeof location !== "undefined" ? location.href : undefined);
  // Nonces are per server (RFC 9449 §8: "the nonce value ... for that server"): by origin.
  const nonces = new Map<string, string>();
  const resolve = (url: string | URL) => new URL(url, baseUrl);

  return {
    publicJwk,
    thumbprint,
    nonce: (url) => nonces.get(resolve(url).origin),
    rememberNonce(url, res) {
      const n = res.headers.get("dpop-nonce");
      // RFC 9449 §8: nonce = 1*NQCHAR (visible ASCII but " and \); anything else is not a nonce.
      if (n !== null && /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(n)) nonces.set(resolve(url).origin, n);
    },
    async proof(method, url, po = {}) {
      const u = resolve(url);
      const claims: Record<string, string | number> = {
        jti: base64url(globalThis.crypto.getRandomValues(new Uint8Array(16))),
        htm: method.toUpperCase(),
        // RFC 9449 §4.2: the target URI without query and fragment.
        htu: `${u.protocol}//${u.host}${u.pathname}`,
        iat: now(),
      };
      if (po.accessToken !== undefined) claims["ath"] = await accessTokenHash(po.accessToken);
      const nonce = po.nonce === undefined ? nonces.get(u.origin) : po.nonce;
      if (nonce) claims["nonce"] = nonce;
      const header = { typ: "dpop+jwt", alg: DPOP_ALG, jwk: publicJwk };
      const input = `${base64url(utf8(JSON.stringify(header)))}.${base64url(utf8(JSON.stringify(claims)))}`;
      // WebCrypto's ECDSA signature is r || s (IEEE P1363), which is the JWS form (RFC 7518 §3.4).
      const sig = await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keyPair.privateKey, utf8(input));
      return `${input}.${base64url(new Uint8Array(sig))}`;
    },
  };
}

/** RFC 9449 §4.2 `ath`: base64url(SHA-256(ASCII(access token))). */
export async function accessTokenHash(accessToken: string): Promise<string> {
  return base64url(new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", utf8(accessToken))));
}

function utf8(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s) as Uint8Array<ArrayBuffer>;
}

function base64url(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
