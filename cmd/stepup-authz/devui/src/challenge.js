// WWW-Authenticate parsing (RFC 9110 §11.6.1) and recognition of the step-up
// challenges that stepup-authz sends:
//
//   WWW-Authenticate: Bearer error="insufficient_user_authentication",
//     error_description="...", acr_values="aal2", max_age="300"          (RFC 9470)
//   WWW-Authenticate: DPoP error="insufficient_user_authentication", ...,
//     algs="ES256 ..."                          (the same under DPoP, RFC 9449 §7.1)
//   WWW-Authenticate: Bearer error="insufficient_claims",
//     error_description="...", claims="<base64 of JSON>"   (Microsoft Entra's claims challenge)
//
// any of them with resource_metadata="<URL>" (RFC 9728 §5.1) when the server
// publishes protected resource metadata.
//
// Grammar (RFC 9110):
//   WWW-Authenticate = #challenge
//   challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//   auth-param  = token BWS "=" BWS ( token / quoted-string )
//   token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//
// Decisions for hostile input:
// - Schemes and auth-param names are case-insensitive: both are returned in
//   lower case. Values are returned verbatim (quoted-pairs unescaped).
// - On a syntax error (an unterminated quoted-string, a control character, a
//   stray character) parsing stops: the challenges completed before the error
//   are returned, the one in progress and everything after it are dropped,
//   since there is no reliable place to resynchronise.
// - A challenge that repeats a parameter name (RFC 9110: "each parameter name
//   MUST only occur once per challenge") is ambiguous and dropped; parsing goes
//   on with the next challenge.
// - A `claims` value that is not base64 of a JSON object is left out of the
//   parsed challenge (the challenge itself still counts).
/** The `error` values that ask the user to authenticate again. */
export const STEP_UP_ERRORS = ["insufficient_user_authentication", "insufficient_claims"];
const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68 = /[A-Za-z0-9\-._~+/]+=*/y; // sticky: matched at lastIndex, no slicing
function isTchar(c) {
    return c.length === 1 && TCHAR.test(c);
}
function isWS(c) {
    return c === " " || c === "\t";
}
class SyntaxErr extends Error {
}
/**
 * Parses a WWW-Authenticate header value (several header lines joined with
 * ", " are one value) into its challenges. Never throws.
 */
export function parseWWWAuthenticate(header) {
    const out = [];
    if (!header)
        return out;
    const s = header;
    let i = 0;
    const skipWS = () => {
        while (i < s.length && isWS(s[i]))
            i++;
    };
    const readToken = () => {
        const start = i;
        while (i < s.length && isTchar(s[i]))
            i++;
        return s.slice(start, i);
    };
    const readQuoted = () => {
        // s[i] === '"'
        i++;
        let v = "";
        while (i < s.length) {
            const c = s[i];
            const code = c.charCodeAt(0);
            if (c === '"') {
                i++;
                return v;
            }
            if (c === "\\") {
                if (i + 1 >= s.length)
                    throw new SyntaxErr("unterminated quoted-pair");
                const n = s[i + 1];
                const nc = n.charCodeAt(0);
                if (nc !== 0x09 && (nc < 0x20 || nc === 0x7f))
                    throw new SyntaxErr("control character in quoted-pair");
                v += n;
                i += 2;
                continue;
            }
            if (code !== 0x09 && (code < 0x20 || code === 0x7f))
                throw new SyntaxErr("control character in quoted-string");
            v += c;
            i++;
        }
        throw new SyntaxErr("unterminated quoted-string");
    };
    // After a comma: does an auth-param (token BWS "=") start here, as opposed to
    // the next challenge's scheme?
    const paramAhead = () => {
        let j = i;
        const start = j;
        while (j < s.length && isTchar(s[j]))
            j++;
        if (j === start)
            return false;
        while (j < s.length && isWS(s[j]))
            j++;
        return s[j] === "=";
    };
    // Skips list separators: OWS *( "," OWS ). Returns whether a comma was seen.
    const skipCommas = () => {
        let comma = false;
        skipWS();
        while (s[i] === ",") {
            comma = true;
            i++;
            skipWS();
        }
        return comma;
    };
    try {
        skipCommas();
        while (i < s.length) {
            const scheme = readToken();
            if (!scheme)
                throw new SyntaxErr("expected an auth-scheme");
            const ch = { scheme: scheme.toLowerCase(), params: {} };
            // A Map, so that a parameter named "__proto__" is kept as a plain key.
            const params = new Map();
            let dup = false;
            // Between the scheme and its parameters: at least one space.
            const wsStart = i;
            skipWS();
            const hadSpace = i > wsStart;
            if (i >= s.length || s[i] === ",") {
                out.push(ch);
                skipCommas();
                continue;
            }
            if (!hadSpace)
                throw new SyntaxErr("expected a space after the auth-scheme");
            // token68, when it is followed by the end or a comma.
            TOKEN68.lastIndex = i;
            const m = TOKEN68.exec(s);
            if (m) {
                let j = i + m[0].length;
                while (j < s.length && isWS(s[j]))
                    j++;
                if (j >= s.length || s[j] === ",") {
                    ch.token68 = m[0];
                    i = j;
                    out.push(ch);
                    skipCommas();
                    continue;
                }
            }
            // #auth-param
            for (;;) {
                const name = readToken().toLowerCase();
                if (!name)
                    throw new SyntaxErr("expected an auth-param name");
                skipWS();
                if (s[i] !== "=")
                    throw new SyntaxErr("expected '=' after an auth-param name");
                i++;
                skipWS();
                let value;
                if (s[i] === '"')
                    value = readQuoted();
                else {
                    value = readToken();
                    if (!value)
                        throw new SyntaxErr("expected a token or quoted-string value");
                }
                if (params.has(name))
                    dup = true;
                else
                    params.set(name, value);
                const comma = skipCommas();
                if (i >= s.length)
                    break;
                if (!comma)
                    throw new SyntaxErr("expected ',' between auth-params");
                if (!paramAhead())
                    break; // the next challenge starts here
            }
            ch.params = Object.fromEntries(params);
            if (!dup)
                out.push(ch);
        }
    }
    catch (e) {
        if (!(e instanceof SyntaxErr))
            throw e;
    }
    return out;
}
/**
 * The Bearer and DPoP challenges of a WWW-Authenticate value, in order, with
 * their OAuth parameters read out. Other schemes are skipped.
 */
