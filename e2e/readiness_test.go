package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

const downIssuer = "http://127.0.0.1:1"

// withDownIssuer adds a second issuer whose JWKS endpoint never answers.
func withDownIssuer(config string) string {
	return strings.Replace(config, "policy:", `  - issuer: "`+downIssuer+`"
    jwks_uri: "`+downIssuer+`/jwks.json"
    audiences: ["https://api.example.com"]
policy:`, 1)
}

// One identity provider being down must not take every replica out of
// service, and /readyz says which one is down.
func TestReadyWhenOneOfTwoIssuersHasKeys(t *testing.T) {
	idp := startIdP(t)
	s := startServer(t, idp, withDownIssuer(seedConfig))
	code, body := s.get(t, "/readyz")
	if code != http.StatusOK {
		t.Fatalf("/readyz = %d: %s", code, body)
	}
	r := readyz(t, body)
	if !r.Ready || len(r.Issuers) != 2 || r.Message != "ready: 1 of 2 issuers can judge tokens; tokens of the others get 503 until their keys are fetched (see each issuer's message)" {
		t.Fatalf("readyz = %s, want ready with two issuers, saying one has no keys", body)
	}
	for _, iss := range r.Issuers {
		switch iss.Issuer {
		case idp.Issuer:
			if iss.Keys != 3 || !iss.Fetched || iss.State != "ok" || !strings.HasPrefix(iss.Message, "3 keys, fetched at ") || iss.Skipped != 0 {
				t.Errorf("live issuer: %+v, want 3 keys", iss)
			}
		case downIssuer:
			// Not "fetched: true, keys: 0" alone: the state and message say what that means.
			if iss.Keys != 0 || !iss.Fetched || iss.LastError == "" || iss.State != "no_keys" ||
				!strings.HasPrefix(iss.Message, "no keys: no fetch has succeeded yet (see last_error), so tokens of this issuer get 503") {
				t.Errorf("down issuer: %+v, want no_keys, an error and a message saying so", iss)
			}
		default:
			t.Errorf("unexpected issuer %q", iss.Issuer)
		}
	}
	_, metrics := s.get(t, "/metrics")
	if !strings.Contains(metrics, `stepup_jwks_fetches_total{issuer="`+idp.Issuer+`",result="ok"}`) {
		t.Errorf("no successful JWKS fetch counted:\n%s", grep(metrics, "jwks"))
	}
	s.stop(t)
}

func TestNotReadyWhenNoIssuerHasKeys(t *testing.T) {
	idp := startIdP(t)
	s := launchServer(t, idp, `
listen: { grpc: "{{GRPC}}", admin: "{{ADMIN}}" }
issuers:
  - issuer: "`+downIssuer+`"
    jwks_uri: "`+downIssuer+`/jwks.json"
    audiences: ["https://api.example.com"]
`)
	waitFor(t, "the first fetch to finish", func() bool {
		resp, err := http.Get("http://" + s.adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		_, body := s.get(t, "/readyz")
		return strings.Contains(body, `"fetched":true`)
	})
	code, body := s.get(t, "/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d %s, want 503 with no keys anywhere", code, body)
	}
	if r := readyz(t, body); r.Ready || !strings.HasPrefix(r.Message, "not ready: no issuer holds keys") || r.Issuers[0].State != "no_keys" {
		t.Errorf("readyz = %s, want not ready saying no issuer holds keys", body)
	}
	// The log says there are no keys, not that cached keys stay.
	logs := s.stderr.String()
	if !strings.Contains(logs, "jwks fetch failed and no keys are held for this issuer") || strings.Contains(logs, "cached keys stay") {
		t.Errorf("fetch failure log:\n%s", logs)
	}
	s.stop(t)
}

type readyzBody struct {
	Ready   bool
	Message string
	Issuers []struct {
		Issuer      string
		State       string
		Message     string
		Fetched     bool
		Keys        int
		Skipped     int
		SkippedKeys []struct{ KID, Kty, Crv, Reason string } `json:"skipped_keys"`
		LastError   string                                   `json:"last_error"`
	}
}

func readyz(t *testing.T, body string) readyzBody {
	t.Helper()
	var r readyzBody
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return r
}

// A JWKS key the server refuses (RSA-1024 here) does not vanish silently: /readyz
// counts it and says why, the log names its kid once per fetch, and a token it signed
// is 401 invalid_token logged as key_refused.
func TestRefusedKeyIsReported(t *testing.T) {
	idp := startIdP(t)
	priv, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weak := &devidp.Key{ID: "weak-1024", Alg: "RS256", Private: priv}
	idp.SetKeys(append(idp.Keys(), weak)...)
	s := startServer(t, idp, seedConfig)

	r := readyz(t, func() string { _, b := s.get(t, "/readyz"); return b }())
	iss := r.Issuers[0]
	if iss.Keys != 3 || iss.Skipped != 1 || len(iss.SkippedKeys) != 1 || iss.SkippedKeys[0].KID != "weak-1024" ||
		iss.SkippedKeys[0].Reason != "RSA key of 1024 bits; at least 2048 required (RFC 7518 §3.3)" ||
		!strings.Contains(iss.Message, "1 keys of the latest JWKS were refused") {
		t.Errorf("readyz issuer %+v, want 3 keys and the RSA-1024 key skipped with its reason", iss)
	}
	tok, err := idp.MintWith(weak, devidp.Claims{"sub": "user-42", "acr": "aal2", "auth_time": time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	resp := s.check(t, "POST", "/api/payout-destination", tok)
	if dr := resp.GetDeniedResponse(); dr.GetStatus().GetCode() != 401 || header(resp, "www-authenticate") != `Bearer error="invalid_token"` {
		t.Errorf("token of the refused key: %s, want 401 invalid_token", describe(resp))
	}
	logs := s.stderr.String()
	if !strings.Contains(logs, "detail=key_refused") {
		t.Errorf("no denial logged with detail key_refused:\n%s", logs)
	}
	if !regexp.MustCompile(`msg="jwks key refused[^"]*" .*kid=weak-1024 kty=RSA .*reason="RSA key of 1024 bits`).MatchString(logs) {
		t.Errorf("the refused key is not logged with its kid and reason:\n%s", logs)
	}
	s.stop(t)
}
