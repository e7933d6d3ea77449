package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stepup-authz/stepup-authz/policy"
)

// maxNumericDate is 9999-12-31T23:59:59Z. NumericDate claims outside [0, maxNumericDate]
// are refused as "claim_type": far larger values (1e300) would overflow time.Time
// arithmetic into a wrong, possibly valid, instant.
const maxNumericDate = 253402300799

// b64 decodes JWS segments: unpadded base64url (RFC 7515 §2), rejecting non-canonical
// trailing bits so that one token has one spelling (the cache key).
var b64 = base64.RawURLEncoding.Strict()

// compact is a JWS in compact serialization (RFC 7515 §7.1), split but not verified.
type compact struct {
	signed    string // "header.payload", the signing input
	header    header
	payload   *payload
	signature []byte
}

// splitCompact decodes raw into its parts and checks every structural and type rule
// that needs no key: duplicate members, claim types, unsupported header extensions.
func splitCompact(raw string) (*compact, error) {
	h64, rest, ok1 := strings.Cut(raw, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s64, '.') >= 0 {
		return nil, invalid(DetailMalformed, "not a compact JWS (want three dot-separated parts)")
	}
	if h64 == "" || p64 == "" || s64 == "" {
		// An empty signature is what alg "none" produces.
		return nil, invalid(DetailMalformed, "empty JWS part")
	}
	hb, err := b64.DecodeString(h64)
	if err != nil {
		return nil, invalid(DetailMalformed, "header: %w", err)
	}
	h, err := parseHeader(hb)
	if err != nil {
		return nil, err
	}
	pb, err := b64.DecodeString(p64)
	if err != nil {
		return nil, invalid(DetailMalformed, "payload: %w", err)
	}
	p, err := parsePayload(pb)
	if err != nil {
		return nil, err
	}
	sig, err := b64.DecodeString(s64)
	if err != nil {
		return nil, invalid(DetailMalformed, "signature: %w", err)
	}
	return &compact{signed: raw[:len(h64)+1+len(p64)], header: h, payload: p, signature: sig}, nil
}

// decodeObject decodes a JSON object into its members, refusing duplicate member names
// (RFC 7515 §5.2 and RFC 7519 §4 let us reject them; encoding/json would silently keep
// the last one, so {"acr":"aal1","acr":"aal3"} could mean different things to
// different readers).
func decodeObject(b []byte, what string) (map[string]json.RawMessage, error) {
	if m, ok := decodeObjectFast(b); ok {
		return m, nil
	}
	return decodeObjectStream(b, what)
}

// decodeObjectStream is decodeObject token by token, for every object.
func decodeObjectStream(b []byte, what string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, invalid(DetailMalformed, "%s is not a JSON object", what)
	}
	m := make(map[string]json.RawMessage)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, invalid(DetailMalformed, "%s: %w", what, err)
		}
		name, ok := t.(string)
		if !ok {
			return nil, invalid(DetailMalformed, "%s: member name is not a string", what)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, invalid(DetailMalformed, "%s: member %q: %w", what, name, err)
		}
		if _, dup := m[name]; dup {
			return nil, invalid(DetailDuplicateClaim, "%s: member %q appears more than once", what, name)
		}
		m[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, invalid(DetailMalformed, "%s: %w", what, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalid(DetailMalformed, "%s: data after the JSON object", what)
	}
	return m, nil
}

// decodeObjectFast is decodeObject for the usual token, a JSON object without
// duplicate members: json.Unmarshal validates and splits it in one pass, far
// cheaper than the token-by-token decoder, and counting the object's members
// tells whether a name was repeated (json.Unmarshal keeps the last). ok is
// false for anything else — invalid JSON, not an object, a repeated name —
// and decodeObject then gives its own answer and error.
func decodeObjectFast(b []byte) (map[string]json.RawMessage, bool) {
	if m, ok := scanFlatObject(b); ok {
		return m, true
	}
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	if i == len(b) || b[i] != '{' {
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, false
	}
	return m, countMembers(b[i:]) == len(m)
}

// countMembers counts the members of the JSON object at the start of b,
// which is valid JSON: the colons outside strings directly inside it.
func countMembers(b []byte) int {
	n, depth, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped character
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return n
			}
		case ':':
			if depth == 1 {
				n++
			}
		}
	}
	return n
}

// unquote reads a JSON string value into s, as json.Unmarshal does; the usual
// string, without escapes and valid UTF-8, is taken as it is.
func unquote(raw json.RawMessage, s *string) bool {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		in := raw[1 : len(raw)-1]
		simple := true
		for _, c := range in {
			if c == '\\' || c == '"' || c < 0x20 {
				simple = false
				break
			}
		}
		if simple && utf8.Valid(in) {
			*s = string(in)
			return true
		}
	}
	return json.Unmarshal(raw, s) == nil
}

