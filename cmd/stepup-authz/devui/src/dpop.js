// DPoP (RFC 9449): proof-of-possession for access tokens, in the browser and
// in node, with WebCrypto only.
//
// One key pair per session. Its private key is made non-extractable, so no
// script (an XSS payload included) can copy it out of the page: a stolen
// DPoP-bound token is useless without it. The identity provider binds the
// tokens it issues to the public key's thumbprint (cnf.jkt, RFC 9449 §6.1),
// and every request carries a fresh proof signed with the private key.
/** The one algorithm this client signs with: ES256 (ECDSA P-256, SHA-256). */
export const DPOP_ALG = "ES256";
/**
 * Makes a DPoP session: a non-extractable ECDSA P-256 key pair (unless one is
 * given), its public JWK and thumbprint, proofs, and the nonces servers sent.
 */
export async function createDPoP(options = {}) {
    const subtle = globalThis.crypto?.subtle;
    if (!subtle) {
        throw new TypeError("DPoP: crypto.subtle is missing; browsers offer WebCrypto only in secure contexts (https, or http://localhost)");
    }
    const keyPair = options.keyPair ??
        // extractable: false applies to the private key; a public key is always exportable.
        (await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]));
    const exported = await subtle.exportKey("jwk", keyPair.publicKey);
    if (exported.kty !== "EC" || exported.crv !== "P-256" || !exported.x || !exported.y) {
        throw new TypeError(`DPoP: the key pair must be ECDSA P-256 (got kty ${exported.kty}, crv ${exported.crv})`);
    }
    // Public members only: what a proof's jwk must hold (RFC 9449 §4.2), in
    // RFC 7638's member order so the thumbprint input is this object's JSON.
    const publicJwk = { crv: "P-256", kty: "EC", x: exported.x, y: exported.y };
    const thumbprint = base64url(new Uint8Array(await subtle.digest("SHA-256", utf8(JSON.stringify(publicJwk)))));
    const now = options.now ?? (() => Math.floor(Date.now() / 1000));
    const baseUrl = options.baseUrl ?? (typeof location !== "undefined" ? location.href : undefined);
    // Nonces are per server (RFC 9449 §8: "the nonce value ... for that server"): by origin.
    const nonces = new Map();
    const resolve = (url) => new URL(url, baseUrl);
    return {
        publicJwk,
        thumbprint,
        nonce: (url) => nonces.get(resolve(url).origin),
        rememberNonce(url, res) {
            const n = res.headers.get("dpop-nonce");
            // RFC 9449 §8: nonce = 1*NQCHAR (visible ASCII but " and \); anything else is not a nonce.
            if (n !== null && /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(n))
                nonces.set(resolve(url).origin, n);
        },
        async proof(method, url, po = {}) {
            const u = resolve(url);
            const claims = {
                jti: base64url(globalThis.crypto.getRandomValues(new Uint8Array(16))),
                htm: method.toUpperCase(),
                // RFC 9449 §4.2: the target URI without query and fragment.
                htu: `${u.protocol}//${u.host}${u.pathname}`,
                iat: now(),
            };
            if (po.accessToken !== undefined)
                claims["ath"] = await accessTokenHash(po.accessToken);
            const nonce = po.nonce === undefined ? nonces.get(u.origin) : po.nonce;
            if (nonce)
                claims["nonce"] = nonce;
            const header = { typ: "dpop+jwt", alg: DPOP_ALG, jwk: publicJwk };
            const input = `${base64url(utf8(JSON.stringify(header)))}.${base64url(utf8(JSON.stringify(claims)))}`;
            // WebCrypto's ECDSA signature is r || s (IEEE P1363), which is the JWS form (RFC 7518 §3.4).
            const sig = await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keyPair.privateKey, utf8(input));
            return `${input}.${base64url(new Uint8Array(sig))}`;
        },
    };
}
/** RFC 9449 §4.2 `ath`: base64url(SHA-256(ASCII(access token))). */
export async function accessTokenHash(accessToken) {
    return base64url(new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", utf8(accessToken))));
}
function utf8(s) {
    return new TextEncoder().encode(s);
}
function base64url(b) {
    let s = "";
    for (const x of b)
        s += String.fromCharCode(x);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
