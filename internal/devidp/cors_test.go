package devidp

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestWithCORS(t *testing.T) {
	idp, err := New("https://api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	h := WithCORS(idp.Handler(), []string{"http://127.0.0.1:8000"})
	do := func(method, path, origin string, hdr map[string]string) *httptest.ResponseRecorder {
		var body *strings.Reader
		if method == http.MethodPost {
			body = strings.NewReader(url.Values{"acr": {"aal2"}}.Encode())
		} else {
			body = strings.NewReader("")
		}
		r := httptest.NewRequest(method, path, body)
		if method == http.MethodPost {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	t.Run("an allowed origin may read the token", func(t *testing.T) {
		w := do("POST", "/token", "http://127.0.0.1:8000", nil)
		if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "http://127.0.0.1:8000" || !strings.Contains(w.Body.String(), "access_token") {
			t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
		}
		if w.Header().Get("Vary") != "Origin" {
			t.Errorf("Vary = %q", w.Header().Get("Vary"))
		}
	})
	t.Run("another origin gets no CORS headers", func(t *testing.T) {
		w := do("POST", "/token", "http://evil.example", nil)
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("Access-Control-Allow-Origin = %q", got)
		}
	})
	t.Run("preflight from an allowed origin", func(t *testing.T) {
		w := do("OPTIONS", "/token", "http://127.0.0.1:8000", map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, dpop"})
		if w.Code != 204 || w.Header().Get("Access-Control-Allow-Methods") != "POST" || w.Header().Get("Access-Control-Allow-Origin") != "http://127.0.0.1:8000" {
			t.Fatalf("%d %v", w.Code, w.Header())
		}
		// A DPoP token request (RFC 9449 §5) sends a DPoP header.
		if got := w.Header().Get("Access-Control-Allow-Headers"); got != "content-type, dpop" {
			t.Errorf("Access-Control-Allow-Headers = %q, want content-type, dpop", got)
		}
	})
	t.Run("preflight from another origin is not allowed", func(t *testing.T) {
		w := do("OPTIONS", "/token", "http://evil.example", map[string]string{"Access-Control-Request-Method": "POST"})
		if w.Header().Get("Access-Control-Allow-Origin") != "" || w.Header().Get("Access-Control-Allow-Methods") != "" {
			t.Fatalf("%d %v", w.Code, w.Header())
		}
	})
	t.Run("only the token endpoint", func(t *testing.T) {
		w := do("GET", "/jwks.json", "http://127.0.0.1:8000", nil)
		if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("%d %v", w.Code, w.Header())
		}
	})
}
