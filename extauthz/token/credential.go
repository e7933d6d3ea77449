package token

import "strings"

// MaxTokenBytes is the longest token accepted; longer ones are invalid ("too_large")
// before any parsing.
const MaxTokenBytes = 16384

// Scheme is the HTTP authentication scheme a credential was presented under.
type Scheme string

// The schemes a token is read under: RFC 6750's Bearer, and RFC 9449 §7.1's DPoP
// ("Authorization: DPoP <token>", the token with the same syntax), which comes
// with a proof.
const (
	SchemeBearer Scheme = "Bearer"
	SchemeDPoP   Scheme = "DPoP"
)

// Credential is what a request presents to be known by: the first stage of the token
// pipeline. It is read from the request once, and every later stage (the cache, the
// verifiers, binding) looks only at it.
type Credential struct {
	Scheme Scheme
	// Token is the access token, an RFC 6750 b64token of at most MaxTokenBytes.
	Token string
	// DPoP is the proof of possession sent with the token (the DPoP header, RFC 9449
	// §4) once the credential stage verified it (ProofVerifier,
	// RFC 9449 §4.3): nil under Bearer. The binding stage holds cnf.jkt to it.
	DPoP *Proof
	// ClientCert is where the request's client certificate is, for the binding
	// stage of a certificate-bound token (RFC 8705); read only for such a token.
	ClientCert ClientCertificate
	// JWTAuthn, when set, holds the payloads Envoy's jwt_authn filter verified on this
	// request; the jwt_authn verifier and the cache entries it made consult it.
	JWTAuthn JWTAuthnPayloads
}

// ReadCredential reads the credential from the values of the Authorization header.
// values holds every value seen for the header: Envoy's header map joins repeated
// headers into one value with ","; raw header_map entries may give several.
//
// Rules:
//   - the scheme is Bearer or DPoP (RFC 9449 §7.1), the token has the same syntax under both;
//   - no value, an empty value, another scheme ("Basic ...") or a scheme without a token
//     returns ErrNoToken;
//   - more than one value, or a value containing "," (two credentials joined by Envoy),
//     returns an *InvalidError "multiple_credentials", whatever the schemes;
//   - the scheme is case-insensitive (RFC 7235 §2.1); leading and trailing blanks of the
//     value are ignored and the scheme may be followed by any run of spaces or tabs
//     (RFC 7235 asks for one space; proxies and hand-written clients send more);
//   - the token must match RFC 6750 §2.1 b64token, so a token containing a blank or any
//     other character is "malformed";
//   - a token longer than MaxTokenBytes is "too_large".
func ReadCredential(values []string) (Credential, error) {
	switch len(values) {
	case 0:
		return Credential{}, ErrNoToken
	case 1:
	default:
		return Credential{}, invalid(DetailMultipleCredentials, "%d authorization headers", len(values))
	}
	v := values[0]
	if strings.IndexByte(v, ',') >= 0 {
		return Credential{}, invalid(DetailMultipleCredentials, "authorization header holds a list")
	}
	v = strings.Trim(v, " \t")
	scheme, rest := v, ""
	if i := strings.IndexAny(v, " \t"); i >= 0 {
		scheme, rest = v[:i], v[i+1:]
	}
	var cred Credential
	switch {
	case strings.EqualFold(scheme, "bearer"):
		cred.Scheme = SchemeBearer
	case strings.EqualFold(scheme, "dpop"):
		cred.Scheme = SchemeDPoP
	default:
		return Credential{}, ErrNoToken
	}
	tok := strings.TrimLeft(rest, " \t")
	if tok == "" {
		return Credential{}, ErrNoToken
	}
	// The scheme stays on an invalid token: a DPoP one is answered in the DPoP scheme.
	if len(tok) > MaxTokenBytes {
		return cred, invalid(DetailTooLarge, "token is %d bytes, limit %d", len(tok), MaxTokenBytes)
	}
	if !isB64Token(tok) {
		return cred, invalid(DetailMalformed, "token is not an RFC 6750 b64token")
	}
	cred.Token = tok
	return cred, nil
}

// isB64Token reports whether s matches RFC 6750 §2.1:
// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	// Eight bytes a step while all are token characters (the table holds 1 for
	// them): one AND of eight independent lookups instead of eight branches.
	for ; i+8 <= len(s); i += 8 {
		t := &b64Table
		if t[s[i]]&t[s[i+1]]&t[s[i+2]]&t[s[i+3]]&t[s[i+4]]&t[s[i+5]]&t[s[i+6]]&t[s[i+7]] == 0 {
			break
		}
	}
	for i < len(s) && isB64Char(s[i]) {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// isB64Char is one table lookup: it runs on every byte of every token, and
// the comparisons it replaces were a measurable part of a cached Check.
func isB64Char(c byte) bool { return b64Table[c] == 1 }

// b64Table is 1 for the b64token characters, 0 for every other byte.
var b64Table = func() (t [256]byte) {
	for c := range 256 {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			t[c] = 1
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/':
			t[c] = 1
		}
	}
	return t
}()