// header is the part of a JOSE header that verification uses. Key-bearing members
// (jku, x5u, jwk, x5c, x5t) are deliberately not read: keys come only from the JWKS.
type header struct {
	alg    string
	kid    string
	hasKID bool
	typ    string
	hasTyp bool
}

func parseHeader(b []byte) (header, error) {
	var h header
	m, err := decodeObject(b, "header")
	if err != nil {
		return h, err
	}
	// RFC 7515 §4.1.11: a recipient must reject a crit extension it does not understand,
	// and we understand none. b64 (RFC 7797) changes what is signed; refuse it outright.
	if _, ok := m["crit"]; ok {
		return h, invalid(DetailCritUnsupported, "header has crit; no extensions are supported")
	}
	if _, ok := m["b64"]; ok {
		return h, invalid(DetailCritUnsupported, "header has b64; unencoded payloads are not supported")
	}
	var ok bool
	if h.alg, ok, err = stringMember(m, "alg", "header"); err != nil {
		return h, invalid(DetailMalformed, "%w", err)
	} else if !ok {
		return h, invalid(DetailMalformed, "header has no alg")
	}
	if h.kid, h.hasKID, err = stringMember(m, "kid", "header"); err != nil {
		return h, invalid(DetailMalformed, "%w", err)
	}
	if h.typ, h.hasTyp, err = stringMember(m, "typ", "header"); err != nil {
		return h, invalid(DetailMalformed, "%w", err)
	}
	return h, nil
}

// payload holds the claims of a JWT with their types checked. It implements jwt.Claims
// so that jwt's Validator applies exp, nbf, iat, iss and aud.
type payload struct {
	iss, sub, clientID, gty string
	acr                     string
	hasACR                  bool
	aud                     []string
	amr                     []string
	// acrs is Microsoft Entra ID's authentication contexts (an array of strings).
	acrs                    []string
	scope                   string
	hasScope                bool
	scp                     []string
	exp, nbf, iat, authTime time.Time
	hasExp, hasNbf, hasIat  bool
	// cnf is the token's binding (cnf.go); zero for a bearer token.
	cnf policy.Confirmation
}

var _ jwt.Claims = (*payload)(nil)

// parsePayload decodes the JWT claims set and enforces claim types: NumericDate claims
// must be numbers within [0, maxNumericDate]; acr, sub, client_id, gty, iss and scope
// strings; aud a string or an array of strings; amr and acrs arrays of strings; scp an
// array of strings or (as Microsoft Entra ID sends it) a space-separated string.
func parsePayload(b []byte) (*payload, error) {
	m, err := decodeObject(b, "payload")
	if err != nil {
		return nil, err
	}
	return payloadOf(m)
}

// payloadOf is parsePayload of an object already split into its members (an
// introspection answer is split once, for active and for the claims).
func payloadOf(m map[string]json.RawMessage) (*payload, error) {
	var err error
	p := &payload{}
	for _, c := range []struct {
		name string
		dst  *string
		has  *bool
	}{
		{"iss", &p.iss, nil},
		{"sub", &p.sub, nil},
		{"client_id", &p.clientID, nil},
		{"gty", &p.gty, nil},
		{"acr", &p.acr, &p.hasACR},
		{"scope", &p.scope, &p.hasScope},
	} {
		v, ok, err := stringMember(m, c.name, "claim")
		if err != nil {
			return nil, invalid(DetailClaimType, "%w", err)
		}
		*c.dst = v
		if c.has != nil {
			*c.has = ok
		}
	}
	for _, c := range []struct {
		name string
		dst  *time.Time
		has  *bool
	}{
		{"exp", &p.exp, &p.hasExp},
		{"nbf", &p.nbf, &p.hasNbf},
		{"iat", &p.iat, &p.hasIat},
		{"auth_time", &p.authTime, nil},
	} {
		v, ok, err := numericDateMember(m, c.name)
		if err != nil {
			return nil, invalid(DetailClaimType, "%w", err)
		}
		*c.dst = v
		if c.has != nil {
			*c.has = ok
		}
	}
	if p.aud, err = stringsMember(m, "aud", true); err != nil {
		return nil, invalid(DetailClaimType, "%w", err)
	}
	if p.amr, err = stringsMember(m, "amr", false); err != nil {
		return nil, invalid(DetailClaimType, "%w", err)
	}
	// Type-checked for every issuer, like amr: one token, one meaning, whichever
	// issuer's rules read it (level_claim acrs).
	if p.acrs, err = stringsMember(m, "acrs", false); err != nil {
		return nil, invalid(DetailClaimType, "%w", err)
	}
	if p.scp, err = stringsMember(m, "scp", true); err != nil {
		return nil, invalid(DetailClaimType, "%w", err)
	}
	if raw, ok := m["scp"]; ok && len(raw) > 0 && raw[0] == '"' {
		// Entra ID's scp is one space-separated string.
		p.scp = splitScope(p.scp[0])
	}
	if p.cnf, err = confirmationMember(m); err != nil {
		return nil, err
	}
	return p, nil
}

