// WWW-Authenticate parsing (RFC 9110 §11.6.1) and recognition of the RFC 9470
// step-up challenge that stepup-authz sends:
//
//   WWW-Authenticate: Bearer error="insufficient_user_authentication",
//     error_description="...", acr_values="aal2", max_age="300"
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
 * Finds the RFC 9470 step-up challenge in a WWW-Authenticate value: the first
 * `Bearer` challenge whose `error` is `insufficient_user_authentication`.
 */
export function findStepUpChallenge(header) {
    for (const ch of parseWWWAuthenticate(header)) {
        if (ch.scheme !== "bearer" || ch.params["error"] !== "insufficient_user_authentication")
            continue;
        const acr = ch.params["acr_values"];
        const out = {
            acrValues: acr ? acr.split(" ").filter((v) => v !== "") : [],
            challenge: ch,
        };
        const maxAge = parseMaxAge(ch.params["max_age"]);
        if (maxAge !== undefined)
            out.maxAge = maxAge;
        if (ch.params["error_description"] !== undefined)
            out.errorDescription = ch.params["error_description"];
        return out;
    }
    return undefined;
}
/** Non-negative integer seconds from a string or number, else undefined. */
export function parseMaxAge(v) {
    if (typeof v === "number")
        return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
    if (typeof v !== "string" || !/^[0-9]{1,15}$/.test(v))
        return undefined;
    return Number(v);
}
