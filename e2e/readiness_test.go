package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
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
	var r struct {
		Ready   bool
		Issuers []struct {
			Issuer    string
			Fetched   bool
			Keys      int
			LastError string `json:"last_error"`
		}
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if !r.Ready || len(r.Issuers) != 2 {
		t.Fatalf("readyz = %s, want ready with two issuers", body)
	}
	for _, iss := range r.Issuers {
		switch iss.Issuer {
		case idp.Issuer:
			if iss.Keys != 3 || !iss.Fetched {
				t.Errorf("live issuer: %+v, want 3 keys", iss)
			}
		case downIssuer:
			if iss.Keys != 0 || !iss.Fetched || iss.LastError == "" {
				t.Errorf("down issuer: %+v, want fetched, no keys, an error", iss)
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
	if code, body := s.get(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d %s, want 503 with no keys anywhere", code, body)
	}
	s.stop(t)
}