// scopes returns the token's scopes: "scope" (RFC 8693 §4.2, space-separated) when
// present, else "scp".
// claims are the policy claims a verified payload (a JWT's, or an introspection
// answer's) speaks for, under issuer.
func (p *payload) claims(issuer string) policy.Claims {
	return policy.Claims{
		Issuer:   issuer,
		Subject:  p.sub,
		ClientID: p.clientID,
		Gty:      p.gty,
		ACR:      p.acr,
		HasACR:   p.hasACR,
		ACRS:     p.acrs,
		AMR:      p.amr,
		AuthTime: p.authTime,
		IssuedAt: p.iat,
		Expiry:   p.exp,
		Scopes:   p.scopes(),
		// Checked against the request's proof or certificate by the binding stage.
		Confirmation: p.cnf,
	}
}

func (p *payload) scopes() []string {
	if p.hasScope {
		return splitScope(p.scope)
	}
	return p.scp
}

// splitScope splits a space-delimited scope string (RFC 6749 §3.3), dropping empty items.
func splitScope(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, " ") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (p *payload) GetExpirationTime() (*jwt.NumericDate, error) { return numericDate(p.exp, p.hasExp) }
func (p *payload) GetNotBefore() (*jwt.NumericDate, error)      { return numericDate(p.nbf, p.hasNbf) }
func (p *payload) GetIssuedAt() (*jwt.NumericDate, error)       { return numericDate(p.iat, p.hasIat) }
func (p *payload) GetIssuer() (string, error)                   { return p.iss, nil }
func (p *payload) GetSubject() (string, error)                  { return p.sub, nil }
func (p *payload) GetAudience() (jwt.ClaimStrings, error)       { return p.aud, nil }

func numericDate(t time.Time, ok bool) (*jwt.NumericDate, error) {
	if !ok {
		return nil, nil
	}
	return &jwt.NumericDate{Time: t}, nil
}

// jsonKind names the JSON type of a raw value for error messages.
func jsonKind(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch c := raw[0]; {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	default:
		return "a number"
	}
}

// stringMember reads member name, which must be a JSON string when present (null is
// not a string).
func stringMember(m map[string]json.RawMessage, name, what string) (string, bool, error) {
	raw, ok := m[name]
	if !ok {
		return "", false, nil
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || !unquote(raw, &s) {
		return "", false, errors.New(what + " " + strconv.Quote(name) + " is " + jsonKind(raw) + ", want a string")
	}
	return s, true, nil
}

// stringsMember reads member name, which must be an array of strings or, when
// orString, a single string (returned as a one-element slice).
func stringsMember(m map[string]json.RawMessage, name string, orString bool) ([]string, error) {
	raw, ok := m[name]
	if !ok {
		return nil, nil
	}
	bad := func() error {
		want := "an array of strings"
		if orString {
			want = "a string or " + want
		}
		return errors.New("claim " + strconv.Quote(name) + " is " + jsonKind(raw) + " or has non-string items, want " + want)
	}
	switch {
	case len(raw) > 0 && raw[0] == '"' && orString:
		var s string
		if !unquote(raw, &s) {
			return nil, bad()
		}
		return []string{s}, nil
	case len(raw) > 0 && raw[0] == '[':
		if out, ok := scanPlainStrings(raw); ok {
			return out, nil
		}
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil, bad()
		}
		out := make([]string, 0, len(items))
		for _, it := range items {
			var s string
			if len(it) == 0 || it[0] != '"' || !unquote(it, &s) {
				return nil, bad()
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, bad()
}

// numericDateMember reads a NumericDate (RFC 7519 §2): a JSON number of seconds since
// the epoch, fractions allowed, within [0, maxNumericDate].
func numericDateMember(m map[string]json.RawMessage, name string) (time.Time, bool, error) {
	raw, ok := m[name]
	if !ok {
		return time.Time{}, false, nil
	}
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, false, errors.New("claim " + strconv.Quote(name) + " is " + jsonKind(raw) + ", want a number")
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false, errors.New("claim " + strconv.Quote(name) + " is " + string(raw) + ", outside [0, 253402300799] (year 9999)")
	}
	sec := math.Floor(f)
	nsec := math.Round((f - sec) * 1e9)
	if nsec >= 1e9 {
		sec, nsec = sec+1, 0
	}
	return time.Unix(int64(sec), int64(nsec)), true, nil
}
