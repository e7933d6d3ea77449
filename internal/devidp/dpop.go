package devidp

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// DPoP at the token endpoint (RFC 9449 §5): a client that sends a DPoP proof
// with its token request gets a token bound to the proof's key (cnf.jkt, the
// key's RFC 7638 thumbprint) and token_type DPoP. This is how a browser that
// keeps its private key non-extractable gets a bound token: it never hands
// over anything but signatures.
//
// The checks are RFC 9449 §4.3's that a token endpoint needs (one header,
// typ, an asymmetric alg, a public jwk that verifies the signature, jti, htm,
// htu, iat). Like the rest of the dev IdP, it is for development only: it
// keeps no record of used jti values and asks for no nonces.

// tokenProofAlgorithms are the proof algorithms the token endpoint accepts:
// asymmetric only (RFC 9449 §4.3: not none, not a MAC).
func tokenProofAlgorithms() []jose.SignatureAlgorithm {
	return []jose.SignatureAlgorithm{
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA, jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	}
}

// tokenProofMaxAge is how far a token request proof's iat may be from now, either way.
const tokenProofMaxAge = 60 * time.Second

// errNoProof means the token request carried no DPoP header.
var errNoProof = errors.New("no DPoP header")

// tokenProofJKT checks the DPoP proof of a token request and returns the
// thumbprint of its key; errNoProof when there is none.
func (i *IdP) tokenProofJKT(r *http.Request) (string, error) {
	values := r.Header.Values("DPoP")
	switch {
	case len(values) == 0:
		return "", errNoProof
	case len(values) > 1 || strings.Contains(values[0], ","):
		return "", errors.New("more than one DPoP header")
	}
	jws, err := jose.ParseSignedCompact(strings.TrimSpace(values[0]), tokenProofAlgorithms())
	if err != nil {
		return "", fmt.Errorf("not a compact JWS with an asymmetric alg: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return "", errors.New("not a single-signature JWS")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return "", fmt.Errorf("typ %q is not dpop+jwt", typ)
	}
	jwk := h.JSONWebKey
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() {
		return "", errors.New("jwk is missing, invalid or holds a private key")
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		return "", fmt.Errorf("the signature does not verify with jwk: %v", err)
	}
	var c struct {
		JTI string   `json:"jti"`
		HTM string   `json:"htm"`
		HTU string   `json:"htu"`
		IAT *float64 `json:"iat"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", fmt.Errorf("claims: %v", err)
	}
	if c.JTI == "" || c.IAT == nil {
		return "", errors.New("jti or iat missing")
	}
	if c.HTM != http.MethodPost {
		return "", fmt.Errorf("htm %q is not POST", c.HTM)
	}
	if want := i.tokenURL(r); !sameHTU(c.HTU, want) {
		return "", fmt.Errorf("htu %q is not %s", c.HTU, want)
	}
	if d := i.now().Sub(time.Unix(int64(*c.IAT), 0)); d > tokenProofMaxAge || d < -tokenProofMaxAge {
		return "", fmt.Errorf("iat is %s away from now (at most %s)", d.Round(time.Second), tokenProofMaxAge)
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("jwk thumbprint: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// tokenURL is the token endpoint's URL: under Issuer, else where the request came in.
func (i *IdP) tokenURL(r *http.Request) string {
	if i.Issuer != "" {
		return i.Issuer + "/token"
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/token"
}

// sameHTU compares a proof's htu with the endpoint's URL (RFC 9449 §4.3):
// without query and fragment, scheme and host case-insensitively.
func sameHTU(htu, want string) bool {
	u, err := url.Parse(htu)
	if err != nil {
		return false
	}
	w, err := url.Parse(want)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, w.Scheme) && strings.EqualFold(u.Host, w.Host) && u.EscapedPath() == w.EscapedPath()
}

// writeOAuthError answers a token request with an RFC 6749 §5.2 error.
func writeOAuthError(w http.ResponseWriter, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}