export function parseOAuthChallenges(header) {
    const out = [];
    for (const ch of parseWWWAuthenticate(header)) {
        if (ch.scheme !== "bearer" && ch.scheme !== "dpop")
            continue;
        const p = ch.params;
        const o = { scheme: ch.scheme, scope: words(p["scope"]), algs: words(p["algs"]), challenge: ch };
        if (p["error"] !== undefined)
            o.error = p["error"];
        if (p["error_description"] !== undefined)
            o.errorDescription = p["error_description"];
        if (p["resource_metadata"] !== undefined)
            o.resourceMetadata = p["resource_metadata"];
        out.push(o);
    }
    return out;
}
/**
 * Finds the step-up challenge in a WWW-Authenticate value: the first `Bearer`
 * or `DPoP` challenge whose `error` is `insufficient_user_authentication`
 * (RFC 9470) or `insufficient_claims` (Entra's claims challenge).
 */
export function findStepUpChallenge(header) {
    for (const o of parseOAuthChallenges(header)) {
        if (o.error === undefined || !STEP_UP_ERRORS.includes(o.error))
            continue;
        const p = o.challenge.params;
        const out = { ...o, error: o.error, acrValues: words(p["acr_values"]) };
        const maxAge = parseMaxAge(p["max_age"]);
        if (maxAge !== undefined)
            out.maxAge = maxAge;
        const claims = decodeClaims(p["claims"]);
        if (claims !== undefined)
            out.claims = claims;
        return out;
    }
    return undefined;
}
/**
 * Decodes a claims challenge's `claims`: base64 (RFC 4648 §4; padding optional,
 * the URL-safe alphabet tolerated) of UTF-8 JSON whose top level is an object.
 * Undefined for anything else.
 */
export function decodeClaims(v) {
    if (v === undefined || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(v))
        return undefined;
    try {
        const bin = atob(v.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, ""));
        const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
        const json = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
        const value = JSON.parse(json);
        if (value === null || typeof value !== "object" || Array.isArray(value))
            return undefined;
        return { json, value: value };
    }
    catch {
        return undefined;
    }
}
function words(v) {
    return v ? v.split(" ").filter((w) => w !== "") : [];
}
/** Non-negative integer seconds from a string or number, else undefined. */
export function parseMaxAge(v) {
    if (typeof v === "number")
        return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
    if (typeof v !== "string" || !/^[0-9]{1,15}$/.test(v))
        return undefined;
    return Number(v);
}
